//! # Challenge
//!
//! ## Overview
//!
//! The dispute game's step bisection. A staked verifier that recomputed a committed task and
//! got a different final state opens a dispute: it locks a bond ([`Config::ChallengeBond`])
//! from its stake and posts its own trace root, proving its final state against it.
//!
//! Then, round by round, both sides reveal their state hash at the midpoint of the interval
//! still disputed, each with a Merkle proof against its own root
//! ([`trainet_primitives::trace`]). Equal hashes move the agreed end up; different ones move
//! the disputed end down ([`Bisection`]). After at most `ceil(log2(N + 1))` rounds the
//! interval is one transition wide: both agree on the state before it and differ after it.
//! That single transition goes to the leaf referee ([`LeafAdjudicator`]), which re-executes
//! it on chain and names the winner.
//!
//! ## Segments
//!
//! With a checkpoint interval `C > 1` in the spec, a trace commits only to the states after
//! steps `0, C, 2C, ...` and `N` ([`trainet_primitives::trace::TracePoints`]), so the step
//! bisection can narrow to a segment of up to `C` steps rather than one. Then both sides
//! commit a root over the segment's per-step state hashes, recomputed from the agreed one
//! ([`Pallet::commit_segment`]), and bisect inside it ([`Pallet::reveal_segment`]) to the one
//! disputed step, which goes to the leaf referee as above ([`SegmentGame`]). The rounds add
//! up to what per-step commitments would take, plus the commitment round.
//!
//! ## Operator-level game
//!
//! When the disputed transition is a training step, the runtime's referee answers
//! [`Verdict::Operations`] and the game goes on inside the step ([`OpGame`]): both sides
//! commit the root of their op trace of the step ([`Pallet::commit_ops`]), bisect over its
//! leaves ([`Pallet::reveal_op`]) to the first operation they dispute after an agreed one, and
//! then anyone hands the chain that operation's inputs ([`Pallet::settle_op`]). The chain
//! checks them against the agreed trace, runs the reference operator
//! ([`trainet_primitives::referee`]) and rules against the side whose output hash differs. A
//! side whose disputed leaf does not chain from the agreed one loses at once; when the sides
//! agree on every operation, the chain recomputes the next state's hash from the outputs.
//!
//! ## Element descent, term split, initialization game
//!
//! An operation too large for one leaf ([`trainet_primitives::settle::plan`]) goes on inside
//! its output ([`Pallet::descend`]): both open their output hash, walk its row or column tree
//! to the first line they differ on and reveal it; the first value the lines differ on is the
//! element, whose inputs' lines anyone hands the chain ([`Pallet::settle_element`]). When one
//! element is itself too large (a product reading a column of a large batch), both reveal
//! their partial sums of it and the chain computes the first term they differ on. A dispute
//! over `h_0` of a state too large to recompute whole ([`Verdict::Initialization`]) reveals
//! the state's tensor hashes ([`Pallet::reveal_state`]) and descends inside the first tensor
//! they differ on; the chain computes the one initial value the lines differ on from the seed.
//! Every accepted spec has each of these leaves within one block
//! ([`Config::LeafBudget`]).
//!
//! ## Deadlines
//!
//! Every round has a deadline ([`Config::RoundTimeout`] blocks); so has the leaf stage
//! ([`Config::LeafTimeout`]). A side that has not revealed by the deadline loses; when
//! neither has, the challenger loses (whoever opens a dispute must pursue it). At the leaf,
//! the referee says who loses by default, or that the dispute is void. In the operator-level
//! game, committing (and committing a segment) is given a round plus the recomputation's work
//! at the reference speed, each round and descent stage [`Config::RoundTimeout`] blocks
//! (whoever has not answered loses, the challenger when neither has), and a settlement
//! [`Config::LeafTimeout`]: when nobody settles, the challenger loses. Deadlines are queued by
//! block and enforced in `on_initialize`, at most [`Config::MaxTimeoutsPerBlock`] a block, the
//! rest carried over; [`Pallet::timeout`] does the same for one dispute, for anyone.
//!
//! ## Outcomes
//!
//! [`SettleDispute`] (the slashing pallet) applies the outcome. A solver that loses loses the
//! task too, so every other dispute against it ends with it: their bonds are unlocked and
//! their challengers share the winners' part with the one who won. Several disputes may be
//! open against one task (up to [`Config::MaxDisputesPerTask`], one per challenger; the time
//! all were taken is given back to the task's challenge window), and any number of tasks may
//! be disputed at once.

#![cfg_attr(not(feature = "std"), no_std)]

pub use pallet::*;
pub use weights::WeightInfo;

mod availability;
#[cfg(feature = "runtime-benchmarks")]
mod benchmarking;
mod bisection;
mod deadlines;
mod descent;
mod initialization;
mod invariants;
#[cfg(test)]
mod mock;
mod operations;
mod outcome;
#[cfg(test)]
mod proptests;
mod segment;
#[cfg(test)]
mod tests;
pub mod weights;

use frame_support::{
	dispatch::DispatchResult,
	pallet_prelude::*,
	traits::fungible::{self, Inspect},
};
use frame_system::pallet_prelude::BlockNumberFor;
use pallet_compute_staking::{Role, StakeInterface};
use pallet_slashing::{DisputeOutcome, SettleDispute};
use pallet_task_escrow::{deadline_queue, TaskMarket};
use sp_core::H256;
use sp_runtime::traits::{One, Saturating, Zero};
use trainet_primitives::{
	bisection::{Bisection, Transition},
	commit::{verify_op_proof, OpLeaf, OpProof},
	descent::{
		element_value, inner_node, line_leaf, term_value, Axis, Cursor, DescentAnswer,
		ElementEvidence, MAX_LINE,
	},
	market::{
		Descent, DescentStage, Dispute, DisputeId, DisputePhase, InitGame, LeafCase, OpGame,
		OpStage, Party, SegmentGame, Sides, StateTensors, TaskId,
	},
	program::step_program,
	referee::{self, OpEvidence, RefereeError},
	settle::{self, LeafBudget, Plan},
	trace::{verify_trace_proof, Narrowed, TraceProof},
};

/// A balance of the staking currency.
pub type BalanceOf<T> =
	<<T as Config>::Currency as Inspect<<T as frame_system::Config>::AccountId>>::Balance;

/// A committed task as a dispute's target.
pub type TargetOf<T> =
	pallet_task_escrow::ChallengeTarget<<T as frame_system::Config>::AccountId, BalanceOf<T>>;

/// A dispute as this pallet stores it.
pub type DisputeOf<T> =
	Dispute<<T as frame_system::Config>::AccountId, BalanceOf<T>, BlockNumberFor<T>>;

/// What the leaf referee says of a case.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
	/// Decided: this side wins.
	Winner(Party),
	/// The referee needs more from the parties; it will call [`Pallet::leaf_ruling`] before
	/// the leaf deadline, or [`LeafAdjudicator::expired`] decides.
	Pending,
	/// A training step: play the operator-level game inside it ([`OpGame`]), which this
	/// pallet runs and settles by re-executing the one disputed operation.
	Operations,
	/// The initialization, of a state too large to recompute whole: play the initialization
	/// game ([`InitGame`]), which this pallet runs and settles by computing one initial value.
	Initialization,
}

/// The referee of the single disputed transition.
pub trait LeafAdjudicator {
	/// Rules on `case` of dispute `id`, now if it can.
	fn adjudicate(id: DisputeId, case: &LeafCase) -> Verdict;

	/// The leaf deadline of dispute `id` passed without a ruling: the winner by default, or
	/// `None` to void the dispute (bonds unlocked, nobody slashed).
	fn expired(id: DisputeId, case: &LeafCase) -> Option<Party>;
}

/// How a dispute was decided.
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
pub enum Resolution {
	/// The leaf referee ruled.
	Ruling,
	/// The loser missed a deadline.
	Timeout,
}

// FRAME's `#[pallet::*]` expansions call `expect` on paths that cannot fail (and clippy blames
// the attributes for it); the other no-panic lints stay denied here, and nothing written in
// this module by hand calls `expect`.
#[allow(clippy::expect_used)]
#[frame_support::pallet]
pub mod pallet {
	use super::*;
	use frame_system::pallet_prelude::*;

	#[pallet::pallet]
	pub struct Pallet<T>(_);

	#[pallet::config]
	pub trait Config: frame_system::Config {
		/// The overarching event type.
		#[allow(deprecated)]
		type RuntimeEvent: From<Event<Self>> + IsType<<Self as frame_system::Config>::RuntimeEvent>;

		/// The currency of stakes (for its balance type).
		type Currency: fungible::Inspect<Self::AccountId>;

		/// Challenger bonds are locked here.
		type Stake: StakeInterface<Self::AccountId, Balance = BalanceOf<Self>>;

		/// The disputed tasks.
		type Tasks: TaskMarket<Self::AccountId, BalanceOf<Self>>;

		/// Applies outcomes.
		type Settlement: SettleDispute<Self::AccountId, BalanceOf<Self>>;

		/// Rules on the single disputed transition.
		type Adjudicator: LeafAdjudicator;

		/// The bond locked from a challenger's stake for each dispute.
		#[pallet::constant]
		type ChallengeBond: Get<BalanceOf<Self>>;

		/// Blocks each side has to reveal its hash in a bisection round.
		#[pallet::constant]
		type RoundTimeout: Get<BlockNumberFor<Self>>;

		/// Blocks the leaf stage may last.
		#[pallet::constant]
		type LeafTimeout: Get<BlockNumberFor<Self>>;

		/// What one leaf may cost: the largest operation re-executed whole (at most
		/// [`trainet_primitives::referee::LeafBound::CHAIN`], at which `settle_op` is
		/// benchmarked; larger ones, and those whose evidence would not fit its byte budget, go
		/// through the element descent), and the bytes one leaf's extrinsic may take. The task market must accept only specs
		/// that [`trainet_primitives::settle::check`] passes under the same budget.
		type LeafBudget: Get<LeafBudget>;

		/// The most disputes open against one task at once.
		#[pallet::constant]
		type MaxDisputesPerTask: Get<u32>;

		/// Deadlines one block's queue holds.
		#[pallet::constant]
		type MaxDeadlinesPerBlock: Get<u32>;

		/// The most due disputes `on_initialize` ends in one block (each may end
		/// `MaxDisputesPerTask - 1` others): its weight is bounded by this whatever is due.
		/// The rest wait for the next blocks (their deadlines have passed: they take no more
		/// answers) or for anyone's `timeout`.
		#[pallet::constant]
		type MaxTimeoutsPerBlock: Get<u32>;

		/// Weights of this pallet's calls.
		type WeightInfo: WeightInfo;
	}

	/// The id the next dispute gets.
	#[pallet::storage]
	pub type NextDisputeId<T: Config> = StorageValue<_, DisputeId, ValueQuery>;

	/// Every open dispute, by id.
	#[pallet::storage]
	pub type Disputes<T: Config> = StorageMap<_, Twox64Concat, DisputeId, DisputeOf<T>>;

	/// The open disputes against each task, by challenger (one each).
	#[pallet::storage]
	pub type TaskDisputes<T: Config> =
		StorageDoubleMap<_, Twox64Concat, TaskId, Blake2_128Concat, T::AccountId, DisputeId>;

	/// How many disputes are open against each task.
	#[pallet::storage]
	pub type DisputeCount<T: Config> = StorageMap<_, Twox64Concat, TaskId, u32, ValueQuery>;

	/// The block since which every dispute slot of a task has been taken (`MaxDisputesPerTask`
	/// open), for the tasks where it is so. When a slot frees, the task's challenge window is
	/// extended by that long.
	#[pallet::storage]
	pub type FullSince<T: Config> = StorageMap<_, Twox64Concat, TaskId, BlockNumberFor<T>>;

	/// A side's revealed line in an element descent, until the other side reveals its own.
	#[pallet::storage]
	pub type Lines<T: Config> = StorageDoubleMap<
		_,
		Twox64Concat,
		DisputeId,
		Twox64Concat,
		Party,
		BoundedVec<u32, ConstU32<MAX_LINE>>,
	>;

	/// The oldest block whose deadline queue may still hold due disputes that `on_initialize`
	/// carried over (its per-block budget was spent); none when nothing is overdue.
	#[pallet::storage]
	pub type DueFrom<T: Config> = StorageValue<_, BlockNumberFor<T>, OptionQuery>;

	/// The disputes whose current stage ends at the start of a block, by block.
	#[pallet::storage]
	pub type Deadlines<T: Config> = StorageMap<
		_,
		Twox64Concat,
		BlockNumberFor<T>,
		BoundedVec<DisputeId, T::MaxDeadlinesPerBlock>,
		ValueQuery,
	>;

	/// The disputes whose deadline found every block's queue in reach full: nothing ends them
	/// by itself, and anyone's `timeout` does once the deadline has passed (the side that
	/// wins at the deadline has every reason to call it). A full queue thus never makes an
	/// answer fail ([`Event::DeadlineNotQueued`]).
	#[pallet::storage]
	pub type Unqueued<T: Config> = StorageMap<_, Twox64Concat, DisputeId, (), OptionQuery>;

	#[pallet::event]
	#[pallet::generate_deposit(pub(super) fn deposit_event)]
	pub enum Event<T: Config> {
		/// A dispute was opened; both sides must reveal their hash at trace position
		/// `position` before `deadline`.
		DisputeOpened {
			dispute: DisputeId,
			task: TaskId,
			challenger: T::AccountId,
			position: u32,
			deadline: BlockNumberFor<T>,
		},
		/// A side revealed its state hash at `position` (the trace entry `position - 1`).
		Revealed { dispute: DisputeId, party: Party, position: u32, state: H256 },
		/// A round ended: the interval is now `(agreed, disputed)`; the next reveal is due at
		/// `position` before `deadline`.
		Narrowed {
			dispute: DisputeId,
			agreed: u32,
			disputed: u32,
			position: u32,
			deadline: BlockNumberFor<T>,
		},
		/// The step bisection narrowed to the `steps` steps after step `first`, between two
		/// checkpoints of the traces: both sides must commit a root over their per-step state
		/// hashes of it before `deadline` ([`Pallet::commit_segment`]).
		SegmentStarted { dispute: DisputeId, first: u32, steps: u32, deadline: BlockNumberFor<T> },
		/// A side committed the root of its per-step hashes of the disputed segment.
		SegmentCommitted { dispute: DisputeId, party: Party, root: H256 },
		/// A side revealed its state hash at segment position `position` (the state after
		/// step `first + position`).
		SegmentRevealed { dispute: DisputeId, party: Party, position: u32, state: H256 },
		/// A round inside the segment began: the interval over segment positions is
		/// `(agreed, disputed)`; both must reveal at `position` before `deadline`.
		SegmentRound {
			dispute: DisputeId,
			agreed: u32,
			disputed: u32,
			position: u32,
			deadline: BlockNumberFor<T>,
		},
		/// Bisection found the one disputed transition; the leaf referee has until `deadline`.
		LeafReached { dispute: DisputeId, transition: Transition, deadline: BlockNumberFor<T> },
		/// The disputed transition is training step `step` of `ops` operations: both sides
		/// must commit their op-trace roots before `deadline`.
		OperationsStarted { dispute: DisputeId, step: u32, ops: u32, deadline: BlockNumberFor<T> },
		/// A side committed the root of its op trace of the disputed step.
		OpsCommitted { dispute: DisputeId, party: Party, root: H256 },
		/// A side revealed its op-trace leaf at op position `position` (leaf `position - 1`).
		OpRevealed { dispute: DisputeId, party: Party, position: u32, leaf: OpLeaf },
		/// An operator-level round began: the interval over op positions is
		/// `(agreed, disputed)`; both must reveal at `position` before `deadline`.
		OpRound {
			dispute: DisputeId,
			agreed: u32,
			disputed: u32,
			position: u32,
			deadline: BlockNumberFor<T>,
		},
		/// The sides dispute operation `operation` after agreeing on every earlier one; its
		/// evidence is due before `deadline` ([`Pallet::settle_op`]).
		OperationDisputed { dispute: DisputeId, operation: u32, deadline: BlockNumberFor<T> },
		/// The sides agree on every operation of the step and differ on the next state; the
		/// outputs' hashes are due before `deadline`.
		AssemblyDisputed { dispute: DisputeId, deadline: BlockNumberFor<T> },
		/// The chain re-executed the disputed operation (or assembled the next state): the
		/// true hash is `truth`.
		OperationSettled { dispute: DisputeId, truth: H256 },
		/// Operation `operation` is too large for one leaf: both sides must open their output
		/// hash before `deadline` ([`Pallet::descend`]).
		DescentStarted { dispute: DisputeId, operation: u32, deadline: BlockNumberFor<T> },
		/// A side answered the element descent's current stage.
		DescentAnswered { dispute: DisputeId, party: Party },
		/// Both sides answered: the descent moved on; the next answers (or, once an element is
		/// disputed, its evidence) are due before `deadline`.
		DescentMoved { dispute: DisputeId, deadline: BlockNumberFor<T> },
		/// The chain computed the disputed element `(row, col)`: its true bits are `truth`.
		ElementSettled { dispute: DisputeId, row: u32, col: u32, truth: u32 },
		/// The chain computed partial sum `k` of the disputed element `(row, col)` from the
		/// agreed one before it: its true bits are `truth`.
		TermSettled { dispute: DisputeId, row: u32, col: u32, k: u32, truth: u32 },
		/// The dispute is over `h_0`, a state too large to recompute whole: both sides must
		/// reveal the tensor hashes it is made of before `deadline`
		/// ([`Pallet::reveal_state`]).
		InitializationStarted { dispute: DisputeId, tensors: u32, deadline: BlockNumberFor<T> },
		/// A side revealed the tensor hashes of its `h_0`.
		StateRevealed { dispute: DisputeId, party: Party },
		/// The sides differ first on state tensor `tensor`: both must open their hash of it
		/// before `deadline` ([`Pallet::descend`]).
		TensorDisputed { dispute: DisputeId, tensor: u32, deadline: BlockNumberFor<T> },
		/// The chain computed initial value `(row, col)` of state tensor `tensor`: its true
		/// bits are `truth`.
		InitialValueSettled { dispute: DisputeId, tensor: u32, row: u32, col: u32, truth: u32 },
		/// A dispute ended: `winner` won, by the referee's ruling or the other's timeout.
		DisputeResolved { dispute: DisputeId, task: TaskId, winner: Party, resolution: Resolution },
		/// A dispute ended with no winner (its task's solver already lost, or the referee
		/// could not rule); the bond was unlocked.
		DisputeVoided { dispute: DisputeId, task: TaskId },
		/// Every block's deadline queue in reach was full: the dispute's deadline stands but
		/// is not queued, so nothing ends it by itself; after `deadline` anyone may call
		/// `timeout`.
		DeadlineNotQueued { dispute: DisputeId, deadline: BlockNumberFor<T> },
		/// A verifier asked for trace entry `point` of the task's committed trace: the solver
		/// (or anyone holding that state) must show `chunks`, each a row of one of its tensors,
		/// before `deadline` ([`Pallet::prove_availability`]), or the solver loses.
		AvailabilityRequested {
			dispute: DisputeId,
			task: TaskId,
			challenger: T::AccountId,
			point: u32,
			chunks: trainet_primitives::availability::Chunks,
			deadline: BlockNumberFor<T>,
		},
		/// The asked rows were shown: the state is available, and the challenge ends for the
		/// solver.
		AvailabilityProven { dispute: DisputeId, task: TaskId },
	}

	#[pallet::error]
	pub enum Error<T> {
		/// No open dispute has that id.
		DisputeNotFound,
		/// A solver cannot challenge its own task.
		OwnTask,
		/// The caller already has a dispute open against this task.
		AlreadyDisputing,
		/// The task has as many disputes open as it may.
		TooManyDisputes,
		/// The Merkle proof does not show that state at that position under the root.
		BadProof,
		/// The challenger's final state equals the solver's: nothing to dispute.
		NoDisagreement,
		/// Only the dispute's solver or challenger may do this.
		NotAParty,
		/// The dispute is not bisecting any more (it is at the leaf).
		NotBisecting,
		/// The reveal is for another position than this round's.
		WrongPosition,
		/// This side already revealed this round.
		AlreadyRevealed,
		/// The dispute's deadline has not come yet.
		DeadlineNotReached,
		/// The dispute is not at the leaf.
		NotAtLeaf,
		/// A position or an id overflowed.
		Overflow,
		/// The dispute is not in the operator-level game.
		NotInOperations,
		/// The dispute is not bisecting inside a segment of the trace.
		NotInSegment,
		/// The operator-level game is not at the stage this call is for.
		WrongStage,
		/// This side already committed its op-trace root.
		AlreadyCommitted,
		/// The disputed task's spec is gone.
		TaskNotFound,
		/// Evidence: the earlier outputs do not chain from the pre-state to the agreed link.
		EvidenceBrokenChain,
		/// Evidence: the state tensors' hashes do not make the agreed pre-state.
		EvidenceWrongState,
		/// Evidence: an input tensor does not hash to what the agreed trace says, has the
		/// wrong shape, or inputs are missing or extra.
		EvidenceWrongInput,
		/// Evidence: the samples are not the step's batch under the dataset root.
		EvidenceWrongBatch,
		/// The operation is larger than the chain executes in one leaf.
		OperationTooLarge,
		/// The reference operator refused the inputs (a label out of range).
		ExecutionFailed,
		/// The dispute's current deadline has passed: it takes no more answers and ends as
		/// its deadline says (`timeout`).
		DeadlinePassed,
		/// A revealed line of the element descent is not as long as the shape both sides
		/// opened fixes (a row has `cols` values, a column `rows`).
		WrongLineLength,
		/// The dispute is not in the initialization game.
		NotInInitialization,
		/// The revealed tensor hashes are not as many as the spec's state has tensors.
		WrongTensorCount,
		/// The dispute is not in an element descent.
		NotDescending,
		/// The task's trace has no entry at that index.
		NoSuchEntry,
		/// The dispute is not an availability challenge.
		NotAnAvailabilityChallenge,
		/// The availability answer does not show the asked rows of the asked state: the state
		/// hash is not that trace entry under the solver's root, the tensor hashes do not make
		/// it, or a row is missing, misshapen or not under its tensor's hash.
		BadAvailabilityAnswer,
	}

	#[pallet::hooks]
	impl<T: Config> Hooks<BlockNumberFor<T>> for Pallet<T> {
		fn on_initialize(now: BlockNumberFor<T>) -> Weight {
			let (count, probes) = Self::end_due(now);
			// Each timeout may end up to `MaxDisputesPerTask - 1` other disputes; the
			// benchmark of `on_initialize` measures timeouts without any, so add their cost.
			let max = T::MaxDisputesPerTask::get().saturating_sub(1);
			let voids = T::WeightInfo::timeout(max).saturating_sub(T::WeightInfo::timeout(0));
			T::WeightInfo::on_initialize(count)
				.saturating_add(voids.saturating_mul(count.into()))
				.saturating_add(T::DbWeight::get().reads_writes(probes.into(), 1))
		}

		#[cfg(feature = "try-runtime")]
		fn try_state(now: BlockNumberFor<T>) -> Result<(), sp_runtime::TryRuntimeError> {
			Self::do_try_state(now)
		}
	}

	#[pallet::call]
	impl<T: Config> Pallet<T> {
		/// Opens a dispute against committed task `task`, inside its challenge window.
		///
		/// The caller must be a verifier with `ChallengeBond` of free stake (locked until the
		/// dispute ends). `root` is the root of the caller's own trace; `final_proof` shows
		/// its final state under it, which must differ from the solver's.
		#[pallet::call_index(0)]
		#[pallet::weight(Pallet::<T>::queuing(T::WeightInfo::open()))]
		pub fn open(
			origin: OriginFor<T>,
			task: TaskId,
			root: H256,
			final_proof: TraceProof,
		) -> DispatchResult {
			let challenger = ensure_signed(origin)?;
			let (target, count) = Self::admissible(task, &challenger)?;
			let points = target.points;
			let last = points.len().checked_sub(1).ok_or(Error::<T>::Overflow)?;
			ensure!(
				verify_trace_proof(&root, points.len(), last, &final_proof),
				Error::<T>::BadProof
			);
			ensure!(final_proof.state != target.commitment.final_state, Error::<T>::NoDisagreement);
			let bisection = Bisection::new(last).ok_or(Error::<T>::Overflow)?;
			let position = bisection.midpoint().ok_or(Error::<T>::Overflow)?;
			let id = NextDisputeId::<T>::get();
			let now = frame_system::Pallet::<T>::block_number();
			let deadline = Self::slot(now.saturating_add(T::RoundTimeout::get()));
			Self::book(
				id,
				count,
				Dispute {
					task,
					solver: target.solver,
					challenger: challenger.clone(),
					bond: T::ChallengeBond::get(),
					solver_stake: target.solver_stake,
					roots: Sides::new(target.commitment.trace_root, root),
					points,
					bisection,
					agreed_state: None,
					disputed: Sides::new(target.commitment.final_state, final_proof.state),
					phase: DisputePhase::Bisecting { round: 0, reveals: Sides::none() },
					deadline,
				},
			)?;
			Self::deposit_event(Event::DisputeOpened {
				dispute: id,
				task,
				challenger,
				position,
				deadline,
			});
			Ok(())
		}

		/// Reveals the caller's state hash at this round's `position`, with its proof against
		/// the caller's root. Once both sides have revealed, the interval narrows; when it is
		/// one transition wide, the leaf referee takes over, or, when that transition spans
		/// several steps between two checkpoints, the segment game ([`Pallet::commit_segment`]).
		#[pallet::call_index(1)]
		#[pallet::weight(Pallet::<T>::queuing(T::WeightInfo::reveal(T::MaxDisputesPerTask::get())))]
		pub fn reveal(
			origin: OriginFor<T>,
			dispute: DisputeId,
			position: u32,
			proof: TraceProof,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			let d = Self::live(dispute)?;
			let party = Self::party(&d, &who)?;
			Self::do_reveal(dispute, d, party, position, proof)
		}

		/// Commits the root of the caller's per-step state hashes of the disputed segment: a
		/// [`trainet_primitives::trace::trace_root`] over the `steps + 1` states from the
		/// agreed one at its start (entry `i` the state after step `first + i`), recomputed
		/// from that state. Once both sides have, bisection inside the segment begins.
		#[pallet::call_index(9)]
		#[pallet::weight(Pallet::<T>::queuing(T::WeightInfo::commit_segment()))]
		pub fn commit_segment(
			origin: OriginFor<T>,
			dispute: DisputeId,
			root: H256,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			let d = Self::live(dispute)?;
			let party = Self::party(&d, &who)?;
			Self::do_commit_segment(dispute, d, party, root)
		}

		/// Reveals the caller's state hash at this round's segment `position` (the state after
		/// step `first + position`), with its proof against the caller's segment root. Once
		/// both sides have, the interval narrows; at one step, the leaf referee takes over.
		#[pallet::call_index(10)]
		#[pallet::weight(Pallet::<T>::queuing(T::WeightInfo::reveal_segment(T::MaxDisputesPerTask::get())))]
		pub fn reveal_segment(
			origin: OriginFor<T>,
			dispute: DisputeId,
			position: u32,
			proof: TraceProof,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			let d = Self::live(dispute)?;
			let party = Self::party(&d, &who)?;
			Self::do_reveal_segment(dispute, d, party, position, proof)
		}

		/// Commits the root of the caller's op trace of the disputed training step: a Merkle
		/// root over the leaves `L_j = (j, o_j, a_j)` of its run of the step from the agreed
		/// pre-state ([`trainet_primitives::commit::op_trace`]). Once both sides have, the
		/// operator-level bisection begins.
		#[pallet::call_index(3)]
		#[pallet::weight(Pallet::<T>::queuing(T::WeightInfo::commit_ops()))]
		pub fn commit_ops(origin: OriginFor<T>, dispute: DisputeId, root: H256) -> DispatchResult {
			let who = ensure_signed(origin)?;
			let d = Self::live(dispute)?;
			let party = Self::party(&d, &who)?;
			Self::do_commit_ops(dispute, d, party, root)
		}

		/// Reveals the caller's op-trace leaf at this round's op `position` (leaf
		/// `position - 1`), with its proof against the caller's op-trace root. Once both
		/// sides have, the interval narrows. When it ends at an operation, a side whose
		/// disputed leaf does not chain from the agreed one loses at once; otherwise the
		/// operation (or the next state's assembly) waits for [`Pallet::settle_op`].
		#[pallet::call_index(4)]
		#[pallet::weight(Pallet::<T>::queuing(T::WeightInfo::reveal_op(T::MaxDisputesPerTask::get())))]
		pub fn reveal_op(
			origin: OriginFor<T>,
			dispute: DisputeId,
			position: u32,
			proof: OpProof,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			let d = Self::live(dispute)?;
			let party = Self::party(&d, &who)?;
			Self::do_reveal_op(dispute, d, party, position, proof)
		}

		/// Settles the disputed operation (or the next state's assembly) of a dispute in the
		/// operator-level game: `evidence` gives the earlier outputs' hashes, the pre-state's
		/// tensor hashes, the operation's input tensors and the batch's samples
		/// ([`trainet_primitives::referee::StepRun::evidence`] builds it). The chain checks
		/// each against the agreed trace, runs the reference operator, and rules against the
		/// side whose output hash differs from the truth (the solver, should both). Anyone may
		/// call it.
		#[pallet::call_index(5)]
		#[pallet::weight(Pallet::<T>::settle_op_weight())]
		pub fn settle_op(
			origin: OriginFor<T>,
			dispute: DisputeId,
			evidence: OpEvidence,
		) -> DispatchResult {
			ensure_signed(origin)?;
			let d = Self::live(dispute)?;
			Self::do_settle_op(dispute, d, evidence)
		}

		/// Answers the element descent inside a disputed operation too large for one leaf
		/// ([`trainet_primitives::descent`]): first the opening of the caller's output hash
		/// (`rows, cols, row_root, col_root`), then, round by round, the two children of the
		/// disputed node of its output's tree, then the disputed row or column itself. Once
		/// both sides have answered a stage, the game moves on: a side whose output has the
		/// wrong shape loses; otherwise the walk goes to the first child on which the sides
		/// differ, and at a leaf the first value on which their lines differ is the element
		/// [`Pallet::settle_element`] decides.
		#[pallet::call_index(6)]
		#[pallet::weight(Pallet::<T>::queuing(T::WeightInfo::descend_opening(T::MaxDisputesPerTask::get())
			.max(T::WeightInfo::descend_line().saturating_add(Pallet::<T>::ending_others()))
			.max(T::WeightInfo::descend_partials())))]
		pub fn descend(
			origin: OriginFor<T>,
			dispute: DisputeId,
			answer: DescentAnswer,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			let d = Self::live(dispute)?;
			let party = Self::party(&d, &who)?;
			Self::do_descend(dispute, d, party, answer)
		}

		/// Settles the one disputed element of an operation's output that the element descent
		/// found: `evidence` gives the row or column of each input that element reads, each
		/// proven against the input's opening, whose hash must be the agreed one
		/// ([`trainet_primitives::descent::element_evidence`] builds it). The chain computes
		/// the element with RepOps and rules against the side whose value differs (the solver,
		/// should both). Anyone may call it.
		#[pallet::call_index(7)]
		#[pallet::weight(T::WeightInfo::settle_element().saturating_add(Pallet::<T>::ending_others()))]
		pub fn settle_element(
			origin: OriginFor<T>,
			dispute: DisputeId,
			evidence: ElementEvidence,
		) -> DispatchResult {
			ensure_signed(origin)?;
			let d = Self::live(dispute)?;
			Self::do_settle_element(dispute, d, evidence)
		}

		/// Ends a dispute whose deadline has passed, as `on_initialize` does: the side that
		/// has not revealed loses (the challenger when neither has); at the leaf, the referee
		/// names the default winner or voids it. Anyone may call it.
		#[pallet::call_index(2)]
		#[pallet::weight(T::WeightInfo::timeout(T::MaxDisputesPerTask::get()))]
		pub fn timeout(origin: OriginFor<T>, dispute: DisputeId) -> DispatchResult {
			ensure_signed(origin)?;
			let now = frame_system::Pallet::<T>::block_number();
			Self::do_timeout(dispute, now)
		}

		/// Reveals the tensor hashes the caller's `h_0` is made of (in the program's order;
		/// [`trainet_primitives::commit::state_hash_of`] of them must be its `h_0`), in the
		/// initialization game. Once both sides have, the first tensor they differ on goes to
		/// the element descent ([`Pallet::descend`]), which ends when the chain computes the
		/// one initial value the sides' lines differ on.
		#[pallet::call_index(11)]
		#[pallet::weight(Pallet::<T>::queuing(T::WeightInfo::reveal_state()))]
		pub fn reveal_state(
			origin: OriginFor<T>,
			dispute: DisputeId,
			tensors: StateTensors,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			let d = Self::live(dispute)?;
			let party = Self::party(&d, &who)?;
			Self::do_reveal_state(dispute, d, party, tensors)
		}

		/// Asks the solver of committed task `task` to show that it still holds the state at
		/// trace entry `point` (the last entry is the final model; any other a checkpoint
		/// verifiers need), inside the task's challenge window. The caller must be a verifier
		/// with `ChallengeBond` of free stake, locked until the challenge ends, and lost to
		/// the solver if it answers. The chain draws
		/// [`trainet_primitives::availability::AVAILABILITY_CHUNKS`] rows of the state; an
		/// unanswered challenge costs the solver its stake and the task, as a lost dispute
		/// does. It takes one of the task's dispute slots, and the reward waits for it.
		#[pallet::call_index(12)]
		#[pallet::weight(Pallet::<T>::queuing(T::WeightInfo::request_availability()))]
		pub fn request_availability(
			origin: OriginFor<T>,
			task: TaskId,
			point: u32,
		) -> DispatchResult {
			let challenger = ensure_signed(origin)?;
			Self::do_request_availability(challenger, task, point)
		}

		/// Answers availability challenge `dispute` with the asked rows, each proven against
		/// the asked state's hash, itself proven against the solver's trace root
		/// ([`trainet_primitives::availability::answer`] builds it). Anyone holding the state
		/// may; the challenge ends for the solver.
		#[pallet::call_index(13)]
		#[pallet::weight(T::WeightInfo::prove_availability())]
		pub fn prove_availability(
			origin: OriginFor<T>,
			dispute: DisputeId,
			answer: trainet_primitives::availability::AvailabilityAnswer,
		) -> DispatchResult {
			ensure_signed(origin)?;
			let d = Self::live(dispute)?;
			Self::do_prove_availability(dispute, d, answer)
		}
	}

	impl<T: Config> Pallet<T> {
		/// The weight of [`Pallet::settle_op`]: the largest product leaf (the most
		/// multiply-adds) and the largest elementwise leaf (the most values) together, since
		/// one leaf may be at both bounds at once, plus ending every other dispute on the task.
		pub fn settle_op_weight() -> Weight {
			T::WeightInfo::settle_op_matmul()
				.saturating_add(T::WeightInfo::settle_op_elementwise())
				.saturating_add(Self::ending_others())
		}

		/// A call that sets a deadline, with what queuing it may add beyond its benchmark (run
		/// with room in the queue): reading, and when the queue is full writing, the
		/// [`Unqueued`] mark.
		pub fn queuing(call: Weight) -> Weight {
			call.saturating_add(T::DbWeight::get().reads_writes(1, 1))
		}

		/// What ending every other dispute on a task adds to a call that concludes one.
		pub fn ending_others() -> Weight {
			T::WeightInfo::timeout(T::MaxDisputesPerTask::get())
				.saturating_sub(T::WeightInfo::timeout(0))
		}

		/// What opening a dispute of `challenger` against `task` needs now: the task in its
		/// challenge window, not the challenger's own, no other dispute of the challenger's on
		/// it, a free slot. Returns the task as a target and how many disputes it has open.
		pub(crate) fn admissible(
			task: TaskId,
			challenger: &T::AccountId,
		) -> Result<(TargetOf<T>, u32), DispatchError> {
			let target = T::Tasks::challengeable(task)?;
			ensure!(target.solver != *challenger, Error::<T>::OwnTask);
			ensure!(
				!TaskDisputes::<T>::contains_key(task, challenger),
				Error::<T>::AlreadyDisputing
			);
			let count = DisputeCount::<T>::get(task);
			ensure!(count < T::MaxDisputesPerTask::get(), Error::<T>::TooManyDisputes);
			Ok((target, count))
		}

		/// Enters new dispute `d` with id `id` (the next one) in every book, its task having
		/// `count` open before it: locks the challenger's bond (the last check and the first
		/// write: locking checks the role and the free stake, names what is missing and fails
		/// before changing anything), queues the deadline, counts the slot.
		pub(crate) fn book(id: DisputeId, count: u32, d: DisputeOf<T>) -> DispatchResult {
			let next = id.checked_add(1).ok_or(Error::<T>::Overflow)?;
			T::Stake::lock(&d.challenger, Role::Verifier, d.bond)?;
			Self::enqueue(id, d.deadline);
			NextDisputeId::<T>::put(next);
			TaskDisputes::<T>::insert(d.task, &d.challenger, id);
			DisputeCount::<T>::insert(d.task, count.saturating_add(1));
			if count.saturating_add(1) >= T::MaxDisputesPerTask::get() {
				FullSince::<T>::insert(d.task, frame_system::Pallet::<T>::block_number());
			}
			Disputes::<T>::insert(id, d);
			Ok(())
		}

		/// Which side `who` is in dispute `d`.
		fn party(d: &DisputeOf<T>, who: &T::AccountId) -> Result<Party, Error<T>> {
			if *who == d.solver {
				Ok(Party::Solver)
			} else if *who == d.challenger {
				Ok(Party::Challenger)
			} else {
				Err(Error::<T>::NotAParty)
			}
		}
	}

	impl<T: Config> pallet_task_escrow::TaskDisputes for Pallet<T> {
		fn open_disputes(task: TaskId) -> u32 {
			DisputeCount::<T>::get(task)
		}
	}
}

extern crate alloc;
