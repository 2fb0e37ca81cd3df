//! The settleability rule (PROTOCOL.md, "Settleability"): from a spec alone, every leaf the
//! chain may ever have to decide for it, in values, multiply-adds and encoded bytes with their
//! Merkle proofs, held against one leaf's budget. A spec the chain accepts can always be
//! settled: whatever a liar does, the honest side can hand the chain evidence that fits one
//! extrinsic, and the chain can afford to check it.
//!
//! The leaves of a dispute, and how each is bounded:
//! - **initialization** (the disputed transition is the first): the runtime recomputes the
//!   whole initial state's hash when it has at most [`repops::MAX_CHAIN_ELEMENTS`] values;
//!   a larger state is decided element by element ([`crate::market::InitGame`]): the sides
//!   reveal their state's tensor hashes (at most [`MAX_STATE_TENSORS`]), descend to one line
//!   of one tensor (at most [`MAX_LINE`] values) and the chain computes one value;
//! - **a whole operation** ([`crate::referee::operation_output`]): inputs, output and batch
//!   within [`LeafBound`], and its [`OpEvidence`] within the byte budget;
//! - **one element** of an operation too large to be a whole leaf
//!   ([`crate::descent::element_value`]): at most [`MAX_ELEMENT_VALUES`] values, and its
//!   [`crate::descent::ElementEvidence`] within the byte budget;
//! - **the next state's assembly**: the step's output hashes, a few kilobytes.
//!
//! [`plan`] says how the chain settles one operation (the pallet routes a disputed operation
//! by it); [`check`] applies the rule to a whole spec (`TaskEscrow::submit` refuses a spec it
//! rejects; the worker and dapps can call it before posting). Both use the same encoded-size
//! bounds, which [`whole_bytes`] and [`element_bytes`] compute from the shapes: each is at
//! least the SCALE length of the evidence an honest side builds (tested against real
//! evidence).
//!
//! [`OpEvidence`]: crate::referee::OpEvidence

use crate::{
	descent::{
		self, batch_rows, element_cost, element_lines, term_cost, term_positions, Axis,
		MAX_ELEMENT_PROOFS, MAX_ELEMENT_VALUES, MAX_LINE,
	},
	program::{step_program, Op, Source, StepProgram, MAX_STATE_TENSORS},
	referee::{op_cost, reads_samples, source_shape, LeafBound},
	task::TrainingSpec,
};

/// The bytes of an extrinsic around its evidence: the signature, the signed extensions, the
/// call's indices and the dispute id (well under this).
pub const EXTRINSIC_OVERHEAD: u64 = 512;

/// What one leaf may cost the chain.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LeafBudget {
	/// The largest operation the chain executes whole ([`LeafBound`]); larger ones are
	/// settled element by element.
	pub whole: LeafBound,
	/// The most encoded bytes one leaf's extrinsic may have (its evidence, the proofs
	/// included, and [`EXTRINSIC_OVERHEAD`]).
	pub bytes: u64,
	/// The reference speed of an honest party's machine: the work ([`step_work`]: values
	/// handled plus multiply-adds) it does per block. A stage that makes a party recompute
	/// steps (committing a segment's or a step's trace) gets this many blocks more than a
	/// round per unit of work ([`recompute_blocks`]).
	pub work_per_block: u64,
	/// The most blocks a recomputation may be given: a spec whose segment of
	/// `checkpoint_interval` steps would need more is refused.
	pub max_recompute_blocks: u64,
}

impl LeafBudget {
	/// The chain's budget: [`LeafBound::CHAIN`] and 1.5 MiB, two fifths of the 3.75 MiB an
	/// ordinary extrinsic may fill of a block (the runtime's block length).
	///
	/// The reference speed is 10^9 units of work a second over six-second blocks, several
	/// times below what the worker's engine does on two cores (docs/BENCHMARKS.md), and a
	/// recomputation may be given a day (14 400 blocks).
	pub const CHAIN: Self = Self {
		whole: LeafBound::CHAIN,
		bytes: 3 << 19,
		work_per_block: 6_000_000_000,
		max_recompute_blocks: 14_400,
	};
}

/// How the chain settles one operation of a step.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Plan {
	/// It executes the whole operation ([`crate::referee::operation_output`]).
	Whole,
	/// The sides descend to one output element, which it computes
	/// ([`crate::descent::element_value`]).
	Elements,
	/// The sides descend to one output element of a product, then, one element being too
	/// large for a leaf (a column of a large batch), to one term of its sum, which it computes
	/// ([`crate::descent::term_value`]).
	Terms,
}

/// Why a spec cannot be settled on chain: the first leaf that does not fit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Unsettleable {
	/// The spec has no step program (see [`TrainingSpec::validate`]).
	BadSpec,
	/// The initial state cannot be decided element by element: it has `tensors` tensors
	/// (more than [`MAX_STATE_TENSORS`]) or a line longer than [`MAX_LINE`].
	InitialState { tensors: u32 },
	/// Operation `op` is too large to execute whole, and one of its elements reads `values`
	/// values (more than [`MAX_ELEMENT_VALUES`]), takes `bytes` bytes of evidence (more than
	/// the budget) or `proofs` Merkle proofs (more than [`MAX_ELEMENT_PROOFS`]).
	Element { op: u32, values: u64, bytes: u64, proofs: u64 },
	/// Recomputing a segment of `steps` steps (the checkpoint interval) would take `blocks`
	/// blocks at the reference speed, more than a recomputation may be given.
	Recomputation { steps: u32, blocks: u64 },
}

/// The worst leaves of a settleable spec (what `docs/protocol.md`'s table lists).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Report {
	/// Values in the initial state (the initialization leaf).
	pub initial_values: u64,
	/// Operations settled whole, and element by element.
	pub whole: u32,
	/// Operations settled element by element.
	pub elements: u32,
	/// Operations settled term by term (the products whose one element is too large).
	pub terms: u32,
	/// The largest whole-operation leaf: values, multiply-adds, bytes.
	pub whole_worst: (u64, u64, u64),
	/// The largest element or term leaf: values, bytes.
	pub element_worst: (u64, u64),
	/// The work of one step ([`step_work`]).
	pub step_work: u64,
	/// The blocks a segment's recomputation is given on top of a round.
	pub segment_blocks: u64,
}

/// Bytes of a SCALE compact length prefix (at most; lengths here are below 2^30).
const COMPACT: u64 = 4;
/// Bytes of a hash.
const HASH: u64 = 32;

/// Depth of a binary Merkle tree over `leaves` leaves: the sibling hashes in a proof.
fn depth(leaves: u32) -> u64 {
	u64::from(32u32.saturating_sub(leaves.saturating_sub(1).leading_zeros()))
}

/// Bytes of one sample proven against the dataset root.
fn sample_bytes(spec: &TrainingSpec) -> u64 {
	let features = u64::from(spec.dataset.features).saturating_mul(4);
	let proof = depth(spec.dataset.samples).saturating_mul(HASH);
	(COMPACT + 4 + COMPACT).saturating_add(features).saturating_add(proof)
}

/// Bytes of the earlier outputs' and the state's hashes that both kinds of evidence carry.
fn agreed_bytes(program: &StepProgram, j: u32, op: &Op) -> u64 {
	let state = if op.inputs.iter().any(|s| matches!(s, Source::State(_))) {
		program.state_shapes.len() as u64
	} else {
		0
	};
	(2 * COMPACT).saturating_add(u64::from(j).saturating_add(state).saturating_mul(HASH))
}

/// An upper bound on the encoded length of operation `j`'s whole-operation evidence
/// ([`crate::referee::OpEvidence`]) and its extrinsic.
pub fn whole_bytes(spec: &TrainingSpec, program: &StepProgram, j: u32) -> u64 {
	let Some(op) = program.ops.get(j as usize) else { return u64::MAX };
	let inputs = op.inputs.iter().filter(|s| **s != Source::Batch).fold(COMPACT, |acc, s| {
		let (r, c) = source_shape(spec, program, s);
		let values = u64::from(r).saturating_mul(u64::from(c));
		acc.saturating_add(8 + COMPACT).saturating_add(values.saturating_mul(4))
	});
	let samples = if reads_samples(op) {
		u64::from(spec.batch_size).saturating_mul(sample_bytes(spec))
	} else {
		0
	};
	EXTRINSIC_OVERHEAD
		.saturating_add(agreed_bytes(program, j, op))
		.saturating_add(inputs)
		.saturating_add(COMPACT)
		.saturating_add(samples)
}

/// An upper bound on the encoded length of the evidence for any one element of operation `j`
/// ([`crate::descent::ElementEvidence`]) and its extrinsic. Every element of an operation
/// reads lines of the same lengths, so the first stands for all.
pub fn element_bytes(spec: &TrainingSpec, program: &StepProgram, j: u32) -> u64 {
	let Some(op) = program.ops.get(j as usize) else { return u64::MAX };
	let reads = element_lines(spec, program, op, 0, 0);
	let lines = op.inputs.iter().zip(reads).filter(|(s, _)| **s != Source::Batch);
	let inputs = lines.fold(COMPACT, |acc, (s, lines)| {
		let (r, c) = source_shape(spec, program, s);
		lines.iter().fold(acc, |acc, (axis, _)| {
			let (count, length) = if *axis == Axis::Rows { (r, c) } else { (c, r) };
			// The opening, the values and the proof along the axis.
			let line = (8 + 2 * HASH + 2 * COMPACT)
				.saturating_add(u64::from(length).saturating_mul(4))
				.saturating_add(depth(count).saturating_mul(HASH));
			acc.saturating_add(line)
		})
	});
	let samples =
		(batch_rows(spec, program, op, 0, 0).len() as u64).saturating_mul(sample_bytes(spec));
	EXTRINSIC_OVERHEAD
		.saturating_add(agreed_bytes(program, j, op))
		.saturating_add(inputs)
		.saturating_add(COMPACT)
		.saturating_add(samples)
}

/// An upper bound on the encoded length of the evidence for one term of a product `j`'s
/// element ([`crate::descent::term_evidence`]: a row of each input, the batch's sample) and
/// its extrinsic.
pub fn term_bytes(spec: &TrainingSpec, program: &StepProgram, j: u32) -> u64 {
	let Some(op) = program.ops.get(j as usize) else { return u64::MAX };
	let parts = op.inputs.iter().fold(2 * COMPACT, |acc, s| {
		let part = if *s == Source::Batch {
			sample_bytes(spec)
		} else {
			let (r, c) = source_shape(spec, program, s);
			(8 + 2 * HASH + 2 * COMPACT)
				.saturating_add(u64::from(c).saturating_mul(4))
				.saturating_add(depth(r).saturating_mul(HASH))
		};
		acc.saturating_add(part)
	});
	EXTRINSIC_OVERHEAD.saturating_add(agreed_bytes(program, j, op)).saturating_add(parts)
}

/// How the chain settles operation `j` of `program` under `budget`: whole when its inputs,
/// output, batch and evidence fit one leaf; otherwise element by element, when one element's
/// do; otherwise, for a product, term by term, when one term's do. `Err` when none fits.
pub fn plan(
	spec: &TrainingSpec,
	program: &StepProgram,
	j: u32,
	budget: &LeafBudget,
) -> Result<Plan, Unsettleable> {
	let op = program.ops.get(j as usize).ok_or(Unsettleable::BadSpec)?;
	if budget.whole.admits(op_cost(spec, program, op))
		&& whole_bytes(spec, program, j) <= budget.bytes
	{
		return Ok(Plan::Whole);
	}
	let values = element_cost(spec, program, op, 0, 0);
	let bytes = element_bytes(spec, program, j);
	let proofs = descent::element_proofs(spec, program, op, 0, 0);
	if values <= MAX_ELEMENT_VALUES && bytes <= budget.bytes && proofs <= MAX_ELEMENT_PROOFS {
		return Ok(Plan::Elements);
	}
	// The partial sums both sides reveal are one line long (at most `MAX_LINE`).
	let terms = descent::terms(spec, program, op);
	if term_positions(op, 0, 0, 0).is_some()
		&& terms <= MAX_LINE
		&& term_cost(spec, program, op) <= MAX_ELEMENT_VALUES
		&& term_bytes(spec, program, j) <= budget.bytes
	{
		return Ok(Plan::Terms);
	}
	Err(Unsettleable::Element { op: j, values, bytes, proofs })
}

/// The work of one training step: the values every operation handles and its multiply-adds.
pub fn step_work(spec: &TrainingSpec, program: &StepProgram) -> u64 {
	program.ops.iter().fold(0u64, |acc, op| {
		let (values, macs) = op_cost(spec, program, op);
		acc.saturating_add(values).saturating_add(macs)
	})
}

/// The blocks an honest party is given, on top of a round, to recompute `steps` steps of
/// `spec` at the budget's reference speed (none for work under one block's).
pub fn recompute_blocks(
	spec: &TrainingSpec,
	program: &StepProgram,
	steps: u32,
	budget: &LeafBudget,
) -> u64 {
	step_work(spec, program)
		.saturating_mul(u64::from(steps))
		.checked_div(budget.work_per_block)
		.unwrap_or(u64::MAX)
}

/// The settleability rule: whether the chain can decide every leaf a dispute over `spec` may
/// reach, under `budget`; the worst leaves if so, the first that does not fit if not.
pub fn check(spec: &TrainingSpec, budget: &LeafBudget) -> Result<Report, Unsettleable> {
	let program = step_program(spec).map_err(|_| Unsettleable::BadSpec)?;
	let initial_values = program.state_values();
	let tensors = u32::try_from(program.state_shapes.len()).unwrap_or(u32::MAX);
	let long_line = program.state_shapes.iter().any(|(r, c)| *r > MAX_LINE || *c > MAX_LINE);
	if tensors > MAX_STATE_TENSORS || long_line {
		return Err(Unsettleable::InitialState { tensors });
	}
	let steps = spec.checkpoint_interval.min(spec.steps);
	let segment_blocks = recompute_blocks(spec, &program, steps, budget);
	if segment_blocks > budget.max_recompute_blocks {
		return Err(Unsettleable::Recomputation { steps, blocks: segment_blocks });
	}
	let step_work = step_work(spec, &program);
	let mut report = Report { initial_values, step_work, segment_blocks, ..Default::default() };
	for (j, op) in program.ops.iter().enumerate() {
		let j = u32::try_from(j).map_err(|_| Unsettleable::BadSpec)?;
		match plan(spec, &program, j, budget)? {
			Plan::Whole => {
				let (values, macs) = op_cost(spec, &program, op);
				let bytes = whole_bytes(spec, &program, j);
				let w = &mut report.whole_worst;
				*w = (w.0.max(values), w.1.max(macs), w.2.max(bytes));
				report.whole = report.whole.saturating_add(1);
			}
			Plan::Elements => {
				let values = element_cost(spec, &program, op, 0, 0);
				let bytes = element_bytes(spec, &program, j);
				let w = &mut report.element_worst;
				*w = (w.0.max(values), w.1.max(bytes));
				report.elements = report.elements.saturating_add(1);
			}
			Plan::Terms => {
				let values = term_cost(spec, &program, op);
				let bytes = term_bytes(spec, &program, j);
				let w = &mut report.element_worst;
				*w = (w.0.max(values), w.1.max(bytes));
				report.terms = report.terms.saturating_add(1);
			}
		}
	}
	Ok(report)
}

#[cfg(test)]
#[path = "settle_tests.rs"]
mod tests;
