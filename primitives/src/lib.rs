//! # Trainet primitives
//!
//! `no_std` types shared by the runtime (wasm) and the off-chain worker (native), so both
//! sides agree on every encoding and every index:
//!
//! - the chain's basic types (this module);
//! - [`task`]: the training task spec;
//! - [`trace`]: trace commitments (Merkle roots over state hashes) and their proofs;
//! - [`bisection`]: the dispute game's bisection arithmetic;
//! - [`market`]: the records of tasks and disputes the pallets keep;
//! - [`api`]: the runtime API that reads them;
//! - [`repops`]: the reproducible operators, bit-exact by specification (`docs/repops.md`);
//! - [`program`]: the canonical step program, one training step as an ordered list of RepOps;
//! - [`commit`]: hashes of tensors, states, datasets and a step's op trace;
//! - [`referee`]: the on-chain check of one disputed operation;
//! - [`descent`]: the element descent for operations too large for one leaf;
//! - [`settle`]: the settleability rule, every leaf of a spec's disputes against one leaf's budget.

#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod api;
pub mod availability;
pub mod bisection;
pub mod commit;
pub mod dataset;
pub mod descent;
pub mod market;
pub mod program;
pub mod referee;
pub mod repops;
pub mod settle;
pub mod task;
pub mod trace;

use sp_runtime::{
	traits::{IdentifyAccount, Verify},
	MultiSignature,
};

/// A block's number.
pub type BlockNumber = u32;

/// A transaction signature: sr25519, ed25519 or ecdsa.
pub type Signature = MultiSignature;

/// An account id: the 32-byte public key behind a [`Signature`].
pub type AccountId = <<Signature as Verify>::Signer as IdentifyAccount>::AccountId;

/// An amount of the native token, in planck (`10^-12` of a unit).
pub type Balance = u128;

/// A transaction counter of an account.
pub type Nonce = u32;

/// A 256-bit hash (blake2b-256 on this chain).
pub type Hash = sp_core::H256;

/// One unit of the native token, in planck.
pub const UNIT: Balance = 1_000_000_000_000;

/// The token's ticker, as wallets show it.
pub const TOKEN_SYMBOL: &str = "TNET";

/// Decimals of the token: one unit is `10^TOKEN_DECIMALS` planck.
pub const TOKEN_DECIMALS: u8 = 12;

/// The SS58 address prefix (42: the generic Substrate prefix).
pub const SS58_PREFIX: u16 = 42;

#[cfg(test)]
#[allow(
	clippy::unwrap_used,
	clippy::expect_used,
	clippy::arithmetic_side_effects,
	clippy::indexing_slicing
)]
mod tests {
	use super::*;

	#[test]
	fn unit_matches_decimals() {
		assert_eq!(UNIT, 10u128.pow(u32::from(TOKEN_DECIMALS)));
	}
}
