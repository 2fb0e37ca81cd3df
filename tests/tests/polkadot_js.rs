//! The chain as polkadot.js users and dapps see it: `tests/polkadot-js/client.mjs`, written
//! with `@polkadot/api` and run by the machine's Node.js, connects to a fresh dev node, finds
//! the protocol pallets in its metadata, posts a task as Alice, reads it back through storage
//! and the `trainet_task` RPC, and sees its event through a subscription.
//!
//! The npm packages are installed on first use (`npm ci`, from the lock file, into
//! `tests/polkadot-js/node_modules`, with npm's cache under `~/.cache/trainet/npm`).

use std::{path::PathBuf, process::Command};

use anyhow::{bail, ensure, Context, Result};
use trainet_e2e::{Node, NodeConfig};

/// The client's folder.
fn client_dir() -> PathBuf {
	PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("polkadot-js")
}

/// Runs `program args` in the client's folder; its output, or an error with it.
fn run(program: &str, args: &[&str]) -> Result<String> {
	let out = Command::new(program)
		.args(args)
		.current_dir(client_dir())
		.output()
		.with_context(|| format!("running {program} (is Node.js installed? scripts/setup)"))?;
	let text =
		format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
	if !out.status.success() {
		bail!("{program} {} failed ({}):\n{text}", args.join(" "), out.status);
	}
	Ok(text)
}

/// Installs the client's packages if they are not there yet.
fn install_packages() -> Result<()> {
	if client_dir().join("node_modules/@polkadot/api/package.json").is_file() {
		return Ok(());
	}
	let home = std::env::var("HOME").context("HOME")?;
	let cache = format!("{home}/.cache/trainet/npm");
	run("npm", &["ci", "--no-audit", "--no-fund", "--prefer-offline", "--cache", &cache])?;
	Ok(())
}

#[tokio::test]
async fn a_polkadot_js_dapp_posts_and_reads_a_task() -> Result<()> {
	install_packages()?;
	let dir = tempfile::tempdir()?;
	let node = Node::start(NodeConfig::dev(dir.path())).await?;
	node.wait_for_finalized(1, std::time::Duration::from_secs(90)).await?;

	let out = run("node", &["client.mjs", &node.ws_url()])?;
	for line in [
		"ok: the metadata has the taskEscrow pallet",
		"ok: the metadata has the challenge pallet",
		"ok: the token is TNET with 12 decimals",
		"ok: the TaskSubmitted event names task 0",
		"ok: the stored spec is the one submitted",
		"ok: the learning rate kept its exact bits",
		"ok: trainet_task shows it open",
		"ok: the reward shows as held on Alice",
		"ok: the events subscription saw TaskSubmitted",
	] {
		ensure!(out.contains(line), "missing `{line}` in the client's output:\n{out}");
	}

	// What the dapp posted is what the chain holds, as the node's own RPC reads it.
	let task: serde_json::Value = node.rpc("trainet_task", vec![0.into()]).await?;
	ensure!(task["spec"]["steps"] == 20 && task["state"]["status"] == "open", "{task}");
	Ok(())
}
