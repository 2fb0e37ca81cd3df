//! A test runtime: System, Balances, compute staking and this pallet, with the dispute side
//! ([`TaskDisputes`], [`SolverDiscipline`]) played by test doubles that the tests steer.

// Tests may panic: the no-panic lints are for code that runs on chain.
#![allow(
	clippy::unwrap_used,
	clippy::expect_used,
	clippy::arithmetic_side_effects,
	clippy::indexing_slicing
)]

use crate as pallet_task_escrow;
use crate::{SolverDiscipline, TaskDisputes};
use core::cell::RefCell;
use frame_support::{
	derive_impl, parameter_types,
	traits::{fungible::Balanced, Imbalance, VariantCountOf},
};
use pallet_compute_staking::StakeInterface;
use sp_core::H256;
use sp_runtime::BuildStorage;
use std::collections::{BTreeMap, BTreeSet};
use trainet_primitives::{
	market::{TaskId, Timeouts},
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

parameter_types! {
	pub const LeafBudgetChain: trainet_primitives::settle::LeafBudget =
		trainet_primitives::settle::LeafBudget::CHAIN;
	pub const MinSolverBond: Balance = 100;
	pub const MinVerifierBond: Balance = 50;
	pub const UnbondingPeriod: u64 = 1_000;
	pub const MaxUnbondingChunks: u32 = 4;
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

pub const MIN_REWARD: Balance = 10;
pub const SOLVER_STAKE: Balance = 100;
pub const MIN_TIMEOUT: u64 = 2;
pub const MAX_TIMEOUT: u64 = 100;
pub const MAX_REOPENS: u32 = 2;
pub const MAX_PER_BLOCK: u32 = 3;

parameter_types! {
	pub const MinReward: Balance = MIN_REWARD;
	pub const SolverStake: Balance = SOLVER_STAKE;
	/// Off unless a test sets it: most tests lock the floor.
	pub static SolverStakeMultiple: u32 = 0;
	pub const MinTimeout: u64 = MIN_TIMEOUT;
	pub const MaxTimeout: u64 = MAX_TIMEOUT;
	pub const MaxReopens: u32 = MAX_REOPENS;
	pub const MaxDeadlinesPerBlock: u32 = MAX_PER_BLOCK;
}

thread_local! {
	/// Open disputes per task, as the challenge pallet would count them.
	pub static OPEN_DISPUTES: RefCell<BTreeMap<TaskId, u32>> = const { RefCell::new(BTreeMap::new()) };
	/// Barred solvers.
	pub static BARRED: RefCell<BTreeSet<AccountId>> = const { RefCell::new(BTreeSet::new()) };
	/// Missed commitments seen: (task, solver, slashed).
	pub static MISSED: RefCell<Vec<(TaskId, AccountId, Balance)>> = const { RefCell::new(Vec::new()) };
}

/// Open disputes as a test sets them.
pub struct MockDisputes;
impl TaskDisputes for MockDisputes {
	fn open_disputes(task: TaskId) -> u32 {
		OPEN_DISPUTES.with(|d| d.borrow().get(&task).copied().unwrap_or(0))
	}
}

/// Sets the number of open disputes against `task`.
pub fn set_open_disputes(task: TaskId, n: u32) {
	OPEN_DISPUTES.with(|d| d.borrow_mut().insert(task, n));
}

/// Bars `who` from claiming.
pub fn bar(who: AccountId) {
	BARRED.with(|b| b.borrow_mut().insert(who));
}

/// The missed commitments the discipline saw.
pub fn missed() -> Vec<(TaskId, AccountId, Balance)> {
	MISSED.with(|m| m.borrow().clone())
}

/// Slashes the whole stake; half goes to the submitter, half is burned (as the slashing
/// pallet does with its own share).
pub struct MockDiscipline;
impl SolverDiscipline<AccountId, Balance> for MockDiscipline {
	fn is_barred(who: &AccountId) -> bool {
		BARRED.with(|b| b.borrow().contains(who))
	}

	fn missed_commit(task: TaskId, solver: &AccountId, submitter: &AccountId, stake: Balance) {
		let credit = Staking::slash_locked(solver, stake);
		let taken = credit.peek();
		let (to_submitter, _burned) = credit.split(taken / 2);
		let _ = Balances::resolve(submitter, to_submitter);
		MISSED.with(|m| m.borrow_mut().push((task, *solver, taken)));
	}
}

impl pallet_task_escrow::Config for Test {
	type RuntimeEvent = RuntimeEvent;
	type Currency = Balances;
	type RuntimeHoldReason = RuntimeHoldReason;
	type Stake = Staking;
	type Disputes = MockDisputes;
	type Discipline = MockDiscipline;
	type MinReward = MinReward;
	type SolverStake = SolverStake;
	type SolverStakeMultiple = SolverStakeMultiple;
	type LeafBudget = LeafBudgetChain;
	type MinTimeout = MinTimeout;
	type MaxTimeout = MaxTimeout;
	type MaxReopens = MaxReopens;
	type MaxDeadlinesPerBlock = MaxDeadlinesPerBlock;
	type ReceiptLifetime = frame_support::traits::ConstU64<30>;
	type WeightInfo = ();
}

/// Submitters 1, 2; solvers 10, 11, 12 (registered with a 300 bond); 13 a verifier only;
/// 9 nearly broke.
pub fn new_test_ext() -> sp_io::TestExternalities {
	let mut storage = frame_system::GenesisConfig::<Test>::default().build_storage().unwrap();
	pallet_balances::GenesisConfig::<Test> {
		balances: vec![
			(1, 10_000),
			(2, 10_000),
			(9, 20),
			(10, 1_000),
			(11, 1_000),
			(12, 1_000),
			(13, 1_000),
		],
		..Default::default()
	}
	.assimilate_storage(&mut storage)
	.unwrap();
	let mut ext = sp_io::TestExternalities::new(storage);
	ext.execute_with(|| {
		System::set_block_number(1);
		use pallet_compute_staking::Roles;
		for s in [10, 11, 12] {
			Staking::register(RuntimeOrigin::signed(s), Roles::SOLVER, 300).unwrap();
		}
		Staking::register(RuntimeOrigin::signed(13), Roles::VERIFIER, 300).unwrap();
		OPEN_DISPUTES.with(|d| d.borrow_mut().clear());
		BARRED.with(|b| b.borrow_mut().clear());
		MISSED.with(|m| m.borrow_mut().clear());
	});
	ext
}

/// The spec every test task uses, with `steps` steps.
pub fn spec(steps: u32) -> TrainingSpec {
	let mut s = TrainingSpec::example_digits(H256::repeat_byte(7));
	s.steps = steps;
	s
}

/// Timeouts of 5 blocks to claim, 10 to commit, 20 to challenge.
pub fn timeouts() -> Timeouts<u64> {
	Timeouts { claim: 5, commit: 10, challenge: 20 }
}

/// Moves to block `n`, running `on_initialize` and checking the invariants after each block.
pub fn run_to_block(n: u64) {
	use frame_support::traits::Hooks;
	while System::block_number() < n {
		let next = System::block_number() + 1;
		System::set_block_number(next);
		Escrow::on_initialize(next);
		Escrow::do_try_state(next).unwrap();
		Staking::do_try_state().unwrap();
	}
}
