//! A test runtime with the whole market: System, Balances, compute staking, task escrow,
//! slashing and this pallet. The leaf referee is a test double that knows the honest trace
//! of every task ([`set_truth`]) and rules as the runtime's referee would: against the side
//! whose post-state differs from the honest one.

// Tests may panic: the no-panic lints are for code that runs on chain.
#![allow(
	clippy::unwrap_used,
	clippy::expect_used,
	clippy::arithmetic_side_effects,
	clippy::indexing_slicing
)]

use crate as pallet_challenge;
use crate::{LeafAdjudicator, Verdict};
use core::cell::RefCell;
use frame_support::{
	derive_impl, parameter_types,
	traits::{Hooks, VariantCountOf},
};
use frame_system::EnsureRoot;
use sp_core::H256;
use sp_runtime::{BuildStorage, Perbill};
use std::collections::BTreeMap;
use trainet_primitives::availability::FinalState;
use trainet_primitives::{
	bisection::Transition,
	market::{DisputeId, LeafCase, Party, TaskId, Timeouts},
	referee::LeafBound,
	settle::LeafBudget,
	task::TrainingSpec,
};

type Block = frame_system::mocking::MockBlock<Test>;

/// Account ids in tests are small integers.
pub type AccountId = u64;
pub type Balance = u128;

#[frame_support::runtime]
mod runtime {
	#[runtime::runtime]
	#[runtime::derive(
		RuntimeCall,
		RuntimeEvent,
		RuntimeError,
		RuntimeOrigin,
		RuntimeFreezeReason,
		RuntimeHoldReason,
		RuntimeSlashReason,
		RuntimeLockId,
		RuntimeTask,
		RuntimeViewFunction
	)]
	pub struct Test;

	#[runtime::pallet_index(0)]
	pub type System = frame_system;
	#[runtime::pallet_index(1)]
	pub type Balances = pallet_balances;
	#[runtime::pallet_index(2)]
	pub type Staking = pallet_compute_staking;
	#[runtime::pallet_index(3)]
	pub type Escrow = pallet_task_escrow;
	#[runtime::pallet_index(4)]
	pub type Slashing = pallet_slashing;
	#[runtime::pallet_index(5)]
	pub type Challenge = pallet_challenge;
}

#[derive_impl(frame_system::config_preludes::TestDefaultConfig)]
impl frame_system::Config for Test {
	type Block = Block;
	type AccountId = AccountId;
	type Lookup = sp_runtime::traits::IdentityLookup<AccountId>;
	type AccountData = pallet_balances::AccountData<Balance>;
}

#[derive_impl(pallet_balances::config_preludes::TestDefaultConfig)]
impl pallet_balances::Config for Test {
	type Balance = Balance;
	type ExistentialDeposit = frame_support::traits::ConstU128<1>;
	type AccountStore = System;
	type RuntimeHoldReason = RuntimeHoldReason;
	type RuntimeFreezeReason = RuntimeFreezeReason;
	type FreezeIdentifier = RuntimeFreezeReason;
	type MaxFreezes = VariantCountOf<RuntimeFreezeReason>;
}

pub const SOLVER_STAKE: Balance = 100;
pub const BOND: Balance = 50;
pub const ROUND_TIMEOUT: u64 = 3;
pub const LEAF_TIMEOUT: u64 = 4;
pub const MAX_DISPUTES: u32 = 3;
pub const WINNER_SHARE: Perbill = Perbill::from_percent(50);
pub const BAR_AFTER: u32 = 3;

parameter_types! {
	pub const LeafBudgetChain: trainet_primitives::settle::LeafBudget =
		trainet_primitives::settle::LeafBudget::CHAIN;
	pub const MinSolverBond: Balance = 100;
	pub const MinVerifierBond: Balance = 50;
	pub const UnbondingPeriod: u64 = 1_000;
	pub const MaxUnbondingChunks: u32 = 4;
	pub const MinReward: Balance = 10;
	pub const SolverStake: Balance = SOLVER_STAKE;
	pub const MinTimeout: u64 = 2;
	pub const MaxTimeout: u64 = 1_000;
	pub const MaxReopens: u32 = 2;
	pub const MaxDeadlinesPerBlock: u32 = 64;
	/// As many as a queue holds unless a test lowers it.
	pub static MaxTimeoutsPerBlock: u32 = 64;
	pub const WinnerShare: Perbill = WINNER_SHARE;
	pub const BarAfter: u32 = BAR_AFTER;
	pub const ChallengeBond: Balance = BOND;
	pub const RoundTimeout: u64 = ROUND_TIMEOUT;
	pub const LeafTimeout: u64 = LEAF_TIMEOUT;
	pub const MaxDisputesPerTask: u32 = MAX_DISPUTES;
}

impl pallet_compute_staking::Config for Test {
	type RuntimeEvent = RuntimeEvent;
	type Currency = Balances;
	type RuntimeHoldReason = RuntimeHoldReason;
	type MinSolverBond = MinSolverBond;
	type MinVerifierBond = MinVerifierBond;
	type UnbondingPeriod = UnbondingPeriod;
	type MaxUnbondingChunks = MaxUnbondingChunks;
	type WeightInfo = ();
}

impl pallet_task_escrow::Config for Test {
	type RuntimeEvent = RuntimeEvent;
	type Currency = Balances;
	type RuntimeHoldReason = RuntimeHoldReason;
	type Stake = Staking;
	type Disputes = Challenge;
	type Discipline = Slashing;
	type MinReward = MinReward;
	type SolverStake = SolverStake;
	type SolverStakeMultiple = frame_support::traits::ConstU32<0>;
	type LeafBudget = LeafBudgetChain;
	type MinTimeout = MinTimeout;
	type MaxTimeout = MaxTimeout;
	type MaxReopens = MaxReopens;
	type MaxDeadlinesPerBlock = MaxDeadlinesPerBlock;
	type ReceiptLifetime = frame_support::traits::ConstU64<30>;
	type WeightInfo = ();
}

impl pallet_slashing::Config for Test {
	type RuntimeEvent = RuntimeEvent;
	type Currency = Balances;
	type Stake = Staking;
	type Tasks = Escrow;
	type WinnerShare = WinnerShare;
	type BarAfter = BarAfter;
	type AdminOrigin = EnsureRoot<AccountId>;
	type WeightInfo = ();
}

impl pallet_challenge::Config for Test {
	type RuntimeEvent = RuntimeEvent;
	type Currency = Balances;
	type Stake = Staking;
	type Tasks = Escrow;
	type Settlement = Slashing;
	type Adjudicator = MockReferee;
	type ChallengeBond = ChallengeBond;
	type RoundTimeout = RoundTimeout;
	type LeafTimeout = LeafTimeout;
	type LeafBudget = MockLeafBudget;
	type MaxDisputesPerTask = MaxDisputesPerTask;
	type MaxDeadlinesPerBlock = MaxDeadlinesPerBlock;
	type MaxTimeoutsPerBlock = MaxTimeoutsPerBlock;
	type WeightInfo = ();
}

thread_local! {
	/// The honest trace `h_0 ..= h_N` of each task.
	static TRUTH: RefCell<BTreeMap<TaskId, Vec<H256>>> = const { RefCell::new(BTreeMap::new()) };
	/// Whether the referee defers its ruling.
	static DEFER: RefCell<bool> = const { RefCell::new(false) };
	/// Whether a disputed training step goes to the operator-level game (as the runtime's
	/// referee does) instead of being looked up.
	static OPERATIONS: RefCell<bool> = const { RefCell::new(false) };
	static INITIALIZATION: RefCell<bool> = const { RefCell::new(false) };
	/// Who wins when a deferred ruling never comes (`None`: void).
	static ON_EXPIRY: RefCell<Option<Party>> = const { RefCell::new(None) };
	/// The whole-operation leaf bound (tests lower it to send small models' operations
	/// through the element descent).
	static LEAF_BOUND: RefCell<LeafBound> = const { RefCell::new(LeafBound::CHAIN) };
	/// The reference speed of recomputations (tests lower it to make them take blocks).
	static WORK_PER_BLOCK: RefCell<u64> = const { RefCell::new(LeafBudget::CHAIN.work_per_block) };
	static LEAF_BYTES: RefCell<u64> = const { RefCell::new(LeafBudget::CHAIN.bytes) };
	/// The cases the referee saw.
	static CASES: RefCell<Vec<(DisputeId, LeafCase)>> = const { RefCell::new(Vec::new()) };
	/// The final states tests made, by hash: what a solver hands `commit` with them.
	static FINALS: RefCell<BTreeMap<H256, (FinalState, usize)>> = const { RefCell::new(BTreeMap::new()) };
}

/// A made-up final state of `spec`'s size from `seed` (see [`FinalState::made_up`]), which
/// `commit` accepts as the end of a trace; returns its hash.
pub fn made_up_final(spec: &TrainingSpec, seed: u64) -> H256 {
	let params = trainet_primitives::program::step_program(spec).expect("a valid spec").params;
	keep_final(FinalState::made_up(spec, seed).expect("a valid spec"), params as usize)
}

/// Another final state of the same size as the one hashing to `state`, told apart by `seed`
/// (a liar's).
pub fn other_final(state: &H256, seed: u64) -> H256 {
	let (f, params) = FINALS.with(|m| m.borrow().get(state).cloned()).expect("a made state");
	let mut tensors = f.tensors.into_inner();
	tensors[0] = H256::from_low_u64_be(0xbad_0000_0000 + seed);
	keep_final(FinalState::of(tensors, params).expect("a state"), params)
}

/// Remembers the real final state `state` of a run of `spec`; returns its hash.
pub fn real_final(spec: &TrainingSpec, state: &[trainet_primitives::repops::Matrix]) -> H256 {
	let params = trainet_primitives::program::step_program(spec).expect("a valid spec").params;
	let tensors = state.iter().map(trainet_primitives::commit::tensor_hash).collect();
	keep_final(FinalState::of(tensors, params as usize).expect("a state"), params as usize)
}

fn keep_final(f: FinalState, params: usize) -> H256 {
	let h = f.state;
	FINALS.with(|m| m.borrow_mut().insert(h, (f, params)));
	h
}

/// The final state hashing to `state` that a test made ([`made_up_final`], [`real_final`]).
pub fn final_state(state: &H256) -> FinalState {
	FINALS.with(|m| m.borrow().get(state).cloned()).expect("a final state a test made").0
}

/// Tells the referee the honest trace of `task`.
pub fn set_truth(task: TaskId, states: Vec<H256>) {
	TRUTH.with(|t| t.borrow_mut().insert(task, states));
}

/// Makes the referee defer its rulings; `on_expiry` wins when none comes.
pub fn defer_rulings(on_expiry: Option<Party>) {
	DEFER.with(|d| *d.borrow_mut() = true);
	ON_EXPIRY.with(|e| *e.borrow_mut() = on_expiry);
}

/// Sets the whole-operation leaf bound.
pub fn set_leaf_bound(bound: LeafBound) {
	LEAF_BOUND.with(|b| *b.borrow_mut() = bound);
}

/// Sets the bytes one leaf's evidence may take.
pub fn set_leaf_bytes(bytes: u64) {
	LEAF_BYTES.with(|b| *b.borrow_mut() = bytes);
}

/// Sets the reference speed: the work an honest party does per block.
pub fn set_work_per_block(work: u64) {
	WORK_PER_BLOCK.with(|w| *w.borrow_mut() = work);
}

/// The chain's leaf budget with the whole-operation bound [`set_leaf_bound`] set.
pub struct MockLeafBudget;

impl frame_support::traits::Get<LeafBudget> for MockLeafBudget {
	fn get() -> LeafBudget {
		LeafBudget {
			whole: LEAF_BOUND.with(|b| *b.borrow()),
			work_per_block: WORK_PER_BLOCK.with(|w| *w.borrow()),
			bytes: LEAF_BYTES.with(|b| *b.borrow()),
			..LeafBudget::CHAIN
		}
	}
}

/// Makes the referee send disputed training steps to the operator-level game.
pub fn play_operations() {
	OPERATIONS.with(|o| *o.borrow_mut() = true);
}

/// Makes the referee send a disputed initialization to the initialization game, as the
/// runtime's does for a state too large to recompute whole.
pub fn play_initialization() {
	INITIALIZATION.with(|o| *o.borrow_mut() = true);
}

/// The cases the referee was given.
pub fn cases() -> Vec<(DisputeId, LeafCase)> {
	CASES.with(|c| c.borrow().clone())
}

/// Re-executes (by looking up) the disputed transition: whoever's post-state is not the
/// honest one loses; if both are wrong the solver loses (its trace is wrong).
pub struct MockReferee;
impl LeafAdjudicator for MockReferee {
	fn adjudicate(id: DisputeId, case: &LeafCase) -> Verdict {
		CASES.with(|c| c.borrow_mut().push((id, case.clone())));
		if OPERATIONS.with(|o| *o.borrow()) && matches!(case.transition, Transition::Step(_)) {
			return Verdict::Operations;
		}
		if INITIALIZATION.with(|o| *o.borrow()) && case.transition == Transition::Initialization {
			return Verdict::Initialization;
		}
		if DEFER.with(|d| *d.borrow()) {
			return Verdict::Pending;
		}
		let index = match case.transition {
			Transition::Initialization => 0,
			Transition::Step(t) => t as usize + 1,
		};
		// A task the test told nothing of (as in benchmarks) waits for a ruling.
		let Some(honest) = TRUTH.with(|t| t.borrow().get(&case.task).map(|s| s[index])) else {
			return Verdict::Pending;
		};
		Verdict::Winner(if case.solver_post == honest { Party::Solver } else { Party::Challenger })
	}

	fn expired(_: DisputeId, _: &LeafCase) -> Option<Party> {
		ON_EXPIRY.with(|e| *e.borrow())
	}
}

/// Submitters 1, 2 (100_000 each); solvers 10..=14 and verifiers 20..=24 (10_000 each,
/// registered with a 1_000 bond); 30 has both roles.
pub fn new_test_ext() -> sp_io::TestExternalities {
	let mut storage = frame_system::GenesisConfig::<Test>::default().build_storage().unwrap();
	let mut balances = vec![(1, 100_000), (2, 100_000), (30, 10_000)];
	balances.extend((10..=14).chain(20..=24).map(|a| (a, 10_000)));
	pallet_balances::GenesisConfig::<Test> { balances, ..Default::default() }
		.assimilate_storage(&mut storage)
		.unwrap();
	let mut ext = sp_io::TestExternalities::new(storage);
	ext.execute_with(|| {
		use pallet_compute_staking::Roles;
		System::set_block_number(1);
		for s in 10..=14 {
			Staking::register(RuntimeOrigin::signed(s), Roles::SOLVER, 1_000).unwrap();
		}
		for v in 20..=24 {
			Staking::register(RuntimeOrigin::signed(v), Roles::VERIFIER, 1_000).unwrap();
		}
		Staking::register(RuntimeOrigin::signed(30), Roles::BOTH, 1_000).unwrap();
		TRUTH.with(|t| t.borrow_mut().clear());
		DEFER.with(|d| *d.borrow_mut() = false);
		ON_EXPIRY.with(|e| *e.borrow_mut() = None);
		CASES.with(|c| c.borrow_mut().clear());
	});
	ext
}

/// The spec of a task of `steps` steps.
pub fn spec(steps: u32) -> TrainingSpec {
	let mut s = TrainingSpec::example_digits(H256::repeat_byte(7));
	s.steps = steps;
	s
}

/// Timeouts of 10 blocks to claim, 20 to commit, 30 to challenge.
pub fn timeouts() -> Timeouts<u64> {
	Timeouts { claim: 10, commit: 20, challenge: 30 }
}

/// Checks every pallet's invariants at block `now`.
pub fn check_invariants(now: u64) {
	Staking::do_try_state().unwrap();
	Escrow::do_try_state(now).unwrap();
	Slashing::do_try_state().unwrap();
	Challenge::do_try_state(now).unwrap();
}

/// Moves to block `n`, running every `on_initialize` and checking the invariants after each
/// block.
pub fn run_to_block(n: u64) {
	while System::block_number() < n {
		let next = System::block_number() + 1;
		System::set_block_number(next);
		Escrow::on_initialize(next);
		Challenge::on_initialize(next);
		check_invariants(next);
	}
}

/// Everything burned by slashes so far (from the `Slashed` events).
pub fn burned() -> Balance {
	System::events()
		.into_iter()
		.filter_map(|r| match r.event {
			RuntimeEvent::Slashing(pallet_slashing::Event::Slashed { burned, .. }) => Some(burned),
			_ => None,
		})
		.sum()
}
