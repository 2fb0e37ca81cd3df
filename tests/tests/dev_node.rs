//! A `--dev` node, as a validator or a dapp sees it: it finalizes blocks, includes a signed
//! transfer, keeps its chain across a restart and answers bad RPC input with errors.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use codec::{Compact, Decode};
use serde_json::Value;
use subxt::{dynamic, OnlineClient, PolkadotConfig};
use subxt_signer::sr25519::dev;
use trainet_e2e::{Node, NodeConfig};

const FINALITY_TIMEOUT: Duration = Duration::from_secs(90);

/// `System.Account` as far as these tests read it.
#[derive(Debug, subxt::ext::scale_decode::DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
struct AccountInfo {
	data: AccountData,
}

/// `pallet_balances::AccountData`, the field read here.
#[derive(Debug, subxt::ext::scale_decode::DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
struct AccountData {
	free: u128,
}

async fn free_balance(api: &OnlineClient<PolkadotConfig>, who: [u8; 32]) -> Result<u128> {
	let at = api.at_current_block().await?;
	let addr = dynamic::storage::<([u8; 32],), AccountInfo>("System", "Account");
	let value = at.storage().fetch(addr, (who,)).await?;
	Ok(value.decode()?.data.free)
}

#[tokio::test]
async fn dev_node_finalizes_blocks_and_includes_a_signed_transfer() -> Result<()> {
	let dir = tempfile::tempdir()?;
	let node = Node::start(NodeConfig::dev(dir.path())).await?;
	node.wait_for_finalized(1, FINALITY_TIMEOUT).await?;

	let api = OnlineClient::<PolkadotConfig>::from_url(node.ws_url())
		.await
		.context("subxt connecting to the dev node")?;
	let dave: [u8; 32] = dev::dave().public_key().0;
	let before = free_balance(&api, dave).await?;

	let amount: u128 = 1_234_567_890_000;
	let tx = dynamic::transaction(
		"Balances",
		"transfer_keep_alive",
		(dev::dave().public_key().to_address::<()>(), amount),
	);
	let events = api
		.at_current_block()
		.await?
		.transactions()
		.sign_and_submit_then_watch_default(&tx, &dev::alice())
		.await
		.context("submitting Alice's transfer")?
		.wait_for_finalized_success()
		.await
		.context("waiting for the transfer to be finalized")?;

	let transferred = events
		.iter()
		.filter_map(|e| e.ok())
		.any(|e| e.pallet_name() == "Balances" && e.event_name() == "Transfer");
	ensure!(transferred, "no Balances.Transfer event among the extrinsic's events");

	let after = free_balance(&api, dave).await?;
	ensure!(after == before + amount, "Dave had {before}, now {after}; expected +{amount}");
	Ok(())
}

#[tokio::test]
async fn dev_node_restarts_on_its_base_path_with_the_chain_intact() -> Result<()> {
	let dir = tempfile::tempdir()?;
	let node = Node::start(NodeConfig::dev(dir.path())).await?;
	let finalized = node.wait_for_finalized(3, FINALITY_TIMEOUT).await?;
	let genesis = node.block_hash(0).await?.context("no genesis hash")?;
	let hash_at = node.block_hash(finalized).await?.context("no hash of the finalized block")?;
	let config = node.config.clone();
	let status = node.stop()?;
	ensure!(status.success(), "node exited with {status} on SIGINT");

	let node = Node::start(config).await?;
	ensure!(node.block_hash(0).await?.as_deref() == Some(genesis.as_str()), "genesis changed");
	ensure!(
		node.block_hash(finalized).await?.as_deref() == Some(hash_at.as_str()),
		"block #{finalized} changed across the restart"
	);
	ensure!(node.finalized_number().await? >= finalized, "finality went back across the restart");
	// And it goes on producing and finalizing on top of the old chain.
	node.wait_for_finalized(finalized + 2, FINALITY_TIMEOUT).await?;
	Ok(())
}

/// The error object of a failed JSON-RPC call.
fn rpc_error(
	outcome: std::result::Result<Value, jsonrpsee::core::ClientError>,
) -> Result<jsonrpsee::types::ErrorObjectOwned> {
	match outcome {
		Ok(v) => anyhow::bail!("expected a JSON-RPC error, got the result {v}"),
		Err(jsonrpsee::core::ClientError::Call(e)) => Ok(e),
		Err(other) => anyhow::bail!("expected a JSON-RPC error object, got {other}"),
	}
}

#[tokio::test]
async fn dev_node_answers_bad_rpc_input_with_errors() -> Result<()> {
	let dir = tempfile::tempdir()?;
	let mut node = Node::start(NodeConfig::dev(dir.path())).await?;
	node.wait_for_finalized(1, FINALITY_TIMEOUT).await?;

	// Unknown method: "method not found".
	let err = rpc_error(node.rpc_raw("trainet_noSuchMethod", vec![]).await)?;
	ensure!(err.code() == -32601, "unknown method gave {err:?}");

	// Malformed hex.
	let err = rpc_error(node.rpc_raw("author_submitExtrinsic", vec!["0xzz12".into()]).await)?;
	ensure!(err.code() != 0, "malformed hex gave {err:?}");
	let err = rpc_error(node.rpc_raw("chain_getBlock", vec!["not-a-hash".into()]).await)?;
	ensure!(err.code() != 0, "a bad block hash gave {err:?}");

	// Well-formed bytes that are no extrinsic.
	let err = rpc_error(node.rpc_raw("author_submitExtrinsic", vec!["0x0badc0de".into()]).await)?;
	ensure!(err.code() != 0, "garbage bytes gave {err:?}");

	// A signed transfer whose signature was tampered with.
	let api = OnlineClient::<PolkadotConfig>::from_url(node.ws_url()).await?;
	let tx = dynamic::transaction(
		"Balances",
		"transfer_keep_alive",
		(dev::eve().public_key().to_address::<()>(), 1_000_000_000_000u128),
	);
	let signed = api
		.at_current_block()
		.await?
		.transactions()
		.create_signed(&tx, &dev::alice(), Default::default())
		.await?;
	let mut bytes = signed.encoded().to_vec();
	// Layout: compact length, version byte, MultiAddress::Id (1 + 32), MultiSignature tag (1),
	// then the 64 signature bytes.
	let prefix_len = {
		let mut input = &bytes[..];
		Compact::<u32>::decode(&mut input)?;
		bytes.len() - input.len()
	};
	let signature_start = prefix_len + 1 + 33 + 1;
	bytes[signature_start + 10] ^= 0xff;
	let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
	let err =
		rpc_error(node.rpc_raw("author_submitExtrinsic", vec![format!("0x{hex}").into()]).await)?;
	ensure!(
		err.code() == 1010 && err.to_string().contains("bad signature"),
		"a tampered signature gave {err:?}"
	);

	// The node is still up and still making blocks.
	ensure!(node.is_running(), "the node died on bad input; log:\n{}", node.log_tail());
	let finalized = node.finalized_number().await?;
	node.wait_for_finalized(finalized + 1, FINALITY_TIMEOUT).await?;
	Ok(())
}
