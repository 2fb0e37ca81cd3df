//! A dispute over a real training step, decided by the runtime on a dev chain: a solver trains
//! a three-layer MLP with Adam but alters one operation's output in step 2 (and carries on
//! consistently from it). An honest verifier challenges; step bisection finds step 2, both
//! sides commit their op traces of it, operator bisection finds the altered operation, and the
//! verifier hands the chain that operation's inputs. The wasm runtime checks them against the
//! agreed trace, re-executes the operation with RepOps, and rules for the verifier: the solver
//! is slashed and its task reopened.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use sp_core::H256;
use subxt::{OnlineClient, PolkadotConfig};
use subxt_signer::sr25519::dev;
use trainet_e2e::{ledger, ss58, submit_in_block, Node, NodeConfig};
use trainet_primitives::{
	market::{Timeouts, TraceCommitment},
	program::OpKind,
	referee::{Fault, OpEvidence, TraceRun},
	task::{synthetic_dataset, F32Bits, Optimizer, TrainingSpec},
	trace::{trace_proof, trace_root},
	UNIT,
};

const STEPS: u32 = 4;
const FAULT: Fault = Fault { step: 2, op: 15 };

#[tokio::test]
async fn the_runtime_re_executes_the_one_altered_operation_of_a_training_step() -> Result<()> {
	let data = synthetic_dataset(7, 40, 6, 3);
	let adam = Optimizer::Adam {
		learning_rate: F32Bits::from_f32(0.01),
		beta1: F32Bits::from_f32(0.9),
		beta2: F32Bits::from_f32(0.999),
		epsilon: F32Bits::from_f32(1e-7),
	};
	let mut spec = TrainingSpec::example_mlp(&[6, 5, 4, 3], adam, 8).on_dataset(&data);
	spec.steps = STEPS;
	let honest = TraceRun::new(&spec, &data, None).map_err(|e| anyhow::anyhow!("{e:?}"))?;
	let liar = TraceRun::new(&spec, &data, Some(FAULT)).map_err(|e| anyhow::anyhow!("{e:?}"))?;
	let program = &honest.steps[0].program;
	// In the middle of the step: layer 2's weight gradient.
	ensure!(program.ops[FAULT.op as usize].kind == OpKind::MatMulTn);

	let dir = tempfile::tempdir()?;
	let node = Node::start(NodeConfig::dev(dir.path())).await?;
	node.wait_for_finalized(1, Duration::from_secs(90)).await?;
	let api = OnlineClient::<PolkadotConfig>::from_url(node.ws_url()).await?;
	let (submitter, solver, verifier) = (dev::alice(), dev::dave(), dev::eve());
	let timeouts = Timeouts::<u32> { claim: 300, commit: 300, challenge: 300 };
	tokio::try_join!(
		submit_in_block(
			&node,
			&api,
			&solver,
			"ComputeStaking",
			"register",
			((true, false), 200 * UNIT)
		),
		submit_in_block(
			&node,
			&api,
			&verifier,
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
	submit_in_block(&node, &api, &solver, "TaskEscrow", "claim", (0u64,)).await?;
	let commitment = TraceCommitment {
		trace_root: trace_root(&liar.states),
		steps: STEPS,
		final_state: liar.states[STEPS as usize],
		model_hash: H256::zero(),
	};
	let proof = trace_proof(&liar.states, STEPS).context("proof")?;
	submit_in_block(&node, &api, &solver, "TaskEscrow", "commit", (0u64, commitment, proof))
		.await?;
	let proof = trace_proof(&honest.states, STEPS).context("proof")?;
	submit_in_block(
		&node,
		&api,
		&verifier,
		"Challenge",
		"open",
		(0u64, trace_root(&honest.states), proof),
	)
	.await?;

	// Both sides play from their own runs; the honest verifier settles.
	let sides = [(&solver, &liar), (&verifier, &honest)];
	let mut settled_op = None;
	for round in 0.. {
		ensure!(round < 20, "the dispute did not end");
		let open: Vec<Value> = node.rpc("trainet_openDisputes", vec![]).await?;
		let Some(d) = open.first() else { break };
		let id = d["id"].as_u64().context("id")?;
		let phase = &d["phase"];
		if let Some(position) = phase["bisecting"]["position"].as_u64() {
			let position = position as u32;
			futures::future::try_join_all(sides.iter().map(|(who, run)| {
				let proof = trace_proof(&run.states, position - 1).expect("in range");
				submit_in_block(&node, &api, who, "Challenge", "reveal", (id, position, proof))
			}))
			.await?;
			continue;
		}
		let game = &phase["operations"];
		let step = game["step"].as_u64().context(format!("unexpected phase: {d}"))? as usize;
		ensure!(step == FAULT.step as usize, "bisection found step {step}: {d}");
		let stage = &game["stage"];
		if stage == "committing" {
			futures::future::try_join_all(sides.iter().map(|(who, run)| {
				let root = run.steps[step].op_trace().root;
				submit_in_block(&node, &api, who, "Challenge", "commit_ops", (id, root))
			}))
			.await?;
		} else if let Some(position) = stage["revealing"]["position"].as_u64() {
			let position = position as u32;
			futures::future::try_join_all(sides.iter().map(|(who, run)| {
				let proof = run.steps[step].op_trace().proof(position - 1).expect("in range");
				submit_in_block(&node, &api, who, "Challenge", "reveal_op", (id, position, proof))
			}))
			.await?;
		} else if let Some(j) = stage["operation"].as_u64() {
			let evidence = honest.steps[step].evidence(j as u32).context("evidence")?;
			submit_in_block(&node, &api, &verifier, "Challenge", "settle_op", (id, evidence))
				.await?;
			settled_op = Some(j as u32);
		} else if stage == "assembly" {
			let evidence =
				OpEvidence { outputs: honest.steps[step].output_hashes(), ..Default::default() };
			submit_in_block(&node, &api, &verifier, "Challenge", "settle_op", (id, evidence))
				.await?;
		} else {
			bail!("unexpected stage: {d}");
		}
	}
	ensure!(settled_op == Some(FAULT.op), "settled {settled_op:?}, altered {}", FAULT.op);

	// The solver lost: its task is open again and it may not claim it back.
	let task: Value = node.rpc("trainet_task", vec![json!(0)]).await?;
	ensure!(task["state"]["status"] == "open", "task: {task}");
	ensure!(task["lastFailedSolver"] == ss58(&solver), "task: {task}");

	// Its stake was slashed; the verifier's bond is free again.
	let best = node.best_number().await?;
	node.wait_for_finalized(best, Duration::from_secs(90)).await?;
	let l = ledger(&api, &solver).await?;
	ensure!(l.active == 100 * UNIT && l.locked == 0, "solver: {l:?}");
	let l = ledger(&api, &verifier).await?;
	ensure!(l.active == 100 * UNIT && l.locked == 0, "verifier: {l:?}");
	Ok(())
}
