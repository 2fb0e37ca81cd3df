//! Genesis presets: `development` (one validator, Alice) and `local_testnet` (Alice, Bob and
//! Charlie). The node's `--dev` and `--chain local` chain specs are built from them.

use crate::{AccountId, BalancesConfig, RuntimeGenesisConfig, SudoConfig, UNIT};
use alloc::{vec, vec::Vec};
use frame_support::build_struct_json_patch;
use serde_json::Value;
use sp_consensus_aura::sr25519::AuthorityId as AuraId;
use sp_consensus_grandpa::AuthorityId as GrandpaId;
use sp_genesis_builder::{self, PresetId};
use sp_keyring::{Ed25519Keyring, Sr25519Keyring};

/// What each endowed development account starts with: 2^60 planck, about 1.15 million UNIT.
pub const ENDOWMENT: crate::Balance = 1 << 60;

// The endowment is a whole number of units well inside `u128`.
const _: () = assert!(ENDOWMENT > 1_000_000 * UNIT);

/// The genesis patch shared by all presets.
fn testnet_genesis(
	initial_authorities: Vec<(AuraId, GrandpaId)>,
	endowed_accounts: Vec<AccountId>,
	root: AccountId,
) -> Value {
	build_struct_json_patch!(RuntimeGenesisConfig {
		balances: BalancesConfig {
			balances: endowed_accounts.iter().cloned().map(|k| (k, ENDOWMENT)).collect::<Vec<_>>(),
		},
		aura: pallet_aura::GenesisConfig {
			authorities: initial_authorities.iter().map(|x| x.0.clone()).collect::<Vec<_>>(),
		},
		grandpa: pallet_grandpa::GenesisConfig {
			authorities: initial_authorities.iter().map(|x| (x.1.clone(), 1)).collect::<Vec<_>>(),
		},
		sudo: SudoConfig { key: Some(root) },
	})
}

/// The validator keys of a well-known development account.
fn authority_keys(who: (Sr25519Keyring, Ed25519Keyring)) -> (AuraId, GrandpaId) {
	(who.0.public().into(), who.1.public().into())
}

/// The well-known accounts every dev preset endows (Alice..Ferdie and their stash accounts).
fn endowed_dev_accounts() -> Vec<AccountId> {
	Sr25519Keyring::iter().map(|k| k.to_account_id()).collect()
}

/// `local_testnet`: Alice, Bob and Charlie validate; Alice holds the sudo key.
pub fn local_testnet_genesis() -> Value {
	testnet_genesis(
		vec![
			authority_keys((Sr25519Keyring::Alice, Ed25519Keyring::Alice)),
			authority_keys((Sr25519Keyring::Bob, Ed25519Keyring::Bob)),
			authority_keys((Sr25519Keyring::Charlie, Ed25519Keyring::Charlie)),
		],
		endowed_dev_accounts(),
		Sr25519Keyring::Alice.to_account_id(),
	)
}

/// `development`: Alice alone validates and holds the sudo key.
pub fn development_config_genesis() -> Value {
	testnet_genesis(
		vec![authority_keys((Sr25519Keyring::Alice, Ed25519Keyring::Alice))],
		endowed_dev_accounts(),
		Sr25519Keyring::Alice.to_account_id(),
	)
}

/// The JSON patch of the preset `id`, if the runtime has one of that name.
pub fn get_preset(id: &PresetId) -> Option<Vec<u8>> {
	let patch = match id.as_ref() {
		sp_genesis_builder::DEV_RUNTIME_PRESET => development_config_genesis(),
		sp_genesis_builder::LOCAL_TESTNET_RUNTIME_PRESET => local_testnet_genesis(),
		_ => return None,
	};
	Some(serde_json::to_string(&patch).ok()?.into_bytes())
}

/// The names of the presets this runtime offers.
pub fn preset_names() -> Vec<PresetId> {
	vec![
		PresetId::from(sp_genesis_builder::DEV_RUNTIME_PRESET),
		PresetId::from(sp_genesis_builder::LOCAL_TESTNET_RUNTIME_PRESET),
	]
}
