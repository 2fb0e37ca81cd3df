//! Helpers for Trainet's end-to-end tests: start the real `trainet-node` binary on free
//! ports, talk to it over JSON-RPC, and stop it the way an operator would (SIGINT).
//!
//! The node binary is found through `TRAINET_NODE` (a path) or, by default, next to the test
//! executable in the cargo target folder (`<target>/debug/trainet-node`); `scripts/test`
//! builds it before the tests run.

use std::{
	fs::File,
	net::TcpListener,
	path::{Path, PathBuf},
	process::{Child, Command, ExitStatus, Stdio},
	time::{Duration, Instant},
};

use anyhow::{anyhow, bail, ensure, Context, Result};
use jsonrpsee::{
	core::{client::ClientT, params::ArrayParams},
	http_client::{HttpClient, HttpClientBuilder},
};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How long to wait for a node to open its RPC port.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// A binary of this workspace's build, next to the running executable: a test executable lives
/// in `<target>/<profile>/deps/`, a binary (`chain-bench`) in `<target>/<profile>/`, and the
/// workspace's binaries in `<target>/<profile>/`.
fn built_binary(name: &str) -> Result<PathBuf> {
	let exe = std::env::current_exe().context("locating the running executable")?;
	let dir =
		exe.parent().ok_or_else(|| anyhow!("unexpected executable path {}", exe.display()))?;
	let candidates = [Some(dir), dir.parent()];
	for candidate in candidates.into_iter().flatten().map(|d| d.join(name)) {
		if candidate.is_file() {
			return Ok(candidate);
		}
	}
	bail!(
		"{name} not found next to {}: build it first (`cargo build -p {name}`, which \
		 `scripts/test` does)",
		exe.display()
	)
}

/// The path of the `trainet-node` binary under test: `TRAINET_NODE` if set, else the build's.
pub fn node_binary() -> Result<PathBuf> {
	if let Ok(path) = std::env::var("TRAINET_NODE") {
		let path = PathBuf::from(path);
		if path.is_file() {
			return Ok(path);
		}
		bail!("TRAINET_NODE={} is not a file", path.display());
	}
	built_binary("trainet-node")
}

/// The path of the `trainet-worker` binary, next to the node's.
pub fn worker_binary() -> Result<PathBuf> {
	built_binary("trainet-worker")
}

/// A free TCP port on the loopback interface.
///
/// The port is free when this returns; another process could take it before the node binds
/// it, which on a test machine is rare enough to accept.
pub fn free_port() -> Result<u16> {
	let listener = TcpListener::bind("127.0.0.1:0").context("binding an ephemeral port")?;
	Ok(listener.local_addr()?.port())
}

/// What to start a node with.
#[derive(Clone, Debug)]
pub struct NodeConfig {
	/// The node's name in logs and telemetry.
	pub name: String,
	/// Arguments besides the ports, base path and logging options this helper sets.
	pub args: Vec<String>,
	/// The database folder (`--base-path`).
	pub base_path: PathBuf,
	/// The JSON-RPC port, or `None` for a free one.
	pub rpc_port: Option<u16>,
	/// The p2p port, or `None` for a free one.
	pub p2p_port: Option<u16>,
}

impl NodeConfig {
	/// A `--dev` node on `base_path`.
	pub fn dev(base_path: &Path) -> Self {
		Self {
			name: "dev".into(),
			args: vec!["--dev".into()],
			base_path: base_path.to_path_buf(),
			rpc_port: None,
			p2p_port: None,
		}
	}
}

/// A running `trainet-node` process, killed when dropped.
pub struct Node {
	child: Option<Child>,
	/// The node's configuration, ports filled in.
	pub config: NodeConfig,
	/// The JSON-RPC port.
	pub rpc_port: u16,
	/// The p2p port.
	pub p2p_port: u16,
	/// The file the node's stdout and stderr go to.
	pub log_path: PathBuf,
	rpc: HttpClient,
}

impl Node {
	/// Starts a node and waits until its JSON-RPC answers.
	pub async fn start(config: NodeConfig) -> Result<Node> {
		let binary = node_binary()?;
		let rpc_port = config.rpc_port.map_or_else(free_port, Ok)?;
		let p2p_port = config.p2p_port.map_or_else(free_port, Ok)?;
		std::fs::create_dir_all(&config.base_path)?;
		let log_path = config.base_path.join(format!("{}.log", config.name));
		let log = File::options()
			.create(true)
			.append(true)
			.open(&log_path)
			.with_context(|| format!("opening {}", log_path.display()))?;

		let mut cmd = Command::new(&binary);
		cmd.args(&config.args)
			.arg("--base-path")
			.arg(&config.base_path)
			.args(["--rpc-port", &rpc_port.to_string()])
			.args(["--port", &p2p_port.to_string()])
			.args(["--name", &config.name])
			// Tests run several chains side by side: no node may find another by itself.
			.args(["--no-mdns", "--no-prometheus", "--no-telemetry"])
			.stdin(Stdio::null())
			.stdout(log.try_clone()?)
			.stderr(log);
		let child = cmd.spawn().with_context(|| format!("starting {}", binary.display()))?;

		let rpc = HttpClientBuilder::default()
			.request_timeout(Duration::from_secs(30))
			.build(format!("http://127.0.0.1:{rpc_port}"))?;
		let config = NodeConfig { rpc_port: Some(rpc_port), p2p_port: Some(p2p_port), ..config };
		let mut node = Node { child: Some(child), config, rpc_port, p2p_port, log_path, rpc };
		node.wait_for_rpc().await?;
		Ok(node)
	}

	async fn wait_for_rpc(&mut self) -> Result<()> {
		let start = Instant::now();
		loop {
			if let Some(child) = self.child.as_mut() {
				if let Some(status) = child.try_wait()? {
					bail!(
						"node `{}` exited with {status} before its RPC opened; log:\n{}",
						self.config.name,
						self.log_tail()
					);
				}
			}
			if self.rpc::<Value>("system_health", Vec::new()).await.is_ok() {
				return Ok(());
			}
			if start.elapsed() > STARTUP_TIMEOUT {
				bail!(
					"node `{}` did not open RPC port {} in {:?}; log:\n{}",
					self.config.name,
					self.rpc_port,
					STARTUP_TIMEOUT,
					self.log_tail()
				);
			}
			tokio::time::sleep(Duration::from_millis(250)).await;
		}
	}

	/// The node's WebSocket JSON-RPC address (Substrate serves HTTP and WS on one port).
	pub fn ws_url(&self) -> String {
		format!("ws://127.0.0.1:{}", self.rpc_port)
	}

	/// Calls a JSON-RPC method and decodes its result.
	pub async fn rpc<T: DeserializeOwned>(&self, method: &str, params: Vec<Value>) -> Result<T> {
		Ok(serde_json::from_value(self.rpc_raw(method, params).await?)?)
	}

	/// Calls a JSON-RPC method and returns the raw outcome, error included.
	pub async fn rpc_raw(
		&self,
		method: &str,
		params: Vec<Value>,
	) -> std::result::Result<Value, jsonrpsee::core::ClientError> {
		let mut array = ArrayParams::new();
		for p in params {
			array.insert(p).map_err(|e| jsonrpsee::core::ClientError::Custom(e.to_string()))?;
		}
		self.rpc.request(method, array).await
	}

	/// The number of a block given its hash (or the best block with `None`).
	pub async fn block_number(&self, hash: Option<&str>) -> Result<u32> {
		let params = hash.map(|h| vec![Value::from(h)]).unwrap_or_default();
		let header: Value = self.rpc("chain_getHeader", params).await?;
		let number = header
			.get("number")
			.and_then(Value::as_str)
			.ok_or_else(|| anyhow!("header without a number: {header}"))?;
		Ok(u32::from_str_radix(number.trim_start_matches("0x"), 16)?)
	}

	/// The best block's number.
	pub async fn best_number(&self) -> Result<u32> {
		self.block_number(None).await
	}

	/// The finalized head's number.
	pub async fn finalized_number(&self) -> Result<u32> {
		let hash: String = self.rpc("chain_getFinalizedHead", Vec::new()).await?;
		self.block_number(Some(&hash)).await
	}

	/// The hash of block `number` on the best chain, if the node has it.
	pub async fn block_hash(&self, number: u32) -> Result<Option<String>> {
		self.rpc("chain_getBlockHash", vec![Value::from(number)]).await
	}

	/// Waits until the finalized head reaches `number`; returns the finalized number seen.
	pub async fn wait_for_finalized(&self, number: u32, timeout: Duration) -> Result<u32> {
		let start = Instant::now();
		loop {
			let finalized = self.finalized_number().await?;
			if finalized >= number {
				return Ok(finalized);
			}
			if start.elapsed() > timeout {
				bail!(
					"node `{}` finalized only #{finalized} of #{number} in {timeout:?} (best #{}); \
					 log:\n{}",
					self.config.name,
					self.best_number().await.unwrap_or(0),
					self.log_tail()
				);
			}
			tokio::time::sleep(Duration::from_millis(500)).await;
		}
	}

	/// Whether the process is still running.
	pub fn is_running(&mut self) -> bool {
		matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
	}

	/// Stops the node as an operator would (SIGINT) and waits for it to exit.
	pub fn stop(mut self) -> Result<ExitStatus> {
		self.halt()
	}

	/// Stops the node (SIGINT) and starts it again on the same database and ports, as an
	/// operator restarting it would.
	pub async fn restart(&mut self) -> Result<()> {
		self.restart_after(Duration::ZERO).await
	}

	/// Stops the node (SIGINT), leaves it down for `down`, then starts it again on the same
	/// database and ports.
	pub async fn restart_after(&mut self, down: Duration) -> Result<()> {
		self.halt()?;
		tokio::time::sleep(down).await;
		*self = Node::start(self.config.clone()).await?;
		Ok(())
	}

	fn halt(&mut self) -> Result<ExitStatus> {
		let mut child = self.child.take().ok_or_else(|| anyhow!("node already stopped"))?;
		let pid = libc::pid_t::try_from(child.id())?;
		// SAFETY: `kill` only sends a signal to our own child process.
		if unsafe { libc::kill(pid, libc::SIGINT) } != 0 {
			bail!("sending SIGINT to node: {}", std::io::Error::last_os_error());
		}
		let start = Instant::now();
		loop {
			if let Some(status) = child.try_wait()? {
				return Ok(status);
			}
			if start.elapsed() > Duration::from_secs(60) {
				let _ = child.kill();
				bail!("node `{}` ignored SIGINT for 60 s; killed it", self.config.name);
			}
			std::thread::sleep(Duration::from_millis(100));
		}
	}

	/// The last 60 lines of the node's log, for error messages.
	pub fn log_tail(&self) -> String {
		let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
		let lines: Vec<&str> = text.lines().collect();
		lines[lines.len().saturating_sub(60)..].join("\n")
	}
}

impl Drop for Node {
	fn drop(&mut self) {
		if let Some(mut child) = self.child.take() {
			let _ = child.kill();
			let _ = child.wait();
		}
	}
}

/// The libp2p peer id of a node started with `--node-key <key>`, read from the node itself
/// (`system_localPeerId`).
pub async fn peer_id(node: &Node) -> Result<String> {
	node.rpc("system_localPeerId", Vec::new()).await
}

/// Signs and submits `pallet.call(args)` (arguments SCALE-encoded as a tuple) and waits until
/// it is in a best block and succeeded; returns its events.
///
/// The nonce comes from `system_accountNextIndex`, which counts the signer's transactions in
/// the pool and in unfinalized blocks: subxt's default reads it at the finalized block, which
/// lags behind when transactions follow one another faster than finality.
pub async fn submit_in_block(
	node: &Node,
	api: &subxt::OnlineClient<subxt::PolkadotConfig>,
	signer: &subxt_signer::sr25519::Keypair,
	pallet: &str,
	call: &str,
	args: impl codec::Encode,
) -> Result<subxt::extrinsics::ExtrinsicEvents<subxt::PolkadotConfig>> {
	let nonce: u64 = node
		.rpc("system_accountNextIndex", vec![Value::from(trainet_worker::chain::address(signer))])
		.await?;
	Ok(trainet_worker::chain::submit_with_nonce(api, signer, nonce, pallet, call, args).await?)
}

/// A dev account's SS58 address, as the JSON-RPC writes accounts.
pub fn ss58(k: &subxt_signer::sr25519::Keypair) -> String {
	trainet_worker::chain::address(k)
}

/// `pallet_compute_staking::Ledger` as far as the tests read it.
#[derive(Debug, subxt::ext::scale_decode::DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
pub struct Ledger {
	/// Bonded stake.
	pub active: u128,
	/// The part of it locked for tasks and disputes.
	pub locked: u128,
}

/// Waits until what is in `node`'s best block now is final, to the node and to `api`, so
/// that `api`'s reads (at the finalized block it knows) see it. subxt learns of finality from
/// its own `chainHead` subscription, which can trail the node's `chain_getFinalizedHead` on a
/// loaded machine: a read made as soon as the node called a block final once saw an older
/// block (a test read a stake from before the ruling that slashed it).
pub async fn settle(node: &Node, api: &subxt::OnlineClient<subxt::PolkadotConfig>) -> Result<()> {
	let best = node.best_number().await?;
	node.wait_for_finalized(best, Duration::from_secs(90)).await?;
	let start = Instant::now();
	loop {
		let seen = api.at_current_block().await?.block_number();
		if seen >= u64::from(best) {
			return Ok(());
		}
		ensure!(
			start.elapsed() < Duration::from_secs(30),
			"the client still reads at #{seen}, 30 s after the node finalized #{best}"
		);
		tokio::time::sleep(Duration::from_millis(200)).await;
	}
}

/// `who`'s staking ledger at the finalized block (subxt reads there: wait for finality
/// first when the outcome to check is recent).
pub async fn ledger(
	api: &subxt::OnlineClient<subxt::PolkadotConfig>,
	who: &subxt_signer::sr25519::Keypair,
) -> Result<Ledger> {
	api.at_current_block()
		.await?
		.storage()
		.fetch(
			subxt::dynamic::storage::<([u8; 32],), Ledger>("ComputeStaking", "Ledgers"),
			(who.public_key().0,),
		)
		.await?
		.decode()
		.map_err(anyhow::Error::from)
}

/// Root (sudo: Alice on the dev chain) sets the dispute game's round deadline to `blocks`
/// through `pallet-parameters`, as governance would on a live chain. Rounds opened afterwards
/// use it; tests of timeouts use it so as not to wait the default ten minutes.
pub async fn set_round_timeout(
	node: &Node,
	api: &subxt::OnlineClient<subxt::PolkadotConfig>,
	blocks: u32,
) -> Result<()> {
	use subxt::dynamic::Value as V;
	use subxt::ext::scale_encode::EncodeAsType;
	let parameter = V::unnamed_variant(
		"RoundTimeout",
		[V::unnamed_composite([]), V::unnamed_variant("Some", [V::u128(blocks.into())])],
	);
	let call = V::unnamed_variant(
		"Parameters",
		[V::named_variant(
			"set_parameter",
			[("key_value", V::unnamed_variant("Disputes", [parameter]))],
		)],
	);
	let at = api.at_current_block().await?;
	let metadata = at.metadata();
	let call = call.encode_as_type(metadata.outer_enums().call_enum_ty(), metadata.types())?;
	let alice = subxt_signer::sr25519::dev::alice();
	let events =
		submit_in_block(node, api, &alice, "Sudo", "sudo", trainet_worker::chain::Raw(&call))
			.await?;
	let sudid = events
		.iter()
		.filter_map(|e| e.ok())
		.find(|e| e.pallet_name() == "Sudo" && e.event_name() == "Sudid")
		.context("no Sudid event")?;
	let result =
		sudid.decode_fields_unchecked_as::<subxt::ext::scale_value::Composite<()>>()?.to_string();
	ensure!(result.contains("Ok"), "root could not set the round timeout: {result}");
	Ok(())
}

/// Three validators (Alice, Bob, Charlie) of the `local` chain spec under `dir`, connected over
/// libp2p on loopback (Bob and Charlie boot from Alice), in that order. Each keeps its node key
/// and ports across restarts, and boots from Alice again.
pub async fn local_network(dir: &Path) -> Result<Vec<Node>> {
	let validator = |name: &str, key: u8, bootnode: Option<String>| {
		let mut args = vec![
			"--chain".to_string(),
			"local".to_string(),
			"--validator".to_string(),
			format!("--{}", name.to_lowercase()),
			"--node-key".to_string(),
			format!("{key:064x}"),
		];
		if let Some(addr) = bootnode {
			args.extend(["--bootnodes".to_string(), addr]);
		}
		NodeConfig {
			name: name.to_string(),
			args,
			base_path: dir.join(name),
			rpc_port: None,
			p2p_port: None,
		}
	};
	let alice_port = free_port()?;
	let mut alice_config = validator("Alice", 1, None);
	alice_config.p2p_port = Some(alice_port);
	let alice = Node::start(alice_config).await?;
	let bootnode = format!("/ip4/127.0.0.1/tcp/{alice_port}/p2p/{}", peer_id(&alice).await?);
	let bob = Node::start(validator("Bob", 2, Some(bootnode.clone()))).await?;
	let charlie = Node::start(validator("Charlie", 3, Some(bootnode))).await?;
	Ok(vec![alice, bob, charlie])
}

/// Adam with the usual betas and epsilon and a learning rate of 0.01, as the tests' specs use.
pub fn adam() -> trainet_primitives::task::Optimizer {
	use trainet_primitives::task::Optimizer;
	Optimizer::adam(0.01)
}

/// The arguments of `TaskEscrow.commit` for task `task` of `spec` committing the trace
/// `states`, whose last entry is the final state made of tensors hashing to `final_tensors`
/// (its parameter part makes the model hash, as the chain checks).
pub fn commit_args(
	task: u64,
	spec: &trainet_primitives::task::TrainingSpec,
	states: &[sp_core::H256],
	final_tensors: Vec<sp_core::H256>,
) -> Result<(
	u64,
	trainet_primitives::market::TraceCommitment,
	trainet_primitives::trace::TraceProof,
	trainet_primitives::market::StateTensors,
)> {
	use trainet_primitives::{availability::FinalState, program::step_program, trace};
	let params = step_program(spec).map_err(|e| anyhow!("{e:?}"))?.params as usize;
	let fin = FinalState::of(final_tensors, params).context("a final state")?;
	let last = states.len().checked_sub(1).context("an empty trace")?;
	ensure!(states[last] == fin.state, "the trace does not end at the given final state");
	let commitment = trainet_primitives::market::TraceCommitment {
		trace_root: trace::trace_root(states),
		steps: spec.steps,
		final_state: fin.state,
		model_hash: fin.model,
	};
	let proof = trace::trace_proof(states, last as u32).context("a final proof")?;
	Ok((task, commitment, proof, fin.tensors))
}

/// The tensor hashes of the final state of `run`, a reference run (for [`commit_args`]).
pub fn final_tensors(run: &trainet_primitives::referee::TraceRun) -> Vec<sp_core::H256> {
	run.steps
		.last()
		.map(|s| s.next.iter().map(trainet_primitives::commit::tensor_hash).collect())
		.unwrap_or_default()
}

/// A made-up final state of `spec`'s size from `seed`: its tensor hashes and its hash (the
/// end of a made-up trace that `commit` accepts).
pub fn made_up_final(
	spec: &trainet_primitives::task::TrainingSpec,
	seed: u64,
) -> (Vec<sp_core::H256>, sp_core::H256) {
	let f = trainet_primitives::availability::FinalState::made_up(spec, seed)
		.expect("a spec the chain accepts");
	(f.tensors.into_inner(), f.state)
}
