//! Weights of `pallet-task-escrow`.
//!
//! NOT YET GENERATED: hand-counted storage accesses (from the calls' code, counting the
//! staking ledger, balance holds and the deadline queues they touch) with a conservative
//! compute allowance, until `trainet-node benchmark pallet` is run on a node built with
//! `--features runtime-benchmarks` (see `benchmarking.rs`) and replaces this file.
//! `expire` is counted at its worst case (a missed commitment: slash, pay the submitter,
//! refund); `on_initialize(n)` is `n` such expiries.

#![allow(unused_parens, unused_imports, missing_docs)]

use core::marker::PhantomData;
use frame_support::{
	traits::Get,
	weights::{constants::RocksDbWeight, Weight},
};

/// The weight functions this pallet needs.
pub trait WeightInfo {
	fn submit() -> Weight;
	fn cancel() -> Weight;
	fn claim() -> Weight;
	fn commit() -> Weight;
	fn expire() -> Weight;
	fn on_initialize(n: u32) -> Weight;
}

/// Weights for the runtime, using its database weights.
pub struct SubstrateWeight<T>(PhantomData<T>);
impl<T: frame_system::Config> WeightInfo for SubstrateWeight<T> {
	fn submit() -> Weight {
		Weight::from_parts(70_000_000, 6000)
			.saturating_add(T::DbWeight::get().reads(4))
			.saturating_add(T::DbWeight::get().writes(4))
	}
	fn cancel() -> Weight {
		Weight::from_parts(50_000_000, 6000)
			.saturating_add(T::DbWeight::get().reads(3))
			.saturating_add(T::DbWeight::get().writes(3))
	}
	fn claim() -> Weight {
		Weight::from_parts(60_000_000, 6000)
			.saturating_add(T::DbWeight::get().reads(5))
			.saturating_add(T::DbWeight::get().writes(5))
	}
	fn commit() -> Weight {
		Weight::from_parts(90_000_000, 6000)
			.saturating_add(T::DbWeight::get().reads(3))
			.saturating_add(T::DbWeight::get().writes(3))
	}
	fn expire() -> Weight {
		Weight::from_parts(120_000_000, 8000)
			.saturating_add(T::DbWeight::get().reads(8))
			.saturating_add(T::DbWeight::get().writes(8))
	}
	fn on_initialize(n: u32) -> Weight {
		Weight::from_parts(5_000_000, 3000)
			.saturating_add(Weight::from_parts(120_000_000, 8000).saturating_mul(n.into()))
			.saturating_add(T::DbWeight::get().reads(8).saturating_mul(n.into()))
			.saturating_add(T::DbWeight::get().writes(8).saturating_mul(n.into()))
			.saturating_add(T::DbWeight::get().reads(1))
			.saturating_add(T::DbWeight::get().writes(1))
	}
}

/// The same counts against RocksDB weights, for tests.
impl WeightInfo for () {
	fn submit() -> Weight {
		Weight::from_parts(70_000_000, 6000)
			.saturating_add(RocksDbWeight::get().reads(4))
			.saturating_add(RocksDbWeight::get().writes(4))
	}
	fn cancel() -> Weight {
		Weight::from_parts(50_000_000, 6000)
			.saturating_add(RocksDbWeight::get().reads(3))
			.saturating_add(RocksDbWeight::get().writes(3))
	}
	fn claim() -> Weight {
		Weight::from_parts(60_000_000, 6000)
			.saturating_add(RocksDbWeight::get().reads(5))
			.saturating_add(RocksDbWeight::get().writes(5))
	}
	fn commit() -> Weight {
		Weight::from_parts(90_000_000, 6000)
			.saturating_add(RocksDbWeight::get().reads(3))
			.saturating_add(RocksDbWeight::get().writes(3))
	}
	fn expire() -> Weight {
		Weight::from_parts(120_000_000, 8000)
			.saturating_add(RocksDbWeight::get().reads(8))
			.saturating_add(RocksDbWeight::get().writes(8))
	}
	fn on_initialize(n: u32) -> Weight {
		Weight::from_parts(5_000_000, 3000)
			.saturating_add(Weight::from_parts(120_000_000, 8000).saturating_mul(n.into()))
			.saturating_add(RocksDbWeight::get().reads(8).saturating_mul(n.into()))
			.saturating_add(RocksDbWeight::get().writes(8).saturating_mul(n.into()))
			.saturating_add(RocksDbWeight::get().reads(1))
			.saturating_add(RocksDbWeight::get().writes(1))
	}
}
