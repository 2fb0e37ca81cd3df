//! The worker against a real dev chain, as its users run it.
//!
//! - Alice imports the shipped digits and posts a training task with `trainet-worker submit`;
//!   Dave runs `trainet-worker solve --once --register 200`, which registers, claims the task,
//!   trains it, commits its trace and waits out the challenge window. Dave is paid the reward
//!   and his stake is unlocked; the trace he committed is the one an independent training run
//!   of the same spec gives.
//! - Dave cheats (`--fault 2:3`: one operation of step 2 altered) while Eve runs `trainet-worker
//!   verify --once --register 100`: Eve recomputes the task, challenges, and both workers play
//!   the dispute game on their own until the runtime rules: Dave loses his stake, the task is
//!   reopened.

use std::{path::Path, process::Command, time::Duration};

use anyhow::{ensure, Context, Result};
use subxt::{OnlineClient, PolkadotConfig};
use subxt_signer::sr25519::dev;
use trainet_e2e::{ledger, worker_binary, Node, NodeConfig};
use trainet_primitives::{trace::trace_root, UNIT};
use trainet_worker::{dataset::Dataset, spec_file::SpecFile, train::Training};

#[derive(Debug, subxt::ext::scale_decode::DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
struct AccountData {
	free: u128,
}

#[derive(Debug, subxt::ext::scale_decode::DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
struct AccountInfo {
	data: AccountData,
}

/// `trainet-worker` with the store in `data_dir`, talking to the node at `url` as `suri`.
fn worker_command(data_dir: &Path, url: &str, suri: &str, args: &[&str]) -> Result<Command> {
	let mut c = Command::new(worker_binary()?);
	c.args(["--data-dir", data_dir.to_str().context("path")?])
		.args(["--node", url, "--suri", suri])
		.args(args);
	Ok(c)
}

/// Runs `c` to success; returns its output.
fn run(mut c: Command) -> Result<String> {
	let out = c.output()?;
	ensure!(
		out.status.success(),
		"trainet-worker failed: {}",
		String::from_utf8_lossy(&out.stderr)
	);
	Ok(String::from_utf8(out.stdout)?)
}

async fn free(api: &OnlineClient<PolkadotConfig>, who: [u8; 32]) -> Result<u128> {
	let info: AccountInfo = api
		.at_current_block()
		.await?
		.storage()
		.fetch(subxt::dynamic::storage::<([u8; 32],), AccountInfo>("System", "Account"), (who,))
		.await?
		.decode()?;
	Ok(info.data.free)
}

#[tokio::test]
async fn a_worker_solves_a_posted_task_and_is_paid() -> Result<()> {
	let dir = tempfile::tempdir()?;
	let node = Node::start(NodeConfig::dev(&dir.path().join("node"))).await?;
	node.wait_for_finalized(1, Duration::from_secs(90)).await?;
	let api = OnlineClient::<PolkadotConfig>::from_url(node.ws_url()).await?;
	let data_dir = dir.path().join("data");
	let url = node.ws_url();
	let worker = move |suri: &str, args: &[&str]| run(worker_command(&data_dir, &url, suri, args)?);

	let imported = worker("//Alice", &["dataset", "digits"])?;
	let root = imported.split_whitespace().nth(1).context("a root")?.to_string();
	let spec_path = dir.path().join("task.toml");
	let spec_text = format!(
		"[model]\nwidths = [64, 32, 10]\n\n[optimizer]\nkind = \"sgd\"\nlearning_rate = \
		 0.05\nmomentum = 0.9\n\n[training]\nbatch_size = 32\nsteps = 150\nseed = 11\n\n\
		 [dataset]\nroot = \"{root}\"\n"
	);
	std::fs::write(&spec_path, &spec_text)?;
	let posted = worker(
		"//Alice",
		&[
			"submit",
			spec_path.to_str().context("path")?,
			"--reward",
			"10",
			"--challenge-timeout",
			"10",
		],
	)?;
	ensure!(posted.starts_with("task 0 submitted"), "{posted}");

	let dave = dev::dave();
	let before = free(&api, dave.public_key().0).await?;
	let solved = tokio::task::spawn_blocking({
		let worker = worker.clone();
		move || worker("//Dave", &["solve", "--once", "--register", "200"])
	})
	.await??;
	ensure!(solved.contains("task 0 committed") && solved.contains("task 0 ended"), "{solved}");

	// The committed trace is the one an independent run of the same spec gives.
	let data = Dataset::digits()?;
	let spec = SpecFile::parse(&spec_text)?.to_spec(&data)?;
	let mut run = Training::new(spec, data)?;
	let mut states = vec![run.state_hash()];
	while run.steps_done() < 150 {
		states.push(run.step()?.state_hash);
	}
	ensure!(
		solved.contains(&format!("trace root {:?}", trace_root(&states))),
		"another trace: {solved}"
	);

	// Paid: the reward (less fees) on top of what registering bonded, stake unlocked.
	let best = node.best_number().await?;
	node.wait_for_finalized(best, Duration::from_secs(90)).await?;
	let after = free(&api, dave.public_key().0).await?;
	let l = ledger(&api, &dave).await?;
	ensure!(l.active == 200 * UNIT && l.locked == 0, "dave's stake: {l:?}");
	ensure!(after + 200 * UNIT > before + 9 * UNIT, "dave's balance {before} -> {after}");
	let task: Option<serde_json::Value> = node.rpc("trainet_task", vec![0.into()]).await?;
	ensure!(task.is_none(), "the task is still on chain: {task:?}");
	Ok(())
}

#[tokio::test]
async fn a_verifier_catches_a_cheating_worker() -> Result<()> {
	let dir = tempfile::tempdir()?;
	let node = Node::start(NodeConfig::dev(&dir.path().join("node"))).await?;
	node.wait_for_finalized(1, Duration::from_secs(90)).await?;
	let api = OnlineClient::<PolkadotConfig>::from_url(node.ws_url()).await?;
	let data_dir = dir.path().join("data");
	let url = node.ws_url();
	let command = move |suri: &str, args: &[&str]| -> Result<Command> {
		let mut c = Command::new(worker_binary()?);
		c.args(["--data-dir", data_dir.to_str().context("path")?])
			.args(["--node", &url, "--suri", suri])
			.args(args);
		Ok(c)
	};
	let run = |mut c: Command| -> Result<String> {
		let out = c.output()?;
		ensure!(
			out.status.success(),
			"trainet-worker failed: {}",
			String::from_utf8_lossy(&out.stderr)
		);
		Ok(String::from_utf8(out.stdout)?)
	};
	let imported = run(command("//Alice", &["dataset", "digits"])?)?;
	let root = imported.split_whitespace().nth(1).context("a root")?.to_string();
	let spec_path = dir.path().join("task.toml");
	std::fs::write(
		&spec_path,
		format!(
			"[model]\nwidths = [64, 32, 10]\n\n[optimizer]\nkind = \"sgd\"\nlearning_rate = \
			 0.05\nmomentum = 0.9\n\n[training]\nbatch_size = 32\nsteps = 4\nseed = 5\n\n\
			 [dataset]\nroot = \"{root}\"\n"
		),
	)?;
	let spec = spec_path.to_str().context("path")?.to_string();
	run(command("//Alice", &["submit", &spec, "--reward", "10", "--challenge-timeout", "60"])?)?;

	let dave = command("//Dave", &["solve", "--once", "--register", "200", "--fault", "2:3"])?;
	let eve = command("//Eve", &["verify", "--once", "--register", "100"])?;
	let both = tokio::time::timeout(Duration::from_secs(600), async {
		let dave = tokio::task::spawn_blocking(move || run(dave));
		let eve = tokio::task::spawn_blocking(move || run(eve));
		Ok::<_, anyhow::Error>((dave.await??, eve.await??))
	})
	.await
	.context("the dispute did not end in 10 minutes")??;
	let (dave_out, eve_out) = both;
	ensure!(dave_out.contains("task 0 lost in a dispute"), "dave: {dave_out}");
	ensure!(
		eve_out.contains("task 0 was wrong: challenged, and the solver lost"),
		"eve: {eve_out}"
	);

	let best = node.best_number().await?;
	node.wait_for_finalized(best, Duration::from_secs(90)).await?;
	let l = ledger(&api, &dev::dave()).await?;
	ensure!(l.active == 100 * UNIT && l.locked == 0, "dave was not slashed: {l:?}");
	let l = ledger(&api, &dev::eve()).await?;
	ensure!(l.active == 100 * UNIT && l.locked == 0, "eve's bond: {l:?}");
	let task: serde_json::Value = node.rpc("trainet_task", vec![0.into()]).await?;
	ensure!(task["state"]["status"] == "open", "the task was not reopened: {task}");
	Ok(())
}
