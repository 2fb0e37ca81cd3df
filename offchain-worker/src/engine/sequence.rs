//! The engine's sequence and layer operators: causal self-attention and its gradient, one
//! sequence per task in parallel, and the per-row layer normalization, per-token loss and
//! per-value GELU and sums, rows or chunks in parallel. Each value is computed by the
//! reference's own functions (`repops::sequence::attention_head`,
//! `repops::layers::layer_norm_row`, ...), only in another order of *independent*
//! computations, so the bits are the reference's.

use super::{filled, mapped, MatRef, CHUNK};
use rayon::prelude::*;
use trainet_primitives::repops::{
	self, layers,
	sequence::{
		self, attention_grad_head, attention_head, scatter_head, softmax_into, Attention, Tokens,
	},
	Matrix, ShapeError,
};

/// Causal self-attention of `qkv` (`B*T x 3d`), or with `dy` (`B*T x d`) its gradient
/// (`B*T x 3d`): sequences in parallel.
pub fn attention(g: &Attention, qkv: MatRef, dy: Option<MatRef>) -> Result<Matrix, ShapeError> {
	qkv.check()?;
	let (t, d) = (g.context as usize, g.dim as usize);
	if !g.is_valid() || qkv.cols as usize != 3 * d || !(qkv.rows as usize).is_multiple_of(t) {
		return Err(ShapeError::Mismatch);
	}
	if let Some(dy) = dy {
		dy.check()?;
		if (dy.rows, dy.cols) != (qkv.rows, g.dim) {
			return Err(ShapeError::Mismatch);
		}
	}
	let width = if dy.is_some() { 3 * d } else { d };
	let mut data = vec![0.0f32; qkv.rows as usize * width];
	fn sequence<'a>(m: &MatRef<'a>, t: usize, b: usize) -> &'a [f32] {
		let len = t * m.cols as usize;
		&m.data[b * len..(b + 1) * len]
	}
	let fma = has_fma();
	data.par_chunks_mut(t * width).enumerate().for_each(|(b, out)| {
		let seq = sequence(&qkv, t, b);
		for h in 0..g.heads {
			match &dy {
				None => {
					let head = match fma {
						// SAFETY: the CPU has FMA.
						true => unsafe { fast::head(g, seq, h) },
						false => attention_head(g, seq, h),
					};
					scatter_head(g, out, width, 0, h, &head)
				}
				Some(dy) => {
					let dys = sequence(dy, t, b);
					let parts = match fma {
						// SAFETY: the CPU has FMA.
						true => unsafe { fast::grad_head(g, seq, dys, h) },
						false => attention_grad_head(g, seq, dys, h),
					};
					for (part, head) in parts.iter().enumerate() {
						scatter_head(g, out, width, part * d, h, head);
					}
				}
			}
		}
	});
	Matrix::new(qkv.rows, width as u32, data)
}

/// Layer normalization of each row of `x` with `gamma` and `beta`, or (with `dy`) its input
/// gradient: rows in parallel.
pub fn layer_norm(
	x: MatRef,
	gamma: MatRef,
	beta_or_dy: MatRef,
	gradient: bool,
) -> Result<Option<Matrix>, ShapeError> {
	let n = x.cols as usize;
	let row_shaped = |m: &MatRef| m.rows == 1 && m.cols == x.cols;
	let third = if gradient { x.same_shape(&beta_or_dy) } else { row_shaped(&beta_or_dy) };
	if n == 0 || !row_shaped(&gamma) || !third {
		// Not what a step program builds: the reference decides.
		return Ok(None);
	}
	let data = layer_norm_rows(x.data, n, gamma.data, beta_or_dy.data, gradient);
	Matrix::new(x.rows, x.cols, data).map(Some)
}

/// Every row of `x` (`n` values a row) normalized with `gamma` and the shift `third`, or
/// (with `gradient`) its input gradient from `third`, the output's gradient: rows in
/// parallel, eight rows side by side where the CPU has AVX2 and FMA ([`rows8`]), the
/// reference's row functions for the rest.
fn layer_norm_rows(x: &[f32], n: usize, gamma: &[f32], third: &[f32], gradient: bool) -> Vec<f32> {
	let rows_per_chunk = (CHUNK / n).max(8) / 8 * 8;
	let wide = has_avx2_fma();
	filled(x.len(), rows_per_chunk * n, |first, out| {
		let mut done = 0;
		#[cfg(target_arch = "x86_64")]
		if wide {
			let mut scratch = rows8::Scratch::new(n);
			for (block, o) in out.chunks_exact_mut(8 * n).enumerate() {
				let at = first + block * 8 * n;
				let third = if gradient { &third[at..at + 8 * n] } else { third };
				// SAFETY: the CPU has AVX2 and FMA.
				unsafe { rows8::rows(&x[at..at + 8 * n], gamma, third, gradient, &mut scratch, o) };
				done += 8 * n;
			}
		}
		let _ = wide;
		for (r, o) in out[done..].chunks_mut(n).enumerate() {
			let at = first + done + r * n;
			let row = &x[at..at + n];
			let values = if gradient {
				layers::layer_norm_input_grad_row(row, gamma, &third[at..at + n])
			} else {
				layers::layer_norm_row(row, gamma, third)
			};
			o.copy_from_slice(&values);
		}
	})
}

fn has_avx2_fma() -> bool {
	#[cfg(target_arch = "x86_64")]
	{
		std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
	}
	#[cfg(not(target_arch = "x86_64"))]
	{
		false
	}
}

/// Layer normalization of eight rows side by side, lane `l` row `l`: each lane the reference's
/// operations on its row in the reference's order (`layers::layer_norm_row` and
/// `layers::layer_norm_input_grad_row`: the sums and the fma chain from `+0.0` along the row,
/// the mean and variance divided by `n`, `1 / sqrt(var + eps)`, then each value's products,
/// differences and sums, none fused unless the reference fuses it). A NaN stays a NaN through
/// all of these, so making each output canonical once at the end gives the reference's bits.
#[cfg(target_arch = "x86_64")]
mod rows8 {
	use trainet_primitives::repops::{self, layers::LAYER_NORM_EPS};

	const L: usize = 8;

	/// A block's columns, lane by lane.
	pub(super) struct Scratch {
		x: Vec<[f32; L]>,
		g: Vec<[f32; L]>,
	}

	impl Scratch {
		pub(super) fn new(n: usize) -> Self {
			Self { x: vec![[0.0; L]; n], g: vec![[0.0; L]; n] }
		}
	}

	/// Rows `x` (`8 x n`) normalized with `gamma` and the shift `third` (`n`), or their input
	/// gradient from `third` (`8 x n`, the output's gradient), into `out` (`8 x n`).
	#[target_feature(enable = "avx2,fma")]
	pub(super) unsafe fn rows(
		x: &[f32],
		gamma: &[f32],
		third: &[f32],
		gradient: bool,
		s: &mut Scratch,
		out: &mut [f32],
	) {
		let n = s.x.len();
		let nf = n as f32;
		for (l, row) in x.chunks_exact(n).enumerate() {
			for (c, v) in row.iter().enumerate() {
				s.x[c][l] = *v;
			}
		}
		// mean = sum(x) / n; rstd = 1 / sqrt(fma chain of (x - mean)^2 / n + eps).
		let mut sum = [0.0f32; L];
		for col in &s.x {
			for l in 0..L {
				sum[l] += col[l];
			}
		}
		let mean = sum.map(|v| v / nf);
		let mut squares = [0.0f32; L];
		for col in &s.x {
			for l in 0..L {
				let d = col[l] - mean[l];
				squares[l] = d.mul_add(d, squares[l]);
			}
		}
		let mut rstd = [0.0f32; L];
		for l in 0..L {
			rstd[l] = 1.0 / (squares[l] / nf + LAYER_NORM_EPS).sqrt();
		}
		// x̂ in place.
		for col in s.x.iter_mut() {
			for l in 0..L {
				col[l] = (col[l] - mean[l]) * rstd[l];
			}
		}
		if !gradient {
			for (c, col) in s.x.iter().enumerate() {
				let (g, b) = (gamma[c], third[c]);
				for l in 0..L {
					out[l * n + c] = repops::canon(col[l] * g + b);
				}
			}
			return;
		}
		// g = dy γ; mean_g = sum(g) / n; mean_gx = (fma chain of g x̂) / n;
		// out = rstd ((g - mean_g) - x̂ mean_gx).
		for (l, row) in third.chunks_exact(n).enumerate() {
			for (c, d) in row.iter().enumerate() {
				s.g[c][l] = *d * gamma[c];
			}
		}
		let (mut sum_g, mut dot) = ([0.0f32; L], [0.0f32; L]);
		for (g, h) in s.g.iter().zip(&s.x) {
			for l in 0..L {
				sum_g[l] += g[l];
				dot[l] = g[l].mul_add(h[l], dot[l]);
			}
		}
		let mean_g = sum_g.map(|v| v / nf);
		let mean_gx = dot.map(|v| v / nf);
		for (c, (g, h)) in s.g.iter().zip(&s.x).enumerate() {
			for l in 0..L {
				out[l * n + c] = repops::canon(rstd[l] * ((g[l] - mean_g[l]) - h[l] * mean_gx[l]));
			}
		}
	}
}

/// Layer normalization's scale gradient (`1 x cols`): value `i` the chain over rows ascending
/// of `fma(dy[r, i], x̂[r, i], acc)` from `+0.0`, as [`layers::layer_norm_gamma_grad`]. Each
/// row's `x̂` is the reference's `layer_norm_row` with scale 1 and shift `-0.0` (`x̂ · 1 + -0.0`
/// is `x̂`, bit for bit), rows in parallel; then the columns' chains side by side.
pub fn layer_norm_gamma_grad(x: MatRef, dy: MatRef) -> Result<Option<Matrix>, ShapeError> {
	let n = x.cols as usize;
	if n == 0 || !x.same_shape(&dy) {
		return Ok(None);
	}
	let (ones, shift) = (vec![1.0f32; n], vec![-0.0f32; n]);
	let xhat = layer_norm_rows(x.data, n, &ones, &shift, false);
	let mut acc = vec![0.0f32; n];
	#[cfg(target_arch = "x86_64")]
	if has_fma() {
		#[target_feature(enable = "fma")]
		unsafe fn fast(xhat: &[f32], dy: &[f32], acc: &mut [f32]) {
			column_chains(xhat, dy, acc)
		}
		// SAFETY: the CPU has FMA.
		unsafe { fast(&xhat, dy.data, &mut acc) };
	} else {
		column_chains(&xhat, dy.data, &mut acc);
	}
	#[cfg(not(target_arch = "x86_64"))]
	column_chains(&xhat, dy.data, &mut acc);
	acc.iter_mut().for_each(|v| *v = repops::canon(*v));
	Matrix::new(1, x.cols, acc).map(Some)
}

/// `acc[i] = fma(dy[r, i], xhat[r, i], acc[i])` for rows `r` in order.
#[inline(always)]
fn column_chains(xhat: &[f32], dy: &[f32], acc: &mut [f32]) {
	let n = acc.len().max(1);
	for (h, d) in xhat.chunks(n).zip(dy.chunks(n)) {
		for ((a, h), d) in acc.iter_mut().zip(h).zip(d) {
			*a = d.mul_add(*h, *a);
		}
	}
}

/// The per-token cross-entropy of `logits` (`B·T x vocab`) against the next tokens of the
/// samples `x` (`B x (T+1)`), or (with `backward`) its mean's gradient: the reference's rows
/// ([`sequence::token_xent_at`], [`sequence::token_xent_backward_row`]), in parallel. `None`
/// for shapes a step program does not build (the reference decides).
pub fn token_xent(
	g: &Tokens,
	logits: MatRef,
	x: MatRef,
	backward: bool,
) -> Result<Option<Matrix>, ShapeError> {
	logits.check()?;
	x.check()?;
	let context = g.context as usize;
	let rows = (x.rows as usize).checked_mul(context);
	if x.cols != g.context + 1 || rows != Some(logits.rows as usize) || logits.cols != g.vocab {
		return Ok(None);
	}
	let (v, tokens) = (g.vocab as usize, logits.rows);
	let row = |r: usize| -> (&[f32], &[f32]) {
		let (b, _) = sequence::token_position(g.context, r as u32);
		let sample = &x.data[b as usize * (context + 1)..][..context + 1];
		(&logits.data[r * v..][..v], sample)
	};
	let per_chunk = (CHUNK / v.max(1)).max(1);
	let width = if backward { v } else { 1 };
	let failed = std::sync::atomic::AtomicBool::new(false);
	// The exponentials eight at a time where the CPU allows (the same bits).
	let exps = super::vexp::exps;
	let fill = |(chunk, out): (usize, &mut [f32])| {
		for (i, o) in out.chunks_mut(width).enumerate() {
			let r = chunk * per_chunk + i;
			let (scores, sample) = row(r);
			let r = r as u32;
			let value = match backward {
				true => sequence::token_xent_backward_row_with(g, scores, sample, r, tokens, exps)
					.map(|values| o.copy_from_slice(&values)),
				false => sequence::token_xent_at_with(g, scores, sample, r, exps).map(|l| o[0] = l),
			};
			if value.is_err() {
				failed.store(true, std::sync::atomic::Ordering::Relaxed);
			}
		}
	};
	// The work is the logits' (an exponential each), whatever the output's size.
	let mut data = vec![0.0f32; logits.rows as usize * width];
	match logits.data.len() >= CHUNK {
		true => data.par_chunks_mut(per_chunk * width).enumerate().for_each(fill),
		false => data.chunks_mut(per_chunk * width).enumerate().for_each(fill),
	}
	if failed.into_inner() {
		return Err(ShapeError::Mismatch);
	}
	Matrix::new(logits.rows, width as u32, data).map(Some)
}

/// GELU of every value of `x`, or (with `dy`) its gradient: chunks in parallel, eight values
/// at a time where the CPU has AVX2 ([`super::vexp`]).
pub fn gelu(x: MatRef, dy: Option<MatRef>) -> Vec<f32> {
	#[cfg(target_arch = "x86_64")]
	if super::vexp::available() {
		return filled(x.data.len(), CHUNK, |first, out| {
			let xs = &x.data[first..first + out.len()];
			let dys = dy.map(|dy| &dy.data[first..first + out.len()]);
			// SAFETY: the CPU has AVX2 and FMA (checked above).
			unsafe { super::vexp::gelu(xs, dys, out) }
		});
	}
	mapped(x.data.len(), CHUNK, |first, count| {
		let xs = &x.data[first..first + count];
		xs.iter().enumerate().map(move |(i, v)| match &dy {
			Some(dy) => layers::gelu_backward(*v, dy.data[first + i]),
			None => layers::gelu(*v),
		})
	})
}

fn has_fma() -> bool {
	#[cfg(target_arch = "x86_64")]
	{
		std::is_x86_feature_detected!("fma")
	}
	#[cfg(not(target_arch = "x86_64"))]
	{
		false
	}
}

/// Attention heads on the CPU's FMA instruction: the reference's sums (`repops::sequence`'s
/// `attention_head` and `attention_grad_head`), each a chain of fused multiply-adds from `+0.0`
/// in the same index order, written so that the independent chains of one row (an output's
/// `dh` values, a score row's positions) run side by side. A NaN met anywhere in a chain stays
/// a NaN to its end, so making it canonical once at the end gives the reference's bits.
#[cfg(target_arch = "x86_64")]
mod fast {
	use super::*;

	/// One head's `q`, `k` or `v` of position `i` (rows of `3d`).
	#[inline(always)]
	fn part(seq: &[f32], d: usize, dh: usize, which: usize, h: usize, i: usize) -> &[f32] {
		let start = i * 3 * d + which * d + h * dh;
		&seq[start..start + dh]
	}

	/// `dot(a, b)`: the fma chain from `+0.0`, made canonical at the end.
	#[inline(always)]
	fn dot(a: &[f32], b: &[f32]) -> f32 {
		let mut acc = 0.0f32;
		for (x, y) in a.iter().zip(b) {
			acc = x.mul_add(*y, acc);
		}
		repops::canon(acc)
	}

	/// `out[e]` = the chain `acc = fma(w, row[e], acc)` from `+0.0` over the `(w, row)` pairs
	/// in order, for every `e` (rows of `out.len()` values).
	#[inline(always)]
	fn weighted<'a>(pairs: impl Iterator<Item = (f32, &'a [f32])>, out: &mut [f32]) {
		match out.len() {
			8 => weighted_in_registers::<1>(pairs, out),
			16 => weighted_in_registers::<2>(pairs, out),
			32 => weighted_in_registers::<4>(pairs, out),
			64 => weighted_in_registers::<8>(pairs, out),
			_ => {
				out.fill(0.0);
				for (w, row) in pairs {
					for (a, r) in out.iter_mut().zip(row) {
						*a = w.mul_add(*r, *a);
					}
				}
			}
		}
	}

	/// [`weighted`] for rows of `8·C` values, the chains in a local array the compiler keeps
	/// in registers (accumulated in `out`, behind a reference, each fma loaded and stored its
	/// value).
	#[inline(always)]
	fn weighted_in_registers<'a, const C: usize>(
		pairs: impl Iterator<Item = (f32, &'a [f32])>,
		out: &mut [f32],
	) {
		let mut acc = [[0.0f32; 8]; C];
		for (w, row) in pairs {
			for (a, r) in acc.iter_mut().zip(row.as_chunks::<8>().0) {
				for (a, r) in a.iter_mut().zip(r) {
					*a = w.mul_add(*r, *a);
				}
			}
		}
		for (o, a) in out.chunks_exact_mut(8).zip(&acc) {
			o.copy_from_slice(a);
		}
	}

	/// One head's `k` or `v` (`which`) transposed: value `e` of position `j` at `e·stride + j`,
	/// `stride` the context rounded up to whole lanes (zeros past it).
	#[inline(always)]
	fn transposed(
		seq: &[f32],
		(t, d, dh): (usize, usize, usize),
		which: usize,
		h: usize,
	) -> Vec<f32> {
		let stride = t.div_ceil(8) * 8;
		let mut out = vec![0.0f32; dh * stride];
		for j in 0..t {
			for (e, v) in part(seq, d, dh, which, h, j).iter().enumerate() {
				out[e * stride + j] = *v;
			}
		}
		out
	}

	/// `out[j] = dot(a, column j of m)` for `j < out.len()`, `m` as [`transposed`] lays it out:
	/// eight chains side by side, each the reference's fma chain over `e` ascending from `+0.0`.
	#[inline(always)]
	fn dots(a: &[f32], m: &[f32], out: &mut [f32]) {
		let stride = m.len() / a.len().max(1);
		for (j0, chunk) in (0..out.len()).step_by(8).zip(out.chunks_mut(8)) {
			let mut acc = [0.0f32; 8];
			for (e, x) in a.iter().enumerate() {
				let col: &[f32; 8] = m[e * stride + j0..][..8].try_into().unwrap_or(&[0.0; 8]);
				for (l, c) in acc.iter_mut().zip(col) {
					*l = x.mul_add(*c, *l);
				}
			}
			for (o, v) in chunk.iter_mut().zip(acc) {
				*o = repops::canon(v);
			}
		}
	}

	/// One head's working memory, allocated once per head (allocating per position cost more
	/// than the arithmetic): the keys and values transposed, and `t x t` rows of scores,
	/// probabilities and score gradients (row `i` uses its first `i + 1` values).
	struct Scratch {
		kt: Vec<f32>,
		vt: Vec<f32>,
		shifted: Vec<f32>,
		scores: Vec<f32>,
		probs: Vec<f32>,
		grads: Vec<f32>,
	}

	impl Scratch {
		fn new(seq: &[f32], (t, d, dh): (usize, usize, usize), h: usize, values: bool) -> Self {
			Scratch {
				kt: transposed(seq, (t, d, dh), 1, h),
				vt: if values { transposed(seq, (t, d, dh), 2, h) } else { Vec::new() },
				shifted: vec![0.0f32; t],
				scores: vec![0.0f32; t],
				probs: vec![0.0f32; t * t],
				grads: if values { vec![0.0f32; t * t] } else { Vec::new() },
			}
		}

		/// Position `i`'s probabilities over `0 ..= i` into row `i` of `probs`: its scores
		/// (`dot(q_i, k_j)·scale`) and the reference's softmax of them, the exponentials eight
		/// at a time where the CPU allows (the same bits).
		#[inline(always)]
		fn probs(
			&mut self,
			seq: &[f32],
			(t, d, dh): (usize, usize, usize),
			scale: f32,
			h: usize,
			i: usize,
		) {
			let q = part(seq, d, dh, 0, h, i);
			let s = &mut self.scores[..=i];
			dots(q, &self.kt, s);
			s.iter_mut().for_each(|v| *v = repops::mul(*v, scale));
			let out = &mut self.probs[i * t..i * t + i + 1];
			softmax_into(s, &mut self.shifted, out, super::super::vexp::exps);
		}
	}

	fn shape(g: &Attention) -> (usize, usize, usize, f32) {
		let (t, d) = (g.context as usize, g.dim as usize);
		let dh = d / g.heads as usize;
		(t, d, dh, repops::div(1.0, repops::sqrt(dh as f32)))
	}

	/// `attention_head`.
	///
	/// # Safety
	/// The CPU must have FMA.
	#[target_feature(enable = "fma")]
	pub(super) unsafe fn head(g: &Attention, seq: &[f32], h: u32) -> Vec<f32> {
		let (t, d, dh, scale) = shape(g);
		let h = h as usize;
		let mut out = vec![0.0f32; t * dh];
		let mut scratch = Scratch::new(seq, (t, d, dh), h, false);
		for (i, row) in out.chunks_mut(dh).enumerate() {
			scratch.probs(seq, (t, d, dh), scale, h, i);
			let p = scratch.probs[i * t..=i * t + i].iter().enumerate();
			weighted(p.map(|(j, pj)| (*pj, part(seq, d, dh, 2, h, j))), row);
			row.iter_mut().for_each(|v| *v = repops::canon(*v));
		}
		out
	}

	/// `attention_grad_head`.
	///
	/// # Safety
	/// The CPU must have FMA.
	#[target_feature(enable = "fma")]
	pub(super) unsafe fn grad_head(
		g: &Attention,
		seq: &[f32],
		dys: &[f32],
		h: u32,
	) -> [Vec<f32>; 3] {
		let (t, d, dh, scale) = shape(g);
		let h = h as usize;
		let dy = |i: usize| &dys[i * d + h * dh..i * d + h * dh + dh];
		// Every position's probabilities and score gradients.
		let mut scratch = Scratch::new(seq, (t, d, dh), h, true);
		let mut dp = vec![0.0f32; t];
		for i in 0..t {
			scratch.probs(seq, (t, d, dh), scale, h, i);
			let dp = &mut dp[..=i];
			dots(dy(i), &scratch.vt, dp);
			let p = &scratch.probs[i * t..=i * t + i];
			let total = dot(p, dp);
			for ((ds, p), dp) in scratch.grads[i * t..=i * t + i].iter_mut().zip(p).zip(&*dp) {
				*ds = repops::mul(*p, repops::sub(*dp, total));
			}
		}
		let (probs, grads) = (&scratch.probs, &scratch.grads);
		let (mut dq, mut dk, mut dv) =
			(vec![0.0f32; t * dh], vec![0.0f32; t * dh], vec![0.0f32; t * dh]);
		for i in 0..t {
			let row = &mut dq[i * dh..(i + 1) * dh];
			let ds = grads[i * t..=i * t + i].iter().enumerate();
			weighted(ds.map(|(j, ds)| (*ds, part(seq, d, dh, 1, h, j))), row);
			row.iter_mut().for_each(|v| *v = repops::mul(repops::canon(*v), scale));
			let (k_row, v_row) = (&mut dk[i * dh..(i + 1) * dh], &mut dv[i * dh..(i + 1) * dh]);
			weighted((i..t).map(|n| (grads[n * t + i], part(seq, d, dh, 0, h, n))), k_row);
			weighted((i..t).map(|n| (probs[n * t + i], dy(n))), v_row);
			k_row.iter_mut().for_each(|v| *v = repops::mul(repops::canon(*v), scale));
			v_row.iter_mut().for_each(|v| *v = repops::canon(*v));
		}
		[dq, dk, dv]
	}
}

#[cfg(not(target_arch = "x86_64"))]
mod fast {
	use super::*;

	pub(super) unsafe fn head(g: &Attention, seq: &[f32], h: u32) -> Vec<f32> {
		attention_head(g, seq, h)
	}

	pub(super) unsafe fn grad_head(
		g: &Attention,
		seq: &[f32],
		dys: &[f32],
		h: u32,
	) -> [Vec<f32>; 3] {
		attention_grad_head(g, seq, dys, h)
	}
}
