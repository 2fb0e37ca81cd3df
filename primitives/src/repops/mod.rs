//! RepOps: the reproducible operators, bit-exact by specification (`docs/repops.md`).
//!
//! This is the reference implementation shared by the runtime (wasm, where it referees a
//! disputed operation) and the worker's CPU path. Every function here is a fixed sequence of
//! IEEE-754 binary32 basic operations in round-to-nearest-even: `+ - * /`, fused
//! multiply-add and square root, each correctly rounded. Nothing calls a platform math
//! library whose rounding is unspecified: `exp` and `ln` are fixed polynomials written out
//! below. Every value an operator stores passes through [`canon`], so a NaN is always the
//! canonical quiet NaN `0x7fc00000` (wasm and GPUs may otherwise produce any NaN payload).
//!
//! Correctly rounded `fma` and `sqrt` come from the `libm` crate (a port of musl's
//! correctly-rounded routines, pure Rust, so the same code runs in wasm); `core` has neither
//! in `no_std`.
//!
//! Matrices are row-major `f32`. An output element of every operator depends on at most one
//! row or one column of each input, which is what lets the chain check one element from
//! O(K) values (see [`crate::market`] and the dispute game).

pub mod clip;
pub mod image;
pub mod layers;
pub mod sequence;

use alloc::vec::Vec;
use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;

/// The bits of the canonical quiet NaN.
pub const CANONICAL_NAN_BITS: u32 = 0x7fc0_0000;

/// `x`, with any NaN replaced by the canonical quiet NaN.
///
/// Decided on the bit pattern, not with `is_nan()`: an optimizing compiler may treat all NaNs
/// as interchangeable and fold `if x.is_nan() { NAN } else { x }` into plain `x` (LLVM does,
/// at opt-level 3, which turned x86's `0xffc00000` from `sqrt(-1)` into a "canonical" NaN that
/// was not). Integer operations on the bits cannot be folded that way.
#[inline]
pub fn canon(x: f32) -> f32 {
	let bits = x.to_bits();
	if bits & 0x7fff_ffff > 0x7f80_0000 {
		f32::from_bits(CANONICAL_NAN_BITS)
	} else {
		x
	}
}

/// `a * b + c` with one rounding.
#[inline]
pub fn fma(a: f32, b: f32, c: f32) -> f32 {
	canon(fused(a, b, c))
}

/// IEEE 754 fusedMultiplyAdd: `libm`'s correctly rounded software `fmaf` (the runtime's wasm
/// has no FMA instruction), or, natively on an x86-64 CPU with FMA, the `vfmadd` instruction,
/// which computes the same operation (only a NaN's payload may differ, and [`canon`] makes
/// every NaN the canonical one). The software one is tens of times slower: every RepOps
/// operator the engine has no kernel of its own for runs on this.
#[inline]
fn fused(a: f32, b: f32, c: f32) -> f32 {
	#[cfg(all(feature = "std", target_arch = "x86_64"))]
	if std::is_x86_feature_detected!("fma") {
		// SAFETY: the CPU has FMA (checked just above), the one feature `hardware_fma` needs.
		return unsafe { hardware_fma(a, b, c) };
	}
	libm::fmaf(a, b, c)
}

/// `a.mul_add(b, c)` compiled to one `vfmadd` instruction.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "fma")]
fn hardware_fma(a: f32, b: f32, c: f32) -> f32 {
	a.mul_add(b, c)
}

/// The correctly rounded square root.
#[inline]
pub fn sqrt(x: f32) -> f32 {
	canon(libm::sqrtf(x))
}

/// `a + b`.
#[inline]
pub fn add(a: f32, b: f32) -> f32 {
	canon(a + b)
}

/// `a - b`.
#[inline]
pub fn sub(a: f32, b: f32) -> f32 {
	canon(a - b)
}

/// `a * b`.
#[inline]
pub fn mul(a: f32, b: f32) -> f32 {
	canon(a * b)
}

/// `a / b`.
#[inline]
pub fn div(a: f32, b: f32) -> f32 {
	canon(a / b)
}

/// `1.5 * 2^23`: adding and subtracting it rounds an `f32` of magnitude below `2^22` to the
/// nearest integer, ties to even, with basic operations only.
pub const ROUND_MAGIC: f32 = 12_582_912.0;
/// `log2(e)` rounded to `f32`.
pub const LOG2_E: f32 = f32::from_bits(0x3fb8_aa3b);
/// `ln(2)` split in a high part with 12 trailing zero bits (so `k * LN2_HI` is exact for
/// `|k| < 2^12`) and the rounded rest.
pub const LN2_HI: f32 = f32::from_bits(0x3f31_7000);
pub const LN2_LO: f32 = f32::from_bits(0x3805_fdf4);
/// `e^x` overflows above this (the largest `x` with a finite `f32` result is ~88.7228).
pub const EXP_MAX: f32 = 88.722_84;
/// `e^x` is below half the smallest subnormal under this.
pub const EXP_MIN: f32 = -103.972_08;

/// The coefficients of [`exp`]'s polynomial, `1/i!` for `i = 0..=7` rounded to `f32`, lowest
/// degree first.
pub const EXP_COEFFS: [f32; 8] =
	[1.0, 1.0, 0.5, 0.166_666_67, 0.041_666_668, 0.008_333_334, 0.001_388_888_9, 0.000_198_412_7];
/// The coefficients of [`ln`]'s series in `s^2` after `2s`: `2/(2i+3)` for `i = 0..=6`, rounded
/// to `f32`, lowest degree first.
pub const LN_COEFFS: [f32; 7] =
	[0.666_666_7, 0.4, 0.285_714_3, 0.222_222_22, 0.181_818_18, 0.153_846_15, 0.133_333_33];

/// `2^k` as an `f32`, for `-126 <= k <= 127`.
fn pow2(k: i32) -> f32 {
	let biased = k.saturating_add(127).clamp(1, 254) as u32;
	f32::from_bits(biased << 23)
}

/// `e^x`, by the fixed algorithm of `docs/repops.md`:
/// `k = round(x * log2 e)`, `r = (x - k * LN2_HI) - k * LN2_LO`, a degree-7 Taylor polynomial
/// of `e^r` in Horner form, scaled by `2^k` in two exact-or-IEEE-rounded multiplications.
pub fn exp(x: f32) -> f32 {
	if x.is_nan() {
		return canon(x);
	}
	if x > EXP_MAX {
		return f32::INFINITY;
	}
	if x < EXP_MIN {
		return 0.0;
	}
	// |x * log2 e| < 150 < 2^22: the magic-number rounding is exact.
	let kf = sub(add(mul(x, LOG2_E), ROUND_MAGIC), ROUND_MAGIC);
	let r = sub(sub(x, mul(kf, LN2_HI)), mul(kf, LN2_LO));
	// e^r = 1 + r + r^2/2! + ... + r^7/7!, |r| <= ln(2)/2 (a little more after rounding).
	let [c @ .., c7] = EXP_COEFFS;
	let mut p = c7;
	for c in c.iter().rev() {
		p = add(mul(p, r), *c);
	}
	// k is an integer in [-150, 128]; scale in two steps so neither factor leaves the normal
	// range and only the last multiplication may round (into the subnormals).
	let k = kf as i32;
	let k1 = k.checked_div(2).unwrap_or(0);
	let k2 = k.saturating_sub(k1);
	mul(mul(p, pow2(k1)), pow2(k2))
}

/// `ln(x)`, by the fixed algorithm of `docs/repops.md`: `x = m * 2^e` with `m` in
/// `[sqrt(1/2), sqrt(2))`, `f = m - 1`, `s = f / (2 + f)`, `ln(m) = 2s + s*R(s^2)` with a fixed
/// odd series, then `e * LN2_HI + (ln(m) + e * LN2_LO)`.
pub fn ln(x: f32) -> f32 {
	if x.is_nan() || x < 0.0 {
		return f32::from_bits(CANONICAL_NAN_BITS);
	}
	if x == 0.0 {
		return f32::NEG_INFINITY;
	}
	if x == f32::INFINITY {
		return f32::INFINITY;
	}
	let mut bits = x.to_bits();
	let mut e: i32 = 0;
	if bits < 0x0080_0000 {
		// Subnormal: scale by 2^25 (exact) into the normals.
		bits = mul(x, pow2(25)).to_bits();
		e = -25;
	}
	e = e.saturating_add(((bits >> 23) as i32).saturating_sub(127));
	// Mantissa in [1, 2); move it to [sqrt(1/2), sqrt(2)).
	let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
	if m > core::f32::consts::SQRT_2 {
		m = mul(m, 0.5);
		e = e.saturating_add(1);
	}
	let f = sub(m, 1.0);
	let s = div(f, add(2.0, f));
	let z = mul(s, s);
	// 2*atanh(s) = 2s + 2s^3/3 + 2s^5/5 + ... ; |s| < 0.1716, so eight terms reach f32 precision.
	let [c @ .., c6] = LN_COEFFS;
	let mut p = c6;
	for c in c.iter().rev() {
		p = add(mul(p, z), *c);
	}
	let ln_m = add(add(s, s), mul(mul(s, z), p));
	let ef = e as f32;
	add(mul(ef, LN2_HI), add(ln_m, mul(ef, LN2_LO)))
}

/// A row-major matrix of `f32`.
#[derive(Clone, PartialEq, Debug)]
pub struct Matrix {
	/// Rows.
	pub rows: u32,
	/// Columns.
	pub cols: u32,
	/// `rows * cols` values, row after row.
	pub data: Vec<f32>,
}

/// A matrix as its values' IEEE-754 bit patterns: how tensors travel in SCALE (which has no
/// float type) and through the runtime API, bit for bit.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, DecodeWithMemTracking, TypeInfo)]
pub struct TensorBits {
	/// Rows.
	pub rows: u32,
	/// Columns.
	pub cols: u32,
	/// `rows * cols` bit patterns, row after row.
	pub bits: Vec<u32>,
}

impl From<&Matrix> for TensorBits {
	fn from(m: &Matrix) -> Self {
		Self { rows: m.rows, cols: m.cols, bits: m.data.iter().map(|v| v.to_bits()).collect() }
	}
}

impl TryFrom<&TensorBits> for Matrix {
	type Error = ShapeError;
	fn try_from(t: &TensorBits) -> Result<Self, ShapeError> {
		Matrix::new(t.rows, t.cols, t.bits.iter().map(|b| f32::from_bits(*b)).collect())
	}
}

/// Why an operator cannot run on its inputs.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Debug,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
)]
pub enum ShapeError {
	/// A matrix's data length is not `rows * cols`.
	BadLength,
	/// The inputs' shapes do not fit the operator.
	Mismatch,
	/// A label is not below the number of classes.
	BadLabel,
	/// A size overflowed.
	Overflow,
	/// More values than an on-chain execution accepts ([`MAX_CHAIN_ELEMENTS`]).
	TooLarge,
}

/// The most values (inputs and output together) one operator run through the runtime API may
/// touch: it bounds the memory and time of a call anyone can make.
pub const MAX_CHAIN_ELEMENTS: u32 = 1 << 20;

impl Matrix {
	/// A matrix, if `data` has `rows * cols` values.
	pub fn new(rows: u32, cols: u32, data: Vec<f32>) -> Result<Self, ShapeError> {
		let len = (rows as usize).checked_mul(cols as usize).ok_or(ShapeError::Overflow)?;
		if data.len() != len {
			return Err(ShapeError::BadLength);
		}
		Ok(Self { rows, cols, data })
	}

	/// A matrix of zeros.
	pub fn zeros(rows: u32, cols: u32) -> Result<Self, ShapeError> {
		let len = (rows as usize).checked_mul(cols as usize).ok_or(ShapeError::Overflow)?;
		Self::new(rows, cols, alloc::vec![0.0; len])
	}

	/// Row `i`.
	pub fn row(&self, i: u32) -> Option<&[f32]> {
		let c = self.cols as usize;
		let start = (i as usize).checked_mul(c)?;
		self.data.get(start..start.checked_add(c)?)
	}

	/// Column `j`, top to bottom.
	pub fn col(&self, j: u32) -> impl Iterator<Item = f32> + '_ {
		let step = (self.cols as usize).max(1);
		self.data.iter().skip(j as usize).step_by(step).copied().take(self.rows as usize)
	}

	/// Whether `data` holds exactly `rows * cols` values (`BadLength` if not).
	pub fn check(&self) -> Result<(), ShapeError> {
		let len =
			(self.rows as usize).checked_mul(self.cols as usize).ok_or(ShapeError::Overflow)?;
		if self.data.len() == len {
			Ok(())
		} else {
			Err(ShapeError::BadLength)
		}
	}

	/// Builds a `rows x cols` matrix from `f(i, j)`, row by row.
	fn from_fn(
		rows: u32,
		cols: u32,
		mut f: impl FnMut(u32, u32) -> f32,
	) -> Result<Self, ShapeError> {
		let len = (rows as usize).checked_mul(cols as usize).ok_or(ShapeError::Overflow)?;
		let mut data = Vec::with_capacity(len);
		for i in 0..rows {
			for j in 0..cols {
				data.push(f(i, j));
			}
		}
		Ok(Self { rows, cols, data })
	}
}

/// The dot product of the RepOps matmul: `acc = +0.0`, then `acc = fma(a_k, b_k, acc)` for
/// `k` ascending. Every matmul output element is this over one row/column of each input.
pub fn dot(a: impl IntoIterator<Item = f32>, b: impl IntoIterator<Item = f32>) -> f32 {
	a.into_iter().zip(b).fold(0.0f32, |acc, (x, y)| fma(x, y, acc))
}

/// `A · B` (`M x K` times `K x N`).
pub fn matmul(a: &Matrix, b: &Matrix) -> Result<Matrix, ShapeError> {
	a.check()?;
	b.check()?;
	if a.cols != b.rows {
		return Err(ShapeError::Mismatch);
	}
	Matrix::from_fn(a.rows, b.cols, |i, j| {
		dot(a.row(i).unwrap_or_default().iter().copied(), b.col(j))
	})
}

/// `Aᵀ · B` (`A` is `K x M`, `B` is `K x N`): element `(i, j)` is the dot product of column
/// `i` of `A` and column `j` of `B`, over `k` ascending.
pub fn matmul_tn(a: &Matrix, b: &Matrix) -> Result<Matrix, ShapeError> {
	a.check()?;
	b.check()?;
	if a.rows != b.rows {
		return Err(ShapeError::Mismatch);
	}
	Matrix::from_fn(a.cols, b.cols, |i, j| dot(a.col(i), b.col(j)))
}

/// `A · Bᵀ` (`A` is `M x K`, `B` is `N x K`): element `(i, j)` is the dot product of row `i`
/// of `A` and row `j` of `B`, over `k` ascending.
pub fn matmul_nt(a: &Matrix, b: &Matrix) -> Result<Matrix, ShapeError> {
	a.check()?;
	b.check()?;
	if a.cols != b.cols {
		return Err(ShapeError::Mismatch);
	}
	Matrix::from_fn(a.rows, b.rows, |i, j| {
		dot(
			a.row(i).unwrap_or_default().iter().copied(),
			b.row(j).unwrap_or_default().iter().copied(),
		)
	})
}

/// `A + B`, elementwise.
pub fn add_matrix(a: &Matrix, b: &Matrix) -> Result<Matrix, ShapeError> {
	a.check()?;
	b.check()?;
	if (a.rows, a.cols) != (b.rows, b.cols) {
		return Err(ShapeError::Mismatch);
	}
	Ok(Matrix {
		rows: a.rows,
		cols: a.cols,
		data: a.data.iter().zip(&b.data).map(|(x, y)| add(*x, *y)).collect(),
	})
}

/// `X + b` with the `1 x N` row `b` added to every row of `X`.
pub fn bias_add(x: &Matrix, b: &Matrix) -> Result<Matrix, ShapeError> {
	x.check()?;
	b.check()?;
	if b.rows != 1 || b.cols != x.cols {
		return Err(ShapeError::Mismatch);
	}
	let width = (x.cols as usize).max(1);
	let data = x
		.data
		.iter()
		.enumerate()
		.map(|(n, v)| {
			add(*v, b.data.get(n.checked_rem(width).unwrap_or(0)).copied().unwrap_or(0.0))
		})
		.collect();
	Ok(Matrix { rows: x.rows, cols: x.cols, data })
}

/// ReLU of one value: `x` if `x > 0`, `+0.0` otherwise (so `-0.0` gives `+0.0`); NaN stays
/// (canonical) NaN.
#[inline]
pub fn relu(x: f32) -> f32 {
	if x.is_nan() {
		canon(x)
	} else if x > 0.0 {
		x
	} else {
		0.0
	}
}

/// ReLU's backward for one value: `dy` where the forward input `x > 0`, `+0.0` elsewhere
/// (a NaN `x` counts as not positive); `dy` is canonicalized.
#[inline]
pub fn relu_backward(x: f32, dy: f32) -> f32 {
	if x > 0.0 {
		canon(dy)
	} else {
		0.0
	}
}

/// ReLU, elementwise.
pub fn relu_matrix(x: &Matrix) -> Result<Matrix, ShapeError> {
	x.check()?;
	Ok(Matrix { rows: x.rows, cols: x.cols, data: x.data.iter().map(|v| relu(*v)).collect() })
}

/// ReLU's backward, elementwise over the forward input `x` and the gradient `dy`.
pub fn relu_backward_matrix(x: &Matrix, dy: &Matrix) -> Result<Matrix, ShapeError> {
	x.check()?;
	dy.check()?;
	if (x.rows, x.cols) != (dy.rows, dy.cols) {
		return Err(ShapeError::Mismatch);
	}
	Ok(Matrix {
		rows: x.rows,
		cols: x.cols,
		data: x.data.iter().zip(&dy.data).map(|(a, g)| relu_backward(*a, *g)).collect(),
	})
}

/// The RepOps sum: `acc = +0.0`, then `acc = acc + v` in order.
pub fn sum(values: impl IntoIterator<Item = f32>) -> f32 {
	values.into_iter().fold(0.0f32, add)
}

/// The RepOps mean: [`sum`] divided by the count (one correctly rounded division).
pub fn mean(values: &[f32]) -> f32 {
	div(sum(values.iter().copied()), values.len() as f32)
}

/// The `1 x N` row of column sums (each column top to bottom): the bias gradient.
pub fn col_sum(x: &Matrix) -> Result<Matrix, ShapeError> {
	x.check()?;
	Matrix::from_fn(1, x.cols, |_, j| sum(x.col(j)))
}

/// `Xᵀ`.
pub fn transpose(x: &Matrix) -> Result<Matrix, ShapeError> {
	x.check()?;
	Matrix::from_fn(x.cols, x.rows, |i, j| {
		x.row(j).and_then(|r| r.get(i as usize)).copied().map(canon).unwrap_or(0.0)
	})
}

/// The running maximum of a row, left to right, starting from its first value; a NaN
/// anywhere makes it NaN.
pub(crate) fn row_max(row: &[f32]) -> f32 {
	let mut it = row.iter().copied();
	let first = it.next().unwrap_or(0.0);
	it.fold(canon(first), |m, v| {
		if m.is_nan() || v.is_nan() {
			canon(f32::NAN)
		} else if v > m {
			v
		} else {
			m
		}
	})
}

/// Softmax cross-entropy of one row of logits against its label: `ln(sum_j e^(z_j - max)) -
/// (z_y - max)`, every sum left to right.
pub fn softmax_xent_row(row: &[f32], label: u32) -> Result<f32, ShapeError> {
	softmax_xent_row_with(row, label, exp_each)
}

/// `out[i] = exp(x[i])`: how the reference takes a row's exponentials (the `exp_all` of the
/// `_with` functions, which an engine may replace by a vectorized one of the same bits).
pub fn exp_each(x: &[f32], out: &mut [f32]) {
	out.iter_mut().zip(x).for_each(|(o, v)| *o = exp(*v));
}

/// The shifted row `z_j - max` and its exponentials by `exp_all` (see [`exp_each`]).
fn shifted_exps(row: &[f32], m: f32, exp_all: impl FnOnce(&[f32], &mut [f32])) -> Vec<f32> {
	let shifted: Vec<f32> = row.iter().map(|z| sub(*z, m)).collect();
	let mut e = alloc::vec![0.0f32; row.len()];
	exp_all(&shifted, &mut e);
	e
}

/// [`softmax_xent_row`], the exponentials taken by `exp_all` (see [`exp_each`]).
pub fn softmax_xent_row_with(
	row: &[f32],
	label: u32,
	exp_all: impl FnOnce(&[f32], &mut [f32]),
) -> Result<f32, ShapeError> {
	let m = row_max(row);
	let zy = row.get(label as usize).copied().ok_or(ShapeError::BadLabel)?;
	let total = sum(shifted_exps(row, m, exp_all));
	Ok(sub(ln(total), sub(zy, m)))
}

/// The gradient of the batch-mean softmax cross-entropy for one row:
/// `(e^(z_j - max) / sum - [j == y]) / batch`.
pub fn softmax_xent_backward_row(
	row: &[f32],
	label: u32,
	batch: u32,
) -> Result<Vec<f32>, ShapeError> {
	softmax_xent_backward_row_with(row, label, batch, exp_each)
}

/// [`softmax_xent_backward_row`], the exponentials taken by `exp_all` (see [`exp_each`]).
pub fn softmax_xent_backward_row_with(
	row: &[f32],
	label: u32,
	batch: u32,
	exp_all: impl FnOnce(&[f32], &mut [f32]),
) -> Result<Vec<f32>, ShapeError> {
	if label as usize >= row.len() {
		return Err(ShapeError::BadLabel);
	}
	let m = row_max(row);
	let e = shifted_exps(row, m, exp_all);
	let total = sum(e.iter().copied());
	let b = batch as f32;
	Ok(e.iter()
		.enumerate()
		.map(|(j, ej)| {
			let p = div(*ej, total);
			let g = if j == label as usize { sub(p, 1.0) } else { p };
			div(g, b)
		})
		.collect())
}

/// The per-row losses (`B x 1`) of a batch of logits (`B x C`) against `labels`.
pub fn softmax_xent(logits: &Matrix, labels: &[u32]) -> Result<Matrix, ShapeError> {
	logits.check()?;
	if labels.len() != logits.rows as usize {
		return Err(ShapeError::Mismatch);
	}
	let mut data = Vec::with_capacity(labels.len());
	for (i, y) in labels.iter().enumerate() {
		let row = logits.row(i as u32).ok_or(ShapeError::Mismatch)?;
		data.push(softmax_xent_row(row, *y)?);
	}
	Matrix::new(logits.rows, 1, data)
}

/// The gradient of the batch-mean loss with respect to the logits (`B x C`).
pub fn softmax_xent_backward(logits: &Matrix, labels: &[u32]) -> Result<Matrix, ShapeError> {
	logits.check()?;
	if labels.len() != logits.rows as usize {
		return Err(ShapeError::Mismatch);
	}
	let mut data = Vec::with_capacity(logits.data.len());
	for (i, y) in labels.iter().enumerate() {
		let row = logits.row(i as u32).ok_or(ShapeError::Mismatch)?;
		data.extend(softmax_xent_backward_row(row, *y, logits.rows)?);
	}
	Matrix::new(logits.rows, logits.cols, data)
}

/// `y - t` of one row of a one-column output `[y]` against a target given as its `f32` bits
/// (a NaN made canonical).
fn row_error(row: &[f32], target: u32) -> Result<f32, ShapeError> {
	let &[y] = row else { return Err(ShapeError::Mismatch) };
	Ok(sub(y, canon(f32::from_bits(target))))
}

/// The squared error of one row of a one-column output against a target given as its `f32`
/// bits: `(y - t)^2`.
pub fn squared_error_row(row: &[f32], target: u32) -> Result<f32, ShapeError> {
	let d = row_error(row, target)?;
	Ok(mul(d, d))
}

/// The gradient of the batch-mean squared error for one row: `(2 (y - t)) / batch`.
pub fn squared_error_backward_row(row: &[f32], target: u32, batch: u32) -> Result<f32, ShapeError> {
	let d = row_error(row, target)?;
	Ok(div(mul(2.0, d), batch as f32))
}

/// `f` of every row of a one-column output (`B x 1`) and its target.
fn per_row(
	y: &Matrix,
	targets: &[u32],
	f: impl Fn(&[f32], u32) -> Result<f32, ShapeError>,
) -> Result<Matrix, ShapeError> {
	y.check()?;
	if y.cols != 1 || targets.len() != y.rows as usize {
		return Err(ShapeError::Mismatch);
	}
	let data = y.data.iter().zip(targets).map(|(v, t)| f(core::slice::from_ref(v), *t));
	Matrix::new(y.rows, 1, data.collect::<Result<Vec<f32>, ShapeError>>()?)
}

/// The per-row squared errors (`B x 1`) of a one-column output against `targets` (`f32`
/// bits).
pub fn squared_error(y: &Matrix, targets: &[u32]) -> Result<Matrix, ShapeError> {
	per_row(y, targets, squared_error_row)
}

/// The gradient of the batch-mean squared error with respect to the output (`B x 1`).
pub fn squared_error_backward(y: &Matrix, targets: &[u32]) -> Result<Matrix, ShapeError> {
	per_row(y, targets, |row, t| squared_error_backward_row(row, t, y.rows))
}

/// SGD with momentum for one parameter: `v' = mu * v + g`, `w' = w - lr * v'` (each product
/// and sum rounded separately). Returns `(w', v')`.
pub fn sgd_momentum(w: f32, v: f32, g: f32, lr: f32, mu: f32) -> (f32, f32) {
	let v2 = momentum(v, g, mu);
	(sgd_step(w, v2, lr), v2)
}

/// SGD's velocity update: `mu * v + g`.
pub fn momentum(v: f32, g: f32, mu: f32) -> f32 {
	add(mul(mu, v), g)
}

/// SGD's parameter update with the new velocity: `w - lr * v`.
pub fn sgd_step(w: f32, v: f32, lr: f32) -> f32 {
	sub(w, mul(lr, v))
}

/// Adam's bias corrections at step `t` (1-based): `(1 - b1^t, 1 - b2^t)`, the powers by
/// binary exponentiation (square-and-multiply over the bits of `t`, lowest first).
pub fn adam_corrections(b1: f32, b2: f32, t: u32) -> (f32, f32) {
	fn powi(base: f32, mut e: u32) -> f32 {
		let (mut acc, mut b) = (1.0f32, base);
		while e > 0 {
			if e & 1 == 1 {
				acc = mul(acc, b);
			}
			b = mul(b, b);
			e >>= 1;
		}
		acc
	}
	(sub(1.0, powi(b1, t)), sub(1.0, powi(b2, t)))
}

/// Adam for one parameter, given the step's bias corrections `(c1, c2)`:
/// `m' = b1*m + (1-b1)*g`, `v' = b2*v + (1-b2)*(g*g)`,
/// `w' = w - lr * (m'/c1) / (sqrt(v'/c2) + eps)`. Returns `(w', m', v')`.
#[allow(clippy::too_many_arguments)]
pub fn adam(
	w: f32,
	m: f32,
	v: f32,
	g: f32,
	lr: f32,
	b1: f32,
	b2: f32,
	eps: f32,
	c: (f32, f32),
) -> (f32, f32, f32) {
	let m2 = adam_m(m, g, b1);
	let v2 = adam_v(v, g, b2);
	(adam_step(w, m2, v2, lr, eps, c), m2, v2)
}

/// Adam's first moment: `b1*m + (1-b1)*g`.
pub fn adam_m(m: f32, g: f32, b1: f32) -> f32 {
	add(mul(b1, m), mul(sub(1.0, b1), g))
}

/// Adam's second moment: `b2*v + (1-b2)*(g*g)`.
pub fn adam_v(v: f32, g: f32, b2: f32) -> f32 {
	add(mul(b2, v), mul(sub(1.0, b2), mul(g, g)))
}

/// Adam's parameter update with the new moments and the step's bias corrections `(c1, c2)`:
/// `w - lr * (m/c1) / (sqrt(v/c2) + eps)`.
pub fn adam_step(w: f32, m: f32, v: f32, lr: f32, eps: f32, c: (f32, f32)) -> f32 {
	let step = div(mul(lr, div(m, c.0)), add(sqrt(div(v, c.1)), eps));
	sub(w, step)
}

/// SplitMix64: the RepOps pseudo-random generator (Steele, Lea and Flood, 2014). Fully
/// specified by its three constants; every seed gives one stream on every platform.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
	state: u64,
}

impl SplitMix64 {
	/// The stream of `seed`.
	pub fn new(seed: u64) -> Self {
		Self { state: seed }
	}

	/// The stream of `seed` for the purpose `domain` and index `index`: the seed, mixed once
	/// with each so streams never overlap by accident.
	pub fn derive(seed: u64, domain: u64, index: u64) -> Self {
		let a = Self::new(seed ^ domain.wrapping_mul(0xd6e8_feb8_6659_fd93)).next_u64();
		Self::new(a ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
	}

	/// Skips the next `n` draws: SplitMix64's state only counts up by its constant, so draw
	/// `n` of a stream is computed without the ones before it (what lets the chain check one
	/// initial weight alone).
	pub fn skip(&mut self, n: u64) {
		self.state = self.state.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
	}

	/// The next 64 random bits.
	pub fn next_u64(&mut self) -> u64 {
		self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
		let mut z = self.state;
		z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
		z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
		z ^ (z >> 31)
	}

	/// A uniform `f32` in `[0, 1)`: the top 24 bits times `2^-24` (exact).
	pub fn next_unit(&mut self) -> f32 {
		((self.next_u64() >> 40) as f32) * f32::from_bits(0x3380_0000)
	}

	/// A uniform integer in `[0, n)` by multiply-shift: `(next * n) >> 64`.
	pub fn next_below(&mut self, n: u32) -> u32 {
		((u128::from(self.next_u64()).wrapping_mul(u128::from(n))) >> 64) as u32
	}
}

/// Domain of the parameter-initialization streams.
pub const DOMAIN_INIT: u64 = 1;
/// Domain of the batch-sampling streams.
pub const DOMAIN_BATCH: u64 = 2;

/// A dense layer's initial weights (`fan_in x fan_out`), uniform in `[-a, a)` with
/// `a = sqrt(6 / fan_in)` (He-uniform): `w = (2u - 1) * a` for `u` from [`SplitMix64::next_unit`],
/// row by row. The stream is `derive(seed, DOMAIN_INIT, layer)`. Biases start at zero.
pub fn init_weights(
	seed: u64,
	layer: u32,
	fan_in: u32,
	fan_out: u32,
) -> Result<Matrix, ShapeError> {
	init_tensor(seed, layer, fan_in, fan_out, fan_in)
}

/// A `rows x cols` weight tensor of layer `layer` drawn as [`init_weights`] draws a dense
/// layer's, with `a = sqrt(6 / fan_in)`: a convolution's filters are `out_channels x
/// (channels * k * k)` with `fan_in = channels * k * k`.
pub fn init_tensor(
	seed: u64,
	layer: u32,
	rows: u32,
	cols: u32,
	fan_in: u32,
) -> Result<Matrix, ShapeError> {
	let a = sqrt(div(6.0, fan_in as f32));
	let mut rng = SplitMix64::derive(seed, DOMAIN_INIT, u64::from(layer));
	Matrix::from_fn(rows, cols, |_, _| mul(sub(mul(2.0, rng.next_unit()), 1.0), a))
}

/// Weight `(r, c)` of [`init_weights`] alone: the `r * fan_out + c`-th draw of the layer's
/// stream, with the same arithmetic. What the chain computes to settle one disputed initial
/// value of a model too large to initialize whole.
pub fn init_weight(seed: u64, layer: u32, fan_in: u32, fan_out: u32, r: u32, c: u32) -> f32 {
	init_value(seed, layer, fan_out, fan_in, r, c)
}

/// Value `(r, c)` of [`init_tensor`] of `cols` columns alone.
pub fn init_value(seed: u64, layer: u32, cols: u32, fan_in: u32, r: u32, c: u32) -> f32 {
	let a = sqrt(div(6.0, fan_in as f32));
	let mut rng = SplitMix64::derive(seed, DOMAIN_INIT, u64::from(layer));
	rng.skip(u64::from(r).saturating_mul(u64::from(cols)).saturating_add(u64::from(c)));
	mul(sub(mul(2.0, rng.next_unit()), 1.0), a)
}

/// The sample indices of training step `step`'s batch: `batch` draws with replacement from
/// `[0, samples)` by [`SplitMix64::next_below`] on the stream `derive(seed, DOMAIN_BATCH,
/// step)`, so any step's batch is computed without the steps before it.
pub fn batch_indices(seed: u64, step: u32, batch: u32, samples: u32) -> Vec<u32> {
	let mut rng = SplitMix64::derive(seed, DOMAIN_BATCH, u64::from(step));
	(0..batch).map(|_| rng.next_below(samples)).collect()
}

#[cfg(test)]
mod tests;
