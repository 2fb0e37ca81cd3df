//! Model delivery (PROTOCOL.md, "Model availability"): what ties a commitment's `model_hash`
//! to the trace, and the availability challenge that makes a solver show it still holds a
//! state it committed to.
//!
//! - At `commit` the solver hands over the final state's tensor hashes: they must hash to
//!   `h_N` ([`crate::commit::state_hash_of`]), and the model hash must be the state hash of
//!   their parameter part, the first [`crate::program::StepProgram::params`] of them
//!   ([`model_hash_matches`]). Whoever fetches the model checks it against `model_hash`, so
//!   the model a buyer receives is the one the trace (and any dispute over it) ends at.
//! - During the challenge window anyone staked as a verifier may ask for trace entry `point`
//!   (the final model is the last entry; a checkpoint any other): the chain draws
//!   [`AVAILABILITY_CHUNKS`] rows of that state ([`draw_chunks`]), uniformly over all the
//!   state's rows, and the solver must answer before a deadline with each row, proven against
//!   the state's hash ([`verify_answer`]). A solver that kept a fraction `f` of the rows
//!   answers with probability at most `f^AVAILABILITY_CHUNKS`.

use crate::{
	commit::state_hash_of,
	descent::{line_leaf, Axis, InputLine},
	market::StateTensors,
	trace::{verify_trace_proof, TraceProof},
};
use alloc::vec::Vec;
use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;
use sp_core::{ConstU32, H256};
use sp_runtime::{
	traits::{BlakeTwo256, Hash},
	BoundedVec,
};

/// Rows an availability challenge asks for.
pub const AVAILABILITY_CHUNKS: u32 = 4;

/// One row of one tensor of a state.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	Debug,
)]
pub struct Chunk {
	/// The tensor, by its index in the state.
	pub tensor: u32,
	/// The row.
	pub row: u32,
}

/// The rows an availability challenge asks for.
pub type Chunks = BoundedVec<Chunk, ConstU32<AVAILABILITY_CHUNKS>>;

/// An open availability challenge: the trace entry asked for and the rows drawn from it.
#[derive(
	Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, MaxEncodedLen, Debug,
)]
pub struct AvailabilityGame {
	/// The trace entry whose state is asked for (the last one: the final model).
	pub point: u32,
	/// The rows the solver must show, each proven against that state's hash.
	pub chunks: Chunks,
}

/// The solver's answer to an availability challenge.
#[derive(Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, Debug)]
pub struct AvailabilityAnswer {
	/// The state hash at the asked trace entry, proven against the solver's trace root.
	pub state: TraceProof,
	/// That state's tensor hashes, in the program's order.
	pub tensors: StateTensors,
	/// Each asked row, in the challenge's order, proven against its tensor's opening.
	pub rows: BoundedVec<InputLine, ConstU32<AVAILABILITY_CHUNKS>>,
}

/// Whether `tensors` are the tensor hashes of the final state `final_state` (as many as the
/// program's state has, `state_len`) and `model_hash` is the state hash of the first `params`
/// of them, the model's parameters.
pub fn model_hash_matches(
	final_state: &H256,
	model_hash: &H256,
	tensors: &[H256],
	state_len: usize,
	params: usize,
) -> bool {
	tensors.len() == state_len
		&& state_hash_of(tensors) == *final_state
		&& tensors.get(..params).is_some_and(|p| state_hash_of(p) == *model_hash)
}

/// A final state as `commit` takes it: its tensor hashes, its state hash `h_N` and the model
/// hash (of its parameter part).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FinalState {
	/// The tensor hashes, in the program's order.
	pub tensors: StateTensors,
	/// `h_N`.
	pub state: H256,
	/// The state hash of the first `params` tensors.
	pub model: H256,
}

impl FinalState {
	/// The final state made of tensors hashing to `tensors`, of which the first `params` are
	/// the model's; `None` if there are more than a state has.
	pub fn of(tensors: Vec<H256>, params: usize) -> Option<Self> {
		let model = state_hash_of(tensors.get(..params)?);
		let state = state_hash_of(&tensors);
		Some(Self { tensors: StateTensors::try_from(tensors).ok()?, state, model })
	}

	/// For tests and benchmarks: a final state of made-up tensor hashes (from `seed`) of the
	/// size `spec`'s state has, which `commit` accepts with its hashes.
	pub fn made_up(spec: &crate::task::TrainingSpec, seed: u64) -> Option<Self> {
		let program = crate::program::step_program(spec).ok()?;
		let tensors = (0..program.state_shapes.len() as u64)
			.map(|i| BlakeTwo256::hash(&(b"made-up", seed, i).encode()))
			.collect();
		Self::of(tensors, program.params as usize)
	}
}

/// The rows a challenge seeded with `seed` asks of a state whose tensors have `shapes`:
/// [`AVAILABILITY_CHUNKS`] draws, each uniform over all the state's rows (so a tensor is
/// asked in proportion to its size). Empty when the state has no rows.
pub fn draw_chunks(seed: &H256, shapes: &[(u32, u32)]) -> Chunks {
	let total: u64 = shapes.iter().map(|(rows, _)| u64::from(*rows)).sum();
	let mut chunks = Chunks::new();
	if total == 0 {
		return chunks;
	}
	for k in 0..AVAILABILITY_CHUNKS {
		let h = BlakeTwo256::hash(&(b"avail", seed, k).encode());
		let mut word = [0u8; 8];
		word.copy_from_slice(h.as_bytes().get(..8).unwrap_or(&[0u8; 8]));
		let mut g = u64::from_le_bytes(word).checked_rem(total).unwrap_or(0);
		for (tensor, (rows, _)) in shapes.iter().enumerate() {
			let rows = u64::from(*rows);
			if g < rows {
				let _ = chunks.try_push(Chunk { tensor: tensor as u32, row: g as u32 });
				break;
			}
			g = g.saturating_sub(rows);
		}
	}
	chunks
}

/// Why an availability answer was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BadAnswer {
	/// The state hash is not the asked trace entry under the solver's root.
	WrongState,
	/// The tensor hashes are not as many as the state has, or do not hash to the state.
	WrongTensors,
	/// A row is missing, has the wrong shape or length, or its proof fails.
	WrongRow,
}

/// Checks `answer` to a challenge for trace entry `point` (of `points` entries under
/// `trace_root`) of a program whose state has tensors of `shapes`, asking for `chunks`.
pub fn verify_answer(
	trace_root: &H256,
	points: u32,
	point: u32,
	shapes: &[(u32, u32)],
	chunks: &[Chunk],
	answer: &AvailabilityAnswer,
) -> Result<(), BadAnswer> {
	if !verify_trace_proof(trace_root, points, point, &answer.state) {
		return Err(BadAnswer::WrongState);
	}
	if answer.tensors.len() != shapes.len() || state_hash_of(&answer.tensors) != answer.state.state
	{
		return Err(BadAnswer::WrongTensors);
	}
	if answer.rows.len() != chunks.len() {
		return Err(BadAnswer::WrongRow);
	}
	for (chunk, line) in chunks.iter().zip(answer.rows.iter()) {
		let i = chunk.tensor as usize;
		let (Some(hash), Some(shape)) = (answer.tensors.get(i), shapes.get(i)) else {
			return Err(BadAnswer::WrongRow);
		};
		let o = &line.opening;
		let ok = o.hash() == *hash
			&& (o.rows, o.cols) == *shape
			&& chunk.row < o.rows
			&& line.values.len() == o.cols as usize
			&& binary_merkle_tree::verify_proof::<BlakeTwo256, _, _>(
				&o.row_root,
				line.items.iter().copied(),
				o.rows,
				chunk.row,
				&line_leaf(Axis::Rows, chunk.row, &line.values),
			);
		if !ok {
			return Err(BadAnswer::WrongRow);
		}
	}
	Ok(())
}

/// The answer for `chunks` of `state`, trace entry `point` of the states `trace` (their
/// hashes, in trace order): what the solver sends. `None` if an index is out of range.
pub fn answer(
	trace: &[H256],
	point: u32,
	state: &[crate::repops::Matrix],
	chunks: &[Chunk],
) -> Option<AvailabilityAnswer> {
	let tensors: Vec<H256> = state.iter().map(crate::commit::tensor_hash).collect();
	let mut rows = BoundedVec::new();
	for c in chunks {
		let m = state.get(c.tensor as usize)?;
		rows.try_push(InputLine::of(m, Axis::Rows, c.row)?).ok()?;
	}
	Some(AvailabilityAnswer {
		state: crate::trace::trace_proof(trace, point)?,
		tensors: StateTensors::try_from(tensors).ok()?,
		rows,
	})
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
	use super::*;
	use crate::{
		program::{initial_state, step_program},
		repops::Matrix,
		task::{Optimizer, TrainingSpec},
		trace::trace_root,
	};

	/// A spec, its state's shapes, its initial state and a two-entry trace ending at it.
	type Setup = (TrainingSpec, Vec<(u32, u32)>, Vec<Matrix>, Vec<H256>);

	fn setup() -> Setup {
		let spec = TrainingSpec::example_mlp(&[6, 5, 3], Optimizer::adam(0.01), 4);
		let program = step_program(&spec).unwrap();
		let state = initial_state(&spec, &program).unwrap();
		let trace = alloc::vec![H256::repeat_byte(1), crate::commit::state_hash(&state)];
		(spec, program.state_shapes, state, trace)
	}

	#[test]
	fn the_model_hash_is_the_parameter_part_of_the_final_state() {
		let (spec, shapes, state, _) = setup();
		let params = step_program(&spec).unwrap().params as usize;
		let tensors: Vec<H256> = state.iter().map(crate::commit::tensor_hash).collect();
		let h = state_hash_of(&tensors);
		let model = crate::commit::state_hash(&state[..params]);
		assert!(model_hash_matches(&h, &model, &tensors, shapes.len(), params));
		// Any other model hash, a partial list or another state fails.
		assert!(!model_hash_matches(&h, &H256::repeat_byte(7), &tensors, shapes.len(), params));
		assert!(!model_hash_matches(&h, &model, &tensors[..params], shapes.len(), params));
		let whole = crate::commit::state_hash(&state);
		assert!(!model_hash_matches(&h, &whole, &tensors, shapes.len(), params));
		assert!(!model_hash_matches(&H256::zero(), &model, &tensors, shapes.len(), params));
	}

	#[test]
	fn draws_cover_every_row_in_proportion() {
		let shapes = [(10, 3), (1, 3), (30, 2)];
		let mut counts = [0u32; 3];
		for s in 0..500u32 {
			for c in draw_chunks(&BlakeTwo256::hash(&s.encode()), &shapes) {
				assert!(c.row < shapes[c.tensor as usize].0);
				counts[c.tensor as usize] += 1;
			}
		}
		// 2 000 draws over 41 rows: about 488, 49 and 1 463.
		assert!((380..600).contains(&counts[0]), "{counts:?}");
		assert!((15..100).contains(&counts[1]), "{counts:?}");
		assert!((1300..1650).contains(&counts[2]), "{counts:?}");
		assert!(draw_chunks(&H256::zero(), &[]).is_empty());
	}

	#[test]
	fn an_honest_answer_passes_and_any_change_fails() {
		let (_, shapes, state, trace) = setup();
		let root = trace_root(&trace);
		let chunks = draw_chunks(&H256::repeat_byte(9), &shapes);
		assert_eq!(chunks.len(), AVAILABILITY_CHUNKS as usize);
		let good = answer(&trace, 1, &state, &chunks).unwrap();
		assert_eq!(verify_answer(&root, 2, 1, &shapes, &chunks, &good), Ok(()));

		// The wrong entry, or a state not under the root.
		assert_eq!(verify_answer(&root, 2, 0, &shapes, &chunks, &good), Err(BadAnswer::WrongState));
		// A tensor list that does not make the state.
		let mut bad = good.clone();
		bad.tensors[0] = H256::zero();
		assert_eq!(
			verify_answer(&root, 2, 1, &shapes, &chunks, &bad),
			Err(BadAnswer::WrongTensors)
		);
		// A changed value, a missing row, another row.
		let mut bad = good.clone();
		bad.rows[0].values[0] ^= 1;
		assert_eq!(verify_answer(&root, 2, 1, &shapes, &chunks, &bad), Err(BadAnswer::WrongRow));
		let mut bad = good.clone();
		bad.rows.pop();
		assert_eq!(verify_answer(&root, 2, 1, &shapes, &chunks, &bad), Err(BadAnswer::WrongRow));
		let mut other = chunks.clone();
		other[0].row = (other[0].row + 1) % shapes[other[0].tensor as usize].0;
		if other[0] != chunks[0] {
			let wrong = answer(&trace, 1, &state, &other).unwrap();
			assert_eq!(
				verify_answer(&root, 2, 1, &shapes, &chunks, &wrong),
				Err(BadAnswer::WrongRow)
			);
		}
	}
}
