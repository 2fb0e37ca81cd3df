//! The market's on-chain records: tasks, their trace commitments, and disputes.
//!
//! The pallets store exactly these types and the runtime API returns them, so a dapp or the
//! worker decodes one definition whichever way it reads the chain.

use crate::{
	bisection::{Bisection, Transition},
	commit::OpLeaf,
	descent::{Axis, Cursor, TensorOpening},
	task::TrainingSpec,
	trace::TracePoints,
};
use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;
use sp_core::H256;

/// A task's number, assigned in order of submission.
pub type TaskId = u64;

/// A dispute's number, assigned in order of opening.
pub type DisputeId = u64;

/// A side of a dispute.
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
pub enum Party {
	/// The solver whose commitment is disputed.
	Solver,
	/// The verifier who opened the dispute.
	Challenger,
}

impl Party {
	/// The other side.
	pub fn other(self) -> Party {
		match self {
			Party::Solver => Party::Challenger,
			Party::Challenger => Party::Solver,
		}
	}
}

/// One value for each side of a dispute: what both reveal, commit or hold at a stage. The
/// pallet reads and writes a side's value by [`Party`] instead of matching on it.
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
	Default,
)]
pub struct Sides<T> {
	/// The solver's.
	pub solver: T,
	/// The challenger's.
	pub challenger: T,
}

impl<T> Sides<T> {
	/// The solver's and the challenger's values.
	pub const fn new(solver: T, challenger: T) -> Self {
		Self { solver, challenger }
	}

	/// `party`'s value.
	pub fn of(&self, party: Party) -> &T {
		match party {
			Party::Solver => &self.solver,
			Party::Challenger => &self.challenger,
		}
	}

	/// `party`'s value, to change.
	pub fn of_mut(&mut self, party: Party) -> &mut T {
		match party {
			Party::Solver => &mut self.solver,
			Party::Challenger => &mut self.challenger,
		}
	}
}

impl<T> Sides<Option<T>> {
	/// Neither side has given its value.
	pub const fn none() -> Self {
		Self { solver: None, challenger: None }
	}

	/// Both values, once both sides have given theirs.
	pub fn both(&self) -> Option<Sides<&T>> {
		Some(Sides { solver: self.solver.as_ref()?, challenger: self.challenger.as_ref()? })
	}

	/// Whether each side has given its value.
	pub fn given(&self) -> Sides<bool> {
		Sides { solver: self.solver.is_some(), challenger: self.challenger.is_some() }
	}
}

impl Sides<bool> {
	/// Who wins when a deadline passes with these sides having answered: whoever has not
	/// answered loses, and the challenger when neither has (whoever opens a dispute must
	/// pursue it).
	pub fn winner_at_deadline(&self) -> Party {
		if !self.solver && self.challenger {
			Party::Challenger
		} else {
			Party::Solver
		}
	}
}

/// What a solver commits to once it has trained: the root over its trace, its length and the
/// final state.
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
pub struct TraceCommitment {
	/// Merkle root over `(t, h_t)` for `t = 0 ..= steps` (see [`crate::trace`]).
	pub trace_root: H256,
	/// The number of training steps `N`; must equal the spec's.
	pub steps: u32,
	/// `h_N`, the state hash after the last step; proven against `trace_root` on commit.
	pub final_state: H256,
	/// Hash of the trained model's parameters as the solver serves them.
	pub model_hash: H256,
}

/// How long each stage of a task may last, in blocks.
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
pub struct Timeouts<BlockNumber> {
	/// From submission (or reopening) to the latest claim.
	pub claim: BlockNumber,
	/// From claim to the latest commitment.
	pub commit: BlockNumber,
	/// From commitment to the end of the challenge window.
	pub challenge: BlockNumber,
}

/// Where a task stands. A finished task (paid, refunded or cancelled) leaves storage; its
/// events tell how it ended.
#[derive(
	Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, MaxEncodedLen, Debug,
)]
pub enum TaskState<AccountId, BlockNumber> {
	/// Waiting for a solver until `claim_by`.
	Open {
		/// The block from which it can no longer be claimed: at its start the reward goes
		/// back to the submitter.
		claim_by: BlockNumber,
	},
	/// Being trained by `solver`, whose commitment is due by `commit_by`.
	Claimed {
		/// The solver.
		solver: AccountId,
		/// The block from which the commitment is late: at its start the solver is slashed
		/// and the reward goes back to the submitter.
		commit_by: BlockNumber,
	},
	/// Trained and committed; open to challenges until `challenge_until`.
	Committed {
		/// The solver.
		solver: AccountId,
		/// Its commitment.
		commitment: TraceCommitment,
		/// The block from which no dispute can be opened: at its start, or when the last
		/// open dispute ends after it, the solver is paid.
		challenge_until: BlockNumber,
	},
}

/// A training task and its escrowed reward.
#[derive(
	Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, MaxEncodedLen, Debug,
)]
pub struct Task<AccountId, Balance, BlockNumber> {
	/// Who posted and pays.
	pub submitter: AccountId,
	/// What to train.
	pub spec: TrainingSpec,
	/// The reward, held from the submitter until the task ends.
	pub reward: Balance,
	/// The solver stake locked while a solver holds the task (fixed at submission).
	pub solver_stake: Balance,
	/// How long each stage may last.
	pub timeouts: Timeouts<BlockNumber>,
	/// Where it stands.
	pub state: TaskState<AccountId, BlockNumber>,
	/// How many times a solver lost the task in a dispute and it was reopened.
	pub reopened: u32,
	/// The last solver that lost it: barred from claiming it again.
	pub last_failed_solver: Option<AccountId>,
}

impl<AccountId, Balance, BlockNumber: Copy> Task<AccountId, Balance, BlockNumber> {
	/// The block at whose start the current stage ends.
	pub fn deadline(&self) -> BlockNumber {
		match &self.state {
			TaskState::Open { claim_by } => *claim_by,
			TaskState::Claimed { commit_by, .. } => *commit_by,
			TaskState::Committed { challenge_until, .. } => *challenge_until,
		}
	}
}

/// What stays on chain of a paid task for a while ([`Receipt::kept_until`]): whom it paid,
/// what was trained and the commitment, so that the submitter can fetch the model by its hash
/// and check it after payment, when the task itself has left the market.
#[derive(
	Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, MaxEncodedLen, Debug,
)]
pub struct Receipt<AccountId, BlockNumber> {
	/// Who posted and paid.
	pub submitter: AccountId,
	/// Who was paid.
	pub solver: AccountId,
	/// What was trained.
	pub spec: TrainingSpec,
	/// The solver's commitment: `final_state` and `model_hash` name the trained model.
	pub commitment: TraceCommitment,
	/// The block at whose start the receipt is dropped.
	pub kept_until: BlockNumber,
}

/// The stage of a dispute.
// The operator-level game is the large variant; a dispute is stored (SCALE-encoded, sized by
// variant) and copied rarely, so boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(
	Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, MaxEncodedLen, Debug,
)]
pub enum DisputePhase {
	/// Step bisection: both sides must reveal their state hash at `bisection.midpoint()`.
	Bisecting {
		/// Rounds completed so far.
		round: u32,
		/// Each side's revealed hash this round, if any.
		reveals: Sides<Option<H256>>,
	},
	/// Narrowed to one transition; the leaf referee decides it.
	Leaf {
		/// The disputed transition.
		transition: Transition,
	},
	/// Narrowed to one training step: the operator-level game inside it.
	Operations(OpGame),
	/// Narrowed to a segment of several steps between two checkpoints of the trace: both
	/// sides commit a root over its per-step state hashes and bisect inside it.
	Segment(SegmentGame),
	/// Narrowed to the initialization, of a state too large for the chain to recompute
	/// whole: decided element by element.
	Initialization(InitGame),
	/// Not a dispute over the trace's correctness but over its availability: the solver must
	/// show rows of a committed state ([`crate::availability`]) before the deadline, or
	/// lose.
	Availability(crate::availability::AvailabilityGame),
}

/// The tensor hashes of a state, in the program's order (the preimage of its state hash,
/// [`crate::commit::state_hash_of`]).
pub type StateTensors =
	sp_runtime::BoundedVec<H256, sp_core::ConstU32<{ crate::program::MAX_STATE_TENSORS }>>;

/// The dispute over `h_0`, the state right after initialization, when the state is too large
/// for the chain to recompute whole (PROTOCOL.md, "Settleability").
///
/// Every initial value is a function of the seed, the tensor, its row and its column
/// ([`crate::program::initial_value`]), so one value decides the dispute. Both sides reveal
/// the tensor hashes their `h_0` is made of; the first tensor on which they differ goes to
/// the element descent ([`Descent`]), which ends at one value: the chain computes it and
/// rules against the side whose value differs.
#[derive(
	Clone,
	PartialEq,
	Eq,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	Debug,
	Default,
)]
pub struct InitGame {
	/// Each side's tensor hashes, once revealed.
	pub tensors: Sides<Option<StateTensors>>,
	/// The first tensor the sides differ on, once both revealed.
	pub disputed: Option<DisputedTensor>,
	/// The element descent inside that tensor.
	pub descent: Descent,
}

/// The first tensor of a state the sides differ on, with each side's hash of it.
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
pub struct DisputedTensor {
	/// Its index in the state.
	pub index: u32,
	/// Each side's hash of it.
	pub hashes: Sides<H256>,
}

/// Where the initialization game stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InitStage {
	/// Both must reveal the tensor hashes of their `h_0`.
	Revealing,
	/// The element descent inside state tensor `tensor`.
	Descent {
		/// The disputed tensor.
		tensor: u32,
		/// Where the descent stands.
		stage: DescentStage,
	},
}

impl InitGame {
	/// Where the game stands.
	pub fn stage(&self) -> InitStage {
		match &self.disputed {
			None => InitStage::Revealing,
			Some(t) => InitStage::Descent { tensor: t.index, stage: self.descent.stage() },
		}
	}
}

/// The step bisection inside one segment of the trace (PROTOCOL.md, "Granularity"), when the
/// spec's checkpoint interval is above 1 and the dispute narrowed to two consecutive entries
/// `first` and `first + len` of the trace.
///
/// Both sides first commit a root over the segment's `len + 1` state hashes
/// `h_first ..= h_{first+len}` (a [`crate::trace::trace_root`], entry `i` the state after step
/// `first + i`), recomputed from the agreed state. Then bisection runs over segment positions
/// `0 ..= len` (position `i` is entry `i`; the ends are the trace's entries the sides already
/// revealed, so only inner positions are ever revealed). It ends at the one step
/// `first + disputed - 1` they dispute after an agreed state.
#[derive(
	Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, MaxEncodedLen, Debug,
)]
pub struct SegmentGame {
	/// The step after which both sides agree on the state.
	pub first: u32,
	/// Steps in the segment, at least 2.
	pub len: u32,
	/// Each side's segment root, once committed.
	pub roots: Sides<Option<H256>>,
	/// The interval over segment positions.
	pub bisection: Bisection,
	/// Rounds completed so far.
	pub round: u32,
	/// Each side's state hash revealed this round, if any.
	pub reveals: Sides<Option<H256>>,
}

impl SegmentGame {
	/// The game over the `len >= 2` steps after step `first`.
	pub fn new(first: u32, len: u32) -> Option<Self> {
		if len < 2 {
			return None;
		}
		Some(Self {
			first,
			len,
			roots: Sides::none(),
			bisection: Bisection::from_ends(0, len)?,
			round: 0,
			reveals: Sides::none(),
		})
	}

	/// The segment position both sides must reveal next; `None` while a root is missing or
	/// once resolved.
	pub fn position(&self) -> Option<u32> {
		self.roots.both()?;
		self.bisection.midpoint()
	}

	/// The disputed training step, once the interval is one step wide.
	pub fn transition(&self) -> Option<Transition> {
		if !self.bisection.is_resolved() {
			return None;
		}
		let offset = self.bisection.disputed.checked_sub(1)?;
		Some(Transition::Step(self.first.checked_add(offset)?))
	}
}

/// The operator-level game inside disputed training step `step` (PROTOCOL.md, "Dispute game",
/// step 3).
///
/// Both sides first commit the root of their op trace of the step (leaves
/// `L_j = (j, o_j, a_j)`, `a_{-1} = h_step`). Then bisection runs over op positions
/// `0 ..= ops + 1`: position `0` is the agreed pre-state, position `p` in `1 ..= ops` is leaf
/// `L_{p-1}`, position `ops + 1` is the disputed post-state. It ends at one operation whose
/// leaf the sides dispute after an agreed one (settled by re-executing that operation), or, if
/// they agree on every leaf, at the assembly of the next state from the outputs.
#[derive(
	Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, MaxEncodedLen, Debug,
)]
pub struct OpGame {
	/// The disputed training step `t` (from `h_t` to `h_{t+1}`).
	pub step: u32,
	/// The number of operations of the step program.
	pub ops: u32,
	/// Each side's op-trace root, once committed.
	pub roots: Sides<Option<H256>>,
	/// The interval over op positions.
	pub bisection: Bisection,
	/// Rounds completed so far.
	pub round: u32,
	/// The link `a` at the agreed position (`h_t` at position 0).
	pub agreed_link: H256,
	/// Each side's leaf at the disputed position, unless that is the post-state.
	pub disputed: Sides<Option<OpLeaf>>,
	/// Each side's leaf revealed this round, if any.
	pub reveals: Sides<Option<OpLeaf>>,
	/// The element descent inside the disputed operation, when it is too large for one leaf.
	pub descent: Option<Descent>,
}

/// The element descent inside a disputed operation ([`crate::descent`]).
#[derive(
	Clone,
	PartialEq,
	Eq,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	Debug,
	Default,
)]
pub struct Descent {
	/// Each side's opening of its hash of the tensor, once given.
	pub openings: Sides<Option<TensorOpening>>,
	/// The walk down the output's tree, once both have opened.
	pub walk: Option<Walk>,
	/// The disputed element, once both have revealed their line.
	pub element: Option<Element>,
	/// The sum behind the disputed element, when the element alone is too large for one
	/// leaf (a product reading a column of a large batch): split term by term.
	pub term: Option<TermGame>,
}

/// The sum behind a disputed element of a product, `acc_k = fma(a_k, b_k, acc_{k-1})` over
/// `k` ascending ([`crate::repops::dot`]), when the element is too large for one leaf. Both
/// sides reveal their partial sums `canon(acc_0) ..= canon(acc_{K-1})` (the last their
/// element's value); the first `k` they differ on is one term, which the chain computes from
/// the agreed `acc_{k-1}` and one value of each input ([`crate::descent::term_value`]).
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
	Default,
)]
pub struct TermGame {
	/// The first term they differ on, once both revealed.
	pub k: Option<u32>,
	/// The agreed partial sum before it, as bits (`0.0` for the first term).
	pub prev: u32,
	/// Each side's partial sum at `k`.
	pub sums: Sides<u32>,
}

/// A walk down one tree of the disputed output.
#[derive(
	Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, MaxEncodedLen, Debug,
)]
pub struct Walk {
	/// Rows or columns.
	pub axis: Axis,
	/// The number of leaves (lines).
	pub leaves: u32,
	/// The node in dispute.
	pub cursor: Cursor,
	/// Each side's hash of that node.
	pub nodes: Sides<H256>,
	/// Each side's revealed children this round, if any.
	pub reveals: Sides<Option<(H256, H256)>>,
}

/// The one disputed element of an operation's output, with both sides' values (as bits).
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
pub struct Element {
	/// Its row.
	pub row: u32,
	/// Its column.
	pub col: u32,
	/// Each side's value.
	pub values: Sides<u32>,
}

/// Where an operator-level game stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OpStage {
	/// Waiting for op-trace roots.
	Committing,
	/// Both must reveal the leaf at this op position.
	Revealing(u32),
	/// The sides dispute the output of this operation after agreeing on every earlier one.
	Operation(u32),
	/// The sides agree on every operation and differ on the next state.
	Assembly,
	/// Operation `op` is too large for one leaf: both must open their output hash.
	Opening(u32),
	/// Both must reveal the children of the node at `cursor` of operation `op`'s output tree.
	Descending {
		/// The operation.
		op: u32,
		/// The disputed node.
		cursor: Cursor,
	},
	/// Both must reveal line `index` along `axis` of operation `op`'s output.
	Line {
		/// The operation.
		op: u32,
		/// Rows or columns.
		axis: Axis,
		/// The line.
		index: u32,
	},
	/// The sides dispute element `(row, col)` of operation `op`'s output: its inputs' lines
	/// are due.
	Element {
		/// The operation.
		op: u32,
		/// The row.
		row: u32,
		/// The column.
		col: u32,
	},
	/// Element `(row, col)` of operation `op` is too large for one leaf: both must reveal
	/// their partial sums of it.
	Partials {
		/// The operation.
		op: u32,
		/// The row.
		row: u32,
		/// The column.
		col: u32,
	},
	/// The sides dispute term `k` of element `(row, col)` of operation `op`: the one value
	/// of each input it multiplies is due.
	Term {
		/// The operation.
		op: u32,
		/// The row.
		row: u32,
		/// The column.
		col: u32,
		/// The term.
		k: u32,
	},
}

/// Where an element descent stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DescentStage {
	/// Both must open their hash of the tensor.
	Opening,
	/// Both must reveal the children of the node at this cursor.
	Descending(Cursor),
	/// Both must reveal line `index` along `axis`.
	Line {
		/// Rows or columns.
		axis: Axis,
		/// The line.
		index: u32,
	},
	/// The sides dispute element `(row, col)`.
	Element {
		/// The row.
		row: u32,
		/// The column.
		col: u32,
	},
	/// Element `(row, col)` is too large for one leaf: both must reveal their partial sums.
	Partials {
		/// The row.
		row: u32,
		/// The column.
		col: u32,
	},
	/// The sides dispute term `k` of element `(row, col)`'s sum: its evidence is due.
	Term {
		/// The row.
		row: u32,
		/// The column.
		col: u32,
		/// The term.
		k: u32,
	},
}

impl Descent {
	/// Where the descent stands.
	pub fn stage(&self) -> DescentStage {
		match (&self.element, &self.walk) {
			(Some(e), _) => match self.term.and_then(|t| t.k.map(|k| (t, k))) {
				Some((_, k)) => DescentStage::Term { row: e.row, col: e.col, k },
				None if self.term.is_some() => DescentStage::Partials { row: e.row, col: e.col },
				None => DescentStage::Element { row: e.row, col: e.col },
			},
			(None, None) => DescentStage::Opening,
			(None, Some(w)) if w.cursor.is_leaf() => {
				DescentStage::Line { axis: w.axis, index: w.cursor.index }
			}
			(None, Some(w)) => DescentStage::Descending(w.cursor),
		}
	}
}

impl OpGame {
	/// A game over a step of `ops` operations starting from the agreed `h_t`.
	pub fn new(step: u32, ops: u32, pre_state: H256) -> Option<Self> {
		Some(Self {
			step,
			ops,
			roots: Sides::none(),
			bisection: Bisection::new(ops)?,
			round: 0,
			agreed_link: pre_state,
			disputed: Sides::none(),
			reveals: Sides::none(),
			descent: None,
		})
	}

	/// Where the game stands.
	pub fn stage(&self) -> OpStage {
		if self.roots.both().is_none() {
			return OpStage::Committing;
		}
		if let Some(mid) = self.bisection.midpoint() {
			return OpStage::Revealing(mid);
		}
		match self.bisection.disputed.checked_sub(1) {
			Some(j) if j < self.ops => match self.descent.as_ref().map(Descent::stage) {
				None => OpStage::Operation(j),
				Some(DescentStage::Element { row, col }) => OpStage::Element { op: j, row, col },
				Some(DescentStage::Partials { row, col }) => OpStage::Partials { op: j, row, col },
				Some(DescentStage::Term { row, col, k }) => OpStage::Term { op: j, row, col, k },
				Some(DescentStage::Opening) => OpStage::Opening(j),
				Some(DescentStage::Line { axis, index }) => OpStage::Line { op: j, axis, index },
				Some(DescentStage::Descending(cursor)) => OpStage::Descending { op: j, cursor },
			},
			_ => OpStage::Assembly,
		}
	}
}

/// A dispute between a task's solver and a challenger.
#[derive(
	Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, MaxEncodedLen, Debug,
)]
pub struct Dispute<AccountId, Balance, BlockNumber> {
	/// The disputed task.
	pub task: TaskId,
	/// Its solver.
	pub solver: AccountId,
	/// The verifier who opened the dispute.
	pub challenger: AccountId,
	/// The challenger's bond, locked from its stake.
	pub bond: Balance,
	/// The solver's stake behind the task.
	pub solver_stake: Balance,
	/// Each side's trace root.
	pub roots: Sides<H256>,
	/// Which states the traces commit to (steps and checkpoint interval).
	pub points: TracePoints,
	/// The interval still disputed, over trace positions (see [`crate::bisection`]).
	pub bisection: Bisection,
	/// The state hash both agree on at `bisection.agreed` (`None`: position 0, the spec), or
	/// at the segment game's agreed position.
	pub agreed_state: Option<H256>,
	/// Each side's state hash at `bisection.disputed` (or the segment's disputed position).
	pub disputed: Sides<H256>,
	/// The stage.
	pub phase: DisputePhase,
	/// The block at whose start the current stage ends: a party that has not moved by then
	/// loses.
	pub deadline: BlockNumber,
}

/// What the leaf referee rules on: one transition, its agreed pre-state and the two claimed
/// post-states.
#[derive(
	Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, MaxEncodedLen, Debug,
)]
pub struct LeafCase {
	/// The disputed task.
	pub task: TaskId,
	/// The disputed transition.
	pub transition: Transition,
	/// The state hash before it (`None` for initialization: the spec alone).
	pub pre_state: Option<H256>,
	/// The solver's state hash after it.
	pub solver_post: H256,
	/// The challenger's state hash after it.
	pub challenger_post: H256,
}

impl<AccountId, Balance, BlockNumber> Dispute<AccountId, Balance, BlockNumber> {
	/// The transition the dispute has narrowed to, if it has: from the phase once at the
	/// leaf, from the segment game inside a segment, else from the step bisection.
	pub fn transition(&self) -> Option<Transition> {
		match &self.phase {
			DisputePhase::Leaf { transition } => Some(*transition),
			DisputePhase::Initialization(_) => Some(Transition::Initialization),
			DisputePhase::Availability(_) => None,
			DisputePhase::Operations(game) => Some(Transition::Step(game.step)),
			DisputePhase::Segment(game) => game.transition(),
			DisputePhase::Bisecting { .. } => {
				if !self.bisection.is_resolved() {
					return None;
				}
				match self.points.narrowed(self.bisection.disputed)? {
					crate::trace::Narrowed::Transition(t) => Some(t),
					crate::trace::Narrowed::Segment { .. } => None,
				}
			}
		}
	}

	/// The case for the leaf referee, once bisection has narrowed to one transition.
	pub fn leaf_case(&self) -> Option<LeafCase> {
		Some(LeafCase {
			task: self.task,
			transition: self.transition()?,
			pre_state: self.agreed_state,
			solver_post: self.disputed.solver,
			challenger_post: self.disputed.challenger,
		})
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn sides_are_read_and_written_by_party() {
		let mut reveals: Sides<Option<u32>> = Sides::none();
		assert_eq!(reveals.both(), None);
		*reveals.of_mut(Party::Challenger) = Some(7);
		assert_eq!(reveals.of(Party::Challenger), &Some(7));
		assert_eq!(reveals.given(), Sides::new(false, true));
		assert_eq!(reveals.both(), None);
		*reveals.of_mut(Party::Solver) = Some(3);
		assert_eq!(reveals.both(), Some(Sides::new(&3, &7)));
	}

	/// Whoever has not answered by a deadline loses; the challenger when neither has.
	#[test]
	fn the_side_that_has_not_answered_loses_at_the_deadline() {
		use Party::*;
		assert_eq!(Sides::new(false, true).winner_at_deadline(), Challenger);
		assert_eq!(Sides::new(true, false).winner_at_deadline(), Solver);
		assert_eq!(Sides::new(false, false).winner_at_deadline(), Solver);
		assert_eq!(Sides::new(true, true).winner_at_deadline(), Solver);
	}
}
