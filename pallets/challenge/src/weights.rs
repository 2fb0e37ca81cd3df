//! Weights of `pallet-challenge`.
//!
//! NOT YET GENERATED: hand-counted storage accesses (from the calls' code, counting the
//! staking ledgers, escrow task, slashing records, balance holds and deadline queues they
//! touch) with a conservative compute allowance, until `trainet-node benchmark pallet` is run
//! on a node built with `--features runtime-benchmarks` (see `benchmarking.rs`) and replaces
//! this file. `reveal(v)` and `timeout(v)` are counted at their worst case: the dispute ends
//! with the solver losing, `v` other disputes on the task are voided, the solver is slashed
//! and the task reopened. `on_initialize(n)` is `n` such timeouts with the most disputes
//! per task voided.

#![allow(unused_parens, unused_imports, missing_docs)]

use core::marker::PhantomData;
use frame_support::{
	traits::Get,
	weights::{constants::RocksDbWeight, Weight},
};

/// The weight functions this pallet needs.
pub trait WeightInfo {
	fn open() -> Weight;
	fn reveal(v: u32) -> Weight;
	fn timeout(v: u32) -> Weight;
	fn on_initialize(n: u32) -> Weight;
}

/// Weights for the runtime, using its database weights.
pub struct SubstrateWeight<T>(PhantomData<T>);
impl<T: frame_system::Config> WeightInfo for SubstrateWeight<T> {
	fn open() -> Weight {
		Weight::from_parts(80_000_000, 8000)
			.saturating_add(T::DbWeight::get().reads(7))
			.saturating_add(T::DbWeight::get().writes(7))
	}
	fn reveal(v: u32) -> Weight {
		Weight::from_parts(150_000_000, 12000)
			.saturating_add(Weight::from_parts(20_000_000, 3000).saturating_mul(v.into()))
			.saturating_add(T::DbWeight::get().reads(3).saturating_mul(v.into()))
			.saturating_add(T::DbWeight::get().writes(4).saturating_mul(v.into()))
			.saturating_add(T::DbWeight::get().reads(12))
			.saturating_add(T::DbWeight::get().writes(12))
	}
	fn timeout(v: u32) -> Weight {
		Weight::from_parts(130_000_000, 12000)
			.saturating_add(Weight::from_parts(20_000_000, 3000).saturating_mul(v.into()))
			.saturating_add(T::DbWeight::get().reads(3).saturating_mul(v.into()))
			.saturating_add(T::DbWeight::get().writes(4).saturating_mul(v.into()))
			.saturating_add(T::DbWeight::get().reads(12))
			.saturating_add(T::DbWeight::get().writes(12))
	}
	fn on_initialize(n: u32) -> Weight {
		Weight::from_parts(5_000_000, 3000)
			.saturating_add(Weight::from_parts(290_000_000, 36000).saturating_mul(n.into()))
			.saturating_add(T::DbWeight::get().reads(36).saturating_mul(n.into()))
			.saturating_add(T::DbWeight::get().writes(40).saturating_mul(n.into()))
			.saturating_add(T::DbWeight::get().reads(1))
			.saturating_add(T::DbWeight::get().writes(1))
	}
}

/// The same counts against RocksDB weights, for tests.
impl WeightInfo for () {
	fn open() -> Weight {
		Weight::from_parts(80_000_000, 8000)
			.saturating_add(RocksDbWeight::get().reads(7))
			.saturating_add(RocksDbWeight::get().writes(7))
	}
	fn reveal(v: u32) -> Weight {
		Weight::from_parts(150_000_000, 12000)
			.saturating_add(Weight::from_parts(20_000_000, 3000).saturating_mul(v.into()))
			.saturating_add(RocksDbWeight::get().reads(3).saturating_mul(v.into()))
			.saturating_add(RocksDbWeight::get().writes(4).saturating_mul(v.into()))
			.saturating_add(RocksDbWeight::get().reads(12))
			.saturating_add(RocksDbWeight::get().writes(12))
	}
	fn timeout(v: u32) -> Weight {
		Weight::from_parts(130_000_000, 12000)
			.saturating_add(Weight::from_parts(20_000_000, 3000).saturating_mul(v.into()))
			.saturating_add(RocksDbWeight::get().reads(3).saturating_mul(v.into()))
			.saturating_add(RocksDbWeight::get().writes(4).saturating_mul(v.into()))
			.saturating_add(RocksDbWeight::get().reads(12))
			.saturating_add(RocksDbWeight::get().writes(12))
	}
	fn on_initialize(n: u32) -> Weight {
		Weight::from_parts(5_000_000, 3000)
			.saturating_add(Weight::from_parts(290_000_000, 36000).saturating_mul(n.into()))
			.saturating_add(RocksDbWeight::get().reads(36).saturating_mul(n.into()))
			.saturating_add(RocksDbWeight::get().writes(40).saturating_mul(n.into()))
			.saturating_add(RocksDbWeight::get().reads(1))
			.saturating_add(RocksDbWeight::get().writes(1))
	}
}
