//! The CPU engine: the RepOps step program, fast and multi-threaded, giving exactly the bits
//! of the reference (`trainet_primitives::repops`, `docs/repops.md`).
//!
//! How it stays bit-exact while being fast:
//!
//! - **Parallel only across independent outputs.** Work is split by output rows (rayon); no
//!   output element's computation is ever split, so the thread count cannot change a bit.
//! - **The same rounding sequence per element.** A matmul keeps one accumulator per output
//!   element and walks `k` in ascending order with a fused multiply-add, exactly the reference
//!   `dot`. It is blocked across output *columns* (a row of `B` at a time, contiguous in
//!   memory, so the compiler vectorizes the fmas across `j`), never across `k`.
//! - **NaN canonicalization at the end.** The reference canonicalizes after every fma; once an
//!   accumulator is NaN every later fma leaves it NaN, so canonicalizing only the final value
//!   gives the same bits.
//! - `f32::mul_add` is IEEE fusedMultiplyAdd, correctly rounded on every platform (a single
//!   instruction where the CPU has FMA), like the reference's `libm::fmaf`.
//!
//! Everything other than the three matrix products is elementwise or per-row and cheap; it
//! runs through the reference operators.

use rayon::prelude::*;
use trainet_primitives::{
	program::{self, Op, OpKind, StepProgram},
	repops::{canon, Matrix, ShapeError},
	task::TrainingSpec,
};

/// Which product: `A·B`, `Aᵀ·B` or `A·Bᵀ`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Product {
	/// `A · B`.
	Nn,
	/// `Aᵀ · B`.
	Tn,
	/// `A · Bᵀ`.
	Nt,
}

/// Products of fewer multiply-adds than this run on one thread.
const SEQUENTIAL_BELOW: usize = 1 << 16;

/// A matrix product with the RepOps rounding, parallel over output rows.
pub fn matmul(a: &Matrix, b: &Matrix, product: Product) -> Result<Matrix, ShapeError> {
	// Bring both operands to the `M x K` times `K x N` layout (a transpose only moves values).
	let (a, b) = match product {
		Product::Nn => (std::borrow::Cow::Borrowed(a), std::borrow::Cow::Borrowed(b)),
		Product::Tn => (std::borrow::Cow::Owned(transpose(a)?), std::borrow::Cow::Borrowed(b)),
		Product::Nt => (std::borrow::Cow::Borrowed(a), std::borrow::Cow::Owned(transpose(b)?)),
	};
	if a.cols != b.rows
		|| a.data.len() != (a.rows * a.cols) as usize
		|| b.data.len() != (b.rows * b.cols) as usize
	{
		return Err(ShapeError::Mismatch);
	}
	let (m, k, n) = (a.rows as usize, a.cols as usize, b.cols as usize);
	let mut out = vec![0.0f32; m * n];
	if n > 0 {
		let fma = has_hardware_fma();
		let one_row = |(i, row): (usize, &mut [f32])| {
			let a_row = &a.data[i * k..(i + 1) * k];
			if fma {
				// SAFETY: the CPU was checked to have FMA and AVX2 (`has_hardware_fma`).
				#[cfg(target_arch = "x86_64")]
				unsafe {
					row_kernel_fma(a_row, &b.data, n, row)
				}
			} else {
				row_kernel(a_row, &b.data, n, row)
			}
			for v in row.iter_mut() {
				*v = canon(*v);
			}
		};
		// Rows are independent and each is computed the same way wherever it runs, so this
		// choice changes no bit: a product too small to repay waking the thread pool (a small
		// model's whole step is dozens of them) runs on the calling thread.
		if m.saturating_mul(k).saturating_mul(n) < SEQUENTIAL_BELOW {
			out.chunks_mut(n).enumerate().for_each(one_row);
		} else {
			out.par_chunks_mut(n).enumerate().for_each(one_row);
		}
	}
	Matrix::new(m as u32, n as u32, out)
}

/// One output row of `A · B`: one accumulator per element, `k` ascending for all of them, a
/// fused multiply-add each time. Written so the inner loop runs across `j` (contiguous in `B`
/// and in the output), which the compiler vectorizes without touching the order over `k`.
#[inline(always)]
fn row_kernel_body(a_row: &[f32], b: &[f32], n: usize, row: &mut [f32]) {
	row.fill(0.0);
	for (kk, &aik) in a_row.iter().enumerate() {
		let b_row = &b[kk * n..(kk + 1) * n];
		for (acc, &bkj) in row.iter_mut().zip(b_row) {
			*acc = aik.mul_add(bkj, *acc);
		}
	}
}

/// [`row_kernel_body`] for any CPU (`mul_add` may be a software fma: slow, same bits).
fn row_kernel(a_row: &[f32], b: &[f32], n: usize, row: &mut [f32]) {
	row_kernel_body(a_row, b, n, row)
}

/// [`row_kernel_body`] compiled for CPUs with FMA and AVX2: `mul_add` becomes `vfmadd`,
/// the same correctly rounded operation in hardware, eight lanes at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma,avx2")]
unsafe fn row_kernel_fma(a_row: &[f32], b: &[f32], n: usize, row: &mut [f32]) {
	row_kernel_body(a_row, b, n, row)
}

/// Whether [`row_kernel_fma`] can run here.
fn has_hardware_fma() -> bool {
	#[cfg(target_arch = "x86_64")]
	{
		std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2")
	}
	#[cfg(not(target_arch = "x86_64"))]
	{
		false
	}
}

/// `Xᵀ` (parallel over output rows).
pub fn transpose(x: &Matrix) -> Result<Matrix, ShapeError> {
	let (r, c) = (x.rows as usize, x.cols as usize);
	if x.data.len() != r * c {
		return Err(ShapeError::BadLength);
	}
	let mut out = vec![0.0f32; r * c];
	if r > 0 {
		out.par_chunks_mut(r).enumerate().for_each(|(j, row)| {
			for (i, v) in row.iter_mut().enumerate() {
				*v = canon(x.data[i * c + j]);
			}
		});
	}
	Matrix::new(x.cols, x.rows, out)
}

/// Runs one operation: the products here, everything else through the reference.
pub fn execute(
	spec: &TrainingSpec,
	op: &Op,
	inputs: &[&Matrix],
	labels: &[u32],
	step: u32,
) -> Result<Matrix, ShapeError> {
	let product = match op.kind {
		OpKind::MatMul => Some(Product::Nn),
		OpKind::MatMulTn => Some(Product::Tn),
		OpKind::MatMulNt => Some(Product::Nt),
		_ => None,
	};
	match (product, inputs) {
		(Some(p), [a, b]) => {
			let out = matmul(a, b, p)?;
			if (out.rows, out.cols) != (op.rows, op.cols) {
				return Err(ShapeError::Mismatch);
			}
			Ok(out)
		}
		(Some(_), _) => Err(ShapeError::Mismatch),
		(None, _) => program::execute(spec, op, inputs, labels, step),
	}
}

/// One training step with the engine: every operation's output and the next state (the same
/// contract as `trainet_primitives::program::run_step`).
pub fn run_step(
	spec: &TrainingSpec,
	program: &StepProgram,
	state: &[Matrix],
	batch: &Matrix,
	labels: &[u32],
	step: u32,
) -> Result<(Vec<Matrix>, Vec<Matrix>), ShapeError> {
	program::run_step_with(program, state, batch, |op, inputs| {
		execute(spec, op, inputs, labels, step)
	})
}

/// Multiply-add operations of the matrix products of one step, times two (the usual FLOP
/// count): per layer `l`, the forward `B·d_{l-1}·d_l`, the weight gradient as many, and the
/// input gradient as many again for every layer but the first. Elementwise work is not
/// counted.
pub fn step_flops(spec: &TrainingSpec) -> u64 {
	let trainet_primitives::task::Model::Mlp { widths, .. } = &spec.model;
	let b = u64::from(spec.batch_size);
	widths
		.windows(2)
		.enumerate()
		.map(|(l, w)| {
			let macs = b * u64::from(w[0]) * u64::from(w[1]);
			let products = if l == 0 { 2 } else { 3 };
			2 * macs * products
		})
		.sum()
}

#[cfg(test)]
mod tests;
