//! The operators of the layers beyond dense and convolutional ones: GELU, layer
//! normalization, dropout, each forward and backward, written with the RepOps basic
//! operations in one fixed order.
//!
//! - [`tanh`]`(u) = 1 - 2 / (exp(2u) + 1)` with RepOps [`exp`] (the limits are exact: `±1`
//!   for large `|u|`; near 0 its absolute error is a few ulps of 1);
//! - [`gelu`]`(x) = 0.5 x (1 + tanh(c (x + a x³)))`, `c = sqrt(2/π)`, `a = 0.044715`
//!   (PyTorch's `approximate="tanh"`); [`gelu_backward`] is its derivative times `dy`;
//! - layer normalization over one row of `n` values ([`layer_norm_row`]): `mean = sum(x) / n`,
//!   `var = dot(x - mean, x - mean) / n` (fused multiply-adds in order), `rstd = 1 /
//!   sqrt(var + 1e-5)`, `y = (x - mean) rstd γ + β`; its input gradient
//!   ([`layer_norm_input_grad_row`]) `rstd (g - sum(g)/n - x̂ dot(g, x̂)/n)` with `g = dy γ`;
//!   its scale's gradient ([`layer_norm_gamma_grad_at`]) `dot over rows of (dy, x̂)`;
//! - dropout ([`dropout_at`]): value `(r, c)` of a `cols`-column tensor is kept, times
//!   `1 / (1 - p)`, unless draw `r * cols + c` of the stream `derive(seed, DOMAIN_DROPOUT,
//!   step << 32 | layer)` is below `p`; dropped values are `+0.0`. The gradient drops the same
//!   positions.

use super::{add, canon, div, exp, fma, mul, sqrt, sub, sum, Matrix, ShapeError, SplitMix64};

/// `sqrt(2 / π)`.
pub const GELU_C: f32 = 0.797_884_6;
/// GELU's cubic coefficient.
pub const GELU_A: f32 = 0.044_715;
/// Layer normalization's variance guard (PyTorch's default).
pub const LAYER_NORM_EPS: f32 = 1e-5;
/// The stream domain of dropout masks ([`SplitMix64::derive`]).
pub const DOMAIN_DROPOUT: u64 = 3;

/// `tanh(u)` as `1 - 2 / (exp(2u) + 1)`.
pub fn tanh(u: f32) -> f32 {
	sub(1.0, div(2.0, add(exp(mul(2.0, u)), 1.0)))
}

/// GELU, tanh form.
pub fn gelu(x: f32) -> f32 {
	let u = mul(GELU_C, add(x, mul(GELU_A, mul(x, mul(x, x)))));
	mul(mul(0.5, x), add(1.0, tanh(u)))
}

/// `dy` times GELU's derivative at `x`: `0.5 (1 + t) + 0.5 x (1 - t²) c (1 + 3a x²)`,
/// `t = tanh(c (x + a x³))`.
pub fn gelu_backward(x: f32, dy: f32) -> f32 {
	let x2 = mul(x, x);
	let t = tanh(mul(GELU_C, add(x, mul(GELU_A, mul(x, x2)))));
	let du = mul(GELU_C, add(1.0, mul(mul(3.0, GELU_A), x2)));
	let d = add(mul(0.5, add(1.0, t)), mul(mul(mul(0.5, x), sub(1.0, mul(t, t))), du));
	mul(dy, d)
}

/// The mean and reciprocal standard deviation of one row.
fn row_stats(x: &[f32]) -> (f32, f32) {
	let n = x.len() as f32;
	let mean = div(sum(x.iter().copied()), n);
	let squares = x.iter().fold(0.0f32, |acc, v| {
		let d = sub(*v, mean);
		fma(d, d, acc)
	});
	let var = div(squares, n);
	(mean, div(1.0, sqrt(add(var, LAYER_NORM_EPS))))
}

/// One row's normalized values `x̂ = (x - mean) rstd`.
fn normalized(x: &[f32]) -> impl Iterator<Item = f32> + '_ {
	let (mean, rstd) = row_stats(x);
	x.iter().map(move |v| mul(sub(*v, mean), rstd))
}

/// Layer normalization of one row with scale `gamma` and shift `beta` (as long as the row).
pub fn layer_norm_row(x: &[f32], gamma: &[f32], beta: &[f32]) -> Vec<f32> {
	normalized(x).zip(gamma.iter().zip(beta)).map(|(h, (g, b))| add(mul(h, *g), *b)).collect()
}

/// The gradient of layer normalization with respect to one row `x`, from that row's output
/// gradient `dy` and the scale `gamma`.
pub fn layer_norm_input_grad_row(x: &[f32], gamma: &[f32], dy: &[f32]) -> Vec<f32> {
	let n = x.len() as f32;
	let (_, rstd) = row_stats(x);
	let xhat: Vec<f32> = normalized(x).collect();
	let g: Vec<f32> = dy.iter().zip(gamma).map(|(d, w)| mul(*d, *w)).collect();
	let mean_g = div(sum(g.iter().copied()), n);
	let mean_gx = div(g.iter().zip(&xhat).fold(0.0f32, |acc, (a, b)| fma(*a, *b, acc)), n);
	g.iter()
		.zip(&xhat)
		.map(|(gi, hi)| mul(rstd, sub(sub(*gi, mean_g), mul(*hi, mean_gx))))
		.collect()
}

/// Value `i` of layer normalization's scale gradient: `dot over rows b of (dy[b, i], x̂[b, i])`
/// (fused multiply-adds, rows in order), from every row of the input `x` (`rows x cols`, row
/// after row) and column `i` of the output gradient.
pub fn layer_norm_gamma_grad_at(x: &[f32], cols: u32, dy_col: &[f32], i: u32) -> f32 {
	let cols = (cols as usize).max(1);
	x.chunks(cols).zip(dy_col).fold(0.0f32, |acc, (row, d)| {
		let h = normalized(row).nth(i as usize).unwrap_or(0.0);
		fma(*d, h, acc)
	})
}

/// Whether value `(r, c)` of a `cols`-column tensor survives the dropout of layer `layer` at
/// step `step` with drop probability `p`.
pub fn dropout_keeps(
	seed: u64,
	step: u32,
	layer: u32,
	p: f32,
	cols: u32,
	(r, c): (u32, u32),
) -> bool {
	let index = (u64::from(step) << 32) | u64::from(layer);
	let mut rng = SplitMix64::derive(seed, DOMAIN_DROPOUT, index);
	rng.skip(u64::from(r).saturating_mul(u64::from(cols)).saturating_add(u64::from(c)));
	rng.next_unit() >= p
}

/// Value `(r, c)` of the dropout of `x` (its value there): `x / (1 - p)` if kept, `+0.0` if
/// not. The gradient is the same function of `dy`.
#[allow(clippy::too_many_arguments)]
pub fn dropout_at(
	seed: u64,
	step: u32,
	layer: u32,
	p: f32,
	cols: u32,
	at: (u32, u32),
	x: f32,
) -> f32 {
	if dropout_keeps(seed, step, layer, p, cols, at) {
		mul(x, div(1.0, sub(1.0, p)))
	} else {
		0.0
	}
}

/// GELU of every value.
pub fn gelu_matrix(x: &Matrix) -> Result<Matrix, ShapeError> {
	x.check()?;
	Matrix::new(x.rows, x.cols, x.data.iter().map(|v| gelu(*v)).collect())
}

/// [`gelu_backward`] of every value of `x` and `dy` (same shapes).
pub fn gelu_backward_matrix(x: &Matrix, dy: &Matrix) -> Result<Matrix, ShapeError> {
	x.check()?;
	dy.check()?;
	if (x.rows, x.cols) != (dy.rows, dy.cols) {
		return Err(ShapeError::Mismatch);
	}
	Matrix::new(
		x.rows,
		x.cols,
		x.data.iter().zip(&dy.data).map(|(a, d)| gelu_backward(*a, *d)).collect(),
	)
}

/// Checks that `v` is a `1 x cols` row.
fn check_row(v: &Matrix, cols: u32) -> Result<(), ShapeError> {
	v.check()?;
	if (v.rows, v.cols) != (1, cols) {
		return Err(ShapeError::Mismatch);
	}
	Ok(())
}

/// Layer normalization of every row of `x` with scale `gamma` and shift `beta` (`1 x cols`).
pub fn layer_norm(x: &Matrix, gamma: &Matrix, beta: &Matrix) -> Result<Matrix, ShapeError> {
	x.check()?;
	check_row(gamma, x.cols)?;
	check_row(beta, x.cols)?;
	let data = (0..x.rows)
		.flat_map(|r| layer_norm_row(x.row(r).unwrap_or_default(), &gamma.data, &beta.data))
		.collect();
	Matrix::new(x.rows, x.cols, data)
}

/// Layer normalization's input gradient, row by row.
pub fn layer_norm_input_grad(
	x: &Matrix,
	gamma: &Matrix,
	dy: &Matrix,
) -> Result<Matrix, ShapeError> {
	x.check()?;
	dy.check()?;
	check_row(gamma, x.cols)?;
	if (x.rows, x.cols) != (dy.rows, dy.cols) {
		return Err(ShapeError::Mismatch);
	}
	let data = (0..x.rows)
		.flat_map(|r| {
			let (x, dy) = (x.row(r).unwrap_or_default(), dy.row(r).unwrap_or_default());
			layer_norm_input_grad_row(x, &gamma.data, dy)
		})
		.collect();
	Matrix::new(x.rows, x.cols, data)
}

/// Layer normalization's scale gradient (`1 x cols`): each row's `x̂` computed once.
pub fn layer_norm_gamma_grad(x: &Matrix, dy: &Matrix) -> Result<Matrix, ShapeError> {
	x.check()?;
	dy.check()?;
	if (x.rows, x.cols) != (dy.rows, dy.cols) {
		return Err(ShapeError::Mismatch);
	}
	let xhat: Vec<f32> = (0..x.rows)
		.flat_map(|r| normalized(x.row(r).unwrap_or_default()).collect::<Vec<_>>())
		.collect();
	let mut acc = alloc::vec![0.0f32; x.cols as usize];
	for (h_row, d_row) in
		xhat.chunks((x.cols as usize).max(1)).zip(dy.data.chunks((x.cols as usize).max(1)))
	{
		for ((a, h), d) in acc.iter_mut().zip(h_row).zip(d_row) {
			*a = fma(*d, *h, *a);
		}
	}
	Matrix::new(1, x.cols, acc.into_iter().map(canon).collect())
}

/// The dropout of every value of `x` ([`dropout_at`]).
pub fn dropout(x: &Matrix, seed: u64, step: u32, layer: u32, p: f32) -> Result<Matrix, ShapeError> {
	x.check()?;
	Matrix::from_fn(x.rows, x.cols, |r, c| {
		let v = x.data.get((r as usize).saturating_mul(x.cols as usize).saturating_add(c as usize));
		dropout_at(seed, step, layer, p, x.cols, (r, c), v.copied().unwrap_or(0.0))
	})
}

use alloc::vec::Vec;
