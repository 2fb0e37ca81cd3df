//! Gradient clipping by global norm (PyTorch's `clip_grad_norm_`), as three operators whose
//! order is fixed, each element reading at most one line of each input:
//!
//! - [`sum_squares`] of each row of a gradient (`rows x 1`): `acc = +0.0`, then
//!   `acc = fma(g, g, acc)` along the row;
//! - [`clip_coefficient`] (`1 x 1`) from every gradient's row sums, tensor after tensor, each
//!   top to bottom: `total = sum(...)` ([`super::sum`]), `c = max_norm / (sqrt(total) +
//!   1e-6)`, then `min(c, 1)`; a NaN stays NaN (as `torch.clamp` keeps it), so a gradient
//!   with a NaN or an infinity clips every gradient to NaN or zeros, as PyTorch's does;
//! - [`clip_scale`] of each gradient value: `g * c` (always multiplied, as PyTorch does;
//!   `g * 1` is `g`, NaN made canonical).
//!
//! The norm is `sqrt` of the sum of all squares, where PyTorch takes the norm of the
//! per-tensor norms: the same value in exact arithmetic, one rounding order fixed here.

use super::{add, canon, div, fma, mul, sqrt, sum, Matrix, ShapeError};

/// The guard added to the norm before dividing (PyTorch's).
pub const CLIP_EPS: f32 = 1e-6;

/// The sum of the squares of `row`'s values, as one fused multiply-add chain in order.
pub fn sum_squares(row: &[f32]) -> f32 {
	row.iter().fold(0.0f32, |acc, g| fma(*g, *g, acc))
}

/// The factor every gradient is multiplied by: `min(max_norm / (sqrt(total) + 1e-6), 1)`,
/// `total` the [`sum`] of `row_sums` in order (NaN stays NaN).
pub fn clip_coefficient(row_sums: impl IntoIterator<Item = f32>, max_norm: f32) -> f32 {
	let c = div(max_norm, add(sqrt(sum(row_sums)), CLIP_EPS));
	if c.is_nan() || c < 1.0 {
		canon(c)
	} else {
		1.0
	}
}

/// A gradient value scaled by the factor.
pub fn clip_scale(g: f32, c: f32) -> f32 {
	mul(g, c)
}

/// [`sum_squares`] of each row of `g`: a `rows x 1` column.
pub fn sum_squares_matrix(g: &Matrix) -> Result<Matrix, ShapeError> {
	g.check()?;
	let data = (0..g.rows).map(|r| sum_squares(g.row(r).unwrap_or_default())).collect();
	Matrix::new(g.rows, 1, data)
}

/// [`clip_coefficient`] of the row sums in `parts` (each a column, `n x 1`), in order: a
/// `1 x 1` tensor.
pub fn clip_coefficient_matrix(parts: &[&Matrix], max_norm: f32) -> Result<Matrix, ShapeError> {
	for p in parts {
		p.check()?;
		if p.cols != 1 {
			return Err(ShapeError::Mismatch);
		}
	}
	let values = parts.iter().flat_map(|p| p.data.iter().copied());
	Matrix::new(1, 1, alloc::vec![clip_coefficient(values, max_norm)])
}

/// Every value of `g` scaled by the `1 x 1` factor `c`.
pub fn clip_scale_matrix(g: &Matrix, c: &Matrix) -> Result<Matrix, ShapeError> {
	g.check()?;
	c.check()?;
	let factor = match (c.rows, c.cols, c.data.first()) {
		(1, 1, Some(f)) => *f,
		_ => return Err(ShapeError::Mismatch),
	};
	Matrix::new(g.rows, g.cols, g.data.iter().map(|v| clip_scale(*v, factor)).collect())
}
