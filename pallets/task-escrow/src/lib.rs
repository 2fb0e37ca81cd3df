//! # Task escrow
//!
//! ## Overview
//!
//! The market's order book. A submitter posts a training task with its reward, which is held
//! on the submitter's account ([`HoldReason::Reward`]) until the task ends. A staked solver
//! claims it (part of its stake is locked for the task's life through
//! [`StakeInterface`]), trains, and commits to its trace. A challenge window follows; when it
//! closes with no dispute open, the reward moves to the solver and its stake is unlocked.
//!
//! ## Deadlines
//!
//! Every stage has a deadline, a block at whose start it ends:
//!
//! | stage       | deadline          | at the deadline                                         |
//! |-------------|-------------------|---------------------------------------------------------|
//! | `Open`      | `claim_by`        | the reward goes back to the submitter                   |
//! | `Claimed`   | `commit_by`       | the solver is slashed ([`SolverDiscipline`]), refund    |
//! | `Committed` | `challenge_until` | the solver is paid, unless a dispute is still open      |
//!
//! Deadlines are queued by block ([`Deadlines`]) and processed in `on_initialize`; the
//! permissionless [`Pallet::expire`] does the same for one task, should a block's queue ever
//! be skipped. A committed task whose window closed while disputes were open is paid when the
//! last one ends (the dispute pallets call [`TaskMarket::dispute_ended`]), or reopened or
//! refunded when its solver loses ([`TaskMarket::solver_lost`]).
//!
//! ## Interfaces
//!
//! - [`TaskMarket`]: what the challenge and slashing pallets ask of tasks.
//! - [`TaskDisputes`]: how many disputes are open against a task (the challenge pallet).
//! - [`SolverDiscipline`]: who may not claim, and the penalty of a missed commitment (the
//!   slashing pallet).

#![cfg_attr(not(feature = "std"), no_std)]

pub use pallet::*;
pub use weights::WeightInfo;

#[cfg(feature = "runtime-benchmarks")]
mod benchmarking;
pub mod deadline_queue;
#[cfg(test)]
mod mock;
#[cfg(test)]
mod tests;
pub mod weights;

use frame_support::{
	dispatch::DispatchResult,
	pallet_prelude::*,
	traits::{
		fungible::{self, Inspect, InspectHold, MutateHold},
		tokens::{Fortitude, Precision, Restriction},
	},
};
use frame_system::pallet_prelude::BlockNumberFor;
use pallet_compute_staking::{Role, StakeInterface};
use sp_runtime::traits::{One, Saturating, Zero};
use trainet_primitives::{
	availability::model_hash_matches,
	market::{Receipt, StateTensors, Task, TaskId, TaskState, Timeouts, TraceCommitment},
	program::step_program,
	settle::{self, LeafBudget, Unsettleable},
	task::{SpecError, TrainingSpec},
	trace::{verify_trace_proof, TracePoints, TraceProof},
};

/// A balance of the escrow currency.
pub type BalanceOf<T> =
	<<T as Config>::Currency as Inspect<<T as frame_system::Config>::AccountId>>::Balance;

/// A task as this pallet stores it.
pub type TaskOf<T> = Task<<T as frame_system::Config>::AccountId, BalanceOf<T>, BlockNumberFor<T>>;

/// A paid task's receipt as this pallet stores it.
pub type ReceiptOf<T> = Receipt<<T as frame_system::Config>::AccountId, BlockNumberFor<T>>;

pub use deadline_queue::MAX_DEADLINE_SLIDE;

/// A committed task that a verifier may challenge now.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ChallengeTarget<AccountId, Balance> {
	/// Its solver.
	pub solver: AccountId,
	/// The solver's commitment.
	pub commitment: TraceCommitment,
	/// The solver's stake locked behind the task.
	pub solver_stake: Balance,
	/// Which states the trace commits to (the spec's steps and checkpoint interval).
	pub points: TracePoints,
}

/// What the dispute pallets need of tasks.
pub trait TaskMarket<AccountId, Balance> {
	/// The committed task `task` if a dispute can be opened against it now, or the error
	/// saying why not.
	fn challengeable(task: TaskId) -> Result<ChallengeTarget<AccountId, Balance>, DispatchError>;

	/// The spec of a task still in the market.
	fn spec(task: TaskId) -> Option<TrainingSpec>;

	/// The task's solver was proven wrong and its stake already slashed: reopen the task for
	/// another solver or, past the reopen limit, refund the submitter.
	fn solver_lost(task: TaskId);

	/// A dispute against the task ended without proving its solver wrong: pay the solver if
	/// the window has closed and no other dispute is open.
	fn dispute_ended(task: TaskId);

	/// The task's dispute slots were all taken for `blocks` blocks, which ended now: give
	/// its challenge window those blocks back, so that challengers shut out meanwhile (by a
	/// solver's own challengers filling the slots, say) still have the whole window.
	fn extend_window(task: TaskId, blocks: u64);

	/// Benchmarks only: a task of a funded submitter, claimed by `solver` (staked and locked)
	/// and committed with `commitment`, open to challenges for the longest timeout. Its spec
	/// is `spec` (its steps set to the commitment's), or by default the largest model whose
	/// initial state the chain recomputes.
	#[cfg(feature = "runtime-benchmarks")]
	fn benchmark_committed_task(
		solver: &AccountId,
		commitment: TraceCommitment,
		spec: Option<TrainingSpec>,
	) -> TaskId;

	/// Benchmarks only: the block at which committed task `task`'s challenge window ends.
	#[cfg(feature = "runtime-benchmarks")]
	fn benchmark_window_end(task: TaskId) -> Option<u64>;
}

/// How many disputes are open against a task.
pub trait TaskDisputes {
	/// The number of open disputes against `task`.
	fn open_disputes(task: TaskId) -> u32;
}

impl TaskDisputes for () {
	fn open_disputes(_: TaskId) -> u32 {
		0
	}
}

/// Who may not claim tasks, and what a solver that misses its commitment pays.
pub trait SolverDiscipline<AccountId, Balance> {
	/// Whether `who` is barred from claiming.
	fn is_barred(who: &AccountId) -> bool;

	/// `solver` let `task` of `submitter` pass its commit deadline. `stake` of its locked
	/// stake backed the task: the implementation slashes it, or unlocks what it does not
	/// slash, so that none of it stays locked for the task.
	fn missed_commit(task: TaskId, solver: &AccountId, submitter: &AccountId, stake: Balance);
}

/// The two deadline queues: claim windows of open tasks, and the stages of claimed and
/// committed ones (see [`Deadlines`], [`ClaimDeadlines`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Queue {
	/// [`ClaimDeadlines`].
	Claims,
	/// [`Deadlines`].
	Work,
}

impl Queue {
	/// The queue of a task in `state`.
	pub(crate) fn of<A, B>(state: &TaskState<A, B>) -> Self {
		match state {
			TaskState::Open { .. } => Self::Claims,
			_ => Self::Work,
		}
	}
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

	/// Why this pallet holds funds.
	#[pallet::composite_enum]
	pub enum HoldReason {
		/// A task's reward, held from its submitter until the task ends.
		#[codec(index = 0)]
		Reward,
	}

	#[pallet::config]
	pub trait Config: frame_system::Config {
		/// The overarching event type.
		#[allow(deprecated)]
		type RuntimeEvent: From<Event<Self>> + IsType<<Self as frame_system::Config>::RuntimeEvent>;

		/// The currency rewards are paid in.
		type Currency: MutateHold<Self::AccountId, Reason = Self::RuntimeHoldReason>
			+ InspectHold<Self::AccountId>
			+ fungible::Mutate<Self::AccountId>;

		/// The runtime's hold reasons, of which [`HoldReason::Reward`] is one.
		type RuntimeHoldReason: From<HoldReason>;

		/// Solver stakes.
		type Stake: StakeInterface<Self::AccountId, Balance = BalanceOf<Self>>;

		/// Open disputes per task.
		type Disputes: TaskDisputes;

		/// Barred solvers and the penalty for a missed commitment.
		type Discipline: SolverDiscipline<Self::AccountId, BalanceOf<Self>>;

		/// The least reward a task may offer.
		#[pallet::constant]
		type MinReward: Get<BalanceOf<Self>>;

		/// The least solver stake locked for a claimed task (the floor of
		/// [`Pallet::solver_stake_for`]).
		#[pallet::constant]
		type SolverStake: Get<BalanceOf<Self>>;

		/// The solver stake as a multiple of the reward, when that is above the floor: a
		/// larger task is never more profitable to cheat. With `m` and the slashing pallet's
		/// winner share `w`, a caught cheat loses at least `(1 - w) * m` times the reward,
		/// whoever the winners are (its own second accounts included); `m >= 1 / (1 - w)`
		/// makes that at least the reward.
		#[pallet::constant]
		type SolverStakeMultiple: Get<u32>;

		/// What one leaf of a dispute may cost the chain: `submit` accepts a spec only if
		/// every leaf its disputes may reach fits ([`trainet_primitives::settle::check`]), so
		/// that every dispute over it can be decided. The challenge pallet must use the same.
		type LeafBudget: Get<LeafBudget>;

		/// The shortest stage a submitter may ask for, in blocks.
		#[pallet::constant]
		type MinTimeout: Get<BlockNumberFor<Self>>;

		/// The longest stage a submitter may ask for, in blocks.
		#[pallet::constant]
		type MaxTimeout: Get<BlockNumberFor<Self>>;

		/// How many times a task is reopened after its solver lost a dispute before the
		/// submitter is refunded instead.
		#[pallet::constant]
		type MaxReopens: Get<u32>;

		/// Deadlines one block's queue holds (bounds `on_initialize`).
		#[pallet::constant]
		type MaxDeadlinesPerBlock: Get<u32>;

		/// How long a paid task's [`Receipt`] stays on chain, in blocks: the time its
		/// submitter has to fetch the model by the hash it names.
		#[pallet::constant]
		type ReceiptLifetime: Get<BlockNumberFor<Self>>;

		/// Weights of this pallet's calls.
		type WeightInfo: WeightInfo;
	}

	/// The id the next task gets.
	#[pallet::storage]
	pub type NextTaskId<T: Config> = StorageValue<_, TaskId, ValueQuery>;

	/// Every task in the market (open, claimed or committed), by id.
	#[pallet::storage]
	pub type Tasks<T: Config> = StorageMap<_, Twox64Concat, TaskId, TaskOf<T>>;

	/// The claimed and committed tasks whose current stage (committing, the challenge window)
	/// ends at the start of a block, by block. Only a solver's claim (which locks its stake)
	/// puts a task here, so filling a block's queue to make a solver's `commit` fail costs a
	/// stake per slot.
	#[pallet::storage]
	pub type Deadlines<T: Config> = StorageMap<
		_,
		Twox64Concat,
		BlockNumberFor<T>,
		BoundedVec<TaskId, T::MaxDeadlinesPerBlock>,
		ValueQuery,
	>;

	/// The open tasks whose claim window ends at the start of a block, by block: a queue of
	/// their own, since anyone can post cheap tasks to fill it.
	#[pallet::storage]
	pub type ClaimDeadlines<T: Config> = StorageMap<
		_,
		Twox64Concat,
		BlockNumberFor<T>,
		BoundedVec<TaskId, T::MaxDeadlinesPerBlock>,
		ValueQuery,
	>;

	/// The receipts of paid tasks, by task, until their `kept_until`.
	#[pallet::storage]
	pub type Receipts<T: Config> = StorageMap<_, Twox64Concat, TaskId, ReceiptOf<T>>;

	/// The receipts dropped at the start of a block, by block.
	#[pallet::storage]
	pub type ReceiptExpiries<T: Config> = StorageMap<
		_,
		Twox64Concat,
		BlockNumberFor<T>,
		BoundedVec<TaskId, T::MaxDeadlinesPerBlock>,
		ValueQuery,
	>;

	/// Which stage of a task ran out of time.
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
	pub enum Expiry {
		/// Nobody claimed it.
		Unclaimed,
		/// The solver did not commit.
		Uncommitted,
	}

	#[pallet::event]
	#[pallet::generate_deposit(pub(super) fn deposit_event)]
	pub enum Event<T: Config> {
		/// A task was posted and its reward held.
		TaskSubmitted {
			task: TaskId,
			submitter: T::AccountId,
			reward: BalanceOf<T>,
			claim_by: BlockNumberFor<T>,
		},
		/// The submitter withdrew an unclaimed task; the reward is released.
		TaskCancelled { task: TaskId },
		/// A solver claimed a task; its stake is locked until the task ends.
		TaskClaimed { task: TaskId, solver: T::AccountId, commit_by: BlockNumberFor<T> },
		/// The solver committed to its trace; challenges are open until `challenge_until`.
		TaskCommitted {
			task: TaskId,
			solver: T::AccountId,
			commitment: TraceCommitment,
			challenge_until: BlockNumberFor<T>,
		},
		/// The challenge window closed unchallenged (or every dispute was won by the solver):
		/// the reward was paid and the solver's stake unlocked.
		TaskFinalized { task: TaskId, solver: T::AccountId, reward: BalanceOf<T> },
		/// A stage ran out of time and the reward went back to the submitter.
		TaskExpired { task: TaskId, stage: Expiry },
		/// The solver lost a dispute; the task is open again.
		TaskReopened { task: TaskId, claim_by: BlockNumberFor<T> },
		/// The solver lost a dispute and the task reached its reopen limit: the reward went
		/// back to the submitter.
		TaskRefunded { task: TaskId },
		/// Every dispute slot of the task was taken for a while: its challenge window now ends
		/// at `until` instead.
		ChallengeWindowExtended { task: TaskId, until: BlockNumberFor<T> },
		/// The paid task's receipt (its spec and commitment) stays on chain until `until`.
		ReceiptKept { task: TaskId, until: BlockNumberFor<T> },
		/// Every expiry queue in reach was full: the paid task keeps no receipt.
		ReceiptNotKept { task: TaskId },
		/// The paid task's receipt reached its end and was dropped.
		ReceiptDropped { task: TaskId },
	}

	#[pallet::error]
	pub enum Error<T> {
		/// No task has that id (or it has ended).
		TaskNotFound,
		/// The reward is below the minimum.
		RewardTooLow,
		/// The submitter cannot hold the reward (free balance too low).
		InsufficientBalance,
		/// A timeout is shorter than `MinTimeout` or longer than `MaxTimeout`.
		BadTimeout,
		/// The spec needs an input and an output layer width at least.
		SpecTooFewLayers,
		/// A layer width in the spec is zero or too large.
		SpecBadWidth,
		/// The dataset's features or classes do not match the model's input or output width.
		SpecDatasetShapeMismatch,
		/// The spec's batch size is zero or too large.
		SpecBadBatchSize,
		/// The spec's dataset has no samples.
		SpecEmptyDataset,
		/// The spec's step count is zero or too large.
		SpecBadSteps,
		/// A hyperparameter is out of range (non-finite, negative, or a decay not below 1).
		SpecBadHyperparameter,
		/// A classification needs at least two classes.
		SpecTooFewClasses,
		/// The checkpoint interval is zero or above the most steps a task may have.
		SpecBadCheckpointInterval,
		/// Only the task's submitter may do this.
		NotSubmitter,
		/// Only the task's solver may do this.
		NotSolver,
		/// The task is not open for claims.
		NotOpen,
		/// The task is not claimed (or already committed).
		NotClaimed,
		/// The task is not committed.
		NotCommitted,
		/// The solver is barred from claiming tasks.
		SolverBarred,
		/// This solver already lost this task in a dispute.
		SolverFailedThisTask,
		/// The commitment's step count differs from the spec's.
		StepsMismatch,
		/// The proof does not show `final_state` as the last entry under `trace_root`.
		BadFinalStateProof,
		/// The final state's tensor hashes are not as many as the spec's state has, do not
		/// hash to `final_state`, or their parameter part does not hash to `model_hash`.
		BadModelHash,
		/// The challenge window has closed.
		ChallengeWindowClosed,
		/// The task's deadline has not come yet.
		DeadlineNotReached,
		/// Disputes are still open against the task.
		DisputesOpen,
		/// Every block's deadline queue in reach is full; try again in a later block.
		DeadlineQueueFull,
		/// A block number or an id overflowed.
		Overflow,
		/// The chain could not decide a dispute over this spec's initialization: its state has
		/// more tensors than one reveal carries, or a line longer than one descent answer
		/// ([`trainet_primitives::settle::check`] says how many).
		SpecUnsettleableInitialState,
		/// The chain could not decide a dispute over one of this spec's operations: it is too
		/// large to execute whole, and one element of it reads more values, or needs more
		/// evidence bytes, than one leaf may take ([`trainet_primitives::settle::check`] names
		/// the operation).
		SpecUnsettleableOperation,
		/// Recomputing one segment of the spec's trace (its checkpoint interval of steps)
		/// would take an honest party longer than a dispute may give it at the reference
		/// speed: a smaller checkpoint interval fits.
		SpecUnsettleableRecomputation,
		/// A layer of the model's graph does not fit its input: a size zero or too large, a
		/// window larger than the padded image, a padding not below the kernel, a dense layer on
		/// an image not flattened, too many values per sample, or a last output that is not
		/// flat.
		SpecBadLayer,
		/// The model has more layers with parameters than a spec may have.
		SpecTooManyParamLayers,
	}

	#[pallet::hooks]
	impl<T: Config> Hooks<BlockNumberFor<T>> for Pallet<T> {
		fn on_initialize(now: BlockNumberFor<T>) -> Weight {
			let due = Deadlines::<T>::take(now);
			let claims = ClaimDeadlines::<T>::take(now);
			let (count, unclaimed) = (due.len() as u32, claims.len() as u32);
			for task in due.into_iter().chain(claims) {
				// Each queued task's deadline is `now` (the queues are kept exact), so this
				// cannot fail; a failure would only leave the task for `expire`.
				let _ = Self::do_expire(task, now);
			}
			let dropped = ReceiptExpiries::<T>::take(now);
			for task in &dropped {
				Receipts::<T>::remove(task);
				Self::deposit_event(Event::ReceiptDropped { task: *task });
			}
			// Each expiry may pay a task, which keeps a receipt; dropping one costs a write.
			let receipts = T::DbWeight::get()
				.reads_writes(2, 3)
				.saturating_mul(u64::from(count))
				.saturating_add(T::DbWeight::get().writes(1).saturating_mul(dropped.len() as u64));
			T::WeightInfo::on_initialize(count)
				.saturating_add(T::WeightInfo::on_initialize(unclaimed))
				.saturating_add(receipts)
				.saturating_add(T::DbWeight::get().reads_writes(1, 1))
		}

		#[cfg(feature = "try-runtime")]
		fn try_state(now: BlockNumberFor<T>) -> Result<(), sp_runtime::TryRuntimeError> {
			Self::do_try_state(now)
		}
	}

	#[pallet::call]
	impl<T: Config> Pallet<T> {
		/// Posts a training task: `reward` is held from the caller until the task ends.
		///
		/// The spec must be one a worker can run bit-exactly; each timeout must lie between
		/// `MinTimeout` and `MaxTimeout`.
		#[pallet::call_index(0)]
		#[pallet::weight(T::WeightInfo::submit())]
		pub fn submit(
			origin: OriginFor<T>,
			spec: TrainingSpec,
			reward: BalanceOf<T>,
			timeouts: Timeouts<BlockNumberFor<T>>,
		) -> DispatchResult {
			let submitter = ensure_signed(origin)?;
			spec.validate().map_err(Error::<T>::from)?;
			settle::check(&spec, &T::LeafBudget::get()).map_err(Error::<T>::from)?;
			ensure!(reward >= T::MinReward::get(), Error::<T>::RewardTooLow);
			for t in [timeouts.claim, timeouts.commit, timeouts.challenge] {
				ensure!(
					t >= T::MinTimeout::get() && t <= T::MaxTimeout::get(),
					Error::<T>::BadTimeout
				);
			}
			ensure!(
				T::Currency::can_hold(&HoldReason::Reward.into(), &submitter, reward),
				Error::<T>::InsufficientBalance
			);
			let id = NextTaskId::<T>::get();
			let next = id.checked_add(1).ok_or(Error::<T>::Overflow)?;
			let now = frame_system::Pallet::<T>::block_number();
			let claim_by = Self::slot(Queue::Claims, now.saturating_add(timeouts.claim))?;
			// The last check, and the first write: it fails before changing anything.
			T::Currency::hold(&HoldReason::Reward.into(), &submitter, reward)
				.map_err(|_| Error::<T>::InsufficientBalance)?;
			Self::enqueue(Queue::Claims, id, claim_by);
			NextTaskId::<T>::put(next);
			Tasks::<T>::insert(
				id,
				Task {
					submitter: submitter.clone(),
					spec,
					reward,
					solver_stake: Self::solver_stake_for(reward),
					timeouts,
					state: TaskState::Open { claim_by },
					reopened: 0,
					last_failed_solver: None,
				},
			);
			Self::deposit_event(Event::TaskSubmitted { task: id, submitter, reward, claim_by });
			Ok(())
		}

		/// Withdraws an unclaimed task of the caller's; the reward is released.
		#[pallet::call_index(1)]
		#[pallet::weight(T::WeightInfo::cancel())]
		pub fn cancel(origin: OriginFor<T>, task: TaskId) -> DispatchResult {
			let who = ensure_signed(origin)?;
			let t = Tasks::<T>::get(task).ok_or(Error::<T>::TaskNotFound)?;
			ensure!(t.submitter == who, Error::<T>::NotSubmitter);
			let TaskState::Open { claim_by } = t.state else {
				return Err(Error::<T>::NotOpen.into());
			};
			Self::unschedule(Queue::Claims, task, claim_by);
			Self::refund(task, &t)?;
			Self::deposit_event(Event::TaskCancelled { task });
			Ok(())
		}

		/// Claims an open task: the caller must be a solver with `SolverStake` of free stake,
		/// which is locked until the task ends. The commitment is due within the task's
		/// commit timeout.
		#[pallet::call_index(2)]
		#[pallet::weight(T::WeightInfo::claim())]
		pub fn claim(origin: OriginFor<T>, task: TaskId) -> DispatchResult {
			let solver = ensure_signed(origin)?;
			let mut t = Tasks::<T>::get(task).ok_or(Error::<T>::TaskNotFound)?;
			let TaskState::Open { claim_by } = t.state else {
				return Err(Error::<T>::NotOpen.into());
			};
			ensure!(!T::Discipline::is_barred(&solver), Error::<T>::SolverBarred);
			ensure!(
				t.last_failed_solver.as_ref() != Some(&solver),
				Error::<T>::SolverFailedThisTask
			);
			let now = frame_system::Pallet::<T>::block_number();
			let commit_by = Self::slot(Queue::Work, now.saturating_add(t.timeouts.commit))?;
			// The last check, and the first write: locking checks the role and the free stake,
			// names what is missing and fails before changing anything.
			T::Stake::lock(&solver, Role::Solver, t.solver_stake)?;
			Self::unschedule(Queue::Claims, task, claim_by);
			Self::enqueue(Queue::Work, task, commit_by);
			t.state = TaskState::Claimed { solver: solver.clone(), commit_by };
			Tasks::<T>::insert(task, t);
			Self::deposit_event(Event::TaskClaimed { task, solver, commit_by });
			Ok(())
		}

		/// Commits the caller's trained trace for a task it claimed: the trace root, the step
		/// count (must equal the spec's), the final state hash and the model hash, with a
		/// proof that `final_state` is the trace's last entry and the final state's tensor
		/// hashes, which must hash to `final_state` and whose parameter part must hash to
		/// `model_hash` ([`trainet_primitives::availability::model_hash_matches`]): the model
		/// a buyer fetches by that hash is the one the trace ends at. The challenge window
		/// opens.
		#[pallet::call_index(3)]
		#[pallet::weight(T::WeightInfo::commit())]
		pub fn commit(
			origin: OriginFor<T>,
			task: TaskId,
			commitment: TraceCommitment,
			final_proof: TraceProof,
			final_tensors: StateTensors,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			let mut t = Tasks::<T>::get(task).ok_or(Error::<T>::TaskNotFound)?;
			let TaskState::Claimed { solver, commit_by } = t.state.clone() else {
				return Err(Error::<T>::NotClaimed.into());
			};
			ensure!(solver == who, Error::<T>::NotSolver);
			ensure!(commitment.steps == t.spec.steps, Error::<T>::StepsMismatch);
			let points = t.spec.trace_points().ok_or(Error::<T>::SpecBadCheckpointInterval)?;
			let last = points.len().checked_sub(1).ok_or(Error::<T>::Overflow)?;
			ensure!(
				final_proof.state == commitment.final_state
					&& verify_trace_proof(&commitment.trace_root, points.len(), last, &final_proof),
				Error::<T>::BadFinalStateProof
			);
			let program = step_program(&t.spec).map_err(Error::<T>::from)?;
			ensure!(
				model_hash_matches(
					&commitment.final_state,
					&commitment.model_hash,
					&final_tensors,
					program.state_shapes.len(),
					program.params as usize,
				),
				Error::<T>::BadModelHash
			);
			let now = frame_system::Pallet::<T>::block_number();
			let challenge_until =
				Self::slot(Queue::Work, now.saturating_add(t.timeouts.challenge))?;
			Self::unschedule(Queue::Work, task, commit_by);
			Self::enqueue(Queue::Work, task, challenge_until);
			t.state = TaskState::Committed { solver: solver.clone(), commitment, challenge_until };
			Tasks::<T>::insert(task, t);
			Self::deposit_event(Event::TaskCommitted { task, solver, commitment, challenge_until });
			Ok(())
		}

		/// Moves on a task whose deadline has passed, as `on_initialize` does: refunds an
		/// unclaimed task, slashes a solver that missed its commitment, pays a committed task
		/// whose window closed with no dispute open. Anyone may call it.
		#[pallet::call_index(4)]
		#[pallet::weight(T::WeightInfo::expire().saturating_add(T::DbWeight::get().reads_writes(2, 3)))]
		pub fn expire(origin: OriginFor<T>, task: TaskId) -> DispatchResult {
			ensure_signed(origin)?;
			let now = frame_system::Pallet::<T>::block_number();
			Self::do_expire(task, now)
		}
	}

	impl<T: Config> From<Unsettleable> for Error<T> {
		fn from(e: Unsettleable) -> Self {
			match e {
				Unsettleable::InitialState { .. } => Error::SpecUnsettleableInitialState,
				Unsettleable::Element { .. } => Error::SpecUnsettleableOperation,
				Unsettleable::Recomputation { .. } => Error::SpecUnsettleableRecomputation,
				// `validate` passed, so the spec has a program; named as its shape if not.
				Unsettleable::BadSpec => Error::SpecBadWidth,
			}
		}
	}

	impl<T: Config> From<SpecError> for Error<T> {
		fn from(e: SpecError) -> Self {
			match e {
				SpecError::TooFewLayers => Error::SpecTooFewLayers,
				SpecError::BadWidth => Error::SpecBadWidth,
				SpecError::DatasetShapeMismatch => Error::SpecDatasetShapeMismatch,
				SpecError::BadBatchSize => Error::SpecBadBatchSize,
				SpecError::EmptyDataset => Error::SpecEmptyDataset,
				SpecError::BadSteps => Error::SpecBadSteps,
				SpecError::BadHyperparameter => Error::SpecBadHyperparameter,
				SpecError::TooFewClasses => Error::SpecTooFewClasses,
				SpecError::BadCheckpointInterval => Error::SpecBadCheckpointInterval,
				SpecError::BadLayer(_) => Error::SpecBadLayer,
				SpecError::TooManyParamLayers => Error::SpecTooManyParamLayers,
			}
		}
	}

	impl<T: Config> Pallet<T> {
		/// The stake a solver locks to claim a task paying `reward`: `SolverStakeMultiple`
		/// times the reward, and at least `SolverStake`.
		pub fn solver_stake_for(reward: BalanceOf<T>) -> BalanceOf<T> {
			reward.saturating_mul(T::SolverStakeMultiple::get().into()).max(T::SolverStake::get())
		}

		/// The block `task`'s deadline due at `at` will be queued at (see
		/// [`deadline_queue::slot`]); reads only.
		pub(crate) fn slot(
			queue: Queue,
			at: BlockNumberFor<T>,
		) -> Result<BlockNumberFor<T>, Error<T>> {
			match queue {
				Queue::Work => deadline_queue::slot::<Deadlines<T>, _, _, _>(at),
				Queue::Claims => deadline_queue::slot::<ClaimDeadlines<T>, _, _, _>(at),
			}
			.ok_or(Error::<T>::DeadlineQueueFull)
		}

		/// Queues `task` at `block`, a block [`Self::slot`] returned in the same call.
		pub(crate) fn enqueue(queue: Queue, task: TaskId, block: BlockNumberFor<T>) {
			// `slot` found room, and each call queues one task once: this cannot fail.
			let _ = match queue {
				Queue::Work => deadline_queue::insert::<Deadlines<T>, _, _, _>(task, block),
				Queue::Claims => deadline_queue::insert::<ClaimDeadlines<T>, _, _, _>(task, block),
			};
		}

		/// Removes `task` from the queue of block `at`.
		pub(crate) fn unschedule(queue: Queue, task: TaskId, at: BlockNumberFor<T>) {
			match queue {
				Queue::Work => deadline_queue::unschedule::<Deadlines<T>, _, _, _>(&task, at),
				Queue::Claims => {
					deadline_queue::unschedule::<ClaimDeadlines<T>, _, _, _>(&task, at)
				}
			}
		}

		/// Whether task `id`'s deadline is queued at `block`, in the queue of its stage.
		pub(crate) fn queued(id: TaskId, t: &TaskOf<T>, block: BlockNumberFor<T>) -> bool {
			match Queue::of(&t.state) {
				Queue::Work => Deadlines::<T>::get(block).contains(&id),
				Queue::Claims => ClaimDeadlines::<T>::get(block).contains(&id),
			}
		}

		/// Releases the reward to the submitter and removes the task.
		fn refund(task: TaskId, t: &TaskOf<T>) -> DispatchResult {
			T::Currency::release(
				&HoldReason::Reward.into(),
				&t.submitter,
				t.reward,
				Precision::BestEffort,
			)?;
			Tasks::<T>::remove(task);
			Ok(())
		}

		/// Pays the reward to the solver, unlocks its stake and removes the task.
		fn pay(task: TaskId, t: &TaskOf<T>, solver: &T::AccountId) -> DispatchResult {
			T::Currency::transfer_on_hold(
				&HoldReason::Reward.into(),
				&t.submitter,
				solver,
				t.reward,
				Precision::BestEffort,
				Restriction::Free,
				Fortitude::Polite,
			)?;
			T::Stake::unlock(solver, t.solver_stake);
			Tasks::<T>::remove(task);
			Self::deposit_event(Event::TaskFinalized {
				task,
				solver: solver.clone(),
				reward: t.reward,
			});
			Self::keep_receipt(task, t, solver);
			Ok(())
		}

		/// Keeps paid task `task`'s receipt for `ReceiptLifetime` blocks (fewer when the queue
		/// at that block is full and the next ones too: then none).
		fn keep_receipt(task: TaskId, t: &TaskOf<T>, solver: &T::AccountId) {
			let TaskState::Committed { commitment, .. } = &t.state else { return };
			let now = frame_system::Pallet::<T>::block_number();
			let at = now.saturating_add(T::ReceiptLifetime::get().max(One::one()));
			let Some(until) = deadline_queue::schedule::<ReceiptExpiries<T>, _, _, _>(task, at)
			else {
				Self::deposit_event(Event::ReceiptNotKept { task });
				return;
			};
			Receipts::<T>::insert(
				task,
				Receipt {
					submitter: t.submitter.clone(),
					solver: solver.clone(),
					spec: t.spec.clone(),
					commitment: *commitment,
					kept_until: until,
				},
			);
			Self::deposit_event(Event::ReceiptKept { task, until });
		}

		/// What happens when `task`'s deadline has come by `now`.
		pub(crate) fn do_expire(task: TaskId, now: BlockNumberFor<T>) -> DispatchResult {
			let t = Tasks::<T>::get(task).ok_or(Error::<T>::TaskNotFound)?;
			let deadline = t.deadline();
			ensure!(deadline <= now, Error::<T>::DeadlineNotReached);
			match &t.state {
				TaskState::Open { .. } => {
					Self::unschedule(Queue::Claims, task, deadline);
					Self::refund(task, &t)?;
					Self::deposit_event(Event::TaskExpired { task, stage: Expiry::Unclaimed });
				}
				TaskState::Claimed { solver, .. } => {
					Self::unschedule(Queue::Work, task, deadline);
					T::Discipline::missed_commit(task, solver, &t.submitter, t.solver_stake);
					Self::refund(task, &t)?;
					Self::deposit_event(Event::TaskExpired { task, stage: Expiry::Uncommitted });
				}
				TaskState::Committed { solver, .. } => {
					ensure!(T::Disputes::open_disputes(task) == 0, Error::<T>::DisputesOpen);
					Self::unschedule(Queue::Work, task, deadline);
					Self::pay(task, &t, solver)?;
				}
			}
			Ok(())
		}

		/// The invariants: each submitter's reward hold equals the sum of its tasks' rewards
		/// (holds of accounts without tasks cannot be enumerated through the fungible
		/// traits), every task's deadline lies in the future and is queued there
		/// (a committed task past its window only while disputes are open), and every queued
		/// deadline belongs to a task.
		pub fn do_try_state(now: BlockNumberFor<T>) -> Result<(), sp_runtime::TryRuntimeError> {
			use alloc::collections::btree_map::BTreeMap;
			let mut held: BTreeMap<T::AccountId, BalanceOf<T>> = BTreeMap::new();
			for (id, t) in Tasks::<T>::iter() {
				let sum = held.entry(t.submitter.clone()).or_insert_with(Zero::zero);
				*sum = sum.saturating_add(t.reward);
				ensure!(id < NextTaskId::<T>::get(), "a task id at or above NextTaskId");
				let deadline = t.deadline();
				if deadline > now {
					ensure!(Self::queued(id, &t, deadline), "a task's deadline is not queued");
				} else {
					ensure!(
						matches!(t.state, TaskState::Committed { .. })
							&& T::Disputes::open_disputes(id) > 0,
						"a task's deadline passed and nothing moved it on"
					);
				}
			}
			for (submitter, sum) in held {
				ensure!(
					T::Currency::balance_on_hold(&HoldReason::Reward.into(), &submitter) == sum,
					"reward hold differs from the submitter's tasks"
				);
			}
			for (id, r) in Receipts::<T>::iter() {
				ensure!(r.kept_until > now, "a receipt outlived its end");
				ensure!(
					ReceiptExpiries::<T>::get(r.kept_until).contains(&id),
					"a receipt's end is not queued"
				);
			}
			for (block, queue) in ReceiptExpiries::<T>::iter() {
				ensure!(block > now, "a receipt queue was left behind");
				for id in queue {
					ensure!(
						Receipts::<T>::get(id).is_some_and(|r| r.kept_until == block),
						"a queued receipt end belongs to no receipt"
					);
				}
			}
			let queues = Deadlines::<T>::iter()
				.map(|(b, q)| (Queue::Work, b, q))
				.chain(ClaimDeadlines::<T>::iter().map(|(b, q)| (Queue::Claims, b, q)));
			for (kind, block, queue) in queues {
				ensure!(block > now, "a deadline queue was left behind");
				for id in queue {
					ensure!(
						Tasks::<T>::get(id)
							.is_some_and(|t| t.deadline() == block && Queue::of(&t.state) == kind),
						"a queued deadline belongs to no task of that stage"
					);
				}
			}
			Ok(())
		}
	}

	impl<T: Config> TaskMarket<T::AccountId, BalanceOf<T>> for Pallet<T> {
		fn challengeable(
			task: TaskId,
		) -> Result<ChallengeTarget<T::AccountId, BalanceOf<T>>, DispatchError> {
			let t = Tasks::<T>::get(task).ok_or(Error::<T>::TaskNotFound)?;
			let TaskState::Committed { solver, commitment, challenge_until } = t.state else {
				return Err(Error::<T>::NotCommitted.into());
			};
			let now = frame_system::Pallet::<T>::block_number();
			ensure!(now < challenge_until, Error::<T>::ChallengeWindowClosed);
			let points = t.spec.trace_points().ok_or(Error::<T>::SpecBadCheckpointInterval)?;
			Ok(ChallengeTarget { solver, commitment, solver_stake: t.solver_stake, points })
		}

		fn spec(task: TaskId) -> Option<TrainingSpec> {
			Tasks::<T>::get(task).map(|t| t.spec)
		}

		fn solver_lost(task: TaskId) {
			let Some(mut t) = Tasks::<T>::get(task) else { return };
			let TaskState::Committed { solver, challenge_until, .. } = t.state.clone() else {
				return;
			};
			Self::unschedule(Queue::Work, task, challenge_until);
			let now = frame_system::Pallet::<T>::block_number();
			let reopen = t.reopened < T::MaxReopens::get();
			if reopen {
				if let Ok(claim_by) =
					Self::slot(Queue::Claims, now.saturating_add(t.timeouts.claim))
				{
					Self::enqueue(Queue::Claims, task, claim_by);
					t.state = TaskState::Open { claim_by };
					t.reopened = t.reopened.saturating_add(1);
					t.last_failed_solver = Some(solver);
					Tasks::<T>::insert(task, t);
					Self::deposit_event(Event::TaskReopened { task, claim_by });
					return;
				}
			}
			// Past the reopen limit (or with no room to queue a claim deadline): refund. A
			// release of a hold this pallet placed cannot fail.
			let _ = Self::refund(task, &t);
			Self::deposit_event(Event::TaskRefunded { task });
		}

		#[cfg(feature = "runtime-benchmarks")]
		fn benchmark_committed_task(
			solver: &T::AccountId,
			commitment: TraceCommitment,
			spec: Option<TrainingSpec>,
		) -> TaskId {
			use fungible::Mutate;
			let id = NextTaskId::<T>::get();
			let submitter: T::AccountId = frame_benchmarking::account("submitter", id as u32, 0);
			let reward = T::MinReward::get();
			T::Currency::set_balance(
				&submitter,
				reward.saturating_mul(10u32.into()).saturating_add(T::Currency::minimum_balance()),
			);
			let _ = T::Currency::hold(&HoldReason::Reward.into(), &submitter, reward);
			let stake = T::SolverStake::get();
			T::Stake::benchmark_staker(solver, stake.saturating_mul(4u32.into()));
			let _ = T::Stake::lock(solver, Role::Solver, stake);
			// The largest model whose initial state the chain recomputes (a state of just under
			// `MAX_CHAIN_ELEMENTS` values), so that a dispute benchmark reaching the
			// initialization leaf measures the referee's worst case.
			let mut spec = spec.unwrap_or_else(|| {
				let mut s = TrainingSpec::example_digits(Default::default());
				s.model = trainet_primitives::task::Model::Mlp {
					widths: trainet_primitives::task::LayerWidths::truncate_from(alloc::vec![
						1000, 512, 2
					]),
					activation: trainet_primitives::task::Activation::Relu,
				};
				s.dataset.features = 1000;
				s.dataset.classes = 2;
				s
			});
			spec.steps = commitment.steps;
			let now = frame_system::Pallet::<T>::block_number();
			let max = T::MaxTimeout::get();
			let challenge_until = Self::slot(Queue::Work, now.saturating_add(max)).unwrap_or(max);
			Self::enqueue(Queue::Work, id, challenge_until);
			NextTaskId::<T>::put(id.saturating_add(1));
			Tasks::<T>::insert(
				id,
				Task {
					submitter,
					spec,
					reward,
					solver_stake: stake,
					timeouts: Timeouts { claim: max, commit: max, challenge: max },
					state: TaskState::Committed {
						solver: solver.clone(),
						commitment,
						challenge_until,
					},
					reopened: 0,
					last_failed_solver: None,
				},
			);
			id
		}

		#[cfg(feature = "runtime-benchmarks")]
		fn benchmark_window_end(task: TaskId) -> Option<u64> {
			use sp_runtime::traits::UniqueSaturatedInto;
			match Tasks::<T>::get(task)?.state {
				TaskState::Committed { challenge_until, .. } => {
					Some(challenge_until.unique_saturated_into())
				}
				_ => None,
			}
		}

		fn extend_window(task: TaskId, blocks: u64) {
			use sp_runtime::traits::UniqueSaturatedInto;
			let Some(mut t) = Tasks::<T>::get(task) else { return };
			let TaskState::Committed { solver, commitment, challenge_until } = t.state.clone()
			else {
				return;
			};
			let now = frame_system::Pallet::<T>::block_number();
			let wanted = challenge_until.saturating_add(blocks.unique_saturated_into());
			if wanted <= now || blocks == 0 {
				return;
			}
			// A window already past (waiting for its disputes) is no longer queued.
			let Ok(until) = Self::slot(Queue::Work, wanted) else { return };
			if challenge_until > now {
				Self::unschedule(Queue::Work, task, challenge_until);
			}
			Self::enqueue(Queue::Work, task, until);
			t.state = TaskState::Committed { solver, commitment, challenge_until: until };
			Tasks::<T>::insert(task, t);
			Self::deposit_event(Event::ChallengeWindowExtended { task, until });
		}

		fn dispute_ended(task: TaskId) {
			let Some(t) = Tasks::<T>::get(task) else { return };
			let TaskState::Committed { challenge_until, .. } = t.state else { return };
			let now = frame_system::Pallet::<T>::block_number();
			if challenge_until <= now && T::Disputes::open_disputes(task) == 0 {
				let _ = Self::do_expire(task, now);
			}
		}
	}
}

extern crate alloc;
