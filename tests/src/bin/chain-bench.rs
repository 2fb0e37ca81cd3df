//! What the chain costs and carries, measured on a real dev node (`trainet-node --dev`, one
//! validator, six-second blocks), printed as markdown tables:
//!
//! 1. **Disputes**: for traces of 10^2, 10^4 and 10^6 steps and for the two leaf kinds (a
//!    small MLP, whose disputed operation the runtime re-executes whole; a `512-512-2` MLP,
//!    whose `256 x 512` by `512 x 512` product is too large for a block and is settled on one
//!    value by the element descent), a solver commits a run with one operation of step 2
//!    altered and an honest verifier challenges. Both sides play with the worker's dispute logic
//!    (`trainet_worker::dispute::Fighter`); the disputes run side by side. From the blocks'
//!    events: the rounds of each stage, the extrinsics both sides sent (the challenge
//!    included), their weight and fees, and the blocks from the challenge to the ruling.
//!    Only the first steps are trained (up to step 3, or to the first checkpoint past the
//!    altered step): no one trains 10^6 steps for a benchmark, so the trace's later hashes are
//!    stand-ins (each side's own, so the sides disagree on all of them). The chain plays the
//!    same game over them: it only ever sees hashes, until the leaf. With
//!    `--checkpoint-interval C` the tasks' traces commit to every `C`-th state (PROTOCOL.md,
//!    "Granularity"): the step bisection runs over those entries and a segment game over the
//!    `C` steps of the first wrong one, which both sides really recompute.
//! 2. **Throughput**: `--tasks` tasks posted by one submitter as fast as the node takes them,
//!    then claimed by thirteen solvers, then committed; per stage, how many extrinsics each
//!    block carried and how many per second.
//!
//! ```text
//! cargo run -p trainet-e2e --bin chain-bench -- [--tasks 1000] [--skip-disputes]
//! cargo run -p trainet-e2e --bin chain-bench -- --skip-throughput --checkpoint-interval 32
//! ```
//!
//! `TRAINET_NODE` picks the node binary (by default the build's, next to this one); the table
//! says which. A debug node verifies signatures and runs its transaction pool unoptimized,
//! which bounds throughput well below a release node's; the runtime itself is the optimized
//! wasm either way, so weights, rounds and blocks do not depend on it.

use std::{
	collections::{BTreeMap, HashSet},
	time::{Duration, Instant},
};

use anyhow::{anyhow, ensure, Context, Result};
use codec::Encode;
use serde_json::{json, Value};
use sp_core::H256;
use subxt::{dynamic::At, ext::scale_value::Composite, OnlineClient, PolkadotConfig};
use subxt_signer::sr25519::Keypair;
use trainet_e2e::{
	adam, commit_args, made_up_final, node_binary, submit_in_block, Node, NodeConfig,
};
use trainet_primitives::{
	market::{Party, Timeouts},
	referee::Fault,
	task::{synthetic_dataset, TrainingSpec},
	trace::{trace_proof, trace_root, TracePoints},
	UNIT,
};
use trainet_worker::{chain::Chain, dataset::Dataset, dispute::Fighter, train::Training};

type Api = OnlineClient<PolkadotConfig>;

/// Seconds per block on this chain (`MILLI_SECS_PER_BLOCK`).
const BLOCK_SECONDS: f64 = 6.0;
/// The block weight normal extrinsics may fill, in ms of ref time (75% of two seconds:
/// `runtime/src/configs.rs`).
const NORMAL_MS: u32 = 1500;

/// The endowed dev accounts other than Alice (the submitter): solvers and verifiers.
fn accounts() -> Result<Vec<Keypair>> {
	[
		"Bob",
		"Charlie",
		"Dave",
		"Eve",
		"Ferdie",
		"Alice//stash",
		"Bob//stash",
		"Charlie//stash",
		"Dave//stash",
		"Eve//stash",
		"Ferdie//stash",
		"One",
		"Two",
	]
	.into_iter()
	.map(|name| Ok(trainet_worker::chain::signer(&format!("//{name}"))?))
	.collect()
}

/// What one extrinsic cost, read from its block's events.
#[derive(Default, Clone, Copy)]
struct Cost {
	ref_time: u128,
	proof_size: u128,
	fee: u128,
	ok: bool,
}

/// One block's events, decoded as far as this benchmark reads them.
struct BlockEvents {
	/// Per extrinsic index: its signer (from `TransactionFeePaid`) and cost.
	extrinsics: BTreeMap<u32, ([u8; 32], Cost)>,
	/// `(pallet, event, {text, dispute})` of every event: its fields written out, and the
	/// dispute it names if any.
	events: Vec<(String, String, Value)>,
}

fn as_u128(v: &subxt::dynamic::Value<()>, path: &[&str]) -> Option<u128> {
	let mut at = v;
	for p in path {
		at = at.at(*p)?;
	}
	at.as_u128()
}

async fn block_events(api: &Api, number: u32) -> Result<BlockEvents> {
	let at = api.at_block(u64::from(number)).await?;
	let events = at.events().fetch().await?;
	let mut out = BlockEvents { extrinsics: BTreeMap::new(), events: Vec::new() };
	for ev in events.iter() {
		let ev = ev?;
		let fields: Composite<()> = ev.decode_fields_unchecked_as()?;
		let value = subxt::dynamic::Value::<()>::from(fields.clone());
		let (pallet, name) = (ev.pallet_name().to_string(), ev.event_name().to_string());
		if let subxt::events::Phase::ApplyExtrinsic(i) = ev.phase() {
			let entry = out.extrinsics.entry(i).or_insert(([0; 32], Cost::default()));
			match (pallet.as_str(), name.as_str()) {
				("System", "ExtrinsicSuccess" | "ExtrinsicFailed") => {
					let w = ["dispatch_info", "weight"];
					entry.1.ref_time = as_u128(&value, &[w[0], w[1], "ref_time"]).unwrap_or(0);
					entry.1.proof_size = as_u128(&value, &[w[0], w[1], "proof_size"]).unwrap_or(0);
					entry.1.ok = name == "ExtrinsicSuccess";
				}
				("TransactionPayment", "TransactionFeePaid") => {
					entry.1.fee = as_u128(&value, &["actual_fee"]).unwrap_or(0);
					#[derive(subxt::ext::scale_decode::DecodeAsType)]
					#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
					struct Paid {
						who: [u8; 32],
					}
					entry.0 = ev.decode_fields_unchecked_as::<Paid>()?.who;
				}
				_ => {}
			}
		}
		let dispute = as_u128(&value, &["dispute"]).and_then(|d| u64::try_from(d).ok());
		out.events.push((pallet, name, json!({ "text": fields.to_string(), "dispute": dispute })));
	}
	Ok(out)
}

/// One dispute of the table.
struct DisputeCase {
	model: &'static str,
	/// The spec trained for real: as far as the trace's first wrong entry.
	spec: TrainingSpec,
	data: Vec<(Vec<f32>, u32)>,
	fault: Fault,
	steps: u32,
	/// The tasks' checkpoint interval `C`.
	interval: u32,
	solver: Keypair,
	verifier: Keypair,
}

/// One dispute's measured row.
struct DisputeRow {
	model: &'static str,
	steps: u32,
	interval: u32,
	step_rounds: u32,
	segment_rounds: u32,
	op_rounds: u32,
	descent_rounds: u32,
	extrinsics: u32,
	refused: u32,
	ref_time: u128,
	proof_size: u128,
	fees: u128,
	blocks: u32,
	seconds: f64,
	settled_on: String,
}

/// The state hashes `h_0 ..= h_T` of `spec`'s first `T = spec.steps` steps, trained by the
/// worker (with `fault`, if given): the trace of every state.
fn prefix(spec: &TrainingSpec, data: &Dataset, fault: Option<Fault>) -> Result<Vec<H256>> {
	let mut every = spec.clone();
	every.checkpoint_interval = 1;
	Ok(Training::new(every, data.clone())?.with_fault(fault).trace(|_| {})?)
}

/// The trace entries of `points` (the states `h_0, h_C, ..., h_N` it commits to): the real
/// states as far as `prefix` goes, then stand-ins that only this side has (`side` tells them
/// apart).
fn padded(prefix: &[H256], points: TracePoints, side: &[u8]) -> Vec<H256> {
	(0..points.len())
		.map(|k| {
			let real = points.step(k).and_then(|s| prefix.get(s as usize));
			real.copied().unwrap_or_else(|| {
				<sp_core::Blake2Hasher as sp_core::Hasher>::hash(&(side, k).encode())
			})
		})
		.collect()
}

async fn play(node: &Node, api: &Api, task: u64, case: DisputeCase) -> Result<DisputeRow> {
	let dataset = Dataset {
		features: case.spec.dataset.features,
		classes: case.spec.dataset.classes,
		samples: case.data,
		manifest: Default::default(),
	};
	let steps = case.steps;
	let points = TracePoints::new(steps, case.interval).context("a checkpoint interval")?;
	let mut honest = padded(&prefix(&case.spec, &dataset, None)?, points, b"honest");
	let mut liar = padded(&prefix(&case.spec, &dataset, Some(case.fault))?, points, b"liar");
	let last = points.len() - 1;
	// The trained prefix ends well before the last entry: both traces end at made-up final
	// states (of the posted spec's size, which `commit` checks the model hash against).
	let mut posted = case.spec.clone();
	posted.steps = steps;
	let (liar_final, liar_last) = made_up_final(&posted, 1);
	liar[last as usize] = liar_last;
	honest[last as usize] = made_up_final(&posted, 2).1;
	let (solver, verifier) = (&case.solver, &case.verifier);
	submit_in_block(node, api, solver, "TaskEscrow", "claim", (task,)).await?;
	let args = commit_args(task, &posted, &liar, liar_final)?;
	submit_in_block(node, api, solver, "TaskEscrow", "commit", args).await?;
	let proof = trace_proof(&honest, last).context("proof")?;
	submit_in_block(node, api, verifier, "Challenge", "open", (task, trace_root(&honest), proof))
		.await?;
	let start = Instant::now();

	let chain = Chain::connect(&node.ws_url(), Duration::from_secs(30)).await?;
	let mut spec = case.spec.clone();
	spec.steps = steps;
	spec.checkpoint_interval = case.interval;
	let mut solver_side =
		Fighter::new(Party::Solver, spec.clone(), dataset.clone(), liar, Some(case.fault));
	let mut verifier_side = Fighter::new(Party::Challenger, spec, dataset, honest, None);
	let open: Vec<Value> = node.rpc("trainet_openDisputes", vec![]).await?;
	let id = open
		.iter()
		.find(|d| d["task"].as_u64() == Some(task))
		.and_then(|d| d["id"].as_u64())
		.context("the dispute did not open")?;
	// The block the challenge is in: the last with this dispute's DisputeOpened.
	let mut open_block = node.best_number().await?;
	loop {
		let block = block_events(api, open_block).await?;
		let opened = |(p, e, f): &(String, String, Value)| {
			p == "Challenge" && e == "DisputeOpened" && f["dispute"].as_u64() == Some(id)
		};
		if block.events.iter().any(opened) {
			break;
		}
		ensure!(open_block > 0, "no DisputeOpened for dispute {id}");
		open_block -= 1;
	}
	loop {
		ensure!(start.elapsed() < Duration::from_secs(1800), "dispute {id} did not end");
		let (a, b) = tokio::join!(
			solver_side.tick(&chain, solver, id),
			verifier_side.tick(&chain, verifier, id)
		);
		if !(a? | b?) {
			break;
		}
		tokio::time::sleep(Duration::from_millis(500)).await;
	}
	let seconds = start.elapsed().as_secs_f64();

	// Read the blocks from the challenge to the ruling.
	let sides: HashSet<[u8; 32]> = [solver.public_key().0, verifier.public_key().0].into();
	let mut row = DisputeRow {
		model: case.model,
		steps,
		interval: case.interval,
		step_rounds: 0,
		segment_rounds: 0,
		op_rounds: 0,
		descent_rounds: 0,
		extrinsics: 0,
		refused: 0,
		ref_time: 0,
		proof_size: 0,
		fees: 0,
		blocks: 0,
		seconds,
		settled_on: String::new(),
	};
	let mut number = open_block;
	loop {
		while node.best_number().await? < number {
			tokio::time::sleep(Duration::from_secs(1)).await;
		}
		let block = block_events(api, number).await?;
		for (who, cost) in block.extrinsics.values() {
			if sides.contains(who) {
				row.extrinsics += 1;
				row.refused += u32::from(!cost.ok);
				row.ref_time += cost.ref_time;
				row.proof_size += cost.proof_size;
				row.fees += cost.fee;
			}
		}
		let mut resolved = false;
		for (pallet, name, fields) in &block.events {
			if pallet != "Challenge" || fields["dispute"].as_u64() != Some(id) {
				continue;
			}
			match name.as_str() {
				"Narrowed" => row.step_rounds += 1,
				"SegmentRound" => row.segment_rounds += 1,
				"OpRound" => row.op_rounds += 1,
				"DescentMoved" => row.descent_rounds += 1,
				"OperationSettled" => row.settled_on = "operation re-executed".into(),
				"ElementSettled" => row.settled_on = "one value re-computed".into(),
				"DisputeResolved" => {
					let text = fields["text"].as_str().unwrap_or_default();
					ensure!(text.contains("Challenger"), "the cheat won dispute {id}: {text}");
					resolved = true;
				}
				_ => {}
			}
		}
		if resolved {
			row.blocks = number - open_block;
			break;
		}
		number += 1;
		ensure!(number < open_block + 2000, "no ruling on dispute {id} within 2000 blocks");
	}
	Ok(row)
}

async fn disputes(node: &Node, api: &Api, accounts: &[Keypair], interval: u32) -> Result<()> {
	let small = synthetic_dataset(7, 40, 6, 3);
	let large = synthetic_dataset(5, 300, 512, 2);
	let models = [
		(
			"6-5-4-3 Adam, batch 8 (operation leaf)",
			TrainingSpec::example_mlp(&[6, 5, 4, 3], adam(), 8).on_dataset(&small),
			&small,
			// Layer 2's weight gradient in step 2.
			Fault { step: 2, op: 15 },
		),
		(
			"512-512-2 Adam, batch 256 (element leaf)",
			TrainingSpec::example_mlp(&[512, 512, 2], adam(), 256).on_dataset(&large),
			&large,
			// Step 2's first product: 2^26 multiply-adds, four times what one leaf executes.
			Fault { step: 2, op: 0 },
		),
	];
	let mut cases = Vec::new();
	let mut pairs = accounts.chunks(2);
	for (model, spec, data, fault) in models {
		for steps in [100u32, 10_000, 1_000_000] {
			let pair = pairs.next().context("two accounts per dispute")?;
			let [solver, verifier] = pair else { anyhow::bail!("an odd account out") };
			// Train only as far as the disputed step and one beyond, and at least to the
			// first checkpoint after it (the trace's first wrong entry).
			let mut trained = spec.clone();
			trained.steps =
				(fault.step + 2).max(interval.saturating_mul(fault.step / interval + 1));
			cases.push(DisputeCase {
				model,
				spec: trained,
				data: data.clone(),
				fault,
				steps,
				interval,
				solver: solver.clone(),
				verifier: verifier.clone(),
			});
		}
	}
	eprintln!("posting {} tasks and registering their solvers and verifiers", cases.len());
	let alice = subxt_signer::sr25519::dev::alice();
	let timeouts = Timeouts::<u32> { claim: 600, commit: 600, challenge: 600 };
	for case in &cases {
		let mut posted = case.spec.clone();
		posted.steps = case.steps;
		posted.checkpoint_interval = case.interval;
		submit_in_block(node, api, &alice, "TaskEscrow", "submit", (posted, 10 * UNIT, timeouts))
			.await?;
	}
	futures::future::try_join_all(cases.iter().flat_map(|c| {
		[
			submit_in_block(
				node,
				api,
				&c.solver,
				"ComputeStaking",
				"register",
				((true, false), 200 * UNIT),
			),
			submit_in_block(
				node,
				api,
				&c.verifier,
				"ComputeStaking",
				"register",
				((false, true), 100 * UNIT),
			),
		]
	}))
	.await?;
	eprintln!("playing {} disputes side by side", cases.len());
	let rows = futures::future::try_join_all(
		cases.into_iter().enumerate().map(|(task, case)| play(node, api, task as u64, case)),
	)
	.await?;

	println!(
		"\n### Disputes on a dev chain (one wrong operation in step 2; the cheat loses), \
		 checkpoint interval C = {interval}\n"
	);
	println!(
		"| model | steps N | C | step rounds | segment rounds | op rounds | descent rounds | \
		 extrinsics (refused) | weight: ref time | proof size | fees | blocks | wall time | \
		 settled by |"
	);
	println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
	for r in rows {
		println!(
			"| {} | {} | {} | {} | {} | {} | {} | {} ({}) | {:.2} ms | {:.1} KiB | {:.4} TNET | \
			 {} | {:.0} s | {} |",
			r.model,
			r.steps,
			r.interval,
			r.step_rounds,
			r.segment_rounds,
			r.op_rounds,
			r.descent_rounds,
			r.extrinsics,
			r.refused,
			r.ref_time as f64 / 1e9,
			r.proof_size as f64 / 1024.0,
			r.fees as f64 / UNIT as f64,
			r.blocks,
			r.seconds,
			r.settled_on
		);
	}
	Ok(())
}

/// Sends every call of `calls` (signer, pallet, call, encoded arguments) without waiting, then
/// counts per block the events named `event` until `calls.len()` have been seen. Returns, per
/// block from the first that carried any, that count and the block's extrinsics' weight.
async fn flood(
	node: &Node,
	api: &Api,
	calls: Vec<(&Keypair, &str, &str, Vec<u8>)>,
	event: (&str, &str),
) -> Result<Vec<(u32, u128)>> {
	let mut nonces: BTreeMap<[u8; 32], u64> = BTreeMap::new();
	let mut signed = Vec::with_capacity(calls.len());
	let at = api.at_current_block().await?;
	let mut transactions = at.transactions();
	for (signer, pallet, call, args) in &calls {
		let key = signer.public_key().0;
		let nonce = match nonces.get(&key) {
			Some(n) => *n,
			None => {
				let who = Value::from(trainet_worker::chain::address(signer));
				node.rpc("system_accountNextIndex", vec![who]).await?
			}
		};
		nonces.insert(key, nonce + 1);
		let tx =
			subxt::dynamic::transaction(*pallet, *call, trainet_worker::chain::Args(args.clone()));
		// Immortal: signing thousands of calls in a debug build outlasts subxt's default
		// mortality (32 blocks), and a call signed dead would never be counted.
		let params = subxt::config::DefaultExtrinsicParamsBuilder::<PolkadotConfig>::new()
			.nonce(nonce)
			.immortal()
			.build();
		let tx = transactions.create_signed(&tx, *signer, params).await?;
		signed.push(format!("0x{}", hex(tx.encoded())));
	}
	let first = node.best_number().await? + 1;
	let total = calls.len();
	for (c, chunk) in signed.chunks(64).enumerate() {
		futures::future::try_join_all(chunk.iter().enumerate().map(|(i, tx)| async move {
			node.rpc_raw("author_submitExtrinsic", vec![json!(tx)])
				.await
				.map_err(|e| anyhow!("the pool refused extrinsic {} of {total}: {e}", c * 64 + i))
		}))
		.await?;
	}
	let mut per_block = Vec::new();
	let (mut seen, mut number, mut idle) = (0usize, first, 0);
	while seen < calls.len() {
		while node.best_number().await? < number {
			tokio::time::sleep(Duration::from_millis(500)).await;
		}
		let block = block_events(api, number).await?;
		let n = block.events.iter().filter(|(p, e, _)| p == event.0 && e == event.1).count();
		let weight: u128 = block.extrinsics.values().map(|(_, c)| c.ref_time).sum();
		per_block.push((n as u32, weight));
		seen += n;
		idle = if n == 0 { idle + 1 } else { 0 };
		ensure!(
			idle < 20,
			"{seen} of {} {}.{} seen, then 20 empty blocks",
			calls.len(),
			event.0,
			event.1
		);
		number += 1;
	}
	// Blocks before the first and after the last that carried any do not count.
	while per_block.first().is_some_and(|(n, _)| *n == 0) {
		per_block.remove(0);
	}
	Ok(per_block)
}

fn hex(bytes: &[u8]) -> String {
	bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn throughput(node: &Node, api: &Api, accounts: &[Keypair], tasks: u32) -> Result<()> {
	let alice = subxt_signer::sr25519::dev::alice();
	let spec = TrainingSpec::example_mlp(&[6, 5, 4, 3], adam(), 8)
		.on_dataset(&synthetic_dataset(7, 40, 6, 3));
	let timeouts = Timeouts::<u32> { claim: 600, commit: 600, challenge: 600 };
	// Solvers bond enough to hold a claim on each of their tasks.
	let per_solver = tasks.div_ceil(accounts.len() as u32);
	let bond = (u128::from(per_solver) + 2) * 100 * UNIT;
	let mut rows = Vec::new();

	eprintln!("throughput: {tasks} tasks posted by Alice");
	let args = (&spec, 10 * UNIT, timeouts).encode();
	// A fresh chain: the tasks are 0 ..
	let first_task = 0u64;
	let calls = (0..tasks).map(|_| (&alice, "TaskEscrow", "submit", args.clone())).collect();
	rows.push((
		"TaskEscrow.submit (one submitter)",
		flood(node, api, calls, ("TaskEscrow", "TaskSubmitted")).await?,
	));

	let registers = accounts
		.iter()
		.map(|k| (k, "ComputeStaking", "register", ((true, false), bond).encode()))
		.collect();
	flood(node, api, registers, ("ComputeStaking", "Registered")).await?;

	eprintln!("throughput: the tasks claimed by {} solvers", accounts.len());
	let owner = |t: u32| &accounts[t as usize % accounts.len()];
	let claims = (0..tasks)
		.map(|t| (owner(t), "TaskEscrow", "claim", (first_task + u64::from(t),).encode()))
		.collect();
	rows.push((
		"TaskEscrow.claim (13 solvers)",
		flood(node, api, claims, ("TaskEscrow", "TaskClaimed")).await?,
	));

	eprintln!("throughput: the tasks committed");
	let (tensors, last) = made_up_final(&spec, 0);
	let mut states: Vec<H256> = (0..spec.steps)
		.map(|i| <sp_core::Blake2Hasher as sp_core::Hasher>::hash(&i.encode()))
		.collect();
	states.push(last);
	let (_, commitment, proof, tensors) = commit_args(0, &spec, &states, tensors)?;
	let commits = (0..tasks)
		.map(|t| {
			let args = (first_task + u64::from(t), &commitment, &proof, &tensors).encode();
			(owner(t), "TaskEscrow", "commit", args)
		})
		.collect();
	rows.push((
		"TaskEscrow.commit (13 solvers)",
		flood(node, api, commits, ("TaskEscrow", "TaskCommitted")).await?,
	));

	println!("\n### Chain throughput on a dev node ({tasks} of each call, sent at once)\n");
	println!(
		"Weight: the extrinsics' ref time in the fullest block, against the {NORMAL_MS} ms that \
		 normal extrinsics may fill.\n"
	);
	println!(
		"| call | blocks | most in a block | weight of that block | mean per block | per second \
		 (fullest block) |"
	);
	println!("|---|---|---|---|---|---|");
	for (call, per_block) in rows {
		let total: u32 = per_block.iter().map(|(n, _)| n).sum();
		let blocks = per_block.len().max(1);
		let (most, weight) = per_block.iter().max().copied().unwrap_or_default();
		println!(
			"| {call} | {blocks} | {most} | {:.0} ms | {:.0} | {:.1} |",
			weight as f64 / 1e9,
			f64::from(total) / blocks as f64,
			f64::from(most) / BLOCK_SECONDS
		);
	}
	Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
	let args: Vec<String> = std::env::args().skip(1).collect();
	let flag = |name: &str| args.iter().position(|a| a == name);
	let tasks: u32 = match flag("--tasks") {
		Some(i) => args.get(i + 1).context("--tasks N")?.parse()?,
		None => 1000,
	};
	println!("node: {}", node_binary()?.display());
	let accounts = accounts()?;
	// Each part on a chain of its own, from genesis.
	let fresh = || async {
		let dir = tempfile::tempdir()?;
		let node = Node::start(NodeConfig::dev(&dir.path().join("node"))).await?;
		node.wait_for_finalized(1, Duration::from_secs(90)).await?;
		let api = Api::from_url(node.ws_url()).await?;
		anyhow::Ok((dir, node, api))
	};
	let interval: u32 = match flag("--checkpoint-interval") {
		Some(i) => args.get(i + 1).context("--checkpoint-interval C")?.parse()?,
		None => 1,
	};
	ensure!(interval >= 1, "--checkpoint-interval must be at least 1");
	if flag("--skip-disputes").is_none() {
		let (_dir, node, api) = fresh().await?;
		disputes(&node, &api, accounts.get(..12).context("twelve accounts")?, interval).await?;
	}
	if flag("--skip-throughput").is_none() {
		let (_dir, node, api) = fresh().await?;
		throughput(&node, &api, &accounts, tasks).await?;
	}
	Ok(())
}
