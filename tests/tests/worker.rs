//! The worker against a real chain (a dev node, or three validators), as its users run it.
//!
//! - Alice imports the shipped digits and posts a training task with `trainet-worker submit`;
//!   Dave runs `trainet-worker solve --once --register 200`, which registers, claims the task,
//!   trains it, commits its trace and waits out the challenge window. Dave is paid the reward
//!   and his stake is unlocked; the trace he committed is the one an independent training run
//!   of the same spec gives.
//! - Alice imports a CSV file and serves it; Dave's solver, given only a bootstrap peer that
//!   holds nothing, finds the dataset by its root through the DHT, trains and is paid; Alice
//!   then fetches the model from Dave (found the same way) and evaluates it.
//! - A regression: Alice's CSV of real-valued targets; Dave solves it, Eve samples it, Dave is
//!   paid, and the fetched model's squared error is a local run's.
//! - A convolutional net on Alice's CSV of 8x8 digit images: solved, sampled, paid; the fetched
//!   model (SafeTensors of the graph) classifies as a local run does.
//! - A transformer with gradient clipping on Alice's text corpus: solved, sampled, paid; the
//!   fetched model's held-out per-token cross-entropy is a local run's.
//! - Dave cheats (`--fault 2:3`: one operation of step 2 altered) while Eve runs `trainet-worker
//!   verify --once --register 100`: Eve recomputes the task, challenges, and both workers play
//!   the dispute game on their own until the runtime rules: Dave loses his stake, the task is
//!   reopened.
//! - Dave skips the work from step 2 on (`--skip-from 2`: his states stop changing); Eve's
//!   verifier challenges and Dave loses at the step's next-state assembly.
//! - Eve challenges an honest Dave on purpose (`verify --fault 2:3`): Dave's worker defends
//!   the task on its own and wins; Eve loses half her bond and Dave is paid.
//! - The node is restarted under Dave's worker while it trains: the worker waits for the node,
//!   reconnects, commits and is paid.
//! - Dave's worker is killed (SIGKILL) in the middle of a long task and started again: it
//!   finds the task it holds on chain, resumes from its last checkpoint and commits the trace
//!   an uninterrupted run gives.
//! - Eve challenges an honest Dave whose worker then dies for good: the round deadline (set
//!   short by root, a governance parameter) decides against him.
//! - A dispute goes on to the right ruling while the workers' node restarts: the dev chain's
//!   only validator, and Bob's of three validators (the others keep making blocks).

use std::{
	path::{Path, PathBuf},
	process::Command,
	time::Duration,
};

use anyhow::{ensure, Context, Result};
use subxt::{OnlineClient, PolkadotConfig};
use subxt_signer::sr25519::dev;
use trainet_e2e::{
	free_port, ledger, set_round_timeout, submit_in_block, worker_binary, Node, NodeConfig,
};
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

/// A chain (a dev node, or three validators), Alice's digits in a data directory, and task 0
/// posted by Alice with `steps` steps and a challenge window of `challenge` blocks.
struct Market {
	_dir: tempfile::TempDir,
	/// The node the workers talk to.
	node: Node,
	/// The network's other validators, if any.
	others: Vec<Node>,
	api: OnlineClient<PolkadotConfig>,
	data_dir: PathBuf,
	spec_text: String,
}

impl Market {
	/// On a dev chain (one validator, the workers' node).
	async fn start(steps: u32, challenge: u32) -> Result<Self> {
		let dir = tempfile::tempdir()?;
		let node = Node::start(NodeConfig::dev(&dir.path().join("node"))).await?;
		Self::open(dir, node, Vec::new(), steps, challenge, 1).await
	}

	/// On a dev chain, the task's trace committing to every `interval`-th state.
	async fn start_checkpointed(steps: u32, challenge: u32, interval: u32) -> Result<Self> {
		let dir = tempfile::tempdir()?;
		let node = Node::start(NodeConfig::dev(&dir.path().join("node"))).await?;
		Self::open(dir, node, Vec::new(), steps, challenge, interval).await
	}

	/// On the local chain's three validators; the workers talk to Bob's node.
	async fn start_on_three_validators(steps: u32, challenge: u32) -> Result<Self> {
		let dir = tempfile::tempdir()?;
		let mut nodes = trainet_e2e::local_network(dir.path()).await?;
		let bob = nodes.remove(1);
		Self::open(dir, bob, nodes, steps, challenge, 1).await
	}

	async fn open(
		dir: tempfile::TempDir,
		node: Node,
		others: Vec<Node>,
		steps: u32,
		challenge: u32,
		interval: u32,
	) -> Result<Self> {
		let spec_of = |root: &str| {
			format!(
				"[model]\nwidths = [64, 32, 10]\n\n[optimizer]\nkind = \"sgd\"\nlearning_rate = \
				 0.05\nmomentum = 0.9\n\n[training]\nbatch_size = 32\nsteps = {steps}\nseed = 5\n\
				 checkpoint_interval = {interval}\n\n[dataset]\nroot = \"{root}\"\n"
			)
		};
		let (market, _) =
			Self::open_with(dir, node, others, &["dataset", "digits"], spec_of, challenge).await?;
		Ok(market)
	}

	/// A market whose task 0 trains on the dataset Alice imports with `import` (a worker
	/// command line), by the spec `spec_of` its root; returns it and what the import printed.
	async fn open_with(
		dir: tempfile::TempDir,
		node: Node,
		others: Vec<Node>,
		import: &[&str],
		spec_of: impl FnOnce(&str) -> String,
		challenge: u32,
	) -> Result<(Self, String)> {
		node.wait_for_finalized(1, Duration::from_secs(90)).await?;
		let api = OnlineClient::<PolkadotConfig>::from_url(node.ws_url()).await?;
		let data_dir = dir.path().join("data");
		let imported = run(worker_command(&data_dir, &node.ws_url(), "//Alice", import)?)?;
		let root = imported.split_whitespace().nth(1).context("a root")?.to_string();
		let spec_text = spec_of(&root);
		let spec_path = dir.path().join("task.toml");
		std::fs::write(&spec_path, &spec_text)?;
		let challenge = challenge.to_string();
		let spec = spec_path.to_str().context("path")?;
		let args = ["submit", spec, "--reward", "10", "--challenge-timeout", &challenge];
		let posted = run(worker_command(&data_dir, &node.ws_url(), "//Alice", &args)?)?;
		ensure!(posted.starts_with("task 0 submitted"), "{posted}");
		Ok((Self { _dir: dir, node, others, api, data_dir, spec_text }, imported))
	}

	/// `trainet-worker` as `suri` on this market.
	fn worker(&self, suri: &str, args: &[&str]) -> Result<Command> {
		worker_command(&self.data_dir, &self.node.ws_url(), suri, args)
	}

	/// A worker of `suri` with its own, empty, data directory (named after it), listening for
	/// peers on a free loopback port; and the address others reach it at.
	fn peer(&self, suri: &str, args: &[&str]) -> Result<(Command, String)> {
		let dir = self.data_dir.with_file_name(suri.trim_start_matches('/'));
		let id = trainet_worker::p2p::identity(&{
			std::fs::create_dir_all(&dir)?;
			dir.clone()
		})?
		.public()
		.to_peer_id();
		let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port()?);
		let mut c = worker_command(&dir, &self.node.ws_url(), suri, args)?;
		c.args(["--listen", &listen, "--no-mdns"]);
		Ok((c, format!("{listen}/p2p/{id}")))
	}

	/// The task's dataset root.
	fn root(&self) -> Result<sp_core::H256> {
		Ok(SpecFile::parse(&self.spec_text)?.dataset_root()?)
	}

	/// Copies the task's dataset from Alice's data directory into `name`'s (made by
	/// [`Self::peer`]), so that `name`'s worker has it without fetching it.
	fn give_dataset(&self, name: &str) -> Result<()> {
		let file = format!("{:x}.dataset", self.root()?);
		std::fs::copy(self.data_dir.join(&file), self.data_dir.with_file_name(name).join(&file))?;
		Ok(())
	}

	/// Dave's solver (`solve --once --register 200`, given the task's dataset) and Eve's
	/// verifier, which fetches from Dave's peer and samples 3 of his transitions; and Dave's
	/// address.
	fn solver_and_sampler(&self) -> Result<(Command, Command, String)> {
		let (solve, dave) = self.peer("//Dave", &["solve", "--once", "--register", "200"])?;
		self.give_dataset("Dave")?;
		let (verify, _) = self.peer(
			"//Eve",
			&["verify", "--once", "--register", "100", "--sample", "3", "--peer", &dave],
		)?;
		Ok((solve, verify, dave))
	}

	/// Checks that `model eval` of the exported model in `model` and `train --evaluate` of the
	/// task's spec, run locally, print the same `figure` (`accuracy`, or `mean squared error`)
	/// on the stored dataset `root`; returns it.
	fn same_evaluation(&self, model: &str, root: &str, figure: &str) -> Result<f64> {
		let evaluated = run(self.worker("//Alice", &["model", "eval", model, root])?)?;
		let spec_path = self.data_dir.with_file_name("task.toml");
		let spec = spec_path.to_str().context("path")?;
		let local = run(self.worker("//Alice", &["train", spec, "--evaluate", root])?)?;
		let value = |text: &str| {
			let after = text.split(&format!("{figure} ")).nth(1)?;
			after.split_whitespace().next().map(str::to_string)
		};
		ensure!(
			value(&evaluated).is_some() && value(&evaluated) == value(&local),
			"fetched model: {evaluated}; local run: {local}"
		);
		Ok(value(&evaluated).context("a figure")?.parse()?)
	}

	/// Dave solves task 0 and serves his trace, Eve samples 3 of its transitions, Alice
	/// fetches the model from Dave; Dave commits, Eve finds every sampled transition right,
	/// the task settles and leaves the chain. The model's folder and what the fetch printed.
	async fn solved_sampled_paid_and_fetched(&self) -> Result<(String, String)> {
		let (solve, verify, dave_address) = self.solver_and_sampler()?;
		let model_dir = self.data_dir.join("model");
		let model = model_dir.to_str().context("path")?.to_string();
		let fetch = spawn(self.worker(
			"//Alice",
			&["model", "fetch", "0", "--out", &model, "--peer", &dave_address],
		)?)?;
		let (solved, verified) = both(solve, verify).await?;
		let fetched = finish(fetch, Duration::from_secs(60)).await?;
		ensure!(solved.contains("task 0 committed") && solved.contains("task 0 ended"), "{solved}");
		ensure!(verified.contains("every sampled transition is right"), "eve: {verified}");
		self.settle(&self.api).await?;
		let task: Option<serde_json::Value> = self.node.rpc("trainet_task", vec![0.into()]).await?;
		ensure!(task.is_none(), "the task is still on chain: {task:?}");
		Ok((model, fetched))
	}

	/// Waits until `worker`, solving task 0 in this market's data directory, has recorded
	/// `states` state hashes in its journal (so it has claimed and is training); returns how
	/// many it had recorded then.
	async fn wait_for_training(
		&self,
		worker: &mut std::process::Child,
		states: u64,
	) -> Result<u64> {
		let journal = self.data_dir.join("tasks").join("task-0.trace");
		let recorded = || std::fs::metadata(&journal).map(|m| m.len() / 32).unwrap_or(0);
		let start = std::time::Instant::now();
		loop {
			let n = recorded();
			if n >= states {
				return Ok(n);
			}
			ensure!(worker.try_wait()?.is_none(), "the worker stopped on its own");
			ensure!(
				start.elapsed() < Duration::from_secs(300),
				"no training progress in 5 minutes"
			);
			tokio::time::sleep(Duration::from_millis(10)).await;
		}
	}

	/// Checks, once final, that Dave lost task 0 in a dispute to Eve: half his 200 TNET stake
	/// slashed, Eve's 100 bonded and unlocked, the task open again.
	async fn solver_lost(&self, api: &OnlineClient<PolkadotConfig>) -> Result<()> {
		self.settle(api).await?;
		let l = ledger(api, &dev::dave()).await?;
		ensure!(l.active == 100 * UNIT && l.locked == 0, "dave was not slashed: {l:?}");
		let l = ledger(api, &dev::eve()).await?;
		ensure!(l.active == 100 * UNIT && l.locked == 0, "eve's bond: {l:?}");
		let task: serde_json::Value = self.node.rpc("trainet_task", vec![0.into()]).await?;
		ensure!(task["state"]["status"] == "open", "the task was not reopened: {task}");
		Ok(())
	}

	/// Waits until a dispute is open on chain (at most `patience`), while `worker` runs.
	async fn wait_for_dispute(
		&self,
		worker: &mut std::process::Child,
		patience: Duration,
	) -> Result<serde_json::Value> {
		let start = std::time::Instant::now();
		loop {
			let open: Vec<serde_json::Value> =
				self.node.rpc("trainet_openDisputes", Vec::new()).await?;
			if let Some(d) = open.into_iter().next() {
				return Ok(d);
			}
			ensure!(worker.try_wait()?.is_none(), "the worker stopped before any dispute");
			ensure!(start.elapsed() < patience, "no dispute opened in {patience:?}");
			tokio::time::sleep(Duration::from_millis(500)).await;
		}
	}

	/// The trace root an independent run of the task gives.
	fn true_trace_root(&self) -> Result<sp_core::H256> {
		let data = Dataset::digits()?;
		let spec = SpecFile::parse(&self.spec_text)?.to_spec(&data)?;
		let states = Training::new(spec, data)?.trace(|_| {})?;
		Ok(trace_root(&states))
	}

	/// Waits until what is in the best block now is final, to the node and to `api` (subxt
	/// reads at the finalized block it has heard of).
	async fn settle(&self, api: &OnlineClient<PolkadotConfig>) -> Result<()> {
		trainet_e2e::settle(&self.node, api).await
	}
}

/// Runs `c` to success; returns its output and its log.
fn run_logged(mut c: Command) -> Result<String> {
	let out = c.output()?;
	let (stdout, stderr) =
		(String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
	ensure!(out.status.success(), "trainet-worker failed: {stderr}");
	Ok(format!("{stdout}\n{stderr}"))
}

/// Runs two workers to their ends, at most 10 minutes; returns their outputs and logs.
async fn both(a: Command, b: Command) -> Result<(String, String)> {
	tokio::time::timeout(Duration::from_secs(600), async {
		let a = tokio::task::spawn_blocking(move || run_logged(a));
		let b = tokio::task::spawn_blocking(move || run_logged(b));
		Ok::<_, anyhow::Error>((a.await??, b.await??))
	})
	.await
	.context("the workers did not finish in 10 minutes")?
}

#[tokio::test]
async fn a_worker_solves_a_posted_task_and_is_paid() -> Result<()> {
	let m = Market::start(150, 10).await?;
	let dave = dev::dave();
	let before = free(&m.api, dave.public_key().0).await?;
	// Dave serves his trace and states to peers; Eve, who has not even the dataset, fetches
	// it from him, then samples 3 of his transitions instead of recomputing 150 steps.
	let (solve, verify, dave_address) = m.solver_and_sampler()?;
	// Alice, who posted the task, fetches the trained model from Dave once he commits.
	let model_dir = m.data_dir.join("model");
	let fetch = spawn(m.worker(
		"//Alice",
		&[
			"model",
			"fetch",
			"0",
			"--out",
			model_dir.to_str().context("path")?,
			"--peer",
			&dave_address,
		],
	)?)?;
	// Ferdie, a verifier, makes Dave show on chain that he holds the model he committed to
	// (an availability challenge); Dave's worker, defending the task, shows the asked rows.
	let demand = spawn(m.worker("//Ferdie", &["model", "demand", "0", "--register", "100"])?)?;
	let (solved, verified) = both(solve, verify).await?;
	let fetched = finish(fetch, Duration::from_secs(60)).await?;
	let demanded = finish(demand, Duration::from_secs(60)).await?;
	ensure!(demanded.contains("task 0: the solver showed the asked rows"), "{demanded}");
	ensure!(solved.contains("showed 4 rows of it"), "{solved}");
	ensure!(solved.contains("task 0 committed") && solved.contains("task 0 ended"), "{solved}");
	// The model she got is the one Dave trained (the state he committed), and it classifies
	// as a local run of the same spec does.
	let final_state = solved
		.split("committed: h_N ")
		.nth(1)
		.and_then(|r| r.split(',').next())
		.context("no final state in the solver's output")?;
	ensure!(fetched.contains(&format!("from state {final_state}")), "{fetched}");
	let root = format!("{:?}", m.root()?);
	m.same_evaluation(model_dir.to_str().context("path")?, &root, "accuracy")?;
	let model = m.data_dir.with_file_name("Dave").join("models").join("task-0.mpk");
	ensure!(
		solved.contains("task 0 model saved as a burn record") && model.is_file(),
		"no model saved: {solved}"
	);
	// The committed trace is the one an independent run of the same spec gives.
	ensure!(
		solved.contains(&format!("trace root {:?}", m.true_trace_root()?)),
		"another trace: {solved}"
	);
	ensure!(
		verified.contains("task 0 verified")
			&& verified.contains("every sampled transition is right"),
		"eve: {verified}"
	);

	// Paid: the reward (less fees) on top of what registering bonded, stake unlocked.
	m.settle(&m.api).await?;
	let after = free(&m.api, dave.public_key().0).await?;
	let l = ledger(&m.api, &dave).await?;
	ensure!(l.active == 200 * UNIT && l.locked == 0, "dave's stake: {l:?}");
	ensure!(after + 200 * UNIT > before + 9 * UNIT, "dave's balance {before} -> {after}");
	let task: Option<serde_json::Value> = m.node.rpc("trainet_task", vec![0.into()]).await?;
	ensure!(task.is_none(), "the task is still on chain: {task:?}");
	// After payment the task's receipt still names the model: Alice exports it again.
	let receipt: serde_json::Value = m.node.rpc("trainet_receipt", vec![0.into()]).await?;
	ensure!(
		receipt["solver"] == trainet_e2e::ss58(&dave)
			&& fetched.contains(receipt["modelHash"].as_str().context("a model hash")?),
		"receipt {receipt}, fetched {fetched}"
	);
	let again = m.data_dir.join("model-after-payment");
	let fetched = run(
		m.worker("//Alice", &["model", "fetch", "0", "--out", again.to_str().context("path")?])?
	)?;
	ensure!(fetched.contains("task 0 was paid; its receipt names the model"), "{fetched}");
	ensure!(
		std::fs::read(again.join("model.safetensors"))?
			== std::fs::read(model_dir.join("model.safetensors"))?,
		"another model after payment"
	);
	Ok(())
}

/// The held-out dataset's root in what `dataset import ... --held-out N` printed.
fn held_out_root(imported: &str) -> Result<String> {
	let line = imported.lines().find_map(|l| l.strip_prefix("held-out "));
	Ok(line.and_then(|l| l.split_whitespace().next()).context("no held-out root")?.to_string())
}

/// A worker process, killed when dropped (a server the test is done with, or one a failure
/// left behind).
struct Running(std::process::Child);

impl Drop for Running {
	fn drop(&mut self) {
		let _ = self.0.kill();
		let _ = self.0.wait();
	}
}

#[tokio::test]
async fn a_csv_task_is_found_by_its_root_and_its_model_delivered_after_payment() -> Result<()> {
	// Alice has a CSV file of measurements (4 raw columns, 3 named kinds). She imports it,
	// posts a task on it, and serves it. Charlie runs a bootstrap peer that holds nothing:
	// the only address Dave's solver and Alice are given. Dave finds Alice's dataset by its
	// root through the DHT, trains and is paid; then Alice fetches the model from Dave (found
	// the same way), evaluates it on her held-out rows, and gets what training the spec
	// herself gives.
	let dir = tempfile::tempdir()?;
	let csv = dir.path().join("measurements.csv");
	let mut text = String::from("length,width,depth,weight,kind\n");
	for (x, y) in &Dataset::synthetic(11, 400, 4, 3).samples {
		let kind = ["ant", "bee", "cat"].get(*y as usize).context("a class")?;
		let raw = |i: usize, scale: f32, shift: f32| x.get(i).map(|v| v * scale + shift);
		let (a, b, c, d) =
			(raw(0, 9.0, 3.0), raw(1, 2.0, -1.0), raw(2, 40.0, 7.0), raw(3, 0.5, 0.0));
		text += &format!(
			"{},{},{},{},{kind}\n",
			a.context("x")?,
			b.context("x")?,
			c.context("x")?,
			d.context("x")?
		);
	}
	std::fs::write(&csv, text)?;
	let node = Node::start(NodeConfig::dev(&dir.path().join("node"))).await?;
	let csv = csv.to_str().context("path")?.to_string();
	let import =
		["dataset", "import", "csv", &csv, "--label", "kind", "--min-max", "--held-out", "5"];
	let spec_of = |root: &str| {
		format!(
			"[model]\nwidths = [4, 16, 3]\n\n[optimizer]\nkind = \"adam\"\nlearning_rate = \
			 0.02\nbeta1 = 0.9\nbeta2 = 0.999\nepsilon = 1e-8\n\n[training]\nbatch_size = 16\nsteps = 80\nseed = 3\n\n[dataset]\nroot = \
			 \"{root}\"\n"
		)
	};
	let (m, imported) = Market::open_with(dir, node, Vec::new(), &import, spec_of, 10).await?;
	let held_out = held_out_root(&imported)?;

	let (charlie, bootstrap) = m.peer("//Charlie", &["serve"])?;
	let _charlie = Running(spawn(charlie)?);
	let alice_listen = format!("/ip4/127.0.0.1/tcp/{}", free_port()?);
	let alice_serves = m.worker(
		"//Alice",
		&["serve", "--listen", &alice_listen, "--no-mdns", "--peer", &bootstrap],
	)?;
	let alice_serves = Running(spawn(alice_serves)?);
	let dave_dir = m.data_dir.with_file_name("Dave");
	let (mut solve, _) =
		m.peer("//Dave", &["solve", "--once", "--register", "200", "--peer", &bootstrap])?;
	solve.env("RUST_LOG", "info,trainet_worker::p2p=debug");
	let solved = finish(spawn(solve)?, Duration::from_secs(600)).await?;
	ensure!(solved.contains("fetched its dataset from a peer"), "{solved}");
	let alice_id = trainet_worker::p2p::identity(&m.data_dir)?.public().to_peer_id().to_string();
	ensure!(
		solved.lines().any(|l| l.contains("lookup finished") && l.contains(&alice_id)),
		"the DHT did not name Alice as the dataset's provider: {solved}"
	);
	ensure!(solved.contains("task 0 committed") && solved.contains("task 0 ended"), "{solved}");
	m.settle(&m.api).await?;
	let task: Option<serde_json::Value> = m.node.rpc("trainet_task", vec![0.into()]).await?;
	ensure!(task.is_none(), "the task is still on chain: {task:?}");
	drop(alice_serves);

	// Paid. Dave's worker serves what it trained; Alice, knowing only the bootstrap peer,
	// fetches the model by the task's receipt.
	let (dave_serves, _) = m.peer("//Dave", &["serve", "--peer", &bootstrap])?;
	let _dave_serves = Running(spawn(dave_serves)?);
	let model_dir = m.data_dir.join("model");
	let model = model_dir.to_str().context("path")?;
	let fetched = run(m.worker(
		"//Alice",
		&["model", "fetch", "0", "--out", model, "--peer", &bootstrap, "--no-mdns"],
	)?)?;
	let dave_id = trainet_worker::p2p::identity(&dave_dir)?.public().to_peer_id().to_string();
	ensure!(fetched.contains("task 0 was paid; its receipt names the model"), "{fetched}");
	ensure!(fetched.contains(&format!("bytes) from {dave_id}")), "{fetched}");
	let accuracy = m.same_evaluation(model, &held_out, "accuracy")?;
	ensure!(accuracy > 0.8, "the model did not learn the measurements: {accuracy}");
	Ok(())
}

#[tokio::test]
async fn a_regression_task_is_solved_verified_and_paid() -> Result<()> {
	// Alice's CSV of measurements and a real-valued target: a regression task (one output,
	// mean squared error). Dave solves it and serves his trace; Eve samples 3 transitions of
	// it; Dave is paid; the model Alice fetches has the squared error a local run of the spec
	// gives on her held-out rows.
	let dir = tempfile::tempdir()?;
	let csv = dir.path().join("heights.csv");
	let mut text = String::from("a,b,c,d,height\n");
	for (x, t) in &Dataset::synthetic_regression(12, 300, 4).samples {
		let cells: Vec<String> = x.iter().map(|v| (v * 3.0 + 1.0).to_string()).collect();
		text += &format!("{},{}\n", cells.join(","), f32::from_bits(*t));
	}
	std::fs::write(&csv, text)?;
	let node = Node::start(NodeConfig::dev(&dir.path().join("node"))).await?;
	let csv = csv.to_str().context("path")?.to_string();
	let import = ["dataset", "import", "csv", &csv, "--min-max", "--held-out", "5", "--regression"];
	let spec_of = |root: &str| {
		format!(
			"[model]\nwidths = [4, 16, 1]\n\n[optimizer]\nkind = \"adam\"\nlearning_rate = \
			 0.02\nbeta1 = 0.9\nbeta2 = 0.999\nepsilon = 1e-8\n\n[training]\nbatch_size = 16\n\
			 steps = 60\nseed = 4\n\n[dataset]\nroot = \"{root}\"\n"
		)
	};
	let (m, imported) = Market::open_with(dir, node, Vec::new(), &import, spec_of, 10).await?;
	ensure!(
		imported.contains("real-valued targets") && imported.contains("target height"),
		"{imported}"
	);
	let held_out = held_out_root(&imported)?;
	let task: serde_json::Value = m.node.rpc("trainet_task", vec![0.into()]).await?;
	ensure!(task["spec"]["loss"] == "MeanSquaredError", "{task}");
	let (model, _) = m.solved_sampled_paid_and_fetched().await?;
	m.same_evaluation(&model, &held_out, "mean squared error")?;
	Ok(())
}

#[tokio::test]
async fn a_cnn_task_is_solved_verified_and_paid_and_its_model_delivered() -> Result<()> {
	// Alice's CSV of 8x8 digit images (64 pixels and a class a row) and a convolutional net's
	// spec: a convolution, ReLU, a max pool, a dense layer. Dave solves it and serves his
	// trace; Eve samples 3 transitions of it (every image operation recomputed); Dave is paid;
	// the model Alice fetches (SafeTensors of the graph) classifies her held-out digits as a
	// local run of the spec does.
	let dir = tempfile::tempdir()?;
	let csv = dir.path().join("digits.csv");
	let mut text = String::new();
	for (x, y) in Dataset::digits()?.samples.iter().take(500) {
		let cells: Vec<String> = x.iter().map(|v| v.to_string()).collect();
		text += &format!("{},{y}\n", cells.join(","));
	}
	std::fs::write(&csv, text)?;
	let node = Node::start(NodeConfig::dev(&dir.path().join("node"))).await?;
	let csv = csv.to_str().context("path")?.to_string();
	let import = ["dataset", "import", "csv", &csv, "--min-max", "--held-out", "5"];
	let spec_of = |root: &str| {
		format!(
			"[model]\ninput = [1, 8, 8]\nlayers = [\n  {{ type = \"conv2d\", out_channels = 4, \
			 kernel = 3, padding = 1 }},\n  {{ type = \"relu\" }},\n  {{ type = \"max_pool2d\", \
			 kernel = 2 }},\n  {{ type = \"flatten\" }},\n  {{ type = \"linear\", out = 10 }},\n]\n\n\
			 [optimizer]\nkind = \"adam\"\nlearning_rate = 0.01\nbeta1 = 0.9\nbeta2 = 0.999\n\
			 epsilon = 1e-7\n\n[training]\nbatch_size = 16\nsteps = 60\nseed = 4\n\n[dataset]\n\
			 root = \"{root}\"\n"
		)
	};
	let (m, imported) = Market::open_with(dir, node, Vec::new(), &import, spec_of, 10).await?;
	let held_out = held_out_root(&imported)?;
	let task: serde_json::Value = m.node.rpc("trainet_task", vec![0.into()]).await?;
	ensure!(task["spec"]["model"]["graph"]["input"] == serde_json::json!([1, 8, 8]), "{task}");
	let (model, fetched) = m.solved_sampled_paid_and_fetched().await?;
	ensure!(fetched.contains("[1, 8, 8] input, 5 layers"), "{fetched}");
	let accuracy = m.same_evaluation(&model, &held_out, "accuracy")?;
	ensure!(accuracy > 0.6, "the CNN learned little in 60 steps: {accuracy}");
	Ok(())
}

#[tokio::test]
async fn a_transformer_task_is_solved_verified_and_paid_and_its_model_delivered() -> Result<()> {
	// Alice's text corpus imported as character sequences of context 16, and a small
	// transformer's spec (an embedding, a residual block of layer norm, q|k|v, causal attention
	// of two heads and its projection, a layer norm, the output layer), AdamW with gradient
	// clipping by global norm. Dave solves it (burn's GraphNet with RepOps kernels) and serves
	// his trace; Eve samples 3 transitions of it (every operation recomputed, the clipping's
	// included); Dave is paid; the model Alice fetches gives her held-out text the per-token
	// cross-entropy a local run of the spec gives.
	let dir = tempfile::tempdir()?;
	let corpus = dir.path().join("corpus.txt");
	let text = "a cat sat on a mat. a rat ate a hat. the cat ate the rat. ".repeat(12);
	let vocab = text.chars().collect::<std::collections::BTreeSet<_>>().len();
	std::fs::write(&corpus, &text)?;
	let node = Node::start(NodeConfig::dev(&dir.path().join("node"))).await?;
	let corpus = corpus.to_str().context("path")?.to_string();
	let import = [
		"dataset",
		"import",
		"text",
		&corpus,
		"--sequences",
		"--context",
		"16",
		"--stride",
		"17",
		"--held-out",
		"5",
	];
	let spec_of = |root: &str| {
		format!(
			"[model]\ncontext = 16\nlayers = [\n  {{ type = \"embedding\", vocab = {vocab}, dim = \
			 16 }},\n  {{ type = \"residual\", layers = 4 }},\n  {{ type = \"layer_norm\" }},\n  \
			 {{ type = \"linear\", out = 48 }},\n  {{ type = \"attention\", heads = 2 }},\n  {{ \
			 type = \"linear\", out = 16 }},\n  {{ type = \"layer_norm\" }},\n  {{ type = \
			 \"linear\", out = {vocab} }},\n]\n\n[optimizer]\nkind = \"adamw\"\nlearning_rate = \
			 0.01\nbeta1 = 0.9\nbeta2 = 0.99\nepsilon = 1e-8\nweight_decay = 0.01\n\n[training]\n\
			 batch_size = 8\nsteps = 40\nseed = 5\nmax_grad_norm = 1.0\n\n[dataset]\nroot = \
			 \"{root}\"\n"
		)
	};
	let (m, imported) = Market::open_with(dir, node, Vec::new(), &import, spec_of, 10).await?;
	let held_out = held_out_root(&imported)?;
	let task: serde_json::Value = m.node.rpc("trainet_task", vec![0.into()]).await?;
	ensure!(task["spec"]["maxGradNorm"] == serde_json::json!(1.0), "{task}");
	let (model, fetched) = m.solved_sampled_paid_and_fetched().await?;
	ensure!(fetched.contains("8 layers"), "{fetched}");
	let loss = m.same_evaluation(&model, &held_out, "per-token cross-entropy")?;
	// Untrained, about ln(vocab).
	ensure!(loss < (vocab as f64).ln() * 0.8, "the transformer learned little: {loss}");
	Ok(())
}

#[tokio::test]
async fn a_solver_that_withholds_its_model_is_slashed_and_the_submitter_refunded() -> Result<()> {
	// Dave trains and commits, then goes away with the model (his worker is killed and never
	// comes back). Ferdie demands the model on chain: nobody shows the asked rows before the
	// deadline (shortened by Root to 10 blocks), so Dave loses half his stake and the task,
	// and Alice takes her reward back.
	let m = Market::start(4, 40).await?;
	set_round_timeout(&m.node, &m.api, 10).await?;
	let mut dave = spawn(m.worker("//Dave", &["solve", "--once", "--register", "200"])?)?;
	let start = std::time::Instant::now();
	loop {
		let task: serde_json::Value = m.node.rpc("trainet_task", vec![0.into()]).await?;
		if task["state"]["status"] == "committed" {
			break;
		}
		ensure!(dave.try_wait()?.is_none(), "dave stopped before committing");
		ensure!(start.elapsed() < Duration::from_secs(180), "no commitment: {task}");
		tokio::time::sleep(Duration::from_millis(200)).await;
	}
	dave.kill()?;
	dave.wait()?;
	let demanded = run(m.worker("//Ferdie", &["model", "demand", "0", "--register", "100"])?)?;
	ensure!(demanded.contains("task 0: the solver did not show the asked rows"), "{demanded}");
	m.settle(&m.api).await?;
	let l = ledger(&m.api, &dev::dave()).await?;
	ensure!(l.active == 100 * UNIT && l.locked == 0, "dave was not slashed: {l:?}");
	let l = ledger(&m.api, &dev::ferdie()).await?;
	ensure!(l.active == 100 * UNIT && l.locked == 0, "ferdie's bond: {l:?}");
	let task: serde_json::Value = m.node.rpc("trainet_task", vec![0.into()]).await?;
	ensure!(task["state"]["status"] == "open", "the task was not reopened: {task}");
	// Alice cancels the reopened task: her reward is no longer held.
	let alice = dev::alice();
	submit_in_block(&m.node, &m.api, &alice, "TaskEscrow", "cancel", (0u64,)).await?;
	m.settle(&m.api).await?;
	let task: Option<serde_json::Value> = m.node.rpc("trainet_task", vec![0.into()]).await?;
	ensure!(task.is_none(), "the task is still on chain: {task:?}");
	let money = trainet_worker::chain::Chain::connect(&m.node.ws_url(), Duration::from_secs(30))
		.await?
		.money(alice.public_key().0)
		.await?;
	ensure!(money.held == 0, "alice's reward is still held: {money:?}");
	Ok(())
}

#[tokio::test]
async fn a_verifier_catches_a_cheating_worker() -> Result<()> {
	let m = Market::start(4, 60).await?;
	let args = ["solve", "--once", "--register", "200", "--fault", "2:3"];
	let (dave, dave_address) = m.peer("//Dave", &args)?;
	m.give_dataset("Dave")?;
	// Eve samples every transition (4 of 4): step 2's is wrong.
	let (eve, _) = m.peer(
		"//Eve",
		&["verify", "--once", "--register", "100", "--sample", "4", "--peer", &dave_address],
	)?;
	let (dave_out, eve_out) = both(dave, eve).await?;
	ensure!(eve_out.contains("a sampled transition is wrong task=0 step=2"), "eve: {eve_out}");
	ensure!(dave_out.contains("task 0 lost in a dispute"), "dave: {dave_out}");
	ensure!(
		eve_out.contains("task 0 was wrong: challenged, and the solver lost"),
		"eve: {eve_out}"
	);

	m.solver_lost(&m.api).await
}

/// With a checkpoint interval of 4, Dave's trace commits to the states after steps 0, 4, 8
/// and 12 only. He cheats in step 5; Eve samples every segment over libp2p, finds the one from
/// step 4 wrong, recomputes, challenges: the dispute narrows to that segment, both commit its
/// per-step states, bisect inside it to step 5, and the chain re-executes one operation.
#[tokio::test]
async fn a_cheat_between_checkpoints_is_caught_inside_its_segment() -> Result<()> {
	let m = Market::start_checkpointed(12, 60, 4).await?;
	let args = ["solve", "--once", "--register", "200", "--fault", "5:3"];
	let (dave, dave_address) = m.peer("//Dave", &args)?;
	m.give_dataset("Dave")?;
	let (eve, _) = m.peer(
		"//Eve",
		&["verify", "--once", "--register", "100", "--sample", "3", "--peer", &dave_address],
	)?;
	let (dave_out, eve_out) = both(dave, eve).await?;
	ensure!(eve_out.contains("a sampled transition is wrong task=0 step=4"), "eve: {eve_out}");
	for out in [&dave_out, &eve_out] {
		ensure!(
			out.contains("the parties disagree between steps 4 and 8"),
			"no segment game: {out}"
		);
		ensure!(out.contains("the parties disagree on step 5"), "not step 5: {out}");
	}
	ensure!(dave_out.contains("task 0 lost in a dispute"), "dave: {dave_out}");
	ensure!(
		eve_out.contains("task 0 was wrong: challenged, and the solver lost"),
		"eve: {eve_out}"
	);
	m.solver_lost(&m.api).await
}

#[tokio::test]
async fn a_verifier_catches_a_worker_that_skips_work() -> Result<()> {
	let m = Market::start(4, 60).await?;
	let dave = m.worker("//Dave", &["solve", "--once", "--register", "200", "--skip-from", "2"])?;
	let eve = m.worker("//Eve", &["verify", "--once", "--register", "100"])?;
	let (dave_out, eve_out) = both(dave, eve).await?;
	ensure!(dave_out.contains("task 0 lost in a dispute"), "dave: {dave_out}");
	ensure!(
		eve_out.contains("task 0 was wrong: challenged, and the solver lost"),
		"eve: {eve_out}"
	);
	m.settle(&m.api).await?;
	let l = ledger(&m.api, &dev::dave()).await?;
	ensure!(l.active == 100 * UNIT && l.locked == 0, "dave was not slashed: {l:?}");
	Ok(())
}

#[tokio::test]
async fn an_honest_worker_beats_a_false_challenge() -> Result<()> {
	let m = Market::start(4, 12).await?;
	let before = free(&m.api, dev::dave().public_key().0).await?;
	let dave = m.worker("//Dave", &["solve", "--once", "--register", "200"])?;
	let eve = m.worker("//Eve", &["verify", "--once", "--register", "100", "--fault", "2:3"])?;
	let (dave_out, eve_out) = both(dave, eve).await?;
	ensure!(dave_out.contains("task 0 ended"), "dave: {dave_out}");
	ensure!(eve_out.contains("task 0 was wrong, but the challenge did not win"), "eve: {eve_out}");

	m.settle(&m.api).await?;
	let l = ledger(&m.api, &dev::dave()).await?;
	ensure!(l.active == 200 * UNIT && l.locked == 0, "dave's stake: {l:?}");
	let after = free(&m.api, dev::dave().public_key().0).await?;
	ensure!(after + 200 * UNIT > before + 9 * UNIT, "dave was not paid: {before} -> {after}");
	let l = ledger(&m.api, &dev::eve()).await?;
	ensure!(l.active == 50 * UNIT && l.locked == 0, "eve kept her bond: {l:?}");
	let task: Option<serde_json::Value> = m.node.rpc("trainet_task", vec![0.into()]).await?;
	ensure!(task.is_none(), "the task is still on chain: {task:?}");
	Ok(())
}

#[tokio::test]
async fn a_worker_killed_mid_task_resumes_and_finishes_it() -> Result<()> {
	const STEPS: u64 = 8000;
	let m = Market::start(STEPS as u32, 10).await?;
	let mut first = m
		.worker("//Dave", &["solve", "--once", "--register", "200", "--checkpoint-every", "500"])?
		.stdout(std::process::Stdio::null())
		.stderr(std::process::Stdio::null())
		.spawn()?;
	// Kill it once it has trained a quarter of the task (and so left checkpoints behind).
	m.wait_for_training(&mut first, STEPS / 4).await?;
	first.kill()?;
	first.wait()?;
	let journal = m.data_dir.join("tasks").join("task-0.trace");
	let at_kill = std::fs::metadata(&journal)?.len() / 32;
	ensure!(at_kill < STEPS + 1, "killed too late: the task was already trained");
	let task: serde_json::Value = m.node.rpc("trainet_task", vec![0.into()]).await?;
	ensure!(task["state"]["status"] == "claimed", "not mid-task when killed: {task}");

	let out = m.worker("//Dave", &["solve", "--once", "--checkpoint-every", "500"])?.output()?;
	let (stdout, stderr) =
		(String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
	ensure!(out.status.success(), "the restarted worker failed: {stderr}");
	ensure!(
		stderr.contains("resuming from the checkpoint of h_"),
		"did not resume from a checkpoint: {stderr}"
	);
	ensure!(stdout.contains("task 0 committed") && stdout.contains("task 0 ended"), "{stdout}");
	ensure!(
		stdout.contains(&format!("trace root {:?}", m.true_trace_root()?)),
		"the resumed run committed another trace: {stdout}"
	);
	m.settle(&m.api).await?;
	let l = ledger(&m.api, &dev::dave()).await?;
	ensure!(l.active == 200 * UNIT && l.locked == 0, "dave's stake: {l:?}");
	Ok(())
}

#[tokio::test]
async fn a_worker_rides_out_a_node_restart() -> Result<()> {
	let mut m = Market::start(6000, 10).await?;
	let mut dave = m
		.worker("//Dave", &["solve", "--once", "--register", "200", "--wait-for-node", "180"])?
		.stdout(std::process::Stdio::piped())
		.stderr(std::process::Stdio::piped())
		.spawn()?;
	// Training has begun (so the claim is in): restart the node under it.
	m.wait_for_training(&mut dave, 100).await?;
	m.node.restart().await?;
	let out = tokio::time::timeout(
		Duration::from_secs(600),
		tokio::task::spawn_blocking(move || dave.wait_with_output()),
	)
	.await
	.context("the worker did not finish in 10 minutes")???;
	let (stdout, stderr) =
		(String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
	ensure!(out.status.success(), "the worker failed: {stderr}");
	ensure!(
		stderr.contains("the node cannot be reached") || stderr.contains("lost the node"),
		"the worker never noticed the restart: {stderr}"
	);
	ensure!(stdout.contains("task 0 committed") && stdout.contains("task 0 ended"), "{stdout}");
	ensure!(
		stdout.contains(&format!("trace root {:?}", m.true_trace_root()?)),
		"another trace: {stdout}"
	);
	Ok(())
}

/// Runs `child` (spawned with piped output) to its end, at most `patience`; its stdout and
/// stderr together, or an error if it failed.
async fn finish(child: std::process::Child, patience: Duration) -> Result<String> {
	let out = tokio::time::timeout(
		patience,
		tokio::task::spawn_blocking(move || child.wait_with_output()),
	)
	.await
	.with_context(|| format!("the worker did not finish in {patience:?}"))???;
	let text = format!(
		"{}\n{}",
		String::from_utf8_lossy(&out.stdout),
		String::from_utf8_lossy(&out.stderr)
	);
	ensure!(out.status.success(), "the worker failed: {text}");
	Ok(text)
}

/// A worker command with its output piped, started.
fn spawn(mut c: Command) -> Result<std::process::Child> {
	Ok(c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn()?)
}

#[tokio::test]
async fn a_solver_that_goes_offline_mid_dispute_loses_by_timeout() -> Result<()> {
	// Dave is honest; Eve challenges him falsely. Once the dispute is open Dave's worker is
	// killed and never comes back: he stops answering, and the round's deadline decides
	// against him although his work was right. Root first shortens the round deadline (a
	// governance parameter, ten minutes by default) to 10 blocks.
	let m = Market::start(4, 12).await?;
	set_round_timeout(&m.node, &m.api, 10).await?;
	let mut dave = spawn(m.worker("//Dave", &["solve", "--once", "--register", "200"])?)?;
	let eve =
		spawn(m.worker("//Eve", &["verify", "--once", "--register", "100", "--fault", "2:3"])?)?;
	m.wait_for_dispute(&mut dave, Duration::from_secs(180)).await?;
	dave.kill()?;
	dave.wait()?;
	let eve_out = finish(eve, Duration::from_secs(600)).await?;
	ensure!(
		eve_out.contains("task 0 was wrong: challenged, and the solver lost"),
		"eve: {eve_out}"
	);
	m.solver_lost(&m.api).await
}

/// Dave cheats in step 9 of 16 and Eve catches him, both workers patient with their node. Once
/// their dispute has played a round or two, the workers' node is stopped for `down` and
/// started again on its database; then both workers must have noticed, reconnected and played
/// on to the right ruling. Returns the best block of the first other validator (if any) just
/// before the stop and just after the restart.
async fn dispute_through_a_restart(m: &mut Market, down: Duration) -> Result<Option<(u32, u32)>> {
	let patience = ["--wait-for-node", "180"];
	let mut dave = spawn(m.worker(
		"//Dave",
		&["solve", "--once", "--register", "200", "--fault", "9:3", patience[0], patience[1]],
	)?)?;
	let eve = spawn(
		m.worker("//Eve", &["verify", "--once", "--register", "100", patience[0], patience[1]])?,
	)?;
	m.wait_for_dispute(&mut dave, Duration::from_secs(240)).await?;
	m.node.wait_for_finalized(m.node.best_number().await? + 2, Duration::from_secs(90)).await?;
	let before = match m.others.first() {
		Some(other) => Some(other.best_number().await?),
		None => None,
	};
	m.node.restart_after(down).await?;
	let elsewhere = match (m.others.first(), before) {
		(Some(other), Some(before)) => Some((before, other.best_number().await?)),
		_ => None,
	};
	let (dave_out, eve_out) = (
		finish(dave, Duration::from_secs(900)).await?,
		finish(eve, Duration::from_secs(900)).await?,
	);
	let noticed =
		|out: &str| out.contains("the node cannot be reached") || out.contains("lost the node");
	ensure!(
		noticed(&dave_out) && noticed(&eve_out),
		"a worker never noticed the restart: dave: {dave_out}\neve: {eve_out}"
	);
	ensure!(dave_out.contains("task 0 lost in a dispute"), "dave: {dave_out}");
	ensure!(
		eve_out.contains("task 0 was wrong: challenged, and the solver lost"),
		"eve: {eve_out}"
	);
	// The client made before the restart lost its connection: a new one.
	let api = OnlineClient::<PolkadotConfig>::from_url(m.node.ws_url()).await?;
	m.solver_lost(&api).await?;
	Ok(elsewhere)
}

#[tokio::test]
async fn a_dispute_survives_a_validator_restart() -> Result<()> {
	// The dev chain's only validator (both workers' node) is restarted mid-dispute. Deadlines
	// are counted in blocks and no block is made while it is down, so the outage costs neither
	// side a round.
	let mut m = Market::start(16, 60).await?;
	dispute_through_a_restart(&mut m, Duration::ZERO).await?;
	Ok(())
}

#[tokio::test]
async fn a_dispute_goes_on_while_one_of_three_validators_restarts() -> Result<()> {
	// Three validators (the local chain: Alice, Bob, Charlie); both workers talk to Bob's node,
	// which is down for 20 seconds mid-dispute: Alice and Charlie keep making blocks (the round
	// deadlines keep running), Bob's node comes back on its database and catches up.
	let mut m = Market::start_on_three_validators(16, 60).await?;
	let (before, after) = dispute_through_a_restart(&mut m, Duration::from_secs(20))
		.await?
		.context("another validator")?;
	ensure!(after > before, "no block while Bob was down: #{before} then #{after}");
	Ok(())
}
