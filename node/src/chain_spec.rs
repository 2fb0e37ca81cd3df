//! Chain specifications: `dev` and `local`, built from the runtime's genesis presets.

use sc_service::ChainType;
use trainet_runtime::WASM_BINARY;

/// A chain spec of this node; its genesis is given by the runtime.
pub type ChainSpec = sc_service::GenericChainSpec;

/// The token's display properties, for polkadot.js apps and wallets.
fn properties() -> sc_service::Properties {
	let mut properties = sc_service::Properties::new();
	properties.insert("tokenSymbol".into(), trainet_primitives::TOKEN_SYMBOL.into());
	properties.insert("tokenDecimals".into(), trainet_primitives::TOKEN_DECIMALS.into());
	properties.insert("ss58Format".into(), trainet_primitives::SS58_PREFIX.into());
	properties
}

fn wasm() -> Result<&'static [u8], String> {
	WASM_BINARY.ok_or_else(|| {
		"The runtime's wasm blob is missing: this node was built with SKIP_WASM_BUILD. \
		 Rebuild without it."
			.to_string()
	})
}

/// `--dev`: one validator (Alice), instant start.
pub fn development_chain_spec() -> Result<ChainSpec, String> {
	Ok(ChainSpec::builder(wasm()?, None)
		.with_name("Trainet Development")
		.with_id("trainet_dev")
		.with_chain_type(ChainType::Development)
		.with_genesis_config_preset_name(sp_genesis_builder::DEV_RUNTIME_PRESET)
		.with_protocol_id("trainet")
		.with_properties(properties())
		.build())
}

/// `--chain local`: three validators (Alice, Bob, Charlie).
pub fn local_chain_spec() -> Result<ChainSpec, String> {
	Ok(ChainSpec::builder(wasm()?, None)
		.with_name("Trainet Local Testnet")
		.with_id("trainet_local")
		.with_chain_type(ChainType::Local)
		.with_genesis_config_preset_name(sp_genesis_builder::LOCAL_TESTNET_RUNTIME_PRESET)
		.with_protocol_id("trainet")
		.with_properties(properties())
		.build())
}
