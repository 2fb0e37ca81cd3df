//! Disputes over real training steps, decided by the runtime on a dev chain. A solver trains
//! an MLP but alters one operation's output in one step (and carries on consistently from
//! it). An honest verifier challenges; step bisection finds the step, both sides commit their
//! op traces of it, and operator bisection finds the altered operation. Then:
//!
//! - a small model: the verifier hands the chain that operation's inputs, and the wasm runtime
//!   re-executes it with RepOps;
//! - a model whose operation is too large for one leaf (a `256 x 512` by `512 x 512` matmul):
//!   the element descent narrows it to one value, whose inputs' row and column the verifier
//!   hands the chain.
//!
//! Either way the runtime rules for the verifier: the solver is slashed and its task reopened.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use sp_core::H256;
use subxt::{OnlineClient, PolkadotConfig};
use subxt_signer::sr25519::dev;
use trainet_e2e::{ledger, ss58, submit_in_block, Node, NodeConfig};
use trainet_primitives::{
	descent::{element_evidence, line, Axis, DescentAnswer, LineTree, TensorOpening},
	market::{Timeouts, TraceCommitment},
	program::OpKind,
	referee::{Fault, OpEvidence, TraceRun},
	task::{synthetic_dataset, F32Bits, Optimizer, TrainingSpec},
	trace::{trace_proof, trace_root},
	UNIT,
};

fn adam() -> Optimizer {
	Optimizer::Adam {
		learning_rate: F32Bits::from_f32(0.01),
		beta1: F32Bits::from_f32(0.9),
		beta2: F32Bits::from_f32(0.999),
		epsilon: F32Bits::from_f32(1e-7),
	}
}

#[tokio::test]
async fn the_runtime_re_executes_the_one_altered_operation_of_a_training_step() -> Result<()> {
	let data = synthetic_dataset(7, 40, 6, 3);
	let mut spec = TrainingSpec::example_mlp(&[6, 5, 4, 3], adam(), 8).on_dataset(&data);
	spec.steps = 4;
	// In the middle of step 2: layer 2's weight gradient.
	let fault = Fault { step: 2, op: 15 };
	let settled = play(&spec, &data, fault, OpKind::MatMulTn).await?;
	ensure!(settled == Settled::Operation(fault.op), "settled {settled:?}");
	Ok(())
}

#[tokio::test]
async fn the_runtime_settles_one_value_of_an_operation_too_large_for_a_block() -> Result<()> {
	let data = synthetic_dataset(5, 300, 512, 2);
	let mut spec = TrainingSpec::example_mlp(&[512, 512, 2], adam(), 256).on_dataset(&data);
	spec.steps = 2;
	// Step 1's first matmul: 2^26 multiply-adds, four times what one leaf executes.
	let fault = Fault { step: 1, op: 0 };
	let settled = play(&spec, &data, fault, OpKind::MatMul).await?;
	// The fault shifts every value: the first row and column differ first.
	ensure!(settled == Settled::Element(fault.op, 0, 0), "settled {settled:?}");
	Ok(())
}

/// What the verifier settled.
#[derive(Debug, PartialEq)]
enum Settled {
	None,
	Operation(u32),
	Element(u32, u32, u32),
}

/// Plays the dispute between a solver with `fault` in its run and an honest verifier on a
/// fresh dev chain, to the end; checks the solver lost. Returns what the verifier settled.
async fn play(
	spec: &TrainingSpec,
	data: &[(Vec<f32>, u32)],
	fault: Fault,
	kind: OpKind,
) -> Result<Settled> {
	let honest = TraceRun::new(spec, data, None).map_err(|e| anyhow::anyhow!("{e:?}"))?;
	let liar = TraceRun::new(spec, data, Some(fault)).map_err(|e| anyhow::anyhow!("{e:?}"))?;
	ensure!(honest.steps[0].program.ops[fault.op as usize].kind == kind);
	let steps = spec.steps;

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
			(spec, 10 * UNIT, timeouts)
		),
	)?;
	submit_in_block(&node, &api, &solver, "TaskEscrow", "claim", (0u64,)).await?;
	let commitment = TraceCommitment {
		trace_root: trace_root(&liar.states),
		steps,
		final_state: liar.states[steps as usize],
		model_hash: H256::zero(),
	};
	let proof = trace_proof(&liar.states, steps).context("proof")?;
	submit_in_block(&node, &api, &solver, "TaskEscrow", "commit", (0u64, commitment, proof))
		.await?;
	let proof = trace_proof(&honest.states, steps).context("proof")?;
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
	let mut settled = Settled::None;
	for round in 0.. {
		ensure!(round < 40, "the dispute did not end");
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
		ensure!(step == fault.step as usize, "bisection found step {step}: {d}");
		let stage = &game["stage"];
		let output = |run: &TraceRun, j: &Value| -> Result<_> {
			Ok(run.steps[step].outputs[j.as_u64().context("operation")? as usize].clone())
		};
		let answers: Vec<DescentAnswer> = if stage == "committing" {
			futures::future::try_join_all(sides.iter().map(|(who, run)| {
				let root = run.steps[step].op_trace().root;
				submit_in_block(&node, &api, who, "Challenge", "commit_ops", (id, root))
			}))
			.await?;
			continue;
		} else if let Some(position) = stage["revealing"]["position"].as_u64() {
			let position = position as u32;
			futures::future::try_join_all(sides.iter().map(|(who, run)| {
				let proof = run.steps[step].op_trace().proof(position - 1).expect("in range");
				submit_in_block(&node, &api, who, "Challenge", "reveal_op", (id, position, proof))
			}))
			.await?;
			continue;
		} else if let Some(j) = stage["operation"].as_u64() {
			let evidence = honest.steps[step].evidence(j as u32).context("evidence")?;
			submit_in_block(&node, &api, &verifier, "Challenge", "settle_op", (id, evidence))
				.await?;
			settled = Settled::Operation(j as u32);
			continue;
		} else if stage == "assembly" {
			let evidence =
				OpEvidence { outputs: honest.steps[step].output_hashes(), ..Default::default() };
			submit_in_block(&node, &api, &verifier, "Challenge", "settle_op", (id, evidence))
				.await?;
			continue;
		} else if let Some(o) = stage.get("opening") {
			sides
				.iter()
				.map(|(_, run)| {
					Ok(DescentAnswer::Opening(TensorOpening::of(&output(run, &o["operation"])?)))
				})
				.collect::<Result<_>>()?
		} else if let Some(o) = stage.get("descending") {
			let axis = if game["descentAxis"] == "columns" { Axis::Columns } else { Axis::Rows };
			let cursor = trainet_primitives::descent::Cursor {
				level: o["level"].as_u64().context("level")? as u32,
				index: o["index"].as_u64().context("index")? as u32,
			};
			sides
				.iter()
				.map(|(_, run)| {
					let (l, r) = LineTree::new(&output(run, &o["operation"])?, axis)
						.children(cursor)
						.context("children")?;
					Ok(DescentAnswer::Children(l, r))
				})
				.collect::<Result<_>>()?
		} else if let Some(o) = stage.get("line") {
			let axis = if o["axis"] == "columns" { Axis::Columns } else { Axis::Rows };
			let index = o["index"].as_u64().context("index")? as u32;
			sides
				.iter()
				.map(|(_, run)| {
					let values = line(&output(run, &o["operation"])?, axis, index);
					Ok(DescentAnswer::Line(
						values.try_into().map_err(|_| anyhow::anyhow!("long line"))?,
					))
				})
				.collect::<Result<_>>()?
		} else if let Some(o) = stage.get("element") {
			let (j, row, col) = (
				o["operation"].as_u64().context("operation")? as u32,
				o["row"].as_u64().context("row")? as u32,
				o["col"].as_u64().context("col")? as u32,
			);
			let evidence =
				element_evidence(&honest.steps[step], spec, j, (row, col)).context("evidence")?;
			submit_in_block(&node, &api, &verifier, "Challenge", "settle_element", (id, evidence))
				.await?;
			settled = Settled::Element(j, row, col);
			continue;
		} else {
			bail!("unexpected stage: {d}");
		};
		futures::future::try_join_all(sides.iter().zip(answers).map(|((who, _), answer)| {
			submit_in_block(&node, &api, who, "Challenge", "descend", (id, answer))
		}))
		.await?;
	}

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
	Ok(settled)
}
