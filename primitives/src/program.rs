//! The canonical step program: one training step of a task as an ordered list of RepOps, a
//! pure function of the spec. Solver, verifier and chain derive the same list, so "operation
//! `j` of step `t`" names one operation, its shapes and the tensors it reads.
//!
//! For an MLP with widths `d_0 .. d_L` and batch `B` (`A_0` is the batch's inputs `X`):
//!
//! 1. forward, for `l = 1 ..= L`: `Z'_l = A_{l-1} · W_l`, `Z_l = Z'_l + b_l`, and for
//!    `l < L`: `A_l = relu(Z_l)`;
//! 2. loss: per-row softmax cross-entropy of `Z_L`, then its mean (reported, not trained on);
//! 3. backward: `dZ_L = softmax_xent_backward(Z_L)`; for `l = L ..= 1`:
//!    `dW_l = A_{l-1}ᵀ · dZ_l`, `db_l = colsum(dZ_l)`, and for `l > 1`:
//!    `dA_{l-1} = dZ_l · W_lᵀ`, `dZ_{l-1} = relu_backward(Z_{l-1}, dA_{l-1})`;
//! 4. update, for every parameter in state order (`W_1, b_1, ..., W_L, b_L`): SGD with
//!    momentum (`v' = momentum(v, g)`, `p' = sgd(p, v')`) or Adam (`m' = adam_m(m, g)`,
//!    `v' = adam_v(v, g)`, `p' = adam_step(p, m', v')`).
//!
//! The training state is the parameters followed by the optimizer's tensors:
//! `[W_1, b_1, ..., W_L, b_L]`, then SGD's velocities in the same order, or Adam's first
//! moments then second moments.

use crate::repops::{self, Matrix, ShapeError};
use crate::task::{Loss, Model, Optimizer, SpecError, TrainingSpec};
use alloc::vec::Vec;
use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;

/// Where an operation's input comes from.
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
pub enum Source {
	/// Tensor `i` of the state before the step.
	State(u32),
	/// The batch's input rows `X` (`B x d_0`).
	Batch,
	/// The output of operation `j` of this step.
	Op(u32),
}

/// What an operation computes (see [`crate::repops`] and `docs/repops.md`).
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
pub enum OpKind {
	/// `A · B`.
	MatMul,
	/// `Aᵀ · B`.
	MatMulTn,
	/// `A · Bᵀ`.
	MatMulNt,
	/// `X + b` (row broadcast).
	BiasAdd,
	/// `relu(X)`.
	Relu,
	/// `relu_backward(X, dY)`.
	ReluBackward,
	/// Per-row softmax cross-entropy against the batch's labels (`B x 1`).
	SoftmaxXent,
	/// Its batch-mean gradient with respect to the logits.
	SoftmaxXentBackward,
	/// The mean of all values (`1 x 1`), rows in order.
	Mean,
	/// Column sums (`1 x N`).
	ColSum,
	/// SGD velocity: `mu * v + g`.
	Momentum,
	/// SGD step: `p - lr * v`.
	SgdStep,
	/// Adam first moment.
	AdamM,
	/// Adam second moment.
	AdamV,
	/// Adam step: `p - lr * (m/c1) / (sqrt(v/c2) + eps)`.
	AdamStep,
	/// Per-row squared error `(y - t)^2` of a one-column output against the batch's targets
	/// (`B x 1`).
	SquaredError,
	/// Its batch-mean gradient with respect to the output: `2 (y - t) / B`.
	SquaredErrorBackward,
}

/// One operation of the step program.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, DecodeWithMemTracking, TypeInfo)]
pub struct Op {
	/// What it computes.
	pub kind: OpKind,
	/// Its inputs, in the operator's order.
	pub inputs: Vec<Source>,
	/// Output rows.
	pub rows: u32,
	/// Output columns.
	pub cols: u32,
}

/// A step program and where the next state's tensors come from.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StepProgram {
	/// The operations, in execution order.
	pub ops: Vec<Op>,
	/// The shapes `(rows, cols)` of the state's tensors.
	pub state_shapes: Vec<(u32, u32)>,
	/// For each tensor of the state after the step, the operation that produced it.
	pub next_state: Vec<u32>,
	/// How many of the state's tensors, from the first, are the model's parameters (the rest
	/// are the optimizer's): the trained model is the state's first `params` tensors.
	pub params: u32,
}

struct Builder {
	ops: Vec<Op>,
}

impl Builder {
	fn push(&mut self, kind: OpKind, inputs: Vec<Source>, rows: u32, cols: u32) -> Source {
		let j = self.ops.len() as u32;
		self.ops.push(Op { kind, inputs, rows, cols });
		Source::Op(j)
	}
}

/// The operations of `loss`: its per-row value (`B x 1`) and its batch-mean gradient with
/// respect to the model's output.
pub fn loss_ops(loss: Loss) -> (OpKind, OpKind) {
	match loss {
		Loss::SoftmaxCrossEntropy => (OpKind::SoftmaxXent, OpKind::SoftmaxXentBackward),
		Loss::MeanSquaredError => (OpKind::SquaredError, OpKind::SquaredErrorBackward),
	}
}

/// The step program of `spec` (which must validate).
pub fn step_program(spec: &TrainingSpec) -> Result<StepProgram, SpecError> {
	spec.validate()?;
	let Model::Mlp { widths, .. } = &spec.model;
	let layers = widths.len().saturating_sub(1);
	let b = spec.batch_size;
	let mut shapes: Vec<(u32, u32)> = Vec::new();
	for w in widths.windows(2) {
		let &[fan_in, fan_out] = w else { return Err(SpecError::TooFewLayers) };
		shapes.push((fan_in, fan_out));
		shapes.push((1, fan_out));
	}
	let params = shapes.len() as u32;
	let copies = match spec.optimizer {
		Optimizer::Sgd { .. } => 1,
		Optimizer::Adam { .. } => 2,
	};
	let param_shapes = shapes.clone();
	for _ in 0..copies {
		shapes.extend(param_shapes.iter().copied());
	}
	let w = |l: usize| Source::State(l.saturating_mul(2) as u32);
	let bias = |l: usize| Source::State(l.saturating_mul(2).saturating_add(1) as u32);
	let width = |l: usize| widths.get(l).copied().unwrap_or(0);

	let mut p = Builder { ops: Vec::new() };
	// Forward: keep each layer's input activation and pre-activation.
	let mut acts = Vec::with_capacity(layers.saturating_add(1));
	let mut pre = Vec::with_capacity(layers);
	acts.push(Source::Batch);
	for l in 0..layers {
		let input = acts.last().copied().unwrap_or(Source::Batch);
		let next = l.saturating_add(1);
		let z0 = p.push(OpKind::MatMul, alloc::vec![input, w(l)], b, width(next));
		let z = p.push(OpKind::BiasAdd, alloc::vec![z0, bias(l)], b, width(next));
		pre.push(z);
		if next < layers {
			acts.push(p.push(OpKind::Relu, alloc::vec![z], b, width(next)));
		}
	}
	let logits = pre.last().copied().unwrap_or(Source::Batch);
	let (loss, loss_backward) = loss_ops(spec.loss);
	let losses = p.push(loss, alloc::vec![logits], b, 1);
	p.push(OpKind::Mean, alloc::vec![losses], 1, 1);

	// Backward.
	let mut grads = alloc::vec![Source::Batch; params as usize];
	let mut dz = p.push(loss_backward, alloc::vec![logits], b, width(layers));
	for l in (0..layers).rev() {
		let a_prev = acts.get(l).copied().unwrap_or(Source::Batch);
		let next = l.saturating_add(1);
		if let Some(g) = grads.get_mut(l.saturating_mul(2)) {
			*g = p.push(OpKind::MatMulTn, alloc::vec![a_prev, dz], width(l), width(next));
		}
		if let Some(g) = grads.get_mut(l.saturating_mul(2).saturating_add(1)) {
			*g = p.push(OpKind::ColSum, alloc::vec![dz], 1, width(next));
		}
		if let Some(prev) = l.checked_sub(1) {
			let da = p.push(OpKind::MatMulNt, alloc::vec![dz, w(l)], b, width(l));
			let z_prev = pre.get(prev).copied().unwrap_or(Source::Batch);
			dz = p.push(OpKind::ReluBackward, alloc::vec![z_prev, da], b, width(l));
		}
	}

	// Update.
	let mut new_params = Vec::new();
	let mut new_first = Vec::new();
	let mut new_second = Vec::new();
	for (i, g) in grads.iter().enumerate() {
		let (rows, cols) = param_shapes.get(i).copied().unwrap_or((0, 0));
		let param = Source::State(i as u32);
		match spec.optimizer {
			Optimizer::Sgd { .. } => {
				let v = Source::State(params.saturating_add(i as u32));
				let v2 = p.push(OpKind::Momentum, alloc::vec![v, *g], rows, cols);
				new_first.push(v2);
				new_params.push(p.push(OpKind::SgdStep, alloc::vec![param, v2], rows, cols));
			}
			Optimizer::Adam { .. } => {
				let m = Source::State(params.saturating_add(i as u32));
				let v = Source::State(params.saturating_mul(2).saturating_add(i as u32));
				let m2 = p.push(OpKind::AdamM, alloc::vec![m, *g], rows, cols);
				let v2 = p.push(OpKind::AdamV, alloc::vec![v, *g], rows, cols);
				new_first.push(m2);
				new_second.push(v2);
				new_params.push(p.push(OpKind::AdamStep, alloc::vec![param, m2, v2], rows, cols));
			}
		}
	}
	let next_state = new_params
		.into_iter()
		.chain(new_first)
		.chain(new_second)
		.filter_map(|s| match s {
			Source::Op(j) => Some(j),
			_ => None,
		})
		.collect();
	Ok(StepProgram { ops: p.ops, state_shapes: shapes, next_state, params })
}

/// The state after initialization: He-uniform weights from the seed, zero biases, zero
/// optimizer tensors.
pub fn initial_state(
	spec: &TrainingSpec,
	program: &StepProgram,
) -> Result<Vec<Matrix>, ShapeError> {
	let mut state = Vec::with_capacity(program.state_shapes.len());
	for (i, (rows, cols)) in program.state_shapes.iter().enumerate() {
		state.push(match weight_layer(spec, i) {
			Some(layer) => repops::init_weights(spec.seed, layer, *rows, *cols)?,
			None => Matrix::zeros(*rows, *cols)?,
		});
	}
	Ok(state)
}

/// The most tensors a state has: a weight and a bias per layer, each with up to two
/// optimizer tensors (Adam's).
pub const MAX_STATE_TENSORS: u32 = (crate::task::MAX_LAYER_WIDTHS - 1) * 2 * 3;

/// The layer whose weights state tensor `i` is, if it is a weight (the state starts with
/// each layer's weight and bias in turn; every other tensor starts at zero).
fn weight_layer(spec: &TrainingSpec, i: usize) -> Option<u32> {
	let Model::Mlp { widths, .. } = &spec.model;
	let layers = widths.len().saturating_sub(1);
	(i < layers.saturating_mul(2) && i & 1 == 0).then_some((i >> 1) as u32)
}

/// Value `(r, c)` of state tensor `i` right after initialization, as bits, computed alone
/// ([`repops::init_weight`]): what the chain checks to settle a dispute over `h_0` element
/// by element. `None` outside the state.
pub fn initial_value(
	spec: &TrainingSpec,
	program: &StepProgram,
	i: u32,
	(r, c): (u32, u32),
) -> Option<u32> {
	let (rows, cols) = *program.state_shapes.get(i as usize)?;
	if r >= rows || c >= cols {
		return None;
	}
	Some(match weight_layer(spec, i as usize) {
		Some(layer) => repops::init_weight(spec.seed, layer, rows, cols, r, c).to_bits(),
		None => 0.0f32.to_bits(),
	})
}

/// The hash `h_0` of the state right after initialization, if the chain can afford to
/// recompute it: at most [`repops::MAX_CHAIN_ELEMENTS`] values in the whole state (larger
/// models give [`ShapeError::TooLarge`]).
pub fn initial_state_hash(spec: &TrainingSpec) -> Result<sp_core::H256, ShapeError> {
	let program = step_program(spec).map_err(|_| ShapeError::Mismatch)?;
	if program.state_values() > u64::from(repops::MAX_CHAIN_ELEMENTS) {
		return Err(ShapeError::TooLarge);
	}
	Ok(crate::commit::state_hash(&initial_state(spec, &program)?))
}

/// Runs operation `op` of a step on its input tensors (in `op.inputs` order). This is what
/// the chain executes for a disputed operation, and what every engine must match bit for bit.
pub fn execute(
	spec: &TrainingSpec,
	op: &Op,
	inputs: &[&Matrix],
	labels: &[u32],
	step: u32,
) -> Result<Matrix, ShapeError> {
	let arg = |i: usize| inputs.get(i).copied().ok_or(ShapeError::Mismatch);
	let out = match op.kind {
		OpKind::MatMul => repops::matmul(arg(0)?, arg(1)?)?,
		OpKind::MatMulTn => repops::matmul_tn(arg(0)?, arg(1)?)?,
		OpKind::MatMulNt => repops::matmul_nt(arg(0)?, arg(1)?)?,
		OpKind::BiasAdd => repops::bias_add(arg(0)?, arg(1)?)?,
		OpKind::Relu => repops::relu_matrix(arg(0)?)?,
		OpKind::ReluBackward => repops::relu_backward_matrix(arg(0)?, arg(1)?)?,
		OpKind::SoftmaxXent => repops::softmax_xent(arg(0)?, labels)?,
		OpKind::SoftmaxXentBackward => repops::softmax_xent_backward(arg(0)?, labels)?,
		OpKind::SquaredError => repops::squared_error(arg(0)?, labels)?,
		OpKind::SquaredErrorBackward => repops::squared_error_backward(arg(0)?, labels)?,
		OpKind::Mean => Matrix::new(1, 1, alloc::vec![repops::mean(&arg(0)?.data)])?,
		OpKind::ColSum => repops::col_sum(arg(0)?)?,
		OpKind::Momentum | OpKind::SgdStep | OpKind::AdamM | OpKind::AdamV | OpKind::AdamStep => {
			let f = Pointwise::new(spec, op.kind, step)?;
			let first = arg(0)?;
			let others = (1..op.inputs.len()).map(arg).collect::<Result<Vec<_>, _>>()?;
			if others.iter().any(|m| {
				(m.rows, m.cols, m.data.len()) != (first.rows, first.cols, first.data.len())
			}) {
				return Err(ShapeError::Mismatch);
			}
			let mut args = [0.0f32; 3];
			let data = (0..first.data.len())
				.map(|n| {
					for (slot, m) in
						args.iter_mut().zip(core::iter::once(first).chain(others.iter().copied()))
					{
						*slot = m.data.get(n).copied().unwrap_or(0.0);
					}
					f.apply(&args)
				})
				.collect();
			Matrix::new(first.rows, first.cols, data)?
		}
	};
	if (out.rows, out.cols) != (op.rows, op.cols) {
		return Err(ShapeError::Mismatch);
	}
	Ok(out)
}

/// The optimizer's per-value updates, with the spec's hyperparameters: the one definition
/// the whole-tensor operation ([`execute`]) and the chain's single-element check share.
#[derive(Clone, Copy, Debug)]
pub struct Pointwise {
	kind: OpKind,
	lr: f32,
	mu: f32,
	b1: f32,
	b2: f32,
	eps: f32,
	corrections: (f32, f32),
}

impl Pointwise {
	/// The update `kind` of step `step` (`Momentum`, `SgdStep`, `AdamM`, `AdamV` or
	/// `AdamStep`, matching the spec's optimizer).
	pub fn new(spec: &TrainingSpec, kind: OpKind, step: u32) -> Result<Self, ShapeError> {
		let mut f =
			Self { kind, lr: 0.0, mu: 0.0, b1: 0.0, b2: 0.0, eps: 0.0, corrections: (1.0, 1.0) };
		match (spec.optimizer, kind) {
			(Optimizer::Sgd { learning_rate, momentum }, OpKind::Momentum | OpKind::SgdStep) => {
				f.lr = learning_rate.to_f32();
				f.mu = momentum.to_f32();
			}
			(
				Optimizer::Adam { learning_rate, beta1, beta2, epsilon },
				OpKind::AdamM | OpKind::AdamV | OpKind::AdamStep,
			) => {
				f.lr = learning_rate.to_f32();
				f.b1 = beta1.to_f32();
				f.b2 = beta2.to_f32();
				f.eps = epsilon.to_f32();
				f.corrections = repops::adam_corrections(f.b1, f.b2, step.saturating_add(1));
			}
			_ => return Err(ShapeError::Mismatch),
		}
		Ok(f)
	}

	/// The constants the update uses, `[lr, mu, b1, b2, eps, c1, c2]` (`c1`, `c2`: Adam's bias
	/// corrections of the step; zeros for what the optimizer lacks): for a device kernel that
	/// applies the same update.
	pub fn constants(&self) -> [f32; 7] {
		let (c1, c2) = self.corrections;
		[self.lr, self.mu, self.b1, self.b2, self.eps, c1, c2]
	}

	/// The updated value from the operation's inputs at one position, in input order.
	pub fn apply(&self, args: &[f32; 3]) -> f32 {
		let [a, b, c] = *args;
		match self.kind {
			OpKind::Momentum => repops::momentum(a, b, self.mu),
			OpKind::SgdStep => repops::sgd_step(a, b, self.lr),
			OpKind::AdamM => repops::adam_m(a, b, self.b1),
			OpKind::AdamV => repops::adam_v(a, b, self.b2),
			_ => repops::adam_step(a, b, c, self.lr, self.eps, self.corrections),
		}
	}
}

/// What executing `op` on `inputs` costs, from the tensors themselves (never from the shapes
/// `op` declares, which a caller may set to anything): the values read and written, and the
/// multiply-adds of a product. Tensors whose bits do not match their shape are refused.
pub fn execution_cost(
	op: &Op,
	inputs: &[repops::TensorBits],
	labels: &[u32],
) -> Result<(u64, u64), ShapeError> {
	let mut values = labels.len() as u64;
	let mut largest = u64::from(op.rows).saturating_mul(u64::from(op.cols));
	for t in inputs {
		let n = u64::from(t.rows).saturating_mul(u64::from(t.cols));
		if n != t.bits.len() as u64 {
			return Err(ShapeError::Mismatch);
		}
		values = values.saturating_add(n);
		largest = largest.max(n);
	}
	let dims =
		|i: usize| inputs.get(i).map(|t| (u64::from(t.rows), u64::from(t.cols))).unwrap_or((0, 0));
	let (a, b) = (dims(0), dims(1));
	// (output rows, contraction, output columns) of the products; elementwise operations,
	// sums and the loss write at most as many values as their largest input.
	let (m, k, n) = match op.kind {
		OpKind::MatMul => (a.0, a.1, b.1),
		OpKind::MatMulTn => (a.1, a.0, b.1),
		OpKind::MatMulNt => (a.0, a.1, b.0),
		_ => (0, 0, 0),
	};
	let out = largest.max(m.saturating_mul(n));
	Ok((values.saturating_add(out), m.saturating_mul(n).saturating_mul(k)))
}

/// [`execute`] on tensors given as bits, refusing more than [`repops::MAX_CHAIN_ELEMENTS`]
/// values or [`crate::referee::MAX_LEAF_MACS`] multiply-adds, counted from the tensors given
/// ([`execution_cost`]): what the runtime API runs, so one request costs a node at most one
/// leaf's work.
pub fn execute_bits(
	spec: &TrainingSpec,
	op: &Op,
	inputs: &[repops::TensorBits],
	labels: &[u32],
	step: u32,
) -> Result<repops::TensorBits, ShapeError> {
	let (values, macs) = execution_cost(op, inputs, labels)?;
	if values > u64::from(repops::MAX_CHAIN_ELEMENTS) || macs > crate::referee::MAX_LEAF_MACS {
		return Err(ShapeError::TooLarge);
	}
	let matrices = inputs.iter().map(Matrix::try_from).collect::<Result<Vec<Matrix>, _>>()?;
	let refs: Vec<&Matrix> = matrices.iter().collect();
	execute(spec, op, &refs, labels, step).map(|m| repops::TensorBits::from(&m))
}

/// One training step with the reference operators: every operation's output, and the state
/// after the step. `step` is the 0-based step index (Adam's bias correction uses `step + 1`).
pub fn run_step(
	spec: &TrainingSpec,
	program: &StepProgram,
	state: &[Matrix],
	batch: &Matrix,
	labels: &[u32],
	step: u32,
) -> Result<(Vec<Matrix>, Vec<Matrix>), ShapeError> {
	run_step_with(program, state, batch, |op, inputs| execute(spec, op, inputs, labels, step))
}

/// One training step with `execute` running each operation (the reference, or an engine that
/// must give the same bits): every operation's output, and the state after the step.
pub fn run_step_with(
	program: &StepProgram,
	state: &[Matrix],
	batch: &Matrix,
	execute: impl FnMut(&Op, &[&Matrix]) -> Result<Matrix, ShapeError>,
) -> Result<(Vec<Matrix>, Vec<Matrix>), ShapeError> {
	let outputs = run_ops_with(program, state, batch, execute)?;
	let next = program
		.next_state
		.iter()
		.map(|j| outputs.get(*j as usize).cloned())
		.collect::<Option<Vec<Matrix>>>()
		.ok_or(ShapeError::Mismatch)?;
	Ok((outputs, next))
}

/// Every operation's output of one training step, `execute` running each operation (the
/// state after the step is among them: [`StepProgram::take_next_state`]).
pub fn run_ops_with(
	program: &StepProgram,
	state: &[Matrix],
	batch: &Matrix,
	mut execute: impl FnMut(&Op, &[&Matrix]) -> Result<Matrix, ShapeError>,
) -> Result<Vec<Matrix>, ShapeError> {
	let mut outputs: Vec<Matrix> = Vec::with_capacity(program.ops.len());
	for op in &program.ops {
		let inputs = op
			.inputs
			.iter()
			.map(|s| match s {
				Source::State(i) => state.get(*i as usize),
				Source::Batch => Some(batch),
				Source::Op(j) => outputs.get(*j as usize),
			})
			.collect::<Option<Vec<&Matrix>>>()
			.ok_or(ShapeError::Mismatch)?;
		let out = execute(op, &inputs)?;
		outputs.push(out);
	}
	Ok(outputs)
}

impl StepProgram {
	/// The first layer's weight gradient `Xᵀ · dZ`: the product whose every element reads a
	/// column of the batch (every sample of it), the largest element leaf of a step.
	pub fn batch_column_product(&self) -> Option<u32> {
		let j = self.ops.iter().position(|op| {
			op.kind == OpKind::MatMulTn && op.inputs.first() == Some(&Source::Batch)
		})?;
		u32::try_from(j).ok()
	}

	/// The values of the state (every tensor's rows times columns).
	pub fn state_values(&self) -> u64 {
		self.state_shapes.iter().fold(0u64, |acc, (r, c)| {
			acc.saturating_add(u64::from(*r).saturating_mul(u64::from(*c)))
		})
	}

	/// The state after the step, moved out of the step's `outputs` ([`run_ops_with`]) instead
	/// of copied: a trainer that keeps only the state saves a copy of it per step. The moved
	/// outputs are left empty (`0 x 0`).
	pub fn take_next_state(&self, outputs: &mut [Matrix]) -> Result<Vec<Matrix>, ShapeError> {
		let empty = || Matrix { rows: 0, cols: 0, data: Vec::new() };
		let mut next = Vec::with_capacity(self.next_state.len());
		for (n, j) in self.next_state.iter().enumerate() {
			// A tensor produced by an operation that an earlier one already took is copied.
			let earlier = self.next_state.get(..n).and_then(|e| e.iter().position(|k| k == j));
			let m = match earlier {
				Some(e) => next.get(e).cloned(),
				None => outputs.get_mut(*j as usize).map(|o| core::mem::replace(o, empty())),
			};
			next.push(m.ok_or(ShapeError::Mismatch)?);
		}
		Ok(next)
	}
}

#[cfg(test)]
#[allow(
	clippy::unwrap_used,
	clippy::expect_used,
	clippy::arithmetic_side_effects,
	clippy::indexing_slicing
)]
mod tests {
	use super::*;
	use crate::repops::SplitMix64;

	use sp_core::H256;

	fn sgd() -> Optimizer {
		Optimizer::sgd(0.1, 0.9)
	}

	fn adam() -> Optimizer {
		Optimizer::adam(0.01)
	}

	/// Attack: the runtime API counted the output by the shape the caller declared, so an
	/// operation declared `0 x 0` over two 512 x 1024 inputs (a quarter of a giga
	/// multiply-add) passed the size check and took a node's CPU for seconds per request.
	#[test]
	fn execute_bits_counts_the_work_of_the_tensors_given_not_the_declared_shape() {
		let t = |rows: u32, cols: u32| repops::TensorBits {
			rows,
			cols,
			bits: alloc::vec![0; (rows * cols) as usize],
		};
		let spec = TrainingSpec::example_mlp(&[4, 2], sgd(), 4);
		let lie = Op { kind: OpKind::MatMul, inputs: alloc::vec![], rows: 0, cols: 0 };
		let (a, b) = (t(512, 1024), t(1024, 512));
		assert_eq!(
			execution_cost(&lie, &[a.clone(), b.clone()], &[]),
			Ok((2 * 512 * 1024 + 512 * 1024, 512 * 1024 * 512))
		);
		assert_eq!(execute_bits(&spec, &lie, &[a, b], &[], 0), Err(ShapeError::TooLarge));
		// Bits that do not match the shape are refused before anything runs.
		let bad = repops::TensorBits { rows: 1000, cols: 1000, bits: alloc::vec![0; 4] };
		assert_eq!(
			execute_bits(&spec, &lie, &[bad.clone(), bad], &[], 0),
			Err(ShapeError::Mismatch)
		);
		// A product within one leaf runs.
		let ok = Op { kind: OpKind::MatMul, inputs: alloc::vec![], rows: 64, cols: 32 };
		assert!(execute_bits(&spec, &ok, &[t(64, 128), t(128, 32)], &[], 0).is_ok());
	}

	#[test]
	fn every_initial_value_is_the_initial_states_own() {
		for spec in [
			TrainingSpec::example_mlp(&[6, 5, 3], sgd(), 4),
			TrainingSpec::example_mlp(&[7, 4, 4, 2], adam(), 4),
		] {
			let program = step_program(&spec).unwrap();
			let state = initial_state(&spec, &program).unwrap();
			assert!(state.len() <= MAX_STATE_TENSORS as usize);
			for (i, m) in state.iter().enumerate() {
				for r in 0..m.rows {
					for c in 0..m.cols {
						let want = m.row(r).unwrap()[c as usize].to_bits();
						assert_eq!(initial_value(&spec, &program, i as u32, (r, c)), Some(want));
					}
				}
				assert_eq!(initial_value(&spec, &program, i as u32, (m.rows, 0)), None);
			}
			assert_eq!(initial_value(&spec, &program, state.len() as u32, (0, 0)), None);
		}
	}

	/// A separable toy task: the label is the index of the largest of the first `classes`
	/// features.
	fn batch(seed: u64, rows: u32, features: u32, classes: u32) -> (Matrix, Vec<u32>) {
		let mut rng = SplitMix64::new(seed);
		let data: Vec<f32> = (0..rows * features).map(|_| rng.next_unit() * 2.0 - 1.0).collect();
		let labels = data
			.chunks(features as usize)
			.map(|r| {
				(0..classes as usize).max_by(|a, b| r[*a].partial_cmp(&r[*b]).unwrap()).unwrap()
					as u32
			})
			.collect();
		(Matrix::new(rows, features, data).unwrap(), labels)
	}

	#[test]
	fn the_digits_program_has_the_expected_operations() {
		let s = TrainingSpec::example_digits(H256::zero());
		let p = step_program(&s).unwrap();
		use OpKind::*;
		let kinds: Vec<OpKind> = p.ops.iter().map(|o| o.kind).collect();
		assert_eq!(
			kinds,
			vec![
				MatMul,
				BiasAdd,
				Relu,
				MatMul,
				BiasAdd,
				SoftmaxXent,
				Mean,
				SoftmaxXentBackward,
				MatMulTn,
				ColSum,
				MatMulNt,
				ReluBackward,
				MatMulTn,
				ColSum,
				Momentum,
				SgdStep,
				Momentum,
				SgdStep,
				Momentum,
				SgdStep,
				Momentum,
				SgdStep,
			]
		);
		assert_eq!(
			p.state_shapes,
			vec![(64, 32), (1, 32), (32, 10), (1, 10), (64, 32), (1, 32), (32, 10), (1, 10)]
		);
		assert_eq!(p.next_state.len(), 8);
		let adam_p = step_program(&TrainingSpec::example_mlp(&[64, 32, 10], adam(), 32)).unwrap();
		assert_eq!(adam_p.state_shapes.len(), 12);
		assert_eq!(adam_p.next_state.len(), 12);
		let mut bad = s.clone();
		bad.batch_size = 0;
		assert_eq!(step_program(&bad), Err(SpecError::BadBatchSize));
	}

	#[test]
	fn every_operation_reads_only_earlier_outputs_and_matches_its_shape() {
		for widths in [&[4u32, 3][..], &[8, 16, 8, 3], &[5, 7, 7, 7, 2]] {
			for opt in [sgd(), adam()] {
				let s = TrainingSpec::example_mlp(widths, opt, 6);
				let p = step_program(&s).unwrap();
				let state = initial_state(&s, &p).unwrap();
				let (x, y) = batch(1, 6, widths[0], *widths.last().unwrap());
				let (outs, next) = run_step(&s, &p, &state, &x, &y, 0).unwrap();
				for (j, op) in p.ops.iter().enumerate() {
					for src in &op.inputs {
						if let Source::Op(i) = src {
							assert!((*i as usize) < j);
						}
					}
					assert_eq!((outs[j].rows, outs[j].cols), (op.rows, op.cols));
				}
				assert_eq!(next.len(), state.len());
				for (a, b) in next.iter().zip(&state) {
					assert_eq!((a.rows, a.cols), (b.rows, b.cols));
				}
			}
		}
	}

	/// Checks the program's gradients for a 5-6-`outputs` ReLU MLP `s` (SGD) on batch `(x, y)`
	/// of 8 rows against central differences of the mean of `row_loss(output row, label)`,
	/// recomputed in f64, to a float tolerance.
	fn check_gradients(
		s: &TrainingSpec,
		(x, y): (&Matrix, &[u32]),
		outputs: usize,
		row_loss: impl Fn(&[f64], u32) -> f64,
	) {
		let p = step_program(s).unwrap();
		let state = initial_state(s, &p).unwrap();
		let (outs, _) = run_step(s, &p, &state, x, y, 0).unwrap();
		// Gradients in state order: the first operand of each Momentum op.
		let grads: Vec<&Matrix> = p
			.ops
			.iter()
			.filter(|o| o.kind == OpKind::Momentum)
			.map(|o| match o.inputs[1] {
				Source::Op(j) => &outs[j as usize],
				_ => unreachable!(),
			})
			.collect();
		let loss = |params: &[Vec<f64>]| -> f64 {
			let (w1, b1, w2, b2) = (&params[0], &params[1], &params[2], &params[3]);
			let mut total = 0.0;
			for r in 0..8 {
				let xr: Vec<f64> = x.row(r).unwrap().iter().map(|v| *v as f64).collect();
				let h: Vec<f64> = (0..6)
					.map(|j| ((0..5).map(|k| xr[k] * w1[k * 6 + j]).sum::<f64>() + b1[j]).max(0.0))
					.collect();
				let z: Vec<f64> = (0..outputs)
					.map(|j| (0..6).map(|k| h[k] * w2[k * outputs + j]).sum::<f64>() + b2[j])
					.collect();
				total += row_loss(&z, y[r as usize]);
			}
			total / 8.0
		};
		let base: Vec<Vec<f64>> =
			state[..4].iter().map(|m| m.data.iter().map(|v| *v as f64).collect()).collect();
		for (t, g) in grads.iter().enumerate() {
			for i in 0..g.data.len() {
				let h = 1e-5;
				let mut plus = base.clone();
				plus[t][i] += h;
				let mut minus = base.clone();
				minus[t][i] -= h;
				let numeric = (loss(&plus) - loss(&minus)) / (2.0 * h);
				let analytic = g.data[i] as f64;
				assert!(
					(numeric - analytic).abs() <= 1e-4 + 1e-3 * numeric.abs(),
					"tensor {t} element {i}: numeric {numeric} vs program {analytic}"
				);
			}
		}
	}

	/// The backward program computes the true gradient of the softmax cross-entropy.
	#[test]
	fn gradients_match_finite_differences() {
		let s = TrainingSpec::example_mlp(&[5, 6, 4], sgd(), 8);
		let (x, y) = batch(3, 8, 5, 4);
		check_gradients(&s, (&x, &y), 4, |z, label| {
			let m = z.iter().cloned().fold(f64::MIN, f64::max);
			let lse = z.iter().map(|v| (v - m).exp()).sum::<f64>().ln() + m;
			lse - z[label as usize]
		});
	}

	/// The mean loss over 150 steps of `s` on the batches `batch_of(step)`: the mean of the
	/// first ten and of the last ten.
	fn loss_trend(s: &TrainingSpec, batch_of: impl Fn(u64) -> (Matrix, Vec<u32>)) -> (f32, f32) {
		let p = step_program(s).unwrap();
		let mut state = initial_state(s, &p).unwrap();
		let mean_op = p.ops.iter().position(|o| o.kind == OpKind::Mean).unwrap();
		let mut losses = vec![];
		for step in 0..150 {
			let (x, y) = batch_of(1000 + step as u64);
			let (outs, next) = run_step(s, &p, &state, &x, &y, step).unwrap();
			losses.push(outs[mean_op].data[0]);
			state = next;
		}
		(losses[..10].iter().sum::<f32>() / 10.0, losses[140..].iter().sum::<f32>() / 10.0)
	}

	#[test]
	fn training_lowers_the_loss_with_both_optimizers() {
		for opt in [sgd(), adam()] {
			let s = TrainingSpec::example_mlp(&[8, 16, 4], opt, 32);
			let (first, last) = loss_trend(&s, |seed| batch(seed, 32, 8, 4));
			assert!(last < first * 0.7, "{opt:?}: loss {first} -> {last}");
		}
	}

	#[test]
	fn a_step_is_a_pure_function_of_its_inputs() {
		let s = TrainingSpec::example_mlp(&[8, 16, 4], adam(), 16);
		let p = step_program(&s).unwrap();
		let state = initial_state(&s, &p).unwrap();
		let (x, y) = batch(9, 16, 8, 4);
		let a = run_step(&s, &p, &state, &x, &y, 3).unwrap();
		let b = run_step(&s, &p, &state, &x, &y, 3).unwrap();
		let bits = |m: &Vec<Matrix>| {
			m.iter().flat_map(|t| t.data.iter().map(|v| v.to_bits())).collect::<Vec<_>>()
		};
		assert_eq!(bits(&a.0), bits(&b.0));
		assert_eq!(bits(&a.1), bits(&b.1));
		// Adam's step index matters.
		let c = run_step(&s, &p, &state, &x, &y, 4).unwrap();
		assert_ne!(bits(&a.1), bits(&c.1));
	}

	#[test]
	fn the_next_state_moved_out_of_the_outputs_is_the_copied_one() {
		for opt in [sgd(), adam()] {
			let s = TrainingSpec::example_mlp(&[8, 16, 4], opt, 16);
			let p = step_program(&s).unwrap();
			let state = initial_state(&s, &p).unwrap();
			let (x, y) = batch(9, 16, 8, 4);
			let (_, want) = run_step(&s, &p, &state, &x, &y, 2).unwrap();
			let mut outputs =
				run_ops_with(&p, &state, &x, |op, inputs| execute(&s, op, inputs, &y, 2)).unwrap();
			assert_eq!(p.take_next_state(&mut outputs).unwrap(), want);
			// Taken, not copied.
			for j in &p.next_state {
				assert!(outputs[*j as usize].data.is_empty());
			}
		}
	}

	/// A regression batch: targets of [`crate::task::synthetic_regression`], as `f32` bits.
	fn regression_batch(seed: u64, rows: u32, features: u32) -> (Matrix, Vec<u32>) {
		let data = crate::task::synthetic_regression(seed, rows, features);
		let x = data.iter().flat_map(|(x, _)| x.iter().copied()).collect();
		(Matrix::new(rows, features, x).unwrap(), data.iter().map(|(_, t)| *t).collect())
	}

	#[test]
	fn squared_error_and_its_gradient_are_the_textbook_ones() {
		let y = Matrix::new(3, 1, vec![1.5, -2.0, 0.25]).unwrap();
		let t: Vec<u32> = [0.5f32, 1.0, 0.25].iter().map(|v| v.to_bits()).collect();
		assert_eq!(repops::squared_error(&y, &t).unwrap().data, vec![1.0, 9.0, 0.0]);
		assert_eq!(
			repops::squared_error_backward(&y, &t).unwrap().data,
			vec![2.0 / 3.0, -2.0, 0.0]
		);
		// One output per row, one target per row.
		let wide = Matrix::new(3, 2, vec![0.0; 6]).unwrap();
		assert_eq!(repops::squared_error(&wide, &t), Err(ShapeError::Mismatch));
		assert_eq!(repops::squared_error(&y, &t[..2]), Err(ShapeError::Mismatch));
	}

	#[test]
	fn a_regression_has_one_output_and_a_dataset_of_targets() {
		let s = TrainingSpec::example_regression(&[5, 6, 1], adam(), 8);
		let p = step_program(&s).unwrap();
		let kinds: Vec<OpKind> = p.ops.iter().map(|o| o.kind).collect();
		assert!(
			kinds.contains(&OpKind::SquaredError) && kinds.contains(&OpKind::SquaredErrorBackward)
		);
		assert!(!kinds.contains(&OpKind::SoftmaxXent));
		// Two outputs, or a dataset of classes: refused.
		let two = TrainingSpec::example_regression(&[5, 6, 2], adam(), 8);
		assert_eq!(two.validate(), Err(SpecError::DatasetShapeMismatch));
		let mut classes = s.clone();
		classes.dataset.classes = 1;
		assert_eq!(classes.validate(), Err(SpecError::DatasetShapeMismatch));
		// A classification on a dataset of targets (0 classes): refused.
		let mut softmax = s.clone();
		softmax.loss = crate::task::Loss::SoftmaxCrossEntropy;
		assert_eq!(softmax.validate(), Err(SpecError::TooFewClasses));
	}

	/// The regression's backward program computes the true gradient of the mean squared
	/// error.
	#[test]
	fn regression_gradients_match_finite_differences() {
		let s = TrainingSpec::example_regression(&[5, 6, 1], sgd(), 8);
		let (x, y) = regression_batch(3, 8, 5);
		check_gradients(&s, (&x, &y), 1, |z, target| {
			let d = z[0] - f32::from_bits(target) as f64;
			d * d
		});
	}

	#[test]
	fn regression_training_lowers_the_squared_error() {
		for opt in [sgd(), adam()] {
			let s = TrainingSpec::example_regression(&[8, 16, 1], opt, 32);
			let (first, last) = loss_trend(&s, |seed| regression_batch(seed, 32, 8));
			assert!(last < first * 0.5, "{opt:?}: squared error {first} -> {last}");
		}
	}
}
