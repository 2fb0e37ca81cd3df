//! The CPU engine: the RepOps step program, fast and multi-threaded, giving exactly the bits
//! of the reference (`trainet_primitives::repops`, `docs/repops.md`).
//!
//! How it stays bit-exact while being fast:
//!
//! - **Parallel only across independent outputs.** Work is split by output elements (rayon);
//!   no output element's computation is ever split, so the thread count cannot change a bit.
//! - **The same rounding sequence per element.** A matmul keeps one accumulator per output
//!   element and walks `k` in ascending order with a fused multiply-add, exactly the reference
//!   `dot`. [`gemm`] blocks it for registers and caches across output rows and columns (and
//!   stores and reloads accumulators between blocks of `k`), never splitting the sum over `k`.
//! - **NaN canonicalization at the end.** The reference canonicalizes after every fma; once an
//!   accumulator is NaN every later fma leaves it NaN, so canonicalizing only the final value
//!   gives the same bits.
//! - `f32::mul_add` and AVX2's `vfmaddps` are IEEE fusedMultiplyAdd, correctly rounded, like
//!   the reference's `libm::fmaf`.
//!
//! The elementwise operations (bias, ReLU and its backward, the optimizer's updates) run in
//! parallel with the reference's own per-value functions; the per-row and reduction
//! operations (softmax, column sums, the mean) are small and run through the reference.

mod conv;
mod gemm;
pub mod image;
pub mod sequence;
mod vexp;

use gemm::{gemm, View};
use rayon::prelude::*;
use trainet_primitives::{
	program::{self, Op, OpKind, Pointwise, StepProgram},
	repops::{self, Matrix, ShapeError},
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

/// A borrowed `rows x cols` matrix, row after row: what the engine's operations read, so that
/// values held elsewhere (a burn tensor's memory) need not be copied into a [`Matrix`] first.
/// `Matrix` owns its values and lives in the no_std primitives the runtime shares; this is
/// its borrowed form on the worker's side.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
	/// Rows.
	pub rows: u32,
	/// Columns.
	pub cols: u32,
	/// `rows * cols` values, row after row.
	pub data: &'a [f32],
}

impl<'a> From<&'a Matrix> for MatRef<'a> {
	fn from(m: &'a Matrix) -> Self {
		Self { rows: m.rows, cols: m.cols, data: &m.data }
	}
}

impl MatRef<'_> {
	/// Whether `data` holds exactly `rows * cols` values (as [`Matrix::check`]).
	pub fn check(&self) -> Result<(), ShapeError> {
		let len =
			(self.rows as usize).checked_mul(self.cols as usize).ok_or(ShapeError::Overflow)?;
		if self.data.len() == len {
			Ok(())
		} else {
			Err(ShapeError::BadLength)
		}
	}

	/// A copy that owns its values.
	pub fn to_matrix(&self) -> Matrix {
		Matrix { rows: self.rows, cols: self.cols, data: self.data.to_vec() }
	}

	fn same_shape(&self, other: &MatRef) -> bool {
		(self.rows, self.cols) == (other.rows, other.cols)
	}
}

/// Products of fewer multiply-adds than this run on one thread.
pub(crate) const SEQUENTIAL_BELOW: usize = 1 << 16;

/// Elementwise operations on fewer values than this run on one thread.
const ELEMENTWISE_SEQUENTIAL_BELOW: usize = 1 << 15;

/// A matrix product with the RepOps rounding ([`gemm`]), on rayon's threads when it is large.
pub fn matmul<'a>(
	a: impl Into<MatRef<'a>>,
	b: impl Into<MatRef<'a>>,
	product: Product,
) -> Result<Matrix, ShapeError> {
	let (a, b) = (a.into(), b.into());
	a.check()?;
	b.check()?;
	let (ar, ac, br, bc) = (a.rows as usize, a.cols as usize, b.rows as usize, b.cols as usize);
	// The three layouts are only different strides over the stored values.
	let (va, vb) = match product {
		Product::Nn => (
			View { data: a.data, rows: ar, cols: ac, rs: ac, cs: 1 },
			View { data: b.data, rows: br, cols: bc, rs: bc, cs: 1 },
		),
		Product::Tn => (
			View { data: a.data, rows: ac, cols: ar, rs: 1, cs: ac },
			View { data: b.data, rows: br, cols: bc, rs: bc, cs: 1 },
		),
		Product::Nt => (
			View { data: a.data, rows: ar, cols: ac, rs: ac, cs: 1 },
			View { data: b.data, rows: bc, cols: br, rs: 1, cs: bc },
		),
	};
	if va.cols != vb.rows {
		return Err(ShapeError::Mismatch);
	}
	// Rows are independent and each is computed the same way wherever it runs, so this
	// choice changes no bit: a product too small to repay waking the thread pool (a small
	// model's whole step is dozens of them) runs on the calling thread.
	let parallel = va.rows.saturating_mul(va.cols).saturating_mul(vb.cols) >= SEQUENTIAL_BELOW;
	let out = gemm(va, vb, parallel);
	Matrix::new(va.rows as u32, vb.cols as u32, out)
}

/// A new vector of `len` values, filled by `fill(first, chunk)` on consecutive chunks of
/// `chunk` values (`first` the index of the chunk's first value): in parallel when there are
/// many. Each value is computed alone, so where it runs changes no bit.
fn filled(len: usize, chunk: usize, fill: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
	let mut out = vec![0.0f32; len];
	let chunk = chunk.max(1);
	let run = |(i, o): (usize, &mut [f32])| fill(i * chunk, o);
	if len < ELEMENTWISE_SEQUENTIAL_BELOW {
		out.chunks_mut(chunk).enumerate().for_each(run);
	} else {
		out.par_chunks_mut(chunk).enumerate().for_each(run);
	}
	out
}

/// A new vector of `len` values, the values of `values(first, count)` for consecutive chunks of
/// `chunk` positions (`first` the chunk's first position, `count` its length): in parallel
/// when there are many. Unlike [`filled`] the vector is not zeroed first (on the larger models
/// that was another pass over megabytes for every optimizer update); each value is computed
/// alone, so where it runs changes no bit.
///
/// # Panics
/// If `values` gives fewer than `count` values: a bug in the caller.
fn mapped<I>(len: usize, chunk: usize, values: impl Fn(usize, usize) -> I + Sync) -> Vec<f32>
where
	I: ExactSizeIterator<Item = f32>,
{
	let mut out: Vec<f32> = Vec::with_capacity(len);
	let chunk = chunk.max(1);
	let run = |(i, o): (usize, &mut [std::mem::MaybeUninit<f32>])| {
		let values = values(i * chunk, o.len());
		assert!(values.len() >= o.len(), "a chunk's values cover it");
		for (o, v) in o.iter_mut().zip(values) {
			o.write(v);
		}
	};
	let spare = &mut out.spare_capacity_mut()[..len];
	if len < ELEMENTWISE_SEQUENTIAL_BELOW {
		spare.chunks_mut(chunk).enumerate().for_each(run);
	} else {
		spare.par_chunks_mut(chunk).enumerate().for_each(run);
	}
	// SAFETY: every chunk of the first `len` positions was written above (the assertion makes
	// a short iterator panic before this point); `len` is the capacity reserved.
	unsafe { out.set_len(len) };
	out
}

/// Values per chunk of an elementwise operation.
const CHUNK: usize = 1 << 13;

/// The elementwise and column operations of the step program, in parallel, with the
/// reference's per-value functions (the optimizer's updates through [`Update`]); `None` for
/// the per-row operations and the mean (small: the reference runs them).
fn execute_elementwise(
	spec: &TrainingSpec,
	op: &Op,
	inputs: &[MatRef],
	step: u32,
) -> Result<Option<Matrix>, ShapeError> {
	for m in inputs {
		m.check()?;
	}
	let data = match (op.kind, inputs) {
		(OpKind::Gelu, [x]) => sequence::gelu(*x, None),
		(OpKind::GeluBackward, [x, dy]) if x.same_shape(dy) => sequence::gelu(*x, Some(*dy)),
		(OpKind::Add, [a, b]) if a.same_shape(b) => mapped(a.data.len(), CHUNK, |first, count| {
			let range = first..first + count;
			a.data[range.clone()].iter().zip(&b.data[range]).map(|(a, b)| repops::add(*a, *b))
		}),
		(OpKind::Relu, [x]) => mapped(x.data.len(), CHUNK, |first, count| {
			x.data[first..first + count].iter().map(|x| relu(*x))
		}),
		(OpKind::ReluBackward, [x, dy]) if x.same_shape(dy) => {
			mapped(x.data.len(), CHUNK, |first, count| {
				let range = first..first + count;
				x.data[range.clone()]
					.iter()
					.zip(&dy.data[range])
					.map(|(x, dy)| relu_backward(*x, *dy))
			})
		}
		(OpKind::BiasAdd, [x, b]) if b.rows == 1 && b.cols == x.cols && x.cols > 0 => {
			let width = x.cols as usize;
			// Whole rows per chunk, each plus the bias row.
			filled(x.data.len(), width * (CHUNK / width).max(1), |first, out| {
				for (o_row, x_row) in out.chunks_mut(width).zip(x.data[first..].chunks(width)) {
					for ((o, x), b) in o_row.iter_mut().zip(x_row).zip(b.data) {
						*o = repops::add(*x, *b);
					}
				}
			})
		}
		(OpKind::ColSum, [x]) if x.rows > 0 && x.cols > 0 => {
			// Each column's `sum` (`+0.0`, then `add` each row's value top to bottom), walking
			// the rows in order so that all columns' sums advance together.
			let width = x.cols as usize;
			let sums = filled(width, 512, |first, out| {
				for row in x.data.chunks_exact(width) {
					for (acc, v) in out.iter_mut().zip(&row[first..]) {
						*acc = repops::add(*acc, *v);
					}
				}
			});
			return Matrix::new(1, x.cols, sums).map(Some);
		}
		(
			OpKind::Momentum | OpKind::SgdStep | OpKind::AdamM | OpKind::AdamV | OpKind::AdamStep,
			[first, others @ ..],
		) => {
			// The reference's checks and errors (a kind the spec's optimizer lacks).
			Pointwise::new(spec, op.kind, step)?;
			let update = Update::new(spec, op.kind, step).ok_or(ShapeError::Mismatch)?;
			if others.len() + 1 != update.arity() || !others.iter().all(|m| first.same_shape(m)) {
				// Not what a step program builds: the reference decides.
				return Ok(None);
			}
			let inputs: Vec<&[f32]> = inputs.iter().map(|m| m.data).collect();
			update.run(&inputs)
		}
		_ => return Ok(None),
	};
	let x = inputs.first().ok_or(ShapeError::Mismatch)?;
	Matrix::new(x.rows, x.cols, data).map(Some)
}

/// `repops::relu` as selects rather than branches, which the compiler vectorizes (the
/// reference's branches kept it one value at a time): the same bits, a NaN canonical, a
/// positive value itself, anything else (`-0.0` included) `+0.0`.
#[inline(always)]
fn relu(x: f32) -> f32 {
	let y = if x > 0.0 { x } else { 0.0 };
	if x.is_nan() {
		f32::from_bits(repops::CANONICAL_NAN_BITS)
	} else {
		y
	}
}

/// `repops::relu_backward` as selects, like [`relu`]: `dy` (a NaN canonical) where the
/// forward input was positive, else `+0.0`.
#[inline(always)]
fn relu_backward(x: f32, dy: f32) -> f32 {
	let dy = if dy.is_nan() { f32::from_bits(repops::CANONICAL_NAN_BITS) } else { dy };
	if x > 0.0 {
		dy
	} else {
		0.0
	}
}

/// The optimizer's elementwise updates over whole tensors, the same bits as the reference's
/// per-value functions ([`Pointwise`]) but written as plain loops the compiler vectorizes.
///
/// The reference canonicalizes NaNs after each arithmetic operation; here only the result is.
/// That is the same bits: IEEE `+ - * / sqrt` give a NaN whenever an operand is one (whatever
/// its payload), so a NaN anywhere in the expression leaves the result NaN, and canonical at
/// the end; without NaNs the two compute the same operations in the same order. Rust never
/// contracts `a * b + c` into a fused multiply-add, so each product is rounded on its own as
/// in the reference. Tested against the reference on special values
/// (`elementwise_and_column_operations_match_the_reference_on_special_values`).
#[derive(Clone, Copy)]
enum Update {
	/// `mu * v + g` over `(v, g)`.
	Momentum { mu: f32 },
	/// `w - lr * v` over `(w, v)`.
	SgdStep { lr: f32 },
	/// `b1 * m + (1 - b1) * g` over `(m, g)`.
	AdamM { b1: f32, one_minus_b1: f32 },
	/// `b2 * v + (1 - b2) * (g * g)` over `(v, g)`.
	AdamV { b2: f32, one_minus_b2: f32 },
	/// `w - (lr * (m / c1)) / (sqrt(v / c2) + eps)` over `(w, m, v)`.
	AdamStep { lr: f32, eps: f32, c1: f32, c2: f32 },
}

impl Update {
	/// The update `kind` of step `step` with the spec's hyperparameters; `None` where the
	/// spec's optimizer has no such update.
	fn new(spec: &TrainingSpec, kind: OpKind, step: u32) -> Option<Self> {
		use trainet_primitives::task::Optimizer;
		Some(match (spec.optimizer, kind) {
			(Optimizer::Sgd { momentum, .. }, OpKind::Momentum) => {
				Self::Momentum { mu: momentum.to_f32() }
			}
			(Optimizer::Sgd { learning_rate, .. }, OpKind::SgdStep) => {
				Self::SgdStep { lr: learning_rate.to_f32() }
			}
			(Optimizer::Adam { beta1, .. } | Optimizer::AdamW { beta1, .. }, OpKind::AdamM) => {
				let b1 = beta1.to_f32();
				Self::AdamM { b1, one_minus_b1: repops::sub(1.0, b1) }
			}
			(Optimizer::Adam { beta2, .. } | Optimizer::AdamW { beta2, .. }, OpKind::AdamV) => {
				let b2 = beta2.to_f32();
				Self::AdamV { b2, one_minus_b2: repops::sub(1.0, b2) }
			}
			(Optimizer::Adam { learning_rate, beta1, beta2, epsilon }, OpKind::AdamStep) => {
				let (c1, c2) = repops::adam_corrections(
					beta1.to_f32(),
					beta2.to_f32(),
					step.saturating_add(1),
				);
				Self::AdamStep { lr: learning_rate.to_f32(), eps: epsilon.to_f32(), c1, c2 }
			}
			_ => return None,
		})
	}

	/// How many input tensors it reads.
	fn arity(self) -> usize {
		match self {
			Self::AdamStep { .. } => 3,
			_ => 2,
		}
	}

	/// The update at every position of its inputs (as many as [`Self::arity`], all of the
	/// same length).
	fn run(self, inputs: &[&[f32]]) -> Vec<f32> {
		let len = inputs.first().map_or(0, |a| a.len());
		// Input `n`'s values at positions `first..first + count`.
		let at = |n: usize, first: usize, count: usize| {
			inputs.get(n).map_or(&[][..], |x| &x[first..first + count])
		};
		match self {
			Self::Momentum { mu } => mapped(len, CHUNK, |first, count| {
				let (v, g) = (at(0, first, count), at(1, first, count));
				v.iter().zip(g).map(move |(v, g)| momentum(mu, *v, *g))
			}),
			Self::SgdStep { lr } => mapped(len, CHUNK, |first, count| {
				let (w, v) = (at(0, first, count), at(1, first, count));
				w.iter().zip(v).map(move |(w, v)| sgd_step(lr, *w, *v))
			}),
			Self::AdamM { b1, one_minus_b1 } => mapped(len, CHUNK, |first, count| {
				let (m, g) = (at(0, first, count), at(1, first, count));
				m.iter().zip(g).map(move |(m, g)| repops::canon(b1 * m + one_minus_b1 * g))
			}),
			Self::AdamV { b2, one_minus_b2 } => mapped(len, CHUNK, |first, count| {
				let (v, g) = (at(0, first, count), at(1, first, count));
				v.iter().zip(g).map(move |(v, g)| repops::canon(b2 * v + one_minus_b2 * (g * g)))
			}),
			Self::AdamStep { lr, eps, c1, c2 } => mapped(len, CHUNK, |first, count| {
				let (w, m, v) = (at(0, first, count), at(1, first, count), at(2, first, count));
				w.iter().zip(m).zip(v).map(move |((w, m), v)| {
					repops::canon(w - (lr * (m / c1)) / ((v / c2).sqrt() + eps))
				})
			}),
		}
	}
}

/// [`Update::Momentum`] of one value: `mu * v + g`.
#[inline(always)]
fn momentum(mu: f32, v: f32, g: f32) -> f32 {
	repops::canon(mu * v + g)
}

/// [`Update::SgdStep`] of one value: `w - lr * v`.
#[inline(always)]
fn sgd_step(lr: f32, w: f32, v: f32) -> f32 {
	repops::canon(w - lr * v)
}

/// Momentum SGD's two updates of one parameter in one pass over memory: the new velocity
/// `v' = Momentum(v, g)` and the new parameter `SgdStep(w, v')`, the bits of the two
/// operations run one after the other (each value's arithmetic is the same; only the passes
/// are merged, which saves reading `v'` back and a third of the memory traffic). An error
/// where the spec's optimizer is not momentum SGD or the shapes differ.
pub fn momentum_sgd(
	spec: &TrainingSpec,
	v: MatRef,
	g: MatRef,
	w: MatRef,
) -> Result<(Matrix, Matrix), ShapeError> {
	for m in [&v, &g, &w] {
		m.check()?;
	}
	if !v.same_shape(&g) || !v.same_shape(&w) {
		return Err(ShapeError::Mismatch);
	}
	let (Some(Update::Momentum { mu }), Some(Update::SgdStep { lr })) =
		(Update::new(spec, OpKind::Momentum, 0), Update::new(spec, OpKind::SgdStep, 0))
	else {
		return Err(ShapeError::Mismatch);
	};
	let len = v.data.len();
	let (mut velocity, mut weights): (Vec<f32>, Vec<f32>) =
		(Vec::with_capacity(len), Vec::with_capacity(len));
	type Out<'a> = &'a mut [std::mem::MaybeUninit<f32>];
	let run = |(i, (v_out, w_out)): (usize, (Out, Out))| {
		let range = i * CHUNK..i * CHUNK + v_out.len();
		let inputs = v.data[range.clone()].iter().zip(&g.data[range.clone()]).zip(&w.data[range]);
		for ((v_out, w_out), ((v, g), w)) in v_out.iter_mut().zip(w_out.iter_mut()).zip(inputs) {
			let v = momentum(mu, *v, *g);
			v_out.write(v);
			w_out.write(sgd_step(lr, *w, v));
		}
	};
	let (v_out, w_out) =
		(&mut velocity.spare_capacity_mut()[..len], &mut weights.spare_capacity_mut()[..len]);
	if len < ELEMENTWISE_SEQUENTIAL_BELOW {
		v_out.chunks_mut(CHUNK).zip(w_out.chunks_mut(CHUNK)).enumerate().for_each(run);
	} else {
		v_out.par_chunks_mut(CHUNK).zip(w_out.par_chunks_mut(CHUNK)).enumerate().for_each(run);
	}
	// SAFETY: the chunks cover the first `len` positions of both vectors, and every position
	// of a chunk is written (its inputs are slices of the same length: the shapes were
	// checked equal); `len` is the capacity reserved.
	unsafe {
		velocity.set_len(len);
		weights.set_len(len);
	}
	Ok((Matrix::new(v.rows, v.cols, velocity)?, Matrix::new(v.rows, v.cols, weights)?))
}

/// Runs one operation if the engine has its own implementation (the products, the
/// elementwise and column operations), checking the output's shape against `op`; `None` for
/// the rest, which the reference runs.
fn execute_own(
	spec: &TrainingSpec,
	op: &Op,
	inputs: &[MatRef],
	step: u32,
) -> Result<Option<Matrix>, ShapeError> {
	let product = match op.kind {
		OpKind::MatMul => Some(Product::Nn),
		OpKind::MatMulTn => Some(Product::Tn),
		OpKind::MatMulNt => Some(Product::Nt),
		_ => None,
	};
	let out = match (product, op.kind, inputs) {
		(Some(p), _, [a, b]) => matmul(*a, *b, p)?,
		(Some(_), _, _) => return Err(ShapeError::Mismatch),
		(None, OpKind::Conv2d(g), [x, w, b]) => image::conv2d(&g, *x, *w, *b)?,
		(None, OpKind::Conv2dInputGrad(g), [dy, w]) => image::conv2d_input_grad(&g, *dy, *w)?,
		(None, OpKind::Conv2dWeightGrad(g), [x, dy]) => image::conv2d_weight_grad(&g, *x, *dy)?,
		(None, OpKind::ConvBiasGrad(g), [dy]) => image::conv_bias_grad(&g, *dy)?,
		(None, OpKind::MaxPool2d(g), [x]) => image::pool(&g, *x, true)?,
		(None, OpKind::AvgPool2d(g), [x]) => image::pool(&g, *x, false)?,
		(None, OpKind::MaxPool2dGrad(g), [x, dy]) => image::pool_grad(&g, Some(*x), *dy)?,
		(None, OpKind::AvgPool2dGrad(g), [dy]) => image::pool_grad(&g, None, *dy)?,
		(None, OpKind::Attention(g), [qkv]) => sequence::attention(&g, *qkv, None)?,
		(None, OpKind::AttentionGrad(g), [qkv, dy]) => sequence::attention(&g, *qkv, Some(*dy))?,
		(None, OpKind::LayerNormGammaGrad, [x, dy]) => {
			match sequence::layer_norm_gamma_grad(*x, *dy)? {
				Some(out) => out,
				None => return Ok(None),
			}
		}
		(None, OpKind::TokenXent(g) | OpKind::TokenXentBackward(g), [logits, x]) => {
			let backward = matches!(op.kind, OpKind::TokenXentBackward(_));
			match sequence::token_xent(&g, *logits, *x, backward)? {
				Some(out) => out,
				None => return Ok(None),
			}
		}
		(None, OpKind::LayerNorm | OpKind::LayerNormInputGrad, [x, gamma, third]) => {
			let gradient = op.kind == OpKind::LayerNormInputGrad;
			match sequence::layer_norm(*x, *gamma, *third, gradient)? {
				Some(out) => out,
				None => return Ok(None),
			}
		}
		(None, _, _) => match execute_elementwise(spec, op, inputs, step)? {
			Some(out) => out,
			None => return Ok(None),
		},
	};
	if (out.rows, out.cols) != (op.rows, op.cols) {
		return Err(ShapeError::Mismatch);
	}
	Ok(Some(out))
}

/// Runs one operation: the products and elementwise operations here, everything else
/// through the reference.
pub fn execute(
	spec: &TrainingSpec,
	op: &Op,
	inputs: &[&Matrix],
	labels: &[u32],
	step: u32,
) -> Result<Matrix, ShapeError> {
	let views: Vec<MatRef> = inputs.iter().map(|m| MatRef::from(*m)).collect();
	match execute_own(spec, op, &views, step)? {
		Some(out) => Ok(out),
		None => program::execute(spec, op, inputs, labels, step),
	}
}

/// [`execute`] on borrowed inputs. The operations the reference runs (softmax and its
/// gradient, the mean: one value per sample or less) get copies of their inputs.
pub fn execute_refs(
	spec: &TrainingSpec,
	op: &Op,
	inputs: &[MatRef],
	labels: &[u32],
	step: u32,
) -> Result<Matrix, ShapeError> {
	match execute_own(spec, op, inputs, step)? {
		Some(out) => Ok(out),
		None => {
			let owned: Vec<Matrix> = inputs.iter().map(MatRef::to_matrix).collect();
			let refs: Vec<&Matrix> = owned.iter().collect();
			program::execute(spec, op, &refs, labels, step)
		}
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

/// One training step with the engine keeping only what a trainer keeps: the state after it
/// (moved out of the operations' outputs, not copied; the worker's training loop does this).
pub fn step(
	spec: &TrainingSpec,
	program: &StepProgram,
	state: &[Matrix],
	batch: &Matrix,
	labels: &[u32],
	step: u32,
) -> Result<Vec<Matrix>, ShapeError> {
	let mut outputs = program::run_ops_with(program, state, batch, |op, inputs| {
		execute(spec, op, inputs, labels, step)
	})?;
	program.take_next_state(&mut outputs)
}

/// Keeps glibc's malloc from returning freed memory to the kernel between training steps.
///
/// A step allocates every operation's output afresh (megabytes each on the larger models)
/// and frees the previous step's. By default glibc serves such blocks with `mmap` and
/// `munmap`s them on free, or trims the heap, so every step page-faults its memory in again
/// and the kernel zeroes it: 35-40% of a step of the 784-512-512-10 and 1024-1024-1024-10
/// models on the benchmark machine (docs/BENCHMARKS.md). With this, blocks up to 32 MiB
/// (glibc's maximum) come from the heap and up to 1 GiB of free heap is kept. A process-wide
/// setting, so the binaries call it first thing; elsewhere than Linux with glibc it does
/// nothing.
pub fn keep_freed_memory() {
	#[cfg(all(target_os = "linux", target_env = "gnu"))]
	{
		// SAFETY: `mallopt` only sets two of malloc's parameters (under malloc's own lock);
		// no memory is touched.
		unsafe {
			libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
			libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
		}
	}
}

/// Multiply-add operations of the matrix products and convolutions of one step, times two
/// (the usual FLOP count): for an MLP, per layer `l`, the forward `B·d_{l-1}·d_l`, the weight
/// gradient as many, and the input gradient as many again for every layer but the first.
/// Elementwise work, pools and sums are not counted.
pub fn step_flops(spec: &TrainingSpec) -> u64 {
	let Ok(program) = program::step_program(spec) else { return 0 };
	let batch = u64::from(spec.batch_size);
	program
		.ops
		.iter()
		.map(|op| {
			let macs = match op.kind {
				OpKind::MatMul | OpKind::MatMulTn | OpKind::MatMulNt => {
					trainet_primitives::referee::op_cost(spec, &program, op).1
				}
				OpKind::Conv2d(_) | OpKind::Conv2dInputGrad(_) | OpKind::Conv2dWeightGrad(_) => {
					op.kind.element_terms(batch).map(|(o, t)| o * t).unwrap_or(0)
				}
				_ => 0,
			};
			2 * macs
		})
		.sum()
}

#[cfg(test)]
mod tests;
