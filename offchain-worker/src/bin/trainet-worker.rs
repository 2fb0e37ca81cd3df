//! `trainet-worker`: the solver and verifier's command line.
//!
//! ```text
//! trainet-worker dataset digits [--held-out 5]      # import the shipped 8x8 digits
//! trainet-worker dataset synthetic --samples 1000 --features 16 --classes 4 [--seed 1]
//! trainet-worker train task.toml [--threads N] [--trace hashes.txt] [--evaluate ROOT]
//! trainet-worker submit task.toml --reward 10       # post a task
//! trainet-worker status [TASK]
//! trainet-worker solve [--once] [--register BOND] [--listen ADDR]
//! trainet-worker verify [--once] [--register BOND] [--sample N --peer ADDR]
//! trainet-worker serve [--listen ADDR] [--peer ADDR] [--relay ADDR] [--private-network]
//! trainet-worker fetch dataset|checkpoint|trace HASH --peer ADDR
//! ```
//!
//! Settings come from flags, then environment variables (`TRAINET_*`), then the TOML file
//! given with `--config` (see `trainet_worker::config`), then defaults.

use std::{
	fs,
	io::Write,
	path::PathBuf,
	time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sp_core::H256;
use trainet_worker::{
	config::WorkerConfig,
	dataset::{Dataset, DatasetStore},
	export, import, metrics,
	p2p::{self, Key, P2p, P2pConfig},
	solver,
	spec_file::SpecFile,
	train::{Cheat, Engine, Training},
};

#[derive(Parser)]
#[command(name = "trainet-worker", version, about = "Trainet's solver and verifier worker")]
struct Cli {
	/// A TOML configuration file (flags and environment variables override it).
	#[arg(long, global = true, env = "TRAINET_CONFIG")]
	config: Option<PathBuf>,
	/// Where datasets, checkpoints, journals and the peer key live [default: trainet-data].
	#[arg(long, global = true, env = "TRAINET_DATA")]
	data_dir: Option<PathBuf>,
	/// The node's WebSocket JSON-RPC address [default: ws://127.0.0.1:9944].
	#[arg(long, global = true, env = "TRAINET_NODE_URL")]
	node: Option<String>,
	/// The account's secret URI (`//Alice` on a dev chain, or a mnemonic). No default: a
	/// command that signs or names the account refuses to run without one.
	#[arg(long, global = true, env = "TRAINET_SURI")]
	suri: Option<String>,
	/// Seconds to keep trying to reach the node before giving up.
	#[arg(long, global = true, default_value_t = 30)]
	wait_for_node: u64,
	/// Keep a checkpoint of the training state every this many steps (a restarted solver
	/// resumes from the last one) [default: 100].
	#[arg(long, global = true)]
	checkpoint_every: Option<u32>,
	/// Peer-to-peer: listen on this multiaddress (repeatable), serving this worker's datasets,
	/// checkpoints and traces. `serve` listens on /ip4/0.0.0.0/tcp/30444 by default; `solve`
	/// and `verify` join the network only when given one (or a --peer).
	#[arg(long, global = true)]
	listen: Vec<String>,
	/// Peer-to-peer: a peer to connect to at start (repeatable), like
	/// /ip4/10.0.0.7/tcp/30444/p2p/12D3KooW...; fetches ask these first, in order.
	#[arg(long = "peer", global = true)]
	peers: Vec<String>,
	/// Peer-to-peer: do not look for peers on the local network (mDNS).
	#[arg(long, global = true)]
	no_mdns: bool,
	/// Peer-to-peer: listen through this relay (a peer address, repeatable), for a worker
	/// others cannot dial (behind NAT or a firewall). Without it a worker that AutoNAT finds
	/// unreachable picks a relay among its peers by itself. `serve` given only relays listens
	/// on no port of its own.
	#[arg(long = "relay", global = true)]
	relays: Vec<String>,
	/// Peer-to-peer: count private and loopback addresses as reachable (workers on one LAN
	/// or one machine); otherwise only global addresses are.
	#[arg(long, global = true)]
	private_network: bool,
	/// Peer-to-peer: do not relay for peers that cannot be dialled (a worker relays by
	/// default: at most 16 circuits, 4 a peer, each at most 1 GiB and an hour).
	#[arg(long, global = true)]
	no_relay_service: bool,
	/// Serve Prometheus metrics at http://<this address>/metrics (like 127.0.0.1:9616).
	#[arg(long, global = true)]
	metrics: Option<String>,
	#[command(subcommand)]
	command: Command,
}

/// Every setting, resolved: flag, environment, config file, default.
struct Settings {
	data_dir: PathBuf,
	node: String,
	suri: Option<String>,
	wait_for_node: Duration,
	checkpoint_every: u32,
	network: Network,
	metrics: Option<String>,
	sample: Option<u32>,
	max_memory: Option<u64>,
}

impl Settings {
	fn resolve(cli: &Cli) -> Result<Self> {
		let file = match &cli.config {
			Some(path) => WorkerConfig::load(path)?,
			None => WorkerConfig::default(),
		};
		let data_dir =
			cli.data_dir.clone().or(file.data_dir.clone()).unwrap_or("trainet-data".into());
		let pick = |flags: &[String], file: &[String]| match flags.is_empty() {
			true => file.to_vec(),
			false => flags.to_vec(),
		};
		let checkpoint_every = cli.checkpoint_every.or(file.checkpoint_every).unwrap_or(100);
		if checkpoint_every == 0 {
			bail!("--checkpoint-every must be at least 1");
		}
		let sample = match &cli.command {
			Command::Verify { sample, .. } => sample.or(file.verify.sample),
			_ => None,
		};
		let max_memory = match &cli.command {
			Command::Solve { max_memory_mib, .. } => max_memory_mib
				.or(file.solve.max_memory_mib)
				.map(|mib| mib.saturating_mul(1 << 20))
				.or_else(trainet_worker::train::machine_memory),
			_ => None,
		};
		Ok(Self {
			node: cli.node.clone().or(file.node.clone()).unwrap_or("ws://127.0.0.1:9944".into()),
			suri: match &cli.suri {
				Some(s) => Some(s.clone()),
				None => file.secret()?,
			},
			wait_for_node: Duration::from_secs(cli.wait_for_node),
			checkpoint_every,
			network: Network {
				listen: pick(&cli.listen, &file.p2p.listen),
				peers: pick(&cli.peers, &file.p2p.peers),
				mdns: !cli.no_mdns && file.p2p.mdns.unwrap_or(true),
				relays: pick(&cli.relays, &file.p2p.relays),
				private_network: cli.private_network || file.p2p.private_network.unwrap_or(false),
				relay_service: !cli.no_relay_service && file.p2p.relay_service.unwrap_or(true),
				dir: data_dir.clone(),
			},
			metrics: cli.metrics.clone().or(file.metrics.listen.clone()),
			sample,
			max_memory,
			data_dir,
		})
	}
}

#[derive(Subcommand)]
enum Command {
	/// Imports a dataset into the store and prints its root.
	Dataset {
		#[command(subcommand)]
		source: DatasetSource,
	},
	/// Trains a task from a TOML spec file on a stored dataset.
	Train {
		/// The spec file.
		spec: PathBuf,
		/// Worker threads (the hashes never depend on it).
		#[arg(long)]
		threads: Option<usize>,
		/// Writes `t h_t` for every state the trace commits to (every step's with a checkpoint
		/// interval of 1) to this file.
		#[arg(long)]
		trace: Option<PathBuf>,
		/// A stored dataset to report accuracy on at the end.
		#[arg(long)]
		evaluate: Option<String>,
		/// Exports the trained model to this folder: a burn record, SafeTensors and a model
		/// card (as `model fetch` does).
		#[arg(long)]
		save: Option<PathBuf>,
		/// What runs the steps: the model as a burn module with RepOps kernels, or the step
		/// program operation by operation (the same bits either way).
		#[arg(long, value_enum, default_value_t = EngineArg::Burn)]
		engine: EngineArg,
		/// Where burn runs the model: the CPU, or the first NVIDIA GPU (a worker built with
		/// the `cuda` feature; the same bits either way).
		#[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
		device: DeviceArg,
	},
	/// Posts a task from a TOML spec file, holding `--reward` TNET from the account.
	Submit {
		/// The spec file.
		spec: PathBuf,
		/// The reward, in TNET.
		#[arg(long)]
		reward: u64,
		/// Blocks a solver has to claim it.
		#[arg(long, default_value_t = 600)]
		claim_timeout: u32,
		/// Blocks the solver has to commit after claiming.
		#[arg(long, default_value_t = 600)]
		commit_timeout: u32,
		/// Blocks verifiers have to challenge the commitment.
		#[arg(long, default_value_t = 100)]
		challenge_timeout: u32,
	},
	/// Runs a peer that serves this worker's datasets, checkpoints and traces to others
	/// (fetched by hash), announcing what it has, until stopped.
	Serve {
		/// Serve corrupted chunks (to show that fetchers reject them).
		#[arg(long)]
		corrupt: bool,
	},
	/// Fetches content by hash from peers (`--peer`), checking every chunk, into the store.
	Fetch {
		/// What it is.
		kind: FetchKind,
		/// Its hash: a dataset's root, a checkpoint's state hash, a trace's root.
		hash: String,
		/// Seconds to wait for a first peer.
		#[arg(long, default_value_t = 30)]
		wait: u64,
	},
	/// The trained model: fetch a task's, export a run's, evaluate one.
	Model {
		#[command(subcommand)]
		action: ModelAction,
	},
	/// Prints a task (JSON), or every task still on chain.
	Status {
		/// The task.
		task: Option<u64>,
	},
	/// Prints accounts' money at the latest finalized block: free, held, staked and locked
	/// (TNET), one line each.
	Balance {
		/// Secret URIs (`//Dave`) or SS58 addresses; none: the worker's own account.
		accounts: Vec<String>,
	},
	/// Solves tasks: claims an open task whose dataset is in the store, trains it, commits
	/// its trace, and waits until it ends.
	Solve {
		/// Stop after one task.
		#[arg(long)]
		once: bool,
		/// Register as a solver with this bond (TNET) first, if not registered yet.
		#[arg(long)]
		register: Option<u64>,
		/// Cheat on purpose (for tests and demonstrations of the dispute game): alter
		/// operation OP of step STEP, written `STEP:OP`.
		#[arg(long, value_parser = parse_fault, conflicts_with = "skip_from")]
		fault: Option<trainet_primitives::referee::Fault>,
		/// Cheat on purpose by skipping the work from step STEP on (the state claimed after
		/// every later step is the one before it).
		#[arg(long, value_name = "STEP")]
		skip_from: Option<u32>,
		/// Claim only tasks whose training needs at most this many MiB [default: the
		/// machine's memory].
		#[arg(long)]
		max_memory_mib: Option<u64>,
		/// Where to train: the CPU, or the first NVIDIA GPU (a worker built with the `cuda`
		/// feature; the same hashes either way).
		#[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
		device: DeviceArg,
	},
	/// Verifies committed tasks: recomputes each, and challenges (then fights the dispute)
	/// when its final state is wrong.
	Verify {
		/// Stop after one task.
		#[arg(long)]
		once: bool,
		/// Register as a verifier with this bond (TNET) first, if not registered yet.
		#[arg(long)]
		register: Option<u64>,
		/// Recompute wrongly on purpose (for tests and demonstrations that an honest solver
		/// wins a false challenge): alter operation OP of step STEP, written `STEP:OP`.
		#[arg(long, value_parser = parse_fault)]
		fault: Option<trainet_primitives::referee::Fault>,
		/// Check this many transitions per task, chosen at random, from the solver's trace
		/// and states fetched from peers (`--peer`), instead of recomputing every step; the
		/// whole task is recomputed only when one is wrong or not served.
		#[arg(long)]
		sample: Option<u32>,
	},
}

fn parse_fault(text: &str) -> Result<trainet_primitives::referee::Fault, String> {
	let (step, op) = text.split_once(':').ok_or("write STEP:OP, like 2:15")?;
	Ok(trainet_primitives::referee::Fault {
		step: step.parse().map_err(|e| format!("step: {e}"))?,
		op: op.parse().map_err(|e| format!("operation: {e}"))?,
	})
}

#[derive(Subcommand)]
enum ModelAction {
	/// Fetches task TASK's trained model: its committed final state (waiting for the
	/// commitment if the task is still being trained), from this worker's store or from peers
	/// (checked against the hash on chain), exported to --out as a burn record, SafeTensors
	/// and a model card.
	Fetch {
		/// The task (committed, or paid within its receipt's lifetime).
		task: u64,
		/// The folder to write.
		#[arg(long, default_value = "model")]
		out: PathBuf,
		/// Seconds to wait for a peer, and for one that holds the model.
		#[arg(long, default_value_t = 30)]
		wait: u64,
	},
	/// Makes task TASK's solver show, on chain, that it still holds its trained model (or
	/// the checkpoint at trace entry --entry): an availability challenge inside the task's
	/// challenge window, which locks the verifier bond of this worker's account. The chain
	/// draws rows of the state; a solver that does not show them in time loses its stake
	/// and the task, and the submitter may take the reward back; one that does keeps the
	/// bond. Waits for the outcome.
	Demand {
		/// The task (committed, its challenge window open).
		task: u64,
		/// The trace entry (default: the last, the final model).
		#[arg(long)]
		entry: Option<u32>,
		/// Register as a verifier with this bond (TNET) first, if not registered yet.
		#[arg(long)]
		register: Option<u64>,
	},
	/// Exports a stored training state (its hash, like the `h_N` that `train` prints) as
	/// the model of a spec file, to --out.
	Export {
		/// The spec file.
		spec: PathBuf,
		/// The state's hash.
		state: String,
		/// The folder to write.
		#[arg(long, default_value = "model")]
		out: PathBuf,
	},
	/// Prints an exported model's accuracy on a stored dataset.
	Eval {
		/// The export folder.
		dir: PathBuf,
		/// The dataset's root.
		dataset: String,
	},
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FetchKind {
	Dataset,
	Checkpoint,
	Trace,
}

#[derive(Subcommand)]
enum DatasetSource {
	/// The shipped 8x8 handwritten digits (1 797 images, 10 classes).
	Digits {
		/// Keeps every `N`-th image out of the training set, stored as a second dataset.
		#[arg(long)]
		held_out: Option<usize>,
	},
	/// Your own data: a CSV file, a NumPy `.npy` pair or an `.npz` archive. Prints the root
	/// and the manifest's hash a task's spec commits to (docs/submitter.md).
	Import {
		#[command(subcommand)]
		format: ImportFormat,
	},
	/// A synthetic classification set (label: the largest of the first `classes` features).
	Synthetic {
		#[arg(long, default_value_t = 1)]
		seed: u64,
		#[arg(long)]
		samples: u32,
		#[arg(long)]
		features: u32,
		#[arg(long)]
		classes: u32,
	},
}

#[derive(Subcommand)]
enum ImportFormat {
	/// One sample a row: numeric features and a label column (class ids or names; or with
	/// --regression, real-valued targets). A first row that is not all numbers is the header.
	Csv {
		/// The file.
		file: PathBuf,
		/// The label column: its header name or 0-based index [default: the last].
		#[arg(long)]
		label: Option<String>,
		#[command(flatten)]
		options: ImportOptions,
	},
	/// Features and labels as two `.npy` files (features: samples x ..., any integer or
	/// float dtype; labels: class ids).
	Npy {
		/// The features.
		x: PathBuf,
		/// The labels.
		y: PathBuf,
		#[command(flatten)]
		options: ImportOptions,
	},
	/// A folder of images with one subfolder per class (named for it): each PNG or JPEG is
	/// decoded, converted to grey or RGB, resized to `--size` and scaled to [0, 1].
	Images {
		/// The folder.
		dir: PathBuf,
		/// The size every image is resized to, `WIDTHxHEIGHT` (like 28x28).
		#[arg(long, value_parser = parse_size)]
		size: (u32, u32),
		/// One grey channel instead of three (RGB).
		#[arg(long)]
		grey: bool,
		/// Keeps every `N`-th image out of the training set, stored as a second dataset.
		#[arg(long)]
		held_out: Option<usize>,
	},
	/// A UTF-8 text corpus for next-token prediction: its characters are the tokens (the
	/// classes, in sorted order); each sample is the ids of `--context` tokens and its label
	/// the id of the next one; with `--sequences`, `context + 1` tokens every `--stride`
	/// characters, for a sequence model (a transformer) that predicts every position's next.
	Text {
		/// The file.
		file: PathBuf,
		/// Tokens a sample sees before the one it predicts.
		#[arg(long, default_value_t = 8)]
		context: u32,
		/// Samples of `context + 1` tokens for a sequence model.
		#[arg(long)]
		sequences: bool,
		/// With `--sequences`: characters between the starts of two samples.
		#[arg(long, default_value_t = 1, requires = "sequences")]
		stride: u32,
		/// Keeps every `N`-th sample out of the training set, stored as a second dataset.
		#[arg(long)]
		held_out: Option<usize>,
	},
	/// Features and labels as two arrays of an `.npz` archive (`numpy.savez`, compressed or
	/// not).
	Npz {
		/// The archive.
		file: PathBuf,
		/// The features' array.
		#[arg(long, default_value = "x")]
		x: String,
		/// The labels' array.
		#[arg(long, default_value = "y")]
		y: String,
		#[command(flatten)]
		options: ImportOptions,
	},
}

/// `WIDTHxHEIGHT`.
fn parse_size(s: &str) -> Result<(u32, u32), String> {
	let bad = || format!("{s:?}: a size is WIDTHxHEIGHT, like 28x28");
	let (w, h) = s.split_once('x').ok_or_else(bad)?;
	let (w, h) = (w.parse::<u32>().map_err(|_| bad())?, h.parse::<u32>().map_err(|_| bad())?);
	if w == 0 || h == 0 {
		return Err(bad());
	}
	Ok((w, h))
}

#[derive(clap::Args)]
struct ImportOptions {
	/// Map each feature onto [0, 1] by its smallest and largest value (recorded in the
	/// manifest, to apply to new inputs).
	#[arg(long)]
	min_max: bool,
	/// Keeps every `N`-th sample out of the training set, stored as a second dataset.
	#[arg(long)]
	held_out: Option<usize>,
	/// The labels are real-valued targets, for a regression (mean squared error; the model
	/// has one output), not class ids.
	#[arg(long)]
	regression: bool,
}

fn main() -> std::process::ExitCode {
	trainet_worker::engine::keep_freed_memory();
	tracing_subscriber::fmt()
		.with_env_filter(
			tracing_subscriber::EnvFilter::try_from_default_env()
				.unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
		)
		.with_writer(std::io::stderr)
		// Colours only on a terminal: logs sent to files stay plain text.
		.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
		.init();
	match run(Cli::parse()) {
		Ok(()) => std::process::ExitCode::SUCCESS,
		// The reader of our output went away (`| head`): not an error of ours.
		Err(e)
			if e.downcast_ref::<std::io::Error>()
				.is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
		{
			std::process::ExitCode::SUCCESS
		}
		Err(e) => {
			eprintln!("error: {e:#}");
			std::process::ExitCode::FAILURE
		}
	}
}

/// A manifest in one line: source, dtype, classes, preprocessing.
fn describe(m: &trainet_primitives::dataset::Manifest) -> String {
	use trainet_primitives::dataset::Preprocessing;
	let mut parts = Vec::new();
	if !m.source.is_empty() {
		parts.push(format!("from {} ({})", m.source, m.dtype));
	}
	if let Some(names) = m.class_names() {
		// Text corpora's classes are characters: show spaces and control characters escaped.
		let shown: Vec<String> = names
			.iter()
			.map(|n| match n.as_str() {
				" " => "' '".to_string(),
				n if n.chars().any(|c| c.is_control() || c == ',') => format!("{n:?}"),
				n => n.to_string(),
			})
			.collect();
		let more = shown.len().saturating_sub(40);
		let mut list = shown.into_iter().take(40).collect::<Vec<_>>().join(", ");
		if more > 0 {
			list += &format!(" and {more} more");
		}
		parts.push(format!("{} classes: {list}", names.len()));
	}
	if let trainet_primitives::dataset::Labels::Target(name) = &m.labels {
		parts.push(match name.is_empty() {
			true => "a real-valued target".into(),
			false => format!("target {name}"),
		});
	}
	parts.push(
		match &m.preprocessing {
			Preprocessing::None => "no preprocessing",
			Preprocessing::Scale(_) => "scaled",
			Preprocessing::MinMax { .. } => "min-max scaled",
			Preprocessing::Image { grey: true, .. } => "images in grey, resized, scaled by 1/255",
			Preprocessing::Image { grey: false, .. } => "images in RGB, resized, scaled by 1/255",
		}
		.to_string(),
	);
	parts.join("; ")
}

/// `println!` that returns write errors (a closed pipe) instead of panicking.
macro_rules! out {
	($($arg:tt)*) => {
		writeln!(std::io::stdout().lock(), $($arg)*)?
	};
}

fn parse_root(text: &str) -> Result<H256> {
	let bytes = sp_core::bytes::from_hex(text)
		.ok()
		.filter(|b| b.len() == 32)
		.with_context(|| format!("{text:?} is not a 0x-prefixed 32-byte hex hash"))?;
	Ok(H256::from_slice(&bytes))
}

fn run(cli: Cli) -> Result<()> {
	let settings = Settings::resolve(&cli)?;
	let store = DatasetStore::open(&settings.data_dir)?;
	let local = || solver::Local::open(&settings.data_dir, settings.checkpoint_every);
	let runtime = || -> Result<tokio::runtime::Runtime> {
		let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
		if let Some(address) = &settings.metrics {
			let bound = rt
				.block_on(metrics::serve(address))
				.with_context(|| format!("serving metrics on {address}"))?;
			tracing::info!("metrics at http://{bound}/metrics");
		}
		Ok(rt)
	};
	match cli.command {
		Command::Serve { corrupt } => {
			let local = local()?;
			runtime()?.block_on(serve(settings.network, local, corrupt))
		}
		Command::Fetch { kind, hash, wait } => {
			let local = local()?;
			let h = parse_root(&hash)?;
			let key = match kind {
				FetchKind::Dataset => Key::Dataset(h),
				FetchKind::Checkpoint => Key::State(h),
				FetchKind::Trace => Key::Trace(h),
			};
			runtime()?.block_on(fetch(settings.network, local, key, Duration::from_secs(wait)))
		}
		Command::Model { action: ModelAction::Export { spec, state, out } } => {
			let local = local()?;
			let file = SpecFile::parse(
				&fs::read_to_string(&spec)
					.with_context(|| format!("reading {}", spec.display()))?,
			)?;
			let data = local.datasets.get(&file.dataset_root()?)?;
			let spec = file.to_spec(&data)?;
			let h = parse_root(&state)?;
			let state = local.checkpoints.get(&h)?.ok_or_else(|| {
				anyhow!(
					"state {h:?} is not in this worker's store ({})",
					settings.data_dir.display()
				)
			})?;
			let card = export::export(&spec, &state, Some(&data.manifest), None, &out)?;
			print_export(&card, &out)
		}
		Command::Model { action: ModelAction::Eval { dir, dataset } } => {
			let local = local()?;
			let model = export::load(&dir)?;
			let data = local.datasets.get(&parse_root(&dataset)?)?;
			let evaluation = model.evaluate(&data)?;
			out!("{evaluation} ({} samples)", data.samples.len());
			Ok(())
		}
		Command::Submit { .. }
		| Command::Model { action: ModelAction::Fetch { .. } }
		| Command::Model { action: ModelAction::Demand { .. } }
		| Command::Status { .. }
		| Command::Balance { .. }
		| Command::Solve { .. }
		| Command::Verify { .. } => {
			let local = local()?;
			runtime()?.block_on(on_chain(cli.command, &settings, local))
		}
		Command::Dataset { source } => {
			let label_kind = |o: &ImportOptions| match o.regression {
				true => import::LabelKind::Targets,
				false => import::LabelKind::Classes,
			};
			let scaling = |o: &ImportOptions| {
				if o.min_max {
					import::Scaling::MinMax
				} else {
					import::Scaling::None
				}
			};
			let (all, held_out) = match source {
				DatasetSource::Digits { held_out } => (Dataset::digits()?, held_out),
				DatasetSource::Import { format } => match format {
					ImportFormat::Csv { file, label, options } => {
						let (label, kind) = (label.as_deref(), label_kind(&options));
						(import::csv_as(&file, label, kind, scaling(&options))?, options.held_out)
					}
					ImportFormat::Npy { x, y, options } => {
						let kind = label_kind(&options);
						(import::npy_as(&x, &y, kind, scaling(&options))?, options.held_out)
					}
					ImportFormat::Npz { file, x, y, options } => {
						let kind = label_kind(&options);
						let data = import::npz_as(&file, &x, &y, kind, scaling(&options))?;
						(data, options.held_out)
					}
					ImportFormat::Images { dir, size, grey, held_out } => {
						(import::images(&dir, size, grey)?, held_out)
					}
					ImportFormat::Text { file, context, sequences: false, held_out, .. } => {
						(import::text(&file, context)?, held_out)
					}
					ImportFormat::Text { file, context, sequences: true, stride, held_out } => {
						(import::text_sequences(&file, context, stride)?, held_out)
					}
				},
				DatasetSource::Synthetic { seed, samples, features, classes } => {
					if samples == 0 || features == 0 || classes < 2 || classes > features {
						bail!("a synthetic set needs samples > 0 and 2 <= classes <= features");
					}
					(Dataset::synthetic(seed, samples, features, classes), None)
				}
			};
			let (data, held_out) = match held_out {
				Some(every) if every >= 2 => {
					let (train, held) = all.split(every);
					(train, Some(held))
				}
				Some(every) => bail!("--held-out {every}: keep every N-th sample, N >= 2"),
				None => (all, None),
			};
			let root = store.put(&data)?;
			let labels = match data.is_regression() {
				true => "real-valued targets".to_string(),
				false => format!("{} classes", data.classes),
			};
			out!(
				"dataset {root:?} ({} samples, {} features, {labels})",
				data.samples.len(),
				data.features,
			);
			if let Some(held) = held_out {
				let root = store.put(&held)?;
				out!("held-out {root:?} ({} samples)", held.samples.len());
			}
			out!("manifest {:?} ({})", data.manifest.hash(), describe(&data.manifest));
			Ok(())
		}
		Command::Train { spec, threads, trace, evaluate, save, engine, device } => {
			let engine = device.engine(engine)?;
			if let Some(n) = threads {
				rayon::ThreadPoolBuilder::new()
					.num_threads(n.max(1))
					.build_global()
					.context("starting the worker threads")?;
			}
			let text = fs::read_to_string(&spec)
				.with_context(|| format!("reading the spec file {}", spec.display()))?;
			let file = SpecFile::parse(&text).with_context(|| format!("in {}", spec.display()))?;
			let data = store.get(&file.dataset_root()?)?;
			let spec_value =
				file.to_spec(&data).with_context(|| format!("in {}", spec.display()))?;
			let evaluate = evaluate.map(|r| parse_root(&r).and_then(|r| Ok(store.get(&r)?)));
			let evaluate = evaluate.transpose()?;
			train(spec_value, data, trace, evaluate, save, engine)
		}
	}
}

/// `planck` as TNET with four decimals (truncated, exact).
fn tnet(planck: u128) -> String {
	let unit = trainet_primitives::UNIT;
	format!("{}.{:04}", planck / unit, planck % unit / (unit / 10_000))
}

/// `--engine`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum EngineArg {
	/// burn: the model as a burn module (`Mlp`, or `GraphNet` of burn's own layers) on
	/// `Autodiff<NdArray>`, every operation a RepOps kernel.
	Burn,
	/// The RepOps step program, operation by operation.
	Program,
}

/// `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum DeviceArg {
	/// The CPU (burn's NdArray backend, or the step program).
	Cpu,
	/// The first NVIDIA GPU (burn-cuda with RepOps CUDA kernels).
	Cuda,
}

impl DeviceArg {
	/// The engine that runs `engine`'s steps on this device.
	fn engine(self, engine: EngineArg) -> Result<Engine> {
		match (self, engine) {
			(DeviceArg::Cpu, engine) => Ok(engine.into()),
			(DeviceArg::Cuda, EngineArg::Program) => {
				bail!("--device cuda runs the burn model; the step program runs on the CPU only")
			}
			#[cfg(feature = "cuda")]
			(DeviceArg::Cuda, EngineArg::Burn) => {
				if !trainet_worker::cuda::driver_present() {
					bail!("--device cuda: no CUDA driver (libcuda.so.1) on this machine");
				}
				Ok(Engine::Cuda)
			}
			#[cfg(not(feature = "cuda"))]
			(DeviceArg::Cuda, EngineArg::Burn) => bail!(
				"--device cuda: this trainet-worker was built without the `cuda` feature \
				 (cargo build --release -p trainet-worker --features cuda)"
			),
		}
	}
}

impl From<EngineArg> for Engine {
	fn from(e: EngineArg) -> Self {
		match e {
			EngineArg::Burn => Engine::Burn,
			EngineArg::Program => Engine::Program,
		}
	}
}

/// Where and how to join the peer-to-peer network.
struct Network {
	listen: Vec<String>,
	peers: Vec<String>,
	mdns: bool,
	relays: Vec<String>,
	private_network: bool,
	relay_service: bool,
	dir: PathBuf,
}

impl Network {
	/// Starts a peer serving `local` (listening on `default_listen` if given neither
	/// `--listen` nor `--relay`).
	async fn start(
		&self,
		local: solver::Local,
		corrupt: bool,
		default_listen: &[&str],
	) -> Result<P2p> {
		let listen: Vec<String> = match self.listen.is_empty() && self.relays.is_empty() {
			true => default_listen.iter().map(|s| s.to_string()).collect(),
			false => self.listen.clone(),
		};
		let parse = |v: &[String]| -> Result<Vec<_>> {
			v.iter().map(|a| Ok(p2p::parse_address(a)?)).collect()
		};
		let listening = !listen.is_empty() || !self.relays.is_empty();
		let config = P2pConfig {
			listen: parse(&listen)?,
			bootstrap: parse(&self.peers)?,
			mdns: self.mdns,
			announce_every: Duration::from_secs(5),
			relays: parse(&self.relays)?,
			relay_service: self.relay_service,
			private_network: self.private_network,
		};
		let key = p2p::identity(&self.dir)?;
		let library = std::sync::Arc::new(p2p::Library::new(local, corrupt));
		let node = P2p::start(key, config, library).await?;
		if listening {
			for address in node.listening(Duration::from_secs(5)).await? {
				out!("peer listening on {address}");
			}
		}
		Ok(node)
	}

	/// The peer ids of the `--peer` addresses, in order.
	fn preferred(&self) -> Vec<libp2p::PeerId> {
		self.peers
			.iter()
			.filter_map(|a| p2p::parse_address(a).ok())
			.filter_map(|a| p2p::peer_of(&a))
			.collect()
	}
}

async fn serve(network: Network, local: solver::Local, corrupt: bool) -> Result<()> {
	let node = network.start(local, corrupt, &["/ip4/0.0.0.0/tcp/30444"]).await?;
	if corrupt {
		tracing::warn!("serving corrupted chunks on purpose (--corrupt)");
	}
	out!("serving as {} (stop with Ctrl-C)", node.peer_id());
	tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
	Ok(())
}

async fn fetch(network: Network, local: solver::Local, key: Key, wait: Duration) -> Result<()> {
	let node = network.start(local, false, &[]).await?;
	node.wait_for_peers(wait).await?;
	let bar = ProgressBar::new(0);
	bar.set_style(
		ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
			.unwrap_or_else(|_| ProgressStyle::default_bar()),
	);
	let started = Instant::now();
	let (bytes, from) = node
		.fetch(key, &network.preferred(), |done, total| {
			bar.set_length(total);
			bar.set_position(done);
		})
		.await?;
	bar.finish_and_clear();
	out!(
		"fetched {key} ({} bytes) from {} in {:.2} s",
		bytes.len(),
		names(&from),
		started.elapsed().as_secs_f64()
	);
	Ok(())
}

/// Peer ids as a comma-separated list.
fn names(peers: &[libp2p::PeerId]) -> String {
	peers.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
}

async fn on_chain(command: Command, settings: &Settings, local: solver::Local) -> Result<()> {
	// The commands that sign (or name the account) refuse at once without a secret, before
	// waiting for a node.
	let signs = matches!(
		&command,
		Command::Submit { .. }
			| Command::Model { action: ModelAction::Demand { .. } }
			| Command::Solve { .. }
			| Command::Verify { .. }
	) || matches!(&command, Command::Balance { accounts } if accounts.is_empty());
	if signs && settings.suri.is_none() {
		bail!(NO_SECRET);
	}
	use trainet_worker::chain;
	let network = &settings.network;
	let store = &local.datasets;
	// Solvers and verifiers given --listen serve their checkpoints and traces meanwhile.
	let joins =
		!network.listen.is_empty() || !network.peers.is_empty() || !network.relays.is_empty();
	let peer = match (&command, joins) {
		(Command::Solve { .. } | Command::Verify { .. }, true) => {
			Some(network.start(local.clone(), false, &[]).await?)
		}
		_ => None,
	};
	let signer = settings.suri.as_deref().map(chain::signer).transpose()?;
	// The account, for the commands that sign or name it: no secret is assumed.
	let signer = || signer.as_ref().ok_or_else(|| anyhow::anyhow!(NO_SECRET));
	let chain = chain::Chain::connect(&settings.node, settings.wait_for_node).await?;
	match command {
		Command::Submit { spec, reward, claim_timeout, commit_timeout, challenge_timeout } => {
			let text = fs::read_to_string(&spec)
				.with_context(|| format!("reading the spec file {}", spec.display()))?;
			let file = SpecFile::parse(&text).with_context(|| format!("in {}", spec.display()))?;
			let data = store.get(&file.dataset_root()?)?;
			let spec = file.to_spec(&data).with_context(|| format!("in {}", spec.display()))?;
			let timeouts = trainet_primitives::market::Timeouts::<u32> {
				claim: claim_timeout,
				commit: commit_timeout,
				challenge: challenge_timeout,
			};
			let reward = u128::from(reward).saturating_mul(trainet_primitives::UNIT);
			let signer = signer()?;
			let id = solver::next_task_id(&chain).await?;
			chain.submit(signer, "TaskEscrow", "submit", (&spec, reward, timeouts)).await?;
			out!("task {id} submitted by {}", chain::address(signer));
		}
		Command::Balance { accounts } => {
			let accounts = match (accounts.is_empty(), &settings.suri) {
				(false, _) => accounts,
				(true, Some(suri)) => vec![suri.clone()],
				(true, None) => bail!(NO_SECRET),
			};
			out!(
				"{:<20} {:<49} {:>16} {:>12} {:>12} {:>12}",
				"account",
				"address",
				"free",
				"held",
				"staked",
				"locked"
			);
			use sp_core::crypto::Ss58Codec;
			for name in accounts {
				let who: [u8; 32] = if name.starts_with("//") || name.contains(' ') {
					chain::signer(&name)?.public_key().0
				} else {
					let id = sp_core::crypto::AccountId32::from_ss58check(&name).map_err(|e| {
						anyhow!("{name:?} is neither a secret URI nor an SS58 address: {e:?}")
					})?;
					id.into()
				};
				let m = chain.money(who).await?;
				let address =
					sp_core::crypto::AccountId32::from(who).to_ss58check_with_version(42u16.into());
				out!(
					"{:<20} {:<49} {:>16} {:>12} {:>12} {:>12}",
					name,
					address,
					tnet(m.free),
					tnet(m.held),
					tnet(m.staked),
					tnet(m.locked)
				);
			}
		}
		Command::Model { action: ModelAction::Fetch { task, out, wait } } => {
			// A task still open or being trained: wait for its commitment.
			let waiting = || {
				let _ = writeln!(
					std::io::stdout().lock(),
					"task {task} is not committed yet: waiting for its solver"
				);
			};
			let (spec, commitment) =
				match solver::wait_for_commitment(&chain, task, waiting).await? {
					Some((t, _, commitment)) => (t.spec, commitment),
					// Paid: its receipt names the model, for a while.
					None => match solver::chain_receipt(&chain, task).await? {
						Some(r) => {
							out!("task {task} was paid; its receipt names the model");
							(r.spec, r.commitment)
						}
						None => bail!(
							"task {task} is not on chain, nor its receipt (kept a week after \
						 payment). With its final state's hash (in its TaskCommitted event) \
						 and its spec file, `fetch checkpoint` then `model export` give the \
						 same files"
						),
					},
				};
			let h = commitment.final_state;
			if !local.checkpoints.has(&h) {
				let node = network.start(local.clone(), false, &[]).await?;
				let patience = Duration::from_secs(wait);
				let started = Instant::now();
				node.wait_for_peers(patience).await?;
				// Whoever holds the trace serves its final state: found through the DHT, and
				// looked up again (a provider that joins late) until `--wait` is spent.
				let (bytes, from) = loop {
					let mut prefer = network.preferred();
					prefer.extend(node.lookup(Key::Trace(commitment.trace_root)).await?);
					match node.fetch(Key::State(h), &prefer, |_, _| {}).await {
						Ok(fetched) => break fetched,
						Err(e @ p2p::P2pError::NotFound { .. }) if started.elapsed() < patience => {
							tracing::info!("{e}; looking again");
							tokio::time::sleep(Duration::from_secs(2)).await;
						}
						Err(e) => return Err(e.into()),
					}
				};
				out!("fetched the final state {h:?} ({} bytes) from {}", bytes.len(), names(&from));
			}
			let state = local.checkpoints.get(&h)?.ok_or_else(|| {
				anyhow!("the final state {h:?} is not in the store after fetching")
			})?;
			let manifest = store.get(&spec.dataset.root).ok().map(|d| d.manifest);
			let card = export::export(&spec, &state, manifest.as_ref(), Some(task), &out)?;
			// The chain checked at commit that the model hash is the final state's parameter
			// part; the exported parameters hash to it.
			if card.model_hash != format!("{:?}", commitment.model_hash) {
				bail!(
					"the exported model hashes to {}, not to the model hash on chain {:?}",
					card.model_hash,
					commitment.model_hash
				);
			}
			print_export(&card, &out)?;
		}
		Command::Model { action: ModelAction::Demand { task, entry, register } } => {
			let signer = signer()?;
			if let Some(bond) = register {
				register_as(&chain, signer, (false, true), bond).await?;
			}
			let (id, outcome) = solver::demand_availability(&chain, signer, task, entry).await?;
			match outcome {
				solver::Availability::Shown => out!(
					"task {task}: the solver showed the asked rows (challenge {id}): the state \
					 is available, and the bond went to the solver"
				),
				solver::Availability::Withheld => out!(
					"task {task}: the solver did not show the asked rows in time (challenge \
					 {id}): it lost its stake and the task"
				),
			}
		}
		Command::Status { task } => {
			let ids = match task {
				Some(id) => vec![id],
				None => (0..solver::next_task_id(&chain).await?).collect(),
			};
			for id in ids {
				match chain.task(id).await? {
					Some(t) => out!("{}", serde_json::to_string_pretty(&t)?),
					None if task.is_some() => {
						bail!("task {id} is not on chain (ended or never posted)")
					}
					None => {}
				}
			}
		}
		Command::Solve { once, register, fault, skip_from, device, .. } => {
			let signer = signer()?;
			let engine = device.engine(EngineArg::Burn)?;
			let cheat = match (fault, skip_from) {
				(Some(f), _) => Some(Cheat::Alter(f)),
				(None, Some(t)) => Some(Cheat::SkipFrom(t)),
				(None, None) => None,
			};
			if let Some(bond) = register {
				register_as(&chain, signer, (true, false), bond).await?;
			}
			let me = trainet_primitives::AccountId::from(signer.public_key().0);
			// Claims only what this machine can train inside a task's commit window.
			let speed = solver::Throughput::measure()?;
			tracing::info!(work_per_second = speed.per_second, "measured this machine's speed");
			loop {
				// A task this account already holds (a restart) comes first.
				let found = match solver::my_task(&chain, &me).await? {
					Some(held) => Some(held),
					None => {
						solver::find_task(
							&chain,
							store,
							peer.as_ref(),
							settings.max_memory,
							Some(&speed),
						)
						.await?
					}
				};
				let Some((id, task)) = found else {
					tokio::time::sleep(Duration::from_secs(3)).await;
					continue;
				};
				let bar = ProgressBar::new(u64::from(task.spec.steps));
				bar.set_style(
					ProgressStyle::with_template("task {msg} {bar:40} {pos}/{len} steps {per_sec}")
						.unwrap_or_else(|_| ProgressStyle::default_bar()),
				);
				bar.set_message(id.to_string());
				// Without a terminal (the bar hidden) the progress goes to the log, by quarters.
				let quarter = (task.spec.steps / 4).max(1);
				let progress = |t: u32, loss: f32| {
					bar.set_position(u64::from(t) + 1);
					if bar.is_hidden() && (t + 1).is_multiple_of(quarter) {
						tracing::info!(
							task = id,
							step = t + 1,
							steps = task.spec.steps,
							loss,
							"training"
						);
					}
				};
				let solved =
					match solver::solve(&chain, signer, &local, id, &task, cheat, engine, progress)
						.await
					{
						Err(solver::SolveError::Taken(id)) => {
							bar.finish_and_clear();
							tracing::info!(task = id, "another solver claimed it first");
							continue;
						}
						r => r?,
					};
				bar.finish_and_clear();
				out!(
					"task {id} committed: h_N {:?}, trace root {:?}",
					solved.final_state,
					solved.trace_root
				);
				if let Some(file) = &solved.model {
					out!("task {id} model saved as a burn record: {}", file.display());
				}
				match solver::defend(&chain, signer, &local, &task, &solved, cheat).await? {
					solver::Outcome::Ended => out!("task {id} ended"),
					solver::Outcome::Lost => out!("task {id} lost in a dispute"),
				}
				if once {
					return Ok(());
				}
			}
		}
		Command::Verify { once, register, fault, .. } => {
			let signer = signer()?;
			if settings.sample.is_some() && peer.is_none() {
				bail!("--sample fetches from peers: give --peer (or --listen)");
			}
			if let Some(bond) = register {
				register_as(&chain, signer, (false, true), bond).await?;
			}
			let mut done = Vec::new();
			loop {
				let checked = solver::verify_one(
					&chain,
					signer,
					store,
					&done,
					fault,
					peer.as_ref(),
					settings.sample,
				)
				.await;
				match checked {
					// The node is unreachable: wait for it (a task's own errors never end here).
					Err(e) => {
						tracing::warn!("checking tasks: {e}; trying again shortly");
						tokio::time::sleep(Duration::from_secs(3)).await;
					}
					Ok(None) => tokio::time::sleep(Duration::from_secs(3)).await,
					Ok(Some(verdict)) => {
						let id = match verdict {
							solver::Verdict::Honest(id) => {
								out!("task {id} verified: its final state is right");
								id
							}
							solver::Verdict::CaughtCheating(id) => {
								out!("task {id} was wrong: challenged, and the solver lost");
								id
							}
							solver::Verdict::ChallengeFailed(id) => {
								out!("task {id} was wrong, but the challenge did not win");
								id
							}
							solver::Verdict::Skipped(id) => {
								out!("task {id} could not be checked: left (see the log)");
								id
							}
						};
						done.push(id);
						if once {
							return Ok(());
						}
					}
				}
			}
		}
		_ => bail!("not a chain command"),
	}
	Ok(())
}

/// Why a command that signs cannot run: no secret was given (none is assumed).
const NO_SECRET: &str =
	"no account secret: give --suri (or the TRAINET_SURI environment variable), \
                         or `suri` / `suri_file` in worker.toml (on a dev chain, for example \
                         --suri //Alice)";

/// Registers `signer` with `roles` (solver, verifier) and `bond` TNET, unless it already is.
async fn register_as(
	chain: &trainet_worker::chain::Chain,
	signer: &subxt_signer::sr25519::Keypair,
	roles: (bool, bool),
	bond: u64,
) -> Result<()> {
	let bond = u128::from(bond).saturating_mul(trainet_primitives::UNIT);
	match chain.submit(signer, "ComputeStaking", "register", (roles, bond)).await {
		Ok(_) => {
			out!("registered {}", trainet_worker::chain::address(signer));
			Ok(())
		}
		Err(e) if e.to_string().contains("AlreadyRegistered") => Ok(()),
		Err(e) => Err(e.into()),
	}
}

fn train(
	spec: trainet_primitives::task::TrainingSpec,
	data: Dataset,
	trace: Option<PathBuf>,
	evaluate: Option<Dataset>,
	save: Option<PathBuf>,
	engine: Engine,
) -> Result<()> {
	let steps = spec.steps;
	let manifest = data.manifest.clone();
	let graph = matches!(spec.model, trainet_primitives::task::Model::Graph { .. });
	let mut run = Training::new(spec, data)?.with_engine(engine);
	out!(
		"engine: {}",
		match engine {
			Engine::Burn if graph => "burn (GraphNet on Autodiff<NdArray>, RepOps kernels)",
			Engine::Burn => "burn (Mlp on Autodiff<NdArray>, RepOps kernels)",
			Engine::Program => "RepOps step program",
			#[cfg(feature = "cuda")]
			Engine::Cuda => "burn (Mlp on Autodiff<Cuda>, RepOps CUDA kernels) on the GPU",
		}
	);
	let mut out = match &trace {
		Some(path) => Some(std::io::BufWriter::new(
			fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
		)),
		None => None,
	};
	let write = |out: &mut Option<std::io::BufWriter<fs::File>>, t: u32, h: &H256| -> Result<()> {
		if let Some(o) = out {
			writeln!(o, "{t} {h:?}")?;
		}
		Ok(())
	};
	write(&mut out, 0, &run.state_hash())?;
	let bar = ProgressBar::new(u64::from(steps));
	bar.set_style(
		ProgressStyle::with_template("{bar:40} {pos}/{len} steps  {per_sec}  eta {eta}  {msg}")
			.unwrap_or_else(|_| ProgressStyle::default_bar()),
	);
	let start = Instant::now();
	let mut last = None;
	while run.steps_done() < steps {
		let r = run.step()?;
		// The trace's entries only: with a checkpoint interval above 1, the other states are
		// not hashed (what a solver commits to, at what it costs).
		if run.at_trace_point() {
			write(&mut out, r.step + 1, &run.state_hash())?;
		}
		bar.inc(1);
		bar.set_message(format!("loss {:.4}", r.loss));
		if (r.step + 1) % 100 == 0 {
			tracing::info!(step = r.step + 1, loss = r.loss, "training");
		}
		last = Some(r);
	}
	bar.finish_and_clear();
	if let Some(mut o) = out {
		o.flush()?;
	}
	let secs = start.elapsed().as_secs_f64();
	out!("trained {steps} steps in {secs:.1} s ({:.0} steps/s)", f64::from(steps) / secs);
	if let Some(r) = last {
		out!("final loss {:.4}", r.loss);
	}
	out!("h_{steps} {:?}", run.state_hash());
	if let Some(held) = evaluate {
		out!("held-out {} ({} samples)", run.evaluate(&held)?, held.samples.len());
	}
	if let Some(dir) = save {
		let card = export::export(run.spec(), run.state(), Some(&manifest), None, &dir)?;
		print_export(&card, &dir)?;
	}
	Ok(())
}

/// What `model fetch` and `model export` wrote.
fn print_export(card: &export::ModelCard, dir: &std::path::Path) -> Result<()> {
	let what = match &card.layers {
		Some(graph) => format!("{:?} input, {} layers", graph.input, graph.layers.len()),
		None => format!("{:?} MLP", card.widths),
	};
	let files: Vec<&str> = [card.files.burn_record.as_deref(), Some(export::SAFETENSORS)]
		.into_iter()
		.flatten()
		.chain([export::CARD])
		.collect();
	out!(
		"model {} ({what}, from state {}) in {}: {}",
		card.model_hash,
		card.final_state,
		dir.display(),
		files.join(", ")
	);
	Ok(())
}
