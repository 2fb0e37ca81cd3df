//! Tests of the runtime's composition: genesis presets, version and constants.

// Tests may panic: the no-panic lints are for code that runs on chain.
#![allow(
	clippy::unwrap_used,
	clippy::expect_used,
	clippy::arithmetic_side_effects,
	clippy::indexing_slicing
)]

use crate::{
	genesis_config_presets::{self, ENDOWMENT},
	Balances, Runtime, RuntimeGenesisConfig, System, VERSION,
};
use frame_support::{genesis_builder_helper::build_state, traits::fungible::Inspect};
use sp_keyring::Sr25519Keyring;

/// Merges a JSON patch into a base value, the way chain specs apply a preset to the defaults.
fn merge(base: &mut serde_json::Value, patch: serde_json::Value) {
	match (base, patch) {
		(serde_json::Value::Object(base), serde_json::Value::Object(patch)) => {
			for (key, value) in patch {
				merge(base.entry(key).or_insert(serde_json::Value::Null), value);
			}
		}
		(base, patch) => *base = patch,
	}
}

/// Builds genesis storage from a preset, as the node does for `--dev` and `--chain local`.
fn genesis_ext(preset: &str) -> sp_io::TestExternalities {
	let patch = genesis_config_presets::get_preset(&preset.into())
		.unwrap_or_else(|| panic!("no preset {preset}"));
	let mut config = serde_json::to_value(RuntimeGenesisConfig::default()).unwrap();
	merge(&mut config, serde_json::from_slice(&patch).unwrap());
	let json = serde_json::to_vec(&config).unwrap();
	let mut ext = sp_io::TestExternalities::default();
	ext.execute_with(|| build_state::<RuntimeGenesisConfig>(json).expect("genesis builds"));
	ext
}

#[test]
fn presets_are_listed_and_unknown_ones_refused() {
	let names = genesis_config_presets::preset_names();
	assert_eq!(names, vec!["development".to_string(), "local_testnet".to_string()]);
	assert!(genesis_config_presets::get_preset(&"mainnet".into()).is_none());
}

#[test]
fn development_preset_has_alice_as_the_only_validator_and_sudo() {
	genesis_ext("development").execute_with(|| {
		let aura = pallet_aura::Authorities::<Runtime>::get();
		assert_eq!(aura.len(), 1);
		assert_eq!(pallet_grandpa::Pallet::<Runtime>::grandpa_authorities().len(), 1);
		assert_eq!(pallet_sudo::Key::<Runtime>::get(), Some(Sr25519Keyring::Alice.to_account_id()));
	});
}

#[test]
fn local_testnet_preset_has_three_validators() {
	genesis_ext("local_testnet").execute_with(|| {
		assert_eq!(pallet_aura::Authorities::<Runtime>::get().len(), 3);
		let grandpa = pallet_grandpa::Pallet::<Runtime>::grandpa_authorities();
		assert_eq!(grandpa.len(), 3);
		assert!(grandpa.iter().all(|(_, weight)| *weight == 1));
	});
}

#[test]
fn genesis_issuance_is_the_sum_of_endowments() {
	genesis_ext("development").execute_with(|| {
		let endowed = Sr25519Keyring::iter().count() as u128;
		assert_eq!(Balances::total_issuance(), ENDOWMENT * endowed);
		assert_eq!(
			Balances::balance(&Sr25519Keyring::Bob.to_account_id()),
			ENDOWMENT,
			"every dev account is endowed"
		);
		assert_eq!(System::block_number(), 0);
	});
}

#[test]
fn version_names_the_chain() {
	assert_eq!(VERSION.spec_name, "trainet");
}

#[test]
fn every_dispute_call_fits_one_extrinsic_at_its_worst() {
	use frame_support::dispatch::{DispatchClass, GetDispatchInfo};
	use pallet_challenge::WeightInfo;
	let weights = crate::configs::RuntimeBlockWeights::get();
	let max = weights.get(DispatchClass::Normal).max_extrinsic.unwrap();
	type W = pallet_challenge::weights::SubstrateWeight<Runtime>;
	let v = crate::configs::MaxDisputesPerTask::get();
	for (name, w) in [
		("open", W::open()),
		("reveal", W::reveal(v)),
		("commit_ops", W::commit_ops()),
		("reveal_op", W::reveal_op(v)),
		("settle_op", pallet_challenge::Pallet::<Runtime>::settle_op_weight()),
		("timeout", W::timeout(v)),
		("descend", W::descend_opening(v).max(W::descend_line())),
		("settle_element", W::settle_element()),
	] {
		assert!(w.all_lte(max), "{name}: {w:?} over {max:?}");
	}
	// And the weight the call declares (settle_op adds the voids of other disputes).
	let call = crate::RuntimeCall::Challenge(pallet_challenge::Call::settle_op {
		dispute: 0,
		evidence: Default::default(),
	});
	assert!(call.get_dispatch_info().call_weight.all_lte(max));
}

#[test]
fn dispute_deadlines_are_governance_parameters_within_bounds() {
	use crate::{
		configs::{dynamic_params::disputes, MAX_ROUND_TIMEOUT, MIN_DISPUTE_DEADLINE},
		Parameters, RuntimeOrigin, RuntimeParameters, MINUTES,
	};
	use frame_support::{assert_noop, assert_ok, traits::Get};
	type Round = <Runtime as pallet_challenge::Config>::RoundTimeout;
	type Leaf = <Runtime as pallet_challenge::Config>::LeafTimeout;
	let set = |origin, blocks| {
		Parameters::set_parameter(
			origin,
			RuntimeParameters::Disputes(disputes::Parameters::RoundTimeout(
				disputes::RoundTimeout,
				Some(blocks),
			)),
		)
	};
	genesis_ext("development").execute_with(|| {
		assert_eq!(Round::get(), 10 * MINUTES);
		assert_eq!(Leaf::get(), 2 * crate::HOURS);
		// Only root (sudo here) may change a deadline.
		let alice = Sr25519Keyring::Alice.to_account_id();
		assert_noop!(set(RuntimeOrigin::signed(alice), 10), sp_runtime::DispatchError::BadOrigin);
		assert_ok!(set(RuntimeOrigin::root(), 12));
		assert_eq!(Round::get(), 12);
		// A deadline below the floor is raised to it: a party always has blocks to answer in.
		assert_ok!(set(RuntimeOrigin::root(), 0));
		assert_eq!(Round::get(), MIN_DISPUTE_DEADLINE);
		// One above the ceiling is lowered to it: disputes end inside the unbonding period.
		assert_ok!(set(RuntimeOrigin::root(), 10 * MAX_ROUND_TIMEOUT));
		assert_eq!(Round::get(), MAX_ROUND_TIMEOUT);
		assert_eq!(Leaf::get(), 2 * crate::HOURS);
	});
}

#[test]
fn the_longest_task_life_with_the_longest_deadlines_ends_before_unbonding() {
	use crate::configs::{MaxTaskTimeout, UnbondingPeriod, MAX_LEAF_TIMEOUT, MAX_ROUND_TIMEOUT};
	let stages = 3 * MaxTaskTimeout::get();
	let dispute = 64 * MAX_ROUND_TIMEOUT + MAX_LEAF_TIMEOUT;
	assert!(stages + dispute < UnbondingPeriod::get());
}

/// Attack: with a length fee of one planck a byte, a block filled with remarks cost almost
/// nothing, so making someone miss a deadline by stuffing blocks was cheap. Filling a block by
/// length now costs about what filling it by weight does, and full blocks raise every fee.
#[test]
fn stuffing_blocks_costs_what_filling_them_by_weight_does_and_raises_fees() {
	use frame_support::dispatch::{DispatchClass, DispatchInfo};
	use sp_runtime::traits::Convert;
	genesis_ext("development").execute_with(|| {
		let weights = crate::configs::RuntimeBlockWeights::get();
		let max_weight = weights.get(DispatchClass::Normal).max_total.unwrap();
		let max_len = *crate::configs::RuntimeBlockLength::get().max.get(DispatchClass::Normal);
		type Payment = pallet_transaction_payment::Pallet<Runtime>;
		let by_weight = Payment::compute_fee(
			0,
			&DispatchInfo { call_weight: max_weight, ..Default::default() },
			0,
		);
		let by_length = Payment::compute_fee(max_len, &DispatchInfo::default(), 0);
		assert!(
			by_length * 2 >= by_weight,
			"{by_length} for the length, {by_weight} for the weight"
		);
		assert!(
			by_length <= by_weight * 2,
			"{by_length} for the length, {by_weight} for the weight"
		);
		// A full block raises the multiplier; an empty one never takes it below one.
		System::set_block_consumed_resources(max_weight, max_len as usize);
		let one = <pallet_transaction_payment::Multiplier as sp_runtime::traits::One>::one();
		assert!(crate::configs::FeeMultiplierUpdate::convert(one) > one);
		System::set_block_consumed_resources(frame_support::weights::Weight::zero(), 0);
		assert_eq!(crate::configs::FeeMultiplierUpdate::convert(one), one);
	});
}
