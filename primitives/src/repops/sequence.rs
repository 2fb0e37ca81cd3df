//! The operators of sequence models (small transformers), forward and backward, written with
//! the RepOps basic operations in one fixed order.
//!
//! A sequence model reads each sample as `context + 1` token ids: tokens `0 .. context` are
//! its input, tokens `1 ..= context` the targets (the next token at each position). From the
//! embedding on, activations are held one *token* per row: row `b * context + t` is position
//! `t` of sample `b` (so dense layers, layer normalization, GELU and residual sums apply per
//! token unchanged).
//!
//! - [`token`]: a feature value is a token id if it is a whole number below the vocabulary;
//!   any other value (negative, fractional, too large, NaN, infinite) is token 0;
//! - [`embed_at`]: `y[b*T + t] = tok[x_b[t]] + pos[t]` (one addition);
//!   [`embed_grad_at`]: `dtok[v] = sum over rows r in order, where r's token is v, of dy[r]`;
//!   [`position_grad_at`]: `dpos[t] = sum over b in order of dy[b*T + t]`;
//! - causal multi-head self-attention ([`attention_at`]) on a token's `q | k | v` row (`3d`
//!   values, each of `d = heads * dh` values, head `h` at columns `h*dh ..`): for position
//!   `i`, head `h`: `s_j = dot(q_i, k_j) * scale` for `j = 0 ..= i` (`scale = 1 / sqrt(dh)`),
//!   `p = softmax(s)` (the running maximum subtracted, exponentials summed left to right, each
//!   divided by the sum), `out_i[h*dh + e] = dot over j of (p_j, v_j[e])`;
//! - its gradient ([`attention_grad_at`], output `dq | dk | dv`): `dp_ij = dot(dy_i, v_j)`,
//!   `D_i = dot over j of (p_ij, dp_ij)`, `ds_ij = p_ij (dp_ij - D_i)`; `dq_i[e] = dot over j
//!   ≤ i of (ds_ij, k_j[e]) * scale`, `dk_j[e] = dot over i ≥ j of (ds_ij, q_i[e]) * scale`,
//!   `dv_j[e] = dot over i ≥ j of (p_ij, dy_i[e])`;
//! - the per-token softmax cross-entropy ([`token_xent_at`]) of row `b*T + t` of the logits
//!   against token `t + 1` of sample `b`, and its gradient averaged over all `B * T` tokens.
//!
//! Every dot product is [`super::dot`] (fused multiply-adds, left to right); each operator is
//! written per output element and the whole-tensor operator runs the same functions, so the
//! chain's check of one element computes exactly what the whole operation does.

use super::{
	add, div, dot, exp_each, mul, row_max, softmax_xent_backward_row_with, softmax_xent_row_with,
	sqrt, sub, sum, Matrix, ShapeError,
};
use alloc::vec::Vec;
use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;

/// The longest context a sequence model may have: an attention gradient's element reads every
/// row of its sequence from two tensors, each with its Merkle proof.
pub const MAX_CONTEXT: u32 = 128;

/// A sequence model's tokens: the vocabulary and the context.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	Debug,
)]
pub struct Tokens {
	/// Token ids are `0 .. vocab`.
	pub vocab: u32,
	/// Positions per sample (a sample holds `context + 1` tokens).
	pub context: u32,
	/// The width of the rows the operator handles: the embedding's (for the loss, the
	/// vocabulary).
	pub dim: u32,
}

/// A causal self-attention's shape.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	Debug,
)]
pub struct Attention {
	/// Heads.
	pub heads: u32,
	/// Positions per sequence.
	pub context: u32,
	/// The model's width `d` (the output's columns; the input has `3d`).
	pub dim: u32,
}

/// `data[start .. start + len]`, empty if out of range.
fn slice(data: &[f32], start: usize, len: usize) -> &[f32] {
	data.get(start..start.saturating_add(len)).unwrap_or(&[])
}

/// The token id feature value `v` holds: `v` if a whole number in `0 .. vocab`, else 0.
pub fn token(v: f32, vocab: u32) -> u32 {
	if v >= 0.0 && v < vocab as f32 {
		let t = v as u32;
		if t as f32 == v {
			return t;
		}
	}
	0
}

impl Tokens {
	/// Whether the shape is sound: two tokens at least, within the bounds.
	pub fn is_valid(&self) -> bool {
		self.vocab >= 2
			&& self.vocab <= crate::task::MAX_WIDTH
			&& self.dim >= 1
			&& self.dim <= crate::task::MAX_WIDTH
			&& self.context >= 1
			&& self.context <= MAX_CONTEXT
	}

	fn split(&self, r: u32) -> (u32, u32) {
		token_position(self.context, r)
	}
}

/// The sample and position of token row `r` of a sequence model of context `context`.
pub fn token_position(context: u32, r: u32) -> (u32, u32) {
	(r.checked_div(context).unwrap_or(0), r.checked_rem(context).unwrap_or(0))
}

/// Value `(r, c)` of the embedding: `tok[token] + pos[t]` for `r = b*T + t`, with sample
/// `b`'s features `sample`, column `c` of the token table `tok_col` and row `t` of the
/// position table `pos_row`.
pub fn embed_at(
	g: &Tokens,
	sample: &[f32],
	tok_col: &[f32],
	pos_row: &[f32],
	r: u32,
	c: u32,
) -> f32 {
	let (_, t) = g.split(r);
	let id = token(sample.get(t as usize).copied().unwrap_or(0.0), g.vocab);
	add(
		tok_col.get(id as usize).copied().unwrap_or(0.0),
		pos_row.get(c as usize).copied().unwrap_or(0.0),
	)
}

/// Value `(v, c)` of the token table's gradient, from every sample's features (`samples`,
/// rows in order) and column `c` of `dy`.
pub fn embed_grad_at(g: &Tokens, samples: &[f32], dy_col: &[f32], v: u32) -> f32 {
	let width = (g.context as usize).saturating_add(1);
	let ids = samples
		.chunks(width.max(1))
		.flat_map(|s| s.iter().take(g.context as usize).map(|x| token(*x, g.vocab)));
	sum(ids.zip(dy_col).filter(|(id, _)| *id == v).map(|(_, d)| *d))
}

/// Value `(t, c)` of the position table's gradient, from column `c` of `dy`.
pub fn position_grad_at(g: &Tokens, dy_col: &[f32], t: u32) -> f32 {
	sum(dy_col.iter().skip(t as usize).step_by((g.context as usize).max(1)).copied())
}

/// The per-token loss of row `r = b*T + t` of the logits, against token `t + 1` of sample `b`
/// (its features `sample`).
pub fn token_xent_at(g: &Tokens, row: &[f32], sample: &[f32], r: u32) -> Result<f32, ShapeError> {
	token_xent_at_with(g, row, sample, r, exp_each)
}

/// [`token_xent_at`], the exponentials taken by `exp_all` (see [`exp_each`]).
pub fn token_xent_at_with(
	g: &Tokens,
	row: &[f32],
	sample: &[f32],
	r: u32,
	exp_all: impl FnOnce(&[f32], &mut [f32]),
) -> Result<f32, ShapeError> {
	softmax_xent_row_with(row, target(g, sample, r, row.len()), exp_all)
}

/// Its gradient's row, averaged over `tokens` tokens.
pub fn token_xent_backward_row(
	g: &Tokens,
	row: &[f32],
	sample: &[f32],
	r: u32,
	tokens: u32,
) -> Result<Vec<f32>, ShapeError> {
	token_xent_backward_row_with(g, row, sample, r, tokens, exp_each)
}

/// [`token_xent_backward_row`], the exponentials taken by `exp_all` (see [`exp_each`]).
pub fn token_xent_backward_row_with(
	g: &Tokens,
	row: &[f32],
	sample: &[f32],
	r: u32,
	tokens: u32,
	exp_all: impl FnOnce(&[f32], &mut [f32]),
) -> Result<Vec<f32>, ShapeError> {
	softmax_xent_backward_row_with(row, target(g, sample, r, row.len()), tokens, exp_all)
}

fn target(g: &Tokens, sample: &[f32], r: u32, classes: usize) -> u32 {
	let (_, t) = g.split(r);
	let v = sample.get((t as usize).saturating_add(1)).copied().unwrap_or(0.0);
	token(v, u32::try_from(classes).unwrap_or(0).min(g.vocab))
}

/// The softmax of a row: `e_j = exp(s_j - max)`, each divided by their sum (left to right).
pub fn softmax(s: &[f32]) -> Vec<f32> {
	let (mut shifted, mut out) = (alloc::vec![0.0f32; s.len()], alloc::vec![0.0f32; s.len()]);
	softmax_into(s, &mut shifted, &mut out, exp_each);
	out
}

/// [`softmax`] of `s` into `out` without allocating: `shifted` (as long as `s`) receives the
/// shifted scores `s_j - max`, and `exp_all(shifted, out)` must write [`exp`]'s bits of each
/// into `out` (an engine's vectorized exponential); `out` then gets the probabilities. Only
/// the first `s.len()` values of `shifted` and `out` are used.
pub fn softmax_into(
	s: &[f32],
	shifted: &mut [f32],
	out: &mut [f32],
	exp_all: impl FnOnce(&[f32], &mut [f32]),
) {
	let m = row_max(s);
	let n = s.len();
	let (shifted, out) =
		(shifted.get_mut(..n).unwrap_or_default(), out.get_mut(..n).unwrap_or_default());
	shifted.iter_mut().zip(s).for_each(|(e, z)| *e = sub(*z, m));
	exp_all(shifted, out);
	let total = sum(out.iter().copied());
	out.iter_mut().for_each(|x| *x = div(*x, total));
}

/// One sequence's `q | k | v` rows (`T x 3d`, flat), read head by head.
struct Heads<'a> {
	seq: &'a [f32],
	d: usize,
	dh: usize,
	scale: f32,
}

impl<'a> Heads<'a> {
	fn new(g: &Attention, seq: &'a [f32]) -> Self {
		let d = g.dim as usize;
		let dh = d.checked_div(g.heads as usize).unwrap_or(0);
		Self { seq, d, dh, scale: div(1.0, sqrt(dh as f32)) }
	}

	/// Part `part` (0: q, 1: k, 2: v) of head `h` at position `i`.
	fn part(&self, part: usize, h: usize, i: usize) -> &'a [f32] {
		let w = self.d.saturating_mul(3);
		let start = i
			.saturating_mul(w)
			.saturating_add(part.saturating_mul(self.d))
			.saturating_add(h.saturating_mul(self.dh));
		slice(self.seq, start, self.dh)
	}

	fn value(&self, part: usize, h: usize, i: usize, e: usize) -> f32 {
		self.part(part, h, i).get(e).copied().unwrap_or(0.0)
	}

	/// Position `i`'s attention probabilities over positions `0 ..= i`, head `h`.
	fn probs(&self, h: usize, i: usize) -> Vec<f32> {
		let q = self.part(0, h, i);
		let s: Vec<f32> = (0..=i)
			.map(|j| mul(dot(q.iter().copied(), self.part(1, h, j).iter().copied()), self.scale))
			.collect();
		softmax(&s)
	}

	/// Position `i`'s probabilities and score gradients `ds_ij` (`j = 0 ..= i`), head `h`,
	/// with `dy_i`'s head `h` slice `dy`.
	fn scores_grad(&self, h: usize, i: usize, dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
		let p = self.probs(h, i);
		let dp: Vec<f32> =
			(0..=i).map(|j| dot(dy.iter().copied(), self.part(2, h, j).iter().copied())).collect();
		let total = dot(p.iter().copied(), dp.iter().copied());
		let ds = p.iter().zip(&dp).map(|(p, dp)| mul(*p, sub(*dp, total))).collect();
		(p, ds)
	}
}

/// Head `h`'s slice of `dy`'s row `i` (`dys`: one sequence's `T x d` rows, flat).
fn dy_head(dys: &[f32], d: usize, dh: usize, h: usize, i: usize) -> &[f32] {
	slice(dys, i.saturating_mul(d).saturating_add(h.saturating_mul(dh)), dh)
}

/// Value `(i, c)` of one sequence's attention output, from its `q | k | v` rows `seq`.
pub fn attention_at(g: &Attention, seq: &[f32], i: u32, c: u32) -> f32 {
	let heads = Heads::new(g, seq);
	let (h, e) = split_head(c as usize, heads.dh);
	let p = heads.probs(h, i as usize);
	dot(p, (0..=i as usize).map(|j| heads.value(2, h, j, e)))
}

fn split_head(c: usize, dh: usize) -> (usize, usize) {
	(c.checked_div(dh).unwrap_or(0), c.checked_rem(dh).unwrap_or(0))
}

/// Value `(i, c)` of one sequence's attention gradient (`dq | dk | dv`), from its `q | k | v`
/// rows `seq` and the output's gradient rows `dys` (`T x d`).
pub fn attention_grad_at(g: &Attention, seq: &[f32], dys: &[f32], i: u32, c: u32) -> f32 {
	let heads = Heads::new(g, seq);
	let (d, dh) = (heads.d, heads.dh);
	let (part, within) = split_head(c as usize, d);
	let (h, e) = split_head(within, dh);
	let i = i as usize;
	let t = g.context as usize;
	let row = |n: usize| heads.scores_grad(h, n, dy_head(dys, d, dh, h, n));
	match part {
		0 => {
			let (_, ds) = row(i);
			mul(dot(ds, (0..=i).map(|j| heads.value(1, h, j, e))), heads.scale)
		}
		1 => {
			let ds = (i..t).map(|n| row(n).1.get(i).copied().unwrap_or(0.0));
			mul(dot(ds, (i..t).map(|n| heads.value(0, h, n, e))), heads.scale)
		}
		_ => {
			let p = (i..t).map(|n| heads.probs(h, n).get(i).copied().unwrap_or(0.0));
			dot(p, (i..t).map(|n| dy_head(dys, d, dh, h, n).get(e).copied().unwrap_or(0.0)))
		}
	}
}

fn check_tokens(g: &Tokens, x: &Matrix) -> Result<u32, ShapeError> {
	x.check()?;
	if x.cols != g.context.checked_add(1).ok_or(ShapeError::Overflow)? {
		return Err(ShapeError::Mismatch);
	}
	x.rows.checked_mul(g.context).ok_or(ShapeError::Overflow)
}

/// The embedding of a batch of samples `x` (`B x (T+1)`): `B*T x d`.
pub fn embed(g: &Tokens, x: &Matrix, tok: &Matrix, pos: &Matrix) -> Result<Matrix, ShapeError> {
	let rows = check_tokens(g, x)?;
	tok.check()?;
	pos.check()?;
	if tok.rows != g.vocab || pos.rows != g.context || pos.cols != tok.cols {
		return Err(ShapeError::Mismatch);
	}
	let mut data = Vec::with_capacity((rows as usize).saturating_mul(tok.cols as usize));
	for r in 0..rows {
		let (b, t) = g.split(r);
		let sample = x.row(b).ok_or(ShapeError::Mismatch)?;
		let pos_row = pos.row(t).ok_or(ShapeError::Mismatch)?;
		let id = token(sample.get(t as usize).copied().unwrap_or(0.0), g.vocab);
		let tok_row = tok.row(id).ok_or(ShapeError::Mismatch)?;
		data.extend(tok_row.iter().zip(pos_row).map(|(a, p)| add(*a, *p)));
	}
	Matrix::new(rows, tok.cols, data)
}

/// The token table's gradient (`vocab x d`) from the batch `x` and the embedding's gradient
/// `dy`: each row's gradient added, in row order, to its token's.
pub fn embed_grad(g: &Tokens, x: &Matrix, dy: &Matrix) -> Result<Matrix, ShapeError> {
	let rows = check_tokens(g, x)?;
	dy.check()?;
	if dy.rows != rows {
		return Err(ShapeError::Mismatch);
	}
	let cols = dy.cols as usize;
	let mut data = alloc::vec![0.0f32; (g.vocab as usize).saturating_mul(cols)];
	for r in 0..rows {
		let (b, t) = g.split(r);
		let v = x.row(b).and_then(|s| s.get(t as usize)).copied().unwrap_or(0.0);
		let start = (token(v, g.vocab) as usize).saturating_mul(cols);
		let out = data.get_mut(start..start.saturating_add(cols)).ok_or(ShapeError::Mismatch)?;
		for (o, d) in out.iter_mut().zip(dy.row(r).ok_or(ShapeError::Mismatch)?) {
			*o = add(*o, *d);
		}
	}
	Matrix::new(g.vocab, dy.cols, data)
}

/// The position table's gradient (`T x d`): each position's rows summed over the batch.
pub fn position_grad(g: &Tokens, dy: &Matrix) -> Result<Matrix, ShapeError> {
	dy.check()?;
	if g.context == 0 || dy.rows.checked_rem(g.context) != Some(0) {
		return Err(ShapeError::Mismatch);
	}
	let cols = dy.cols as usize;
	let mut data = alloc::vec![0.0f32; (g.context as usize).saturating_mul(cols)];
	for r in 0..dy.rows {
		let (_, t) = g.split(r);
		let start = (t as usize).saturating_mul(cols);
		let out = data.get_mut(start..start.saturating_add(cols)).ok_or(ShapeError::Mismatch)?;
		for (o, d) in out.iter_mut().zip(dy.row(r).ok_or(ShapeError::Mismatch)?) {
			*o = add(*o, *d);
		}
	}
	Matrix::new(g.context, dy.cols, data)
}

/// The per-token losses (`B*T x 1`) of `logits` (`B*T x vocab`) against the batch `x`.
pub fn token_xent(g: &Tokens, logits: &Matrix, x: &Matrix) -> Result<Matrix, ShapeError> {
	let rows = check_tokens(g, x)?;
	logits.check()?;
	if logits.rows != rows || logits.cols != g.vocab {
		return Err(ShapeError::Mismatch);
	}
	let mut data = Vec::with_capacity(rows as usize);
	for r in 0..rows {
		let sample = x.row(g.split(r).0).ok_or(ShapeError::Mismatch)?;
		data.push(token_xent_at(g, logits.row(r).ok_or(ShapeError::Mismatch)?, sample, r)?);
	}
	Matrix::new(rows, 1, data)
}

/// Their mean's gradient with respect to the logits.
pub fn token_xent_backward(g: &Tokens, logits: &Matrix, x: &Matrix) -> Result<Matrix, ShapeError> {
	let rows = check_tokens(g, x)?;
	logits.check()?;
	if logits.rows != rows || logits.cols != g.vocab {
		return Err(ShapeError::Mismatch);
	}
	let mut data = Vec::with_capacity((rows as usize).saturating_mul(logits.cols as usize));
	for r in 0..rows {
		let sample = x.row(g.split(r).0).ok_or(ShapeError::Mismatch)?;
		let row = logits.row(r).ok_or(ShapeError::Mismatch)?;
		data.extend(token_xent_backward_row(g, row, sample, r, rows)?);
	}
	Matrix::new(rows, logits.cols, data)
}

impl Attention {
	/// Whether the shape is sound: heads dividing the width, a context within the bound.
	pub fn is_valid(&self) -> bool {
		self.heads >= 1
			&& self.dim >= 1
			&& self.dim.checked_rem(self.heads) == Some(0)
			&& self.context >= 1
			&& self.context <= MAX_CONTEXT
	}

	/// Whether `qkv` is a `q | k | v` input of this attention (`Mismatch` if not).
	pub fn check(&self, qkv: &Matrix) -> Result<(), ShapeError> {
		qkv.check()?;
		if !self.is_valid()
			|| Some(qkv.cols) != self.dim.checked_mul(3)
			|| qkv.rows.checked_rem(self.context) != Some(0)
		{
			return Err(ShapeError::Mismatch);
		}
		Ok(())
	}

	/// Rows `b*T .. (b+1)*T` of `m`, flat.
	pub fn sequence<'a>(&self, m: &'a Matrix, b: u32) -> &'a [f32] {
		let len = (self.context as usize).saturating_mul(m.cols as usize);
		slice(&m.data, (b as usize).saturating_mul(len), len)
	}
}

/// Head `h` of one sequence's attention: its `T x dh` outputs (row by row), from the
/// sequence's `q | k | v` rows `seq`. [`attention`] is these, head by head, sequence by
/// sequence; an engine may compute them in any order, in parallel.
pub fn attention_head(g: &Attention, seq: &[f32], h: u32) -> Vec<f32> {
	let heads = Heads::new(g, seq);
	let (t, dh, h) = (g.context as usize, heads.dh, h as usize);
	let mut out = Vec::with_capacity(t.saturating_mul(dh));
	for i in 0..t {
		let p = heads.probs(h, i);
		for e in 0..dh {
			out.push(dot(p.iter().copied(), (0..=i).map(|j| heads.value(2, h, j, e))));
		}
	}
	out
}

/// Head `h` of one sequence's attention gradient: its `dq`, `dk` and `dv` (`T x dh` each, row
/// by row), from the sequence's `q | k | v` rows `seq` and output gradient rows `dys`.
pub fn attention_grad_head(g: &Attention, seq: &[f32], dys: &[f32], h: u32) -> [Vec<f32>; 3] {
	let heads = Heads::new(g, seq);
	let (t, d, dh, h) = (g.context as usize, heads.d, heads.dh, h as usize);
	// Every position's probabilities and score gradients, once.
	let (probs, grads): (Vec<Vec<f32>>, Vec<Vec<f32>>) =
		(0..t).map(|n| heads.scores_grad(h, n, dy_head(dys, d, dh, h, n))).unzip();
	let at = |m: &[Vec<f32>], n: usize, j: usize| {
		m.get(n).and_then(|r| r.get(j)).copied().unwrap_or(0.0)
	};
	let len = t.saturating_mul(dh);
	let (mut dq, mut dk, mut dv) =
		(Vec::with_capacity(len), Vec::with_capacity(len), Vec::with_capacity(len));
	for i in 0..t {
		for e in 0..dh {
			dq.push(mul(
				dot((0..=i).map(|j| at(&grads, i, j)), (0..=i).map(|j| heads.value(1, h, j, e))),
				heads.scale,
			));
			dk.push(mul(
				dot((i..t).map(|n| at(&grads, n, i)), (i..t).map(|n| heads.value(0, h, n, e))),
				heads.scale,
			));
			dv.push(dot(
				(i..t).map(|n| at(&probs, n, i)),
				(i..t).map(|n| dy_head(dys, d, dh, h, n).get(e).copied().unwrap_or(0.0)),
			));
		}
	}
	[dq, dk, dv]
}

/// Writes head `h`'s `T x dh` values `head` into one sequence's rows `out` (`T` rows of
/// `width`), at column `offset + h * dh` of each.
pub fn scatter_head(
	g: &Attention,
	out: &mut [f32],
	width: usize,
	offset: usize,
	h: u32,
	head: &[f32],
) {
	let dh = (g.dim as usize).checked_div(g.heads as usize).unwrap_or(0);
	let start = offset.saturating_add((h as usize).saturating_mul(dh));
	for (row, values) in out.chunks_mut(width.max(1)).zip(head.chunks(dh.max(1))) {
		if let Some(slot) = row.get_mut(start..start.saturating_add(dh)) {
			slot.copy_from_slice(values);
		}
	}
}

/// Causal self-attention of `qkv` (`B*T x 3d`): `B*T x d`.
pub fn attention(g: &Attention, qkv: &Matrix) -> Result<Matrix, ShapeError> {
	g.check(qkv)?;
	let (t, d) = (g.context as usize, g.dim as usize);
	let mut data = alloc::vec![0.0f32; (qkv.rows as usize).saturating_mul(d)];
	for (b, out) in data.chunks_mut(t.saturating_mul(d).max(1)).enumerate() {
		let seq = g.sequence(qkv, b as u32);
		for h in 0..g.heads {
			scatter_head(g, out, d, 0, h, &attention_head(g, seq, h));
		}
	}
	Matrix::new(qkv.rows, g.dim, data)
}

/// Its gradient (`B*T x 3d`, `dq | dk | dv`) from `qkv` and the output's gradient `dy`.
pub fn attention_grad(g: &Attention, qkv: &Matrix, dy: &Matrix) -> Result<Matrix, ShapeError> {
	g.check(qkv)?;
	dy.check()?;
	if (dy.rows, dy.cols) != (qkv.rows, g.dim) {
		return Err(ShapeError::Mismatch);
	}
	let (t, d) = (g.context as usize, g.dim as usize);
	let w = d.saturating_mul(3);
	let mut data = alloc::vec![0.0f32; (qkv.rows as usize).saturating_mul(w)];
	for (b, out) in data.chunks_mut(t.saturating_mul(w).max(1)).enumerate() {
		let (seq, dys) = (g.sequence(qkv, b as u32), g.sequence(dy, b as u32));
		for h in 0..g.heads {
			for (part, head) in attention_grad_head(g, seq, dys, h).iter().enumerate() {
				scatter_head(g, out, w, part.saturating_mul(d), h, head);
			}
		}
	}
	Matrix::new(qkv.rows, g.dim.saturating_mul(3), data)
}
