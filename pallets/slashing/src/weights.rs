//! Weights of `pallet-slashing`.
//!
//! NOT YET GENERATED: hand-counted storage accesses with a conservative compute allowance,
//! until `trainet-node benchmark pallet` is run on a node built with
//! `--features runtime-benchmarks` (see `benchmarking.rs`) and replaces this file. Slashes
//! themselves run inside the escrow's and challenge pallet's calls and are counted in their
//! weights.

#![allow(unused_parens, unused_imports, missing_docs)]

use core::marker::PhantomData;
use frame_support::{
	traits::Get,
	weights::{constants::RocksDbWeight, Weight},
};

/// The weight functions this pallet needs.
pub trait WeightInfo {
	fn pardon() -> Weight;
}

/// Weights for the runtime, using its database weights.
pub struct SubstrateWeight<T>(PhantomData<T>);
impl<T: frame_system::Config> WeightInfo for SubstrateWeight<T> {
	fn pardon() -> Weight {
		Weight::from_parts(20_000_000, 3500)
			.saturating_add(T::DbWeight::get().reads(1))
			.saturating_add(T::DbWeight::get().writes(1))
	}
}

/// The same counts against RocksDB weights, for tests.
impl WeightInfo for () {
	fn pardon() -> Weight {
		Weight::from_parts(20_000_000, 3500)
			.saturating_add(RocksDbWeight::get().reads(1))
			.saturating_add(RocksDbWeight::get().writes(1))
	}
}
