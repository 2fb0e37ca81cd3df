//! Three validators (Alice, Bob, Charlie) on the `local` chain spec, connected over real
//! libp2p on loopback: every one of them sees the same blocks finalized.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use trainet_e2e::local_network;

#[tokio::test]
async fn three_validators_finalize_the_same_blocks() -> Result<()> {
	let dir = tempfile::tempdir()?;
	let network = local_network(dir.path()).await?;
	let [alice, bob, charlie] = &network[..] else { anyhow::bail!("three validators") };
	let nodes = [alice, bob, charlie];

	// GRANDPA needs two of three votes, so finality proves the network, not one node.
	let target = 3;
	for node in nodes {
		node.wait_for_finalized(target, Duration::from_secs(180)).await?;
	}

	let hashes: Vec<Option<String>> = {
		let mut v = Vec::new();
		for node in nodes {
			v.push(node.block_hash(target).await?);
		}
		v
	};
	ensure!(hashes[0].is_some(), "Alice has no block #{target}");
	ensure!(
		hashes.iter().all(|h| h == &hashes[0]),
		"the validators finalized different blocks at #{target}: {hashes:?}"
	);

	// Blocks were authored by more than one validator: Aura's author of a block is the
	// authority at index `slot % 3`, and the slot is in the block's Aura pre-runtime digest.
	let mut authors = std::collections::BTreeSet::new();
	for n in 1..=target + 3 {
		let hash = match alice.block_hash(n).await? {
			Some(h) => h,
			None => break,
		};
		let header: Value = alice.rpc("chain_getHeader", vec![hash.into()]).await?;
		let slot = aura_slot(&header).context("block without an Aura pre-digest")?;
		authors.insert(slot % 3);
	}
	ensure!(authors.len() > 1, "all blocks came from one validator: {authors:?}");

	for node in nodes {
		let health: Value = node.rpc("system_health", vec![]).await?;
		ensure!(
			health["peers"].as_u64() == Some(2),
			"{} sees {} peers, expected 2",
			node.config.name,
			health["peers"]
		);
	}
	Ok(())
}

/// The Aura slot in a header's digest: a `PreRuntime(*b"aura", slot.encode())` log, encoded as
/// `06 61757261 20 <u64 little-endian>`.
fn aura_slot(header: &Value) -> Option<u64> {
	let logs = header["digest"]["logs"].as_array()?;
	logs.iter().find_map(|log| {
		let slot_hex = log.as_str()?.strip_prefix("0x066175726120")?.get(0..16)?;
		let bytes: Vec<u8> = (0..8)
			.map(|i| u8::from_str_radix(&slot_hex[2 * i..2 * i + 2], 16))
			.collect::<Result<_, _>>()
			.ok()?;
		Some(u64::from_le_bytes(bytes.try_into().ok()?))
	})
}
