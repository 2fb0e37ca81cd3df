//! The protocol pallets on a real dev chain, as a dapp uses them: a solver registers a bond
//! with a signed extrinsic and reads it back from storage.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use subxt::{dynamic, OnlineClient, PolkadotConfig};
use subxt_signer::sr25519::dev;
use trainet_e2e::{ledger, Node, NodeConfig};

#[tokio::test]
async fn a_solver_registers_a_bond_on_the_dev_chain() -> Result<()> {
	let dir = tempfile::tempdir()?;
	let node = Node::start(NodeConfig::dev(dir.path())).await?;
	node.wait_for_finalized(1, Duration::from_secs(90)).await?;
	let api = OnlineClient::<PolkadotConfig>::from_url(node.ws_url()).await?;

	let min_bond: u128 =
		api.at_current_block()
			.await?
			.constants()
			.entry(dynamic::constant::<u128>("ComputeStaking", "MinSolverBond"))?;
	let bond = min_bond * 2;

	#[derive(subxt::ext::scale_encode::EncodeAsType)]
	#[encode_as_type(crate_path = "subxt::ext::scale_encode")]
	struct Roles {
		solver: bool,
		verifier: bool,
	}
	let tx = dynamic::transaction(
		"ComputeStaking",
		"register",
		(Roles { solver: true, verifier: false }, bond),
	);
	let events = api
		.at_current_block()
		.await?
		.transactions()
		.sign_and_submit_then_watch_default(&tx, &dev::charlie())
		.await?
		.wait_for_finalized_success()
		.await
		.context("register did not succeed")?;
	ensure!(
		events
			.iter()
			.filter_map(|e| e.ok())
			.any(|e| e.pallet_name() == "ComputeStaking" && e.event_name() == "Registered"),
		"no ComputeStaking.Registered event"
	);

	let ledger = ledger(&api, &dev::charlie()).await?;
	ensure!(ledger.active == bond && ledger.locked == 0, "ledger read back: {ledger:?}");
	Ok(())
}
