//! The on-chain referee of one disputed operation (PROTOCOL.md, "Dispute game", steps 3 and 5).
//!
//! Once the operator bisection inside step `t` has found the first operation `j` whose
//! op-trace leaf the two sides dispute (they agree on the link `a_{j-1}`, so on every earlier
//! output), anyone may hand the chain [`OpEvidence`]: the earlier outputs' hashes
//! `o_0 .. o_{j-1}`, the pre-state's tensor hashes, the operation's input tensors and the
//! batch's samples. [`operation_output`] checks every piece against what both sides agreed
//! on (the chain of links back to `h_t`, the state root `h_t`, the dataset root), runs the
//! reference operator ([`crate::program::execute`]) and returns the true output hash; the
//! side whose `o_j` differs loses.
//!
//! When the sides agree on every operation and still differ on `h_{t+1}`, the dispute is
//! about assembling the next state from the outputs: [`post_state`] recomputes `h_{t+1}`
//! from the agreed outputs.
//!
//! The chain executes at most [`MAX_LEAF_ELEMENTS`] values and [`MAX_LEAF_MACS`]
//! multiply-adds in one leaf (its benchmarked weight is taken at those maxima); a larger
//! operation is refused with [`RefereeError::TooLarge`] (the finer, element-level descent of
//! PROTOCOL.md step 4 is what would lift this bound).

use crate::{
	commit::{
		chain, op_trace, sample_proof, state_hash, state_hash_of, tensor_hash, verify_sample_proof,
		OpTrace, SampleProof,
	},
	program::{self, Op, OpKind, Source, StepProgram},
	repops::{self, Matrix, ShapeError, TensorBits},
	task::TrainingSpec,
};
use alloc::vec::Vec;
use codec::{Decode, DecodeWithMemTracking, Encode};
use scale_info::TypeInfo;
use sp_core::H256;

/// The most values (inputs, output and batch samples together) one leaf executes on chain.
pub const MAX_LEAF_ELEMENTS: u64 = 1 << 20;

/// The most multiply-adds one leaf executes on chain (a matmul's `rows * cols * K`).
pub const MAX_LEAF_MACS: u64 = 1 << 24;

/// What a party hands the chain to settle a disputed operation `j`.
#[derive(Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, Debug, Default)]
pub struct OpEvidence {
	/// `o_0 .. o_{j-1}`: the hashes of every earlier output of the step (for the next-state
	/// assembly, all of them).
	pub outputs: Vec<H256>,
	/// The hashes of the pre-state's tensors, in state order (empty when the operation
	/// reads no state tensor).
	pub state: Vec<H256>,
	/// The operation's input tensors in its input order, the batch left out.
	pub inputs: Vec<TensorBits>,
	/// The batch's samples in batch order, each proven against the dataset root (empty
	/// unless the operation reads the batch or its labels).
	pub samples: Vec<SampleProof>,
}

/// Why the chain cannot rule on a leaf with the evidence given.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RefereeError {
	/// The spec has no step program.
	BadSpec,
	/// No operation has that index.
	NoSuchOperation,
	/// The earlier outputs do not chain from the pre-state to the agreed link.
	BrokenChain,
	/// The state tensors' hashes do not make the agreed pre-state.
	WrongState,
	/// An input tensor does not hash to what the agreed trace says it is, or has the wrong
	/// shape, or inputs are missing or extra.
	WrongInput,
	/// The samples are not the step's batch under the dataset root.
	WrongBatch,
	/// The operation is larger than one leaf executes.
	TooLarge,
	/// The reference operator refused the inputs (a label out of range, mismatched shapes).
	Execution(ShapeError),
}

impl From<ShapeError> for RefereeError {
	fn from(e: ShapeError) -> Self {
		Self::Execution(e)
	}
}

/// The shape of a source tensor of `program`'s operations.
pub(crate) fn source_shape(
	spec: &TrainingSpec,
	program: &StepProgram,
	source: &Source,
) -> (u32, u32) {
	match source {
		Source::State(i) => program.state_shapes.get(*i as usize).copied().unwrap_or((0, 0)),
		Source::Batch => (spec.batch_size, spec.dataset.features),
		Source::Op(k) => program.ops.get(*k as usize).map(|o| (o.rows, o.cols)).unwrap_or((0, 0)),
	}
}

fn elements((rows, cols): (u32, u32)) -> u64 {
	u64::from(rows).saturating_mul(u64::from(cols))
}

/// Whether the operation reads the batch's samples (its inputs or its labels).
pub fn reads_samples(op: &Op) -> bool {
	op.inputs.contains(&Source::Batch)
		|| matches!(
			op.kind,
			OpKind::SoftmaxXent
				| OpKind::SoftmaxXentBackward
				| OpKind::SquaredError
				| OpKind::SquaredErrorBackward
		)
}

/// What executing operation `op` on chain costs: values handled (inputs, output, samples)
/// and multiply-adds.
pub fn op_cost(spec: &TrainingSpec, program: &StepProgram, op: &Op) -> (u64, u64) {
	let shape =
		|i: usize| op.inputs.get(i).map(|s| source_shape(spec, program, s)).unwrap_or((0, 0));
	let out = elements((op.rows, op.cols));
	let mut values =
		(0..op.inputs.len()).fold(out, |acc, i| acc.saturating_add(elements(shape(i))));
	if reads_samples(op) {
		values = values.saturating_add(elements((spec.batch_size, spec.dataset.features)));
	}
	if let Some((_, terms)) = op.kind.element_terms(u64::from(spec.batch_size)) {
		return (values, out.saturating_mul(terms));
	}
	let contraction = match op.kind {
		OpKind::MatMul | OpKind::MatMulNt => shape(0).1,
		OpKind::MatMulTn => shape(0).0,
		_ => 1,
	};
	(values, out.saturating_mul(u64::from(contraction)))
}

/// How much one whole-operation leaf may execute.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LeafBound {
	/// Values handled (inputs, output, samples).
	pub values: u64,
	/// Multiply-adds.
	pub macs: u64,
}

impl LeafBound {
	/// The most the chain executes: [`MAX_LEAF_ELEMENTS`] and [`MAX_LEAF_MACS`], what the
	/// leaf's weight is benchmarked at. A runtime may choose less (more operations then go
	/// through the element descent), never more.
	pub const CHAIN: Self = Self { values: MAX_LEAF_ELEMENTS, macs: MAX_LEAF_MACS };

	/// Whether an operation of `cost` ([`op_cost`]) fits.
	pub fn admits(&self, (values, macs): (u64, u64)) -> bool {
		values <= self.values.min(MAX_LEAF_ELEMENTS) && macs <= self.macs.min(MAX_LEAF_MACS)
	}
}

/// Whether the chain can execute operation `op` in one leaf.
pub fn fits_leaf(spec: &TrainingSpec, program: &StepProgram, op: &Op) -> bool {
	LeafBound::CHAIN.admits(op_cost(spec, program, op))
}

/// Checks that `outputs` chain from `pre_state` to `link`.
fn check_chain(pre_state: &H256, link: &H256, outputs: &[H256]) -> Result<(), RefereeError> {
	let end = outputs.iter().fold(*pre_state, |prev, o| chain(&prev, o));
	if end == *link {
		Ok(())
	} else {
		Err(RefereeError::BrokenChain)
	}
}

/// Checks what every leaf takes as agreed: `outputs` (`o_0 .. o_{j-1}`) chain from
/// `pre_state` to `link`, and, when `op` reads a state tensor, the tensor hashes `state` make
/// `pre_state`.
pub(crate) fn check_agreed(
	program: &StepProgram,
	op: &Op,
	j: u32,
	pre_state: &H256,
	link: &H256,
	outputs: &[H256],
	state: &[H256],
) -> Result<(), RefereeError> {
	if outputs.len() != j as usize {
		return Err(RefereeError::BrokenChain);
	}
	check_chain(pre_state, link, outputs)?;
	if op.inputs.iter().any(|s| matches!(s, Source::State(_)))
		&& (state.len() != program.state_shapes.len() || state_hash_of(state) != *pre_state)
	{
		return Err(RefereeError::WrongState);
	}
	Ok(())
}

/// Checks that `proof` is sample `index` of the spec's dataset (its root and shape).
pub(crate) fn check_sample(
	spec: &TrainingSpec,
	index: u32,
	proof: &SampleProof,
) -> Result<(), RefereeError> {
	if !verify_sample_proof(&spec.dataset, index, proof) {
		return Err(RefereeError::WrongBatch);
	}
	Ok(())
}

/// The batch of step `step` from `samples`, each checked against the dataset root at the
/// index the seed draws for it: the inputs `X` and the labels.
pub fn verified_batch(
	spec: &TrainingSpec,
	step: u32,
	samples: &[SampleProof],
) -> Result<(Matrix, Vec<u32>), RefereeError> {
	let d = &spec.dataset;
	if samples.len() != spec.batch_size as usize {
		return Err(RefereeError::WrongBatch);
	}
	let indices = repops::batch_indices(spec.seed, step, spec.batch_size, d.samples);
	let mut data = Vec::with_capacity(samples.len().saturating_mul(d.features as usize));
	let mut labels = Vec::with_capacity(samples.len());
	for (i, s) in indices.iter().zip(samples) {
		check_sample(spec, *i, s)?;
		data.extend(s.features.iter().map(|b| f32::from_bits(*b)));
		labels.push(s.label);
	}
	Ok((Matrix::new(spec.batch_size, d.features, data)?, labels))
}

/// The true hash of operation `j`'s output in step `step`, from `evidence` checked against
/// the agreed pre-state hash `pre_state` (`h_t`) and the agreed link `link` (`a_{j-1}`, which
/// is `h_t` itself for `j = 0`).
pub fn operation_output(
	spec: &TrainingSpec,
	step: u32,
	j: u32,
	pre_state: &H256,
	link: &H256,
	evidence: &OpEvidence,
) -> Result<H256, RefereeError> {
	let program = program::step_program(spec).map_err(|_| RefereeError::BadSpec)?;
	let op = program.ops.get(j as usize).ok_or(RefereeError::NoSuchOperation)?;
	// The cheap checks and the size bound come before any tensor is hashed.
	if !fits_leaf(spec, &program, op) {
		return Err(RefereeError::TooLarge);
	}
	check_agreed(&program, op, j, pre_state, link, &evidence.outputs, &evidence.state)?;
	let batch =
		if reads_samples(op) { Some(verified_batch(spec, step, &evidence.samples)?) } else { None };

	let mut given = evidence.inputs.iter();
	let mut owned: Vec<Matrix> = Vec::with_capacity(op.inputs.len());
	for source in &op.inputs {
		let expected = match source {
			Source::Batch => continue,
			Source::State(i) => evidence.state.get(*i as usize),
			Source::Op(k) => evidence.outputs.get(*k as usize),
		}
		.ok_or(RefereeError::WrongInput)?;
		let bits = given.next().ok_or(RefereeError::WrongInput)?;
		let m = Matrix::try_from(bits).map_err(|_| RefereeError::WrongInput)?;
		if (m.rows, m.cols) != source_shape(spec, &program, source) || tensor_hash(&m) != *expected
		{
			return Err(RefereeError::WrongInput);
		}
		owned.push(m);
	}
	if given.next().is_some() {
		return Err(RefereeError::WrongInput);
	}
	let mut owned = owned.iter();
	let inputs = op
		.inputs
		.iter()
		.map(|s| match (s, &batch) {
			(Source::Batch, Some((x, _))) => Some(x),
			(Source::Batch, None) => None,
			_ => owned.next(),
		})
		.collect::<Option<Vec<&Matrix>>>()
		.ok_or(RefereeError::WrongInput)?;
	let labels = batch.as_ref().map(|(_, l)| l.as_slice()).unwrap_or_default();
	let out = program::execute(spec, op, &inputs, labels, step)?;
	Ok(tensor_hash(&out))
}

/// The true `h_{t+1}` when both sides agree on every output of the step: `outputs` are all of
/// them, checked to chain from `pre_state` to the agreed last link `link`.
pub fn post_state(
	spec: &TrainingSpec,
	pre_state: &H256,
	link: &H256,
	outputs: &[H256],
) -> Result<H256, RefereeError> {
	let program = program::step_program(spec).map_err(|_| RefereeError::BadSpec)?;
	if outputs.len() != program.ops.len() {
		return Err(RefereeError::BrokenChain);
	}
	check_chain(pre_state, link, outputs)?;
	let tensors = program
		.next_state
		.iter()
		.map(|k| outputs.get(*k as usize).copied())
		.collect::<Option<Vec<H256>>>()
		.ok_or(RefereeError::BrokenChain)?;
	Ok(state_hash_of(&tensors))
}

/// One step run with the reference operators, kept to answer a dispute over it: what a
/// party needs to commit its op trace and to hand the chain the evidence of any operation.
#[derive(Clone, Debug)]
pub struct StepRun {
	/// The step program.
	pub program: StepProgram,
	/// The state before the step.
	pub state: Vec<Matrix>,
	/// The batch's samples with their proofs, in batch order.
	pub samples: Vec<SampleProof>,
	/// Every operation's output.
	pub outputs: Vec<Matrix>,
	/// The state after the step.
	pub next: Vec<Matrix>,
}

impl StepRun {
	/// Runs step `step` of `spec` from `state` on the batch the seed draws from `dataset`
	/// (whose root must be the spec's), with the reference operators.
	pub fn new(
		spec: &TrainingSpec,
		step: u32,
		state: Vec<Matrix>,
		dataset: &[(Vec<f32>, u32)],
	) -> Result<Self, RefereeError> {
		Self::with_fault(spec, step, state, dataset, None)
	}

	/// [`StepRun::new`], but with a deliberate fault at operation `fault` (if any): `0.25` is
	/// added to every value of its output, and the rest of the step goes on from the altered
	/// value, as a consistent liar's would. For demonstrations and tests of the dispute game.
	pub fn with_fault(
		spec: &TrainingSpec,
		step: u32,
		state: Vec<Matrix>,
		dataset: &[(Vec<f32>, u32)],
		fault: Option<u32>,
	) -> Result<Self, RefereeError> {
		let program = program::step_program(spec).map_err(|_| RefereeError::BadSpec)?;
		let indices = repops::batch_indices(spec.seed, step, spec.batch_size, spec.dataset.samples);
		let samples = indices
			.iter()
			.map(|i| sample_proof(&spec.dataset, dataset, *i))
			.collect::<Option<Vec<_>>>()
			.ok_or(RefereeError::WrongBatch)?;
		let (batch, labels) = verified_batch(spec, step, &samples)?;
		let mut j = 0u32;
		let (outputs, next) = program::run_step_with(&program, &state, &batch, |op, inputs| {
			let mut out = program::execute(spec, op, inputs, &labels, step)?;
			if fault == Some(j) {
				Fault::alter(&mut out);
			}
			j = j.saturating_add(1);
			Ok(out)
		})?;
		Ok(Self { program, state, samples, outputs, next })
	}

	/// The op trace of this run, with `outputs` as they are (a test may alter one first).
	pub fn op_trace(&self) -> OpTrace {
		op_trace(&state_hash(&self.state), self.outputs.iter().map(tensor_hash).collect())
	}

	/// The evidence for operation `j`.
	pub fn evidence(&self, j: u32) -> Option<OpEvidence> {
		let op = self.program.ops.get(j as usize)?;
		let earlier = self.outputs.get(..j as usize)?;
		let inputs = op
			.inputs
			.iter()
			.filter_map(|s| match s {
				Source::Batch => None,
				Source::State(i) => Some(self.state.get(*i as usize).map(TensorBits::from)),
				Source::Op(k) => Some(earlier.get(*k as usize).map(TensorBits::from)),
			})
			.collect::<Option<Vec<_>>>()?;
		let reads_state = op.inputs.iter().any(|s| matches!(s, Source::State(_)));
		Some(OpEvidence {
			outputs: earlier.iter().map(tensor_hash).collect(),
			state: if reads_state {
				self.state.iter().map(tensor_hash).collect()
			} else {
				Vec::new()
			},
			inputs,
			samples: if reads_samples(op) { self.samples.clone() } else { Vec::new() },
		})
	}

	/// Every output's hash: the evidence of the next-state assembly.
	pub fn output_hashes(&self) -> Vec<H256> {
		self.outputs.iter().map(tensor_hash).collect()
	}
}

/// A deliberate fault in a training run: operation `op` of step `step` is altered
/// ([`StepRun::with_fault`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Fault {
	/// The step.
	pub step: u32,
	/// The operation.
	pub op: u32,
}

/// A whole training run with the reference operators, every step kept.
#[derive(Clone, Debug)]
pub struct TraceRun {
	/// `h_0 ..= h_N`.
	pub states: Vec<H256>,
	/// The run of every step.
	pub steps: Vec<StepRun>,
}

impl Fault {
	/// What the fault does to its operation's output: adds `0.25` to every value (with the
	/// RepOps addition, so every engine alters the same bits).
	pub fn alter(out: &mut Matrix) {
		out.data.iter_mut().for_each(|v| *v = repops::add(*v, 0.25));
	}
}

impl TraceRun {
	/// Trains `spec` on `dataset` from initialization with the reference operators, keeping
	/// every step (memory grows with the steps: for small tasks, tests and demonstrations),
	/// with `fault` injected if given.
	pub fn new(
		spec: &TrainingSpec,
		dataset: &[(Vec<f32>, u32)],
		fault: Option<Fault>,
	) -> Result<Self, RefereeError> {
		let program = program::step_program(spec).map_err(|_| RefereeError::BadSpec)?;
		let mut state = program::initial_state(spec, &program)?;
		let mut states = alloc::vec![state_hash(&state)];
		let mut steps = Vec::with_capacity(spec.steps as usize);
		for t in 0..spec.steps {
			let op = fault.filter(|f| f.step == t).map(|f| f.op);
			let run = StepRun::with_fault(spec, t, state, dataset, op)?;
			state = run.next.clone();
			states.push(state_hash(&state));
			steps.push(run);
		}
		Ok(Self { states, steps })
	}
}

#[cfg(test)]
#[path = "referee_tests.rs"]
mod tests;
