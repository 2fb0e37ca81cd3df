//! The engine's sequence and layer operators: causal self-attention and its gradient, one
//! sequence per task in parallel, and the per-row layer normalization and per-value GELU and
//! sums, rows or chunks in parallel. Each value is computed by the reference's own functions
//! (`repops::sequence::attention_head`, `repops::layers::layer_norm_row`, ...), only in another
//! order of *independent* computations, so the bits are the reference's.

use super::{filled, mapped, MatRef, CHUNK};
use rayon::prelude::*;
use trainet_primitives::repops::{
	layers,
	sequence::{attention_grad_head, attention_head, scatter_head, Attention},
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
	data.par_chunks_mut(t * width).enumerate().for_each(|(b, out)| {
		let seq = sequence(&qkv, t, b);
		for h in 0..g.heads {
			match &dy {
				None => scatter_head(g, out, width, 0, h, &attention_head(g, seq, h)),
				Some(dy) => {
					let parts = attention_grad_head(g, seq, sequence(dy, t, b), h);
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
	let rows_per_chunk = (CHUNK / n).max(1);
	let data = filled(x.data.len(), rows_per_chunk * n, |first, out| {
		for (r, o) in out.chunks_mut(n).enumerate() {
			let at = first + r * n;
			let row = &x.data[at..at + n];
			let values = if gradient {
				layers::layer_norm_input_grad_row(row, gamma.data, &beta_or_dy.data[at..at + n])
			} else {
				layers::layer_norm_row(row, gamma.data, beta_or_dy.data)
			};
			o.copy_from_slice(&values);
		}
	});
	Matrix::new(x.rows, x.cols, data).map(Some)
}

/// GELU of every value of `x`, or (with `dy`) its gradient: chunks in parallel.
pub fn gelu(x: MatRef, dy: Option<MatRef>) -> Vec<f32> {
	mapped(x.data.len(), CHUNK, |first, count| {
		let xs = &x.data[first..first + count];
		xs.iter().enumerate().map(move |(i, v)| match &dy {
			Some(dy) => layers::gelu_backward(*v, dy.data[first + i]),
			None => layers::gelu(*v),
		})
	})
}
