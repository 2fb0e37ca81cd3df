//! Disputes decided by the runtime's referee on a real dev chain: a solver that lies about
//! the initial state (`h_0`) loses to an honest verifier, and a verifier that lies about it
//! loses to an honest solver. Both disputes run at once; the runtime recomputes `h_0` from the
//! spec with RepOps at the leaf.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use sp_core::H256;
use subxt::{OnlineClient, PolkadotConfig};
use subxt_signer::sr25519::{dev, Keypair};
use trainet_e2e::{
	commit_args, ledger, made_up_final, settle, ss58, submit_in_block, Node, NodeConfig,
};
use trainet_primitives::{
	market::Timeouts,
	program::initial_state_hash,
	task::TrainingSpec,
	trace::{trace_proof, trace_root},
	UNIT,
};

const STEPS: u32 = 4;

/// A trace starting at `h0`, with made-up later states (the referee only looks at `h_0` here),
/// the last a made-up final state of `spec`'s size; and that state's tensor hashes.
fn trace(spec: &TrainingSpec, h0: H256, salt: u64) -> (Vec<H256>, Vec<H256>) {
	let (tensors, last) = made_up_final(spec, salt);
	let states = std::iter::once(h0)
		.chain((1..STEPS).map(|t| H256::from_low_u64_be(salt * 1000 + u64::from(t))))
		.chain([last])
		.collect();
	(states, tensors)
}

struct Game<'a> {
	task: u64,
	solver: &'a Keypair,
	solver_trace: Vec<H256>,
	solver_final: Vec<H256>,
	challenger: &'a Keypair,
	challenger_trace: Vec<H256>,
}

#[tokio::test]
async fn the_runtime_referee_decides_initialization_disputes() -> Result<()> {
	let dir = tempfile::tempdir()?;
	let node = Node::start(NodeConfig::dev(dir.path())).await?;
	node.wait_for_finalized(1, Duration::from_secs(90)).await?;
	let api = OnlineClient::<PolkadotConfig>::from_url(node.ws_url()).await?;
	let (submitter, liar_solver, honest_verifier, honest_solver, liar_verifier) =
		(dev::alice(), dev::dave(), dev::eve(), dev::charlie(), dev::ferdie());

	let mut spec = TrainingSpec::example_digits(H256::repeat_byte(3));
	spec.steps = STEPS;
	let h0 = initial_state_hash(&spec).map_err(|e| anyhow::anyhow!("{e:?}"))?;
	let timeouts = Timeouts::<u32> { claim: 300, commit: 300, challenge: 300 };

	tokio::try_join!(
		submit_in_block(
			&node,
			&api,
			&liar_solver,
			"ComputeStaking",
			"register",
			((true, false), 200 * UNIT)
		),
		submit_in_block(
			&node,
			&api,
			&honest_solver,
			"ComputeStaking",
			"register",
			((true, false), 200 * UNIT)
		),
		submit_in_block(
			&node,
			&api,
			&honest_verifier,
			"ComputeStaking",
			"register",
			((false, true), 100 * UNIT)
		),
		submit_in_block(
			&node,
			&api,
			&liar_verifier,
			"ComputeStaking",
			"register",
			((false, true), 100 * UNIT)
		),
		submit_in_block(
			&node,
			&api,
			&submitter,
			"TaskEscrow",
			"submit",
			(&spec, 10 * UNIT, timeouts)
		),
	)?;
	submit_in_block(&node, &api, &submitter, "TaskEscrow", "submit", (&spec, 10 * UNIT, timeouts))
		.await?;

	let games = [
		Game {
			task: 0,
			solver: &liar_solver,
			solver_trace: trace(&spec, H256::repeat_byte(0xee), 1).0,
			solver_final: trace(&spec, H256::repeat_byte(0xee), 1).1,
			challenger: &honest_verifier,
			challenger_trace: trace(&spec, h0, 2).0,
		},
		Game {
			task: 1,
			solver: &honest_solver,
			solver_trace: trace(&spec, h0, 3).0,
			solver_final: trace(&spec, h0, 3).1,
			challenger: &liar_verifier,
			challenger_trace: trace(&spec, H256::repeat_byte(0xdd), 4).0,
		},
	];
	for g in &games {
		submit_in_block(&node, &api, g.solver, "TaskEscrow", "claim", (g.task,)).await?;
		let args = commit_args(g.task, &spec, &g.solver_trace, g.solver_final.clone())?;
		submit_in_block(&node, &api, g.solver, "TaskEscrow", "commit", args).await?;
		let proof = trace_proof(&g.challenger_trace, STEPS).context("proof")?;
		submit_in_block(
			&node,
			&api,
			g.challenger,
			"Challenge",
			"open",
			(g.task, trace_root(&g.challenger_trace), proof),
		)
		.await?;
	}

	// Play both disputes round by round, all four parties revealing at once.
	for round in 0.. {
		ensure!(round < 6, "the disputes did not end");
		let open: Vec<Value> = node.rpc("trainet_openDisputes", vec![]).await?;
		if open.is_empty() {
			break;
		}
		let mut reveals = Vec::new();
		for d in &open {
			let id = d["id"].as_u64().context("id")?;
			let task = d["task"].as_u64().context("task")?;
			let position = d["phase"]["bisecting"]["position"]
				.as_u64()
				.context(format!("not bisecting: {d}"))? as u32;
			let g = games.iter().find(|g| g.task == task).context("game")?;
			for (who, states) in [(g.solver, &g.solver_trace), (g.challenger, &g.challenger_trace)]
			{
				let proof = trace_proof(states, position - 1).context("proof")?;
				reveals.push(submit_in_block(
					&node,
					&api,
					who,
					"Challenge",
					"reveal",
					(id, position, proof),
				));
			}
		}
		futures::future::try_join_all(reveals).await?;
	}

	// The lying solver lost: slashed, its task open again for someone else.
	let task0: Value = node.rpc("trainet_task", vec![json!(0)]).await?;
	ensure!(task0["state"]["status"] == "open", "task 0: {task0}");
	ensure!(task0["lastFailedSolver"] == ss58(&liar_solver), "task 0: {task0}");
	// The honest solver kept its task (committed, paid when the window closes).
	let task1: Value = node.rpc("trainet_task", vec![json!(1)]).await?;
	ensure!(task1["state"]["status"] == "committed", "task 1: {task1}");

	// subxt reads storage at the finalized block: wait until the outcome is final.
	settle(&node, &api).await?;

	let l = ledger(&api, &liar_solver).await?;
	ensure!(l.active == 100 * UNIT && l.locked == 0, "liar solver: {l:?}");
	let l = ledger(&api, &liar_verifier).await?;
	ensure!(l.active == 50 * UNIT && l.locked == 0, "liar verifier: {l:?}");
	let l = ledger(&api, &honest_verifier).await?;
	ensure!(l.active == 100 * UNIT && l.locked == 0, "honest verifier: {l:?}");
	let l = ledger(&api, &honest_solver).await?;
	ensure!(
		l.active == 200 * UNIT && l.locked == 100 * UNIT,
		"honest solver (still backing task 1): {l:?}"
	);
	Ok(())
}
