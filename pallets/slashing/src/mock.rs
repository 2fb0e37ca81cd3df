//! A test runtime: System, Balances, compute staking, task escrow and this pallet. The tests
//! play the challenge pallet's part by calling [`crate::SettleDispute::settle`] directly.

// Tests may panic: the no-panic lints are for code that runs on chain.
#![allow(
	clippy::unwrap_used,
	clippy::expect_used,
	clippy::arithmetic_side_effects,
	clippy::indexing_slicing
)]

use crate as pallet_slashing;
use frame_support::{
	derive_impl, parameter_types,
	traits::{Hooks, VariantCountOf},
};
use frame_system::EnsureRoot;
use sp_core::H256;
use sp_runtime::{BuildStorage, Perbill};
use trainet_primitives::{market::Timeouts, task::TrainingSpec};

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
	pub const WinnerShare: Perbill = WINNER_SHARE;
	pub const BarAfter: u32 = BAR_AFTER;
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
	type Disputes = ();
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
}

/// Moves to block `n`, running every `on_initialize` and checking the invariants after each
/// block.
pub fn run_to_block(n: u64) {
	while System::block_number() < n {
		let next = System::block_number() + 1;
		System::set_block_number(next);
		Escrow::on_initialize(next);
		check_invariants(next);
	}
}
