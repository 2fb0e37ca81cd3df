//! Each pallet's configuration, with the chain's constants.

use frame_support::{
	derive_impl,
	dynamic_params::{dynamic_pallet_params, dynamic_params},
	parameter_types,
	traits::{
		AsEnsureOriginWithArg, ConstBool, ConstU128, ConstU32, ConstU64, ConstU8, Get,
		VariantCountOf,
	},
	weights::{
		constants::{RocksDbWeight, WEIGHT_REF_TIME_PER_SECOND},
		IdentityFee, Weight,
	},
};
use frame_system::limits::{BlockLength, BlockWeights};
use pallet_transaction_payment::{FungibleAdapter, Multiplier};
use sp_consensus_aura::sr25519::AuthorityId as AuraId;
use sp_runtime::{traits::One, FixedPointNumber, Perbill, Perquintill};
use sp_version::RuntimeVersion;

use super::{
	AccountId, Aura, Balance, Balances, Block, BlockNumber, Challenge, ComputeStaking, Hash, Nonce,
	PalletInfo, Runtime, RuntimeCall, RuntimeEvent, RuntimeFreezeReason, RuntimeHoldReason,
	RuntimeOrigin, RuntimeTask, Slashing, System, TaskEscrow, BLOCK_HASH_COUNT, DAYS,
	EXISTENTIAL_DEPOSIT, HOURS, MINUTES, SLOT_DURATION, UNIT, VERSION,
};

/// Share of a block's weight and length that ordinary (non-operational) extrinsics may fill.
const NORMAL_DISPATCH_RATIO: Perbill = Perbill::from_percent(75);

/// The most validators Aura and GRANDPA accept.
pub const MAX_AUTHORITIES: u32 = 32;

parameter_types! {
	pub const BlockHashCount: BlockNumber = BLOCK_HASH_COUNT;
	pub const Version: RuntimeVersion = VERSION;

	/// Two seconds of compute per block at a six-second block time.
	pub RuntimeBlockWeights: BlockWeights = BlockWeights::with_sensible_defaults(
		Weight::from_parts(2u64 * WEIGHT_REF_TIME_PER_SECOND, u64::MAX),
		NORMAL_DISPATCH_RATIO,
	);
	/// Five MiB per block: room for a dispute's leaf tensors as call data.
	pub RuntimeBlockLength: BlockLength = BlockLength::builder()
		.max_length(5 * 1024 * 1024)
		.modify_max_length_for_class(frame_support::dispatch::DispatchClass::Normal, |m| {
			*m = NORMAL_DISPATCH_RATIO.mul_floor(*m)
		})
		.build();
	/// The generic Substrate SS58 prefix, so addresses read the same in every wallet.
	pub const SS58Prefix: u16 = trainet_primitives::SS58_PREFIX;
}

/// The base types come from frame-system's solochain defaults; the rest is set here.
#[derive_impl(frame_system::config_preludes::SolochainDefaultConfig)]
impl frame_system::Config for Runtime {
	/// The block type for the runtime.
	type Block = Block;
	/// Block and extrinsic weights: base values and limits.
	type BlockWeights = RuntimeBlockWeights;
	/// The maximum length of a block (in bytes).
	type BlockLength = RuntimeBlockLength;
	/// The identifier of an account.
	type AccountId = AccountId;
	/// The type counting an account's transactions.
	type Nonce = Nonce;
	/// The type for hashing blocks and tries.
	type Hash = Hash;
	/// Maximum number of block-number to block-hash mappings kept (oldest pruned first).
	type BlockHashCount = BlockHashCount;
	/// The weight of database operations that the runtime can invoke.
	type DbWeight = RocksDbWeight;
	/// Version of the runtime.
	type Version = Version;
	/// The data stored with every account.
	type AccountData = pallet_balances::AccountData<Balance>;
	/// The address prefix of this chain.
	type SS58Prefix = SS58Prefix;
	type MaxConsumers = ConstU32<16>;
}

impl pallet_aura::Config for Runtime {
	type AuthorityId = AuraId;
	type DisabledValidators = ();
	type MaxAuthorities = ConstU32<MAX_AUTHORITIES>;
	type AllowMultipleBlocksPerSlot = ConstBool<false>;
	type SlotDuration = pallet_aura::MinimumPeriodTimesTwo<Runtime>;
}

impl pallet_grandpa::Config for Runtime {
	type RuntimeEvent = RuntimeEvent;
	type WeightInfo = ();
	type MaxAuthorities = ConstU32<MAX_AUTHORITIES>;
	type MaxNominators = ConstU32<0>;
	type MaxSetIdSessionEntries = ConstU64<0>;
	// Equivocation reports need a session pallet to prove key ownership; this chain's
	// validator set is fixed at genesis (or changed by sudo), so reports are not taken.
	type KeyOwnerProof = sp_core::Void;
	type EquivocationReportSystem = ();
}

impl pallet_timestamp::Config for Runtime {
	/// Milliseconds since the unix epoch.
	type Moment = u64;
	type OnTimestampSet = Aura;
	type MinimumPeriod = ConstU64<{ SLOT_DURATION / 2 }>;
	type WeightInfo = ();
}

impl pallet_balances::Config for Runtime {
	type MaxLocks = ConstU32<50>;
	type MaxReserves = ();
	type ReserveIdentifier = [u8; 8];
	/// The type for recording an account's balance.
	type Balance = Balance;
	type RuntimeEvent = RuntimeEvent;
	type DustRemoval = ();
	type ExistentialDeposit = ConstU128<EXISTENTIAL_DEPOSIT>;
	type AccountStore = System;
	type WeightInfo = pallet_balances::weights::SubstrateWeight<Runtime>;
	type FreezeIdentifier = RuntimeFreezeReason;
	type MaxFreezes = VariantCountOf<RuntimeFreezeReason>;
	type RuntimeHoldReason = RuntimeHoldReason;
	type RuntimeFreezeReason = RuntimeFreezeReason;
	type DoneSlashHandler = ();
}

parameter_types! {
	/// The fee per byte of an extrinsic: 0.4 micro-TNET, so that filling a block's ordinary
	/// length (3.75 MiB, about 1.6 TNET) costs about what filling its ordinary weight (1.5 s,
	/// 1.5 TNET) does. Stuffing blocks to make someone miss a deadline is then no cheaper by
	/// bytes than by weight.
	pub const TransactionByteFee: Balance = 400_000;
	/// The block fullness the fee multiplier steers to: above it fees rise, below it they
	/// fall back (never under the base fee).
	pub const TargetBlockFullness: Perquintill = Perquintill::from_percent(25);
	/// How fast the multiplier moves: polkadot's value, about 2.5x a day of full blocks.
	pub AdjustmentVariable: Multiplier = Multiplier::saturating_from_rational(75, 1_000_000);
	/// Fees never fall below the base fee.
	pub MinimumMultiplier: Multiplier = Multiplier::one();
	/// And rise without a set cap.
	pub MaximumMultiplier: Multiplier = sp_runtime::traits::Bounded::max_value();
}

/// The fee multiplier: sustained blocks above [`TargetBlockFullness`] raise every fee, so
/// keeping blocks full (to crowd out someone's answer before a deadline) gets dearer the
/// longer it lasts.
pub type FeeMultiplierUpdate = pallet_transaction_payment::TargetedFeeAdjustment<
	Runtime,
	TargetBlockFullness,
	AdjustmentVariable,
	MinimumMultiplier,
	MaximumMultiplier,
>;

impl pallet_transaction_payment::Config for Runtime {
	type RuntimeEvent = RuntimeEvent;
	type OnChargeTransaction = FungibleAdapter<Balances, ()>;
	type OperationalFeeMultiplier = ConstU8<5>;
	type WeightToFee = IdentityFee<Balance>;
	type LengthToFee = frame_support::weights::ConstantMultiplier<Balance, TransactionByteFee>;
	type FeeMultiplierUpdate = FeeMultiplierUpdate;
	type WeightInfo = pallet_transaction_payment::weights::SubstrateWeight<Runtime>;
}

impl pallet_sudo::Config for Runtime {
	type RuntimeEvent = RuntimeEvent;
	type RuntimeCall = RuntimeCall;
	type WeightInfo = pallet_sudo::weights::SubstrateWeight<Runtime>;
}

parameter_types! {
	/// A solver's minimum bond: what a lie about one task can cost it at the least.
	pub const MinSolverBond: Balance = 100 * UNIT;
	/// A verifier's minimum bond.
	pub const MinVerifierBond: Balance = 50 * UNIT;
	/// Unbonding takes a week: longer than any task's claim, commit and challenge windows
	/// plus a dispute, so no staker can leave ahead of a slash.
	pub const UnbondingPeriod: BlockNumber = 7 * DAYS;
	/// Unbonding chunks a staker may have at once.
	pub const MaxUnbondingChunks: u32 = 16;
}

impl pallet_compute_staking::Config for Runtime {
	type RuntimeEvent = RuntimeEvent;
	type Currency = Balances;
	type RuntimeHoldReason = RuntimeHoldReason;
	type MinSolverBond = MinSolverBond;
	type MinVerifierBond = MinVerifierBond;
	type UnbondingPeriod = UnbondingPeriod;
	type MaxUnbondingChunks = MaxUnbondingChunks;
	type WeightInfo = pallet_compute_staking::weights::SubstrateWeight<Runtime>;
}

parameter_types! {
	/// The least reward a task may offer.
	pub const MinReward: Balance = UNIT;
	/// The least solver stake locked per claimed task: the minimum solver bond backs one task
	/// at a time.
	pub const SolverStake: Balance = 100 * UNIT;
	/// Above the floor, the stake is twice the reward: with the winner share of one half, a
	/// caught cheat burns at least the reward, however its slash is shared.
	pub const SolverStakeMultiple: u32 = 2;
	/// The shortest stage (claim, commit, challenge window) a submitter may ask for: a minute.
	pub const MinTaskTimeout: BlockNumber = MINUTES;
	/// The longest stage: a day. Three stages plus the longest dispute stay well inside the
	/// unbonding period.
	pub const MaxTaskTimeout: BlockNumber = DAYS;
	/// A task whose solvers lost three disputes is refunded rather than reopened again.
	pub const MaxReopens: u32 = 3;
	/// Deadlines a block may process per pallet (bounds `on_initialize`).
	pub const MaxDeadlinesPerBlock: u32 = 256;
	/// A paid task's receipt (its model's hash and spec) stays a week: the time its submitter
	/// has to fetch the model.
	pub const ReceiptLifetime: BlockNumber = 7 * DAYS;
}

impl pallet_task_escrow::Config for Runtime {
	type RuntimeEvent = RuntimeEvent;
	type Currency = Balances;
	type RuntimeHoldReason = RuntimeHoldReason;
	type Stake = ComputeStaking;
	type Disputes = Challenge;
	type Discipline = Slashing;
	type MinReward = MinReward;
	type SolverStake = SolverStake;
	type SolverStakeMultiple = SolverStakeMultiple;
	type LeafBudget = ChainLeafBudget;
	type MinTimeout = MinTaskTimeout;
	type MaxTimeout = MaxTaskTimeout;
	type MaxReopens = MaxReopens;
	type MaxDeadlinesPerBlock = MaxDeadlinesPerBlock;
	type ReceiptLifetime = ReceiptLifetime;
	type WeightInfo = pallet_task_escrow::weights::SubstrateWeight<Runtime>;
}

/// The chain's parameters that governance (root: sudo on this chain) may change without a
/// runtime upgrade, through `pallet-parameters`' `set_parameter`. Each has its default here;
/// the runtime holds each inside bounds whatever is set (see [`RoundTimeout`]).
#[dynamic_params(RuntimeParameters, pallet_parameters::Parameters::<Runtime>)]
pub mod dynamic_params {
	use super::*;

	/// The dispute game's deadlines.
	#[dynamic_pallet_params]
	#[codec(index = 0)]
	pub mod disputes {
		/// Blocks each side has to answer in a bisection round (and in each stage of the
		/// operator-level game). Ten minutes by default: a task of the largest size (10^7
		/// steps) needs 24 rounds, four hours at most.
		#[codec(index = 0)]
		pub static RoundTimeout: BlockNumber = 10 * MINUTES;

		/// Blocks the leaf stage may last: two hours by default.
		#[codec(index = 1)]
		pub static LeafTimeout: BlockNumber = 2 * HOURS;
	}
}

/// The shortest deadline a dispute's round or leaf can have, whatever governance sets: a
/// party must be able to see the round open and get its answer into a block.
pub const MIN_DISPUTE_DEADLINE: BlockNumber = 5;
/// The longest round deadline: an hour. A dispute of 64 rounds (24 over the steps of the
/// longest trace, the rest over one step's operations) and the longest leaf stage end within
/// 76 hours, so a task's whole life (three stages of at most a day each, then its disputes)
/// stays inside the seven-day unbonding period: no staker can unbond ahead of a slash.
pub const MAX_ROUND_TIMEOUT: BlockNumber = HOURS;
/// The longest leaf stage: twelve hours.
pub const MAX_LEAF_TIMEOUT: BlockNumber = 12 * HOURS;

/// A governance parameter `P` held inside `[MIN, MAX]`.
pub struct Clamped<P, const MIN: BlockNumber, const MAX: BlockNumber>(core::marker::PhantomData<P>);

impl<P: Get<BlockNumber>, const MIN: BlockNumber, const MAX: BlockNumber> Get<BlockNumber>
	for Clamped<P, MIN, MAX>
{
	fn get() -> BlockNumber {
		P::get().clamp(MIN, MAX)
	}
}

#[cfg(feature = "runtime-benchmarks")]
impl Default for RuntimeParameters {
	fn default() -> Self {
		RuntimeParameters::Disputes(dynamic_params::disputes::Parameters::RoundTimeout(
			dynamic_params::disputes::RoundTimeout,
			Some(10 * MINUTES),
		))
	}
}

impl pallet_parameters::Config for Runtime {
	type RuntimeEvent = RuntimeEvent;
	type RuntimeParameters = RuntimeParameters;
	type AdminOrigin = AsEnsureOriginWithArg<frame_system::EnsureRoot<AccountId>>;
	// pallet-parameters keeps its `SubstrateWeight` private; `()` carries the same benchmarked
	// figures priced with RocksDB's read and write weights, which this chain uses too.
	type WeightInfo = ();
}

/// Each side's deadline in a dispute round: a governance parameter (see [`dynamic_params`]),
/// ten minutes by default, between [`MIN_DISPUTE_DEADLINE`] and [`MAX_ROUND_TIMEOUT`].
pub type RoundTimeout =
	Clamped<dynamic_params::disputes::RoundTimeout, MIN_DISPUTE_DEADLINE, MAX_ROUND_TIMEOUT>;
/// The leaf stage's deadline: a governance parameter (see [`dynamic_params`]), two hours by
/// default, between [`MIN_DISPUTE_DEADLINE`] and [`MAX_LEAF_TIMEOUT`].
pub type LeafTimeout =
	Clamped<dynamic_params::disputes::LeafTimeout, MIN_DISPUTE_DEADLINE, MAX_LEAF_TIMEOUT>;

parameter_types! {
	/// A challenger's bond per dispute: the minimum verifier bond backs one dispute at a time.
	pub const ChallengeBond: Balance = 50 * UNIT;
	/// Disputes open against one task at once (one per challenger).
	pub const MaxDisputesPerTask: u32 = 8;
	/// Due disputes the challenge pallet ends per block: 32 timeouts, each ending up to seven
	/// other disputes, weigh about a sixth of a block; more due at once are carried over.
	pub const MaxTimeoutsPerBlock: u32 = 32;
	/// One leaf of a dispute: a whole operation at the most the chain executes (and
	/// benchmarks), and 1.5 MiB of evidence, two fifths of what an ordinary extrinsic may
	/// fill of a block. Task escrow accepts only specs whose every leaf fits it.
	pub const ChainLeafBudget: trainet_primitives::settle::LeafBudget =
		trainet_primitives::settle::LeafBudget::CHAIN;
	/// Half of a slash goes to the winner; the rest is burned.
	pub const WinnerShare: Perbill = Perbill::from_percent(50);
	/// Three offences bar a solver from claiming until governance pardons it.
	pub const BarAfter: u32 = 3;
}

/// The runtime's leaf referee.
///
/// - **Initialization** (the dispute is over `h_0`): the runtime recomputes the initial state
///   from the spec with RepOps (`program::initial_state_hash`) and rules for the side whose
///   `h_0` matches; a state of more than `MAX_CHAIN_ELEMENTS` values is decided element by
///   element instead (the initialization game, `pallet_challenge::Pallet::reveal_state`).
/// - **A training step**: the operator-level game (`pallet_challenge::Pallet::commit_ops`,
///   `reveal_op`, `settle_op`): bisection over the step's op trace to one operation, which
///   the runtime re-executes from inputs checked against the agreed trace
///   (`trainet_primitives::referee`). An operation beyond one leaf's bound
///   (`referee::MAX_LEAF_ELEMENTS`, `referee::MAX_LEAF_MACS`) voids the dispute at its deadline.
pub struct Referee;

impl pallet_challenge::LeafAdjudicator for Referee {
	fn adjudicate(
		_: trainet_primitives::market::DisputeId,
		case: &trainet_primitives::market::LeafCase,
	) -> pallet_challenge::Verdict {
		use pallet_challenge::Verdict;
		use trainet_primitives::{bisection::Transition, market::Party};
		match case.transition {
			Transition::Initialization => {
				let spec = <TaskEscrow as pallet_task_escrow::TaskMarket<AccountId, Balance>>::spec(
					case.task,
				);
				use trainet_primitives::repops::ShapeError;
				match spec.map(|s| trainet_primitives::program::initial_state_hash(&s)) {
					Some(Ok(h0)) if case.solver_post == h0 => Verdict::Winner(Party::Solver),
					Some(Ok(_)) => Verdict::Winner(Party::Challenger),
					// Too large to recompute in one leaf: decided element by element.
					Some(Err(ShapeError::TooLarge)) => Verdict::Initialization,
					_ => Verdict::Pending,
				}
			}
			// A training step is too big for one block: the operator-level game narrows it
			// to one operation, which pallet-challenge re-executes with the reference operators.
			Transition::Step(_) => Verdict::Operations,
		}
	}

	fn expired(
		_: trainet_primitives::market::DisputeId,
		_: &trainet_primitives::market::LeafCase,
	) -> Option<trainet_primitives::market::Party> {
		None
	}
}

impl pallet_challenge::Config for Runtime {
	type RuntimeEvent = RuntimeEvent;
	type Currency = Balances;
	type Stake = ComputeStaking;
	type Tasks = TaskEscrow;
	type Settlement = Slashing;
	type Adjudicator = Referee;
	type ChallengeBond = ChallengeBond;
	type RoundTimeout = RoundTimeout;
	type LeafTimeout = LeafTimeout;
	type LeafBudget = ChainLeafBudget;
	type MaxDisputesPerTask = MaxDisputesPerTask;
	type MaxDeadlinesPerBlock = MaxDeadlinesPerBlock;
	type MaxTimeoutsPerBlock = MaxTimeoutsPerBlock;
	type WeightInfo = pallet_challenge::weights::SubstrateWeight<Runtime>;
}

impl pallet_slashing::Config for Runtime {
	type RuntimeEvent = RuntimeEvent;
	type Currency = Balances;
	type Stake = ComputeStaking;
	type Tasks = TaskEscrow;
	type WinnerShare = WinnerShare;
	type BarAfter = BarAfter;
	type AdminOrigin = frame_system::EnsureRoot<AccountId>;
	type WeightInfo = pallet_slashing::weights::SubstrateWeight<Runtime>;
}
