//! # Trainet runtime
//!
//! ## Overview
//!
//! The FRAME runtime of the Trainet chain: a trustless market for machine-learning training.
//! Submitters escrow rewards, solvers stake and commit to every training step, verifiers
//! challenge, and the chain referees a dispute by re-executing one tensor operation.
//!
//! ## Design
//!
//! This crate composes the base of a Substrate solochain: block production by Aura, finality
//! by GRANDPA, balances with holds and freezes, transaction fees, and a sudo key for the early
//! network. The protocol pallets (staking, task escrow, challenge, slashing) live under
//! `pallets/` and are composed here.
//!
//! - [`configs`]: each pallet's `Config`, with the chain's constants.
//! - [`apis`]: the runtime APIs the node, wallets and polkadot.js call.
//! - [`genesis_config_presets`]: the `development` and `local_testnet` genesis presets.
//!
//! ## Terms
//!
//! - *Slot*: an Aura time slot of [`SLOT_DURATION`] milliseconds; at most one block each.
//! - *UNIT*: `10^12` planck, the display unit of the native token.

#![cfg_attr(not(feature = "std"), no_std)]
// `construct_runtime` and `impl_runtime_apis` expand to large recursive types.
#![recursion_limit = "256"]

#[cfg(feature = "std")]
include!(concat!(env!("OUT_DIR"), "/wasm_binary.rs"));

pub mod apis;
pub mod configs;
pub use configs::{dynamic_params, RuntimeParameters};
pub mod genesis_config_presets;
#[cfg(test)]
mod tests;

extern crate alloc;

// `impl_opaque_keys!` and `#[runtime]` expand to a bare `Vec`, which no_std builds must
// import; std builds have it in the prelude already.
#[allow(unused_imports)]
use alloc::vec::Vec;

use sp_runtime::{generic, impl_opaque_keys, traits::BlakeTwo256, MultiAddress};
use sp_version::RuntimeVersion;

pub use frame_system::Call as SystemCall;
pub use pallet_balances::Call as BalancesCall;
pub use pallet_timestamp::Call as TimestampCall;
#[cfg(any(feature = "std", test))]
pub use sp_runtime::BuildStorage;

/// Opaque types: what the node needs to know of blocks without knowing the runtime's
/// extrinsic format, so that it keeps syncing across runtime upgrades.
pub mod opaque {
	use super::*;
	use sp_runtime::traits::Hash as HashT;

	pub use sp_runtime::OpaqueExtrinsic as UncheckedExtrinsic;

	/// Opaque block header type.
	pub type Header = generic::Header<BlockNumber, BlakeTwo256>;
	/// Opaque block type.
	pub type Block = generic::Block<Header, UncheckedExtrinsic>;
	/// Opaque block identifier type.
	pub type BlockId = generic::BlockId<Block>;
	/// Opaque block hash type.
	pub type Hash = <BlakeTwo256 as HashT>::Output;
}

impl_opaque_keys! {
	/// The session keys of a validator: its Aura (block production) and GRANDPA (finality) keys.
	pub struct SessionKeys {
		pub aura: Aura,
		pub grandpa: Grandpa,
	}
}

/// The runtime's version. Bump `spec_version` on every change of runtime logic.
#[sp_version::runtime_version]
pub const VERSION: RuntimeVersion = RuntimeVersion {
	spec_name: alloc::borrow::Cow::Borrowed("trainet"),
	impl_name: alloc::borrow::Cow::Borrowed("trainet-node"),
	authoring_version: 1,
	spec_version: 100,
	impl_version: 1,
	apis: apis::RUNTIME_API_VERSIONS,
	transaction_version: 1,
	system_version: 1,
};

mod block_times {
	/// The target block time in milliseconds: one block per Aura slot.
	///
	/// It cannot change after genesis: doing so stops block production.
	pub const MILLI_SECS_PER_BLOCK: u64 = 6000;

	/// The Aura slot duration, read by `pallet_timestamp` and `pallet_aura`.
	pub const SLOT_DURATION: u64 = MILLI_SECS_PER_BLOCK;
}
pub use block_times::*;

/// Blocks per minute at the target block time.
pub const MINUTES: BlockNumber = 60_000 / (MILLI_SECS_PER_BLOCK as BlockNumber);
/// Blocks per hour at the target block time.
pub const HOURS: BlockNumber = MINUTES * 60;
/// Blocks per day at the target block time.
pub const DAYS: BlockNumber = HOURS * 24;

/// The number of block hashes kept for mortal transactions.
pub const BLOCK_HASH_COUNT: BlockNumber = 2400;

pub use trainet_primitives::UNIT;
/// A thousandth of a unit.
pub const MILLI_UNIT: Balance = 1_000_000_000;
/// A millionth of a unit.
pub const MICRO_UNIT: Balance = 1_000_000;

/// The smallest balance an account may hold; below it the account is reaped.
pub const EXISTENTIAL_DEPOSIT: Balance = MILLI_UNIT;

pub use trainet_primitives::{AccountId, Balance, BlockNumber, Hash, Nonce, Signature};

/// The address format for describing accounts.
pub type Address = MultiAddress<AccountId, ()>;

/// Block header type as expected by this runtime.
pub type Header = generic::Header<BlockNumber, BlakeTwo256>;

/// Block type as expected by this runtime.
pub type Block = generic::Block<Header, UncheckedExtrinsic>;

/// A block that is signed.
pub type SignedBlock = generic::SignedBlock<Block>;

/// A block's identifier.
pub type BlockId = generic::BlockId<Block>;

/// The transaction extensions that check and charge every signed transaction.
pub type TxExtension = (
	frame_system::AuthorizeCall<Runtime>,
	frame_system::CheckNonZeroSender<Runtime>,
	frame_system::CheckSpecVersion<Runtime>,
	frame_system::CheckTxVersion<Runtime>,
	frame_system::CheckGenesis<Runtime>,
	frame_system::CheckEra<Runtime>,
	frame_system::CheckNonce<Runtime>,
	frame_system::CheckWeight<Runtime>,
	pallet_transaction_payment::ChargeTransactionPayment<Runtime>,
	frame_metadata_hash_extension::CheckMetadataHash<Runtime>,
	frame_system::WeightReclaim<Runtime>,
);

/// An extrinsic as the runtime decodes it.
pub type UncheckedExtrinsic =
	generic::UncheckedExtrinsic<Address, RuntimeCall, Signature, TxExtension>;

/// The payload that a transaction's signer signs.
pub type SignedPayload = generic::SignedPayload<RuntimeCall, TxExtension>;

/// Migrations to run on a runtime upgrade, besides those of the pallets.
#[allow(unused_parens)]
type Migrations = ();

/// Dispatches calls to the pallets and runs their hooks.
pub type Executive = frame_executive::Executive<
	Runtime,
	Block,
	frame_system::ChainContext<Runtime>,
	Runtime,
	AllPalletsWithSystem,
	Migrations,
>;

/// The runtime: its pallets, each at a fixed index (indices are part of the call encoding).
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
	pub struct Runtime;

	#[runtime::pallet_index(0)]
	pub type System = frame_system;

	#[runtime::pallet_index(1)]
	pub type Timestamp = pallet_timestamp;

	#[runtime::pallet_index(2)]
	pub type Aura = pallet_aura;

	#[runtime::pallet_index(3)]
	pub type Grandpa = pallet_grandpa;

	#[runtime::pallet_index(4)]
	pub type Balances = pallet_balances;

	#[runtime::pallet_index(5)]
	pub type TransactionPayment = pallet_transaction_payment;

	#[runtime::pallet_index(6)]
	pub type Sudo = pallet_sudo;

	#[runtime::pallet_index(7)]
	pub type Parameters = pallet_parameters;

	// The protocol pallets.
	#[runtime::pallet_index(10)]
	pub type ComputeStaking = pallet_compute_staking;

	#[runtime::pallet_index(11)]
	pub type TaskEscrow = pallet_task_escrow;

	#[runtime::pallet_index(12)]
	pub type Challenge = pallet_challenge;

	#[runtime::pallet_index(13)]
	pub type Slashing = pallet_slashing;
}

#[cfg(feature = "runtime-benchmarks")]
mod benches {
	frame_benchmarking::define_benchmarks!(
		[frame_benchmarking, BaselineBench::<Runtime>]
		[frame_system, SystemBench::<Runtime>]
		[frame_system_extensions, SystemExtensionsBench::<Runtime>]
		[pallet_balances, Balances]
		[pallet_timestamp, Timestamp]
		[pallet_sudo, Sudo]
		[pallet_parameters, Parameters]
		[pallet_compute_staking, ComputeStaking]
		[pallet_task_escrow, TaskEscrow]
		[pallet_challenge, Challenge]
		[pallet_slashing, Slashing]
	);
}
