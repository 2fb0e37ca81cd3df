//! Disputes over real training steps, decided by the runtime on a dev chain. A solver trains
//! an MLP but alters one operation's output in one step (and carries on consistently from
//! it). An honest verifier challenges; step bisection finds the step, both sides commit their
//! op traces of it, and operator bisection finds the altered operation. Then:
//!
//! - a small model: the chain gets that operation's inputs, and the wasm runtime re-executes it
//!   with RepOps;
//! - a model whose operation is too large for one leaf (a `256 x 512` by `512 x 512` matmul):
//!   the element descent narrows it to one value, whose inputs' row and column the chain gets.
//!
//! Both sides play with the worker's own dispute logic (`trainet_worker::dispute::Fighter`),
//! each from its own run.
//!
//! Either way the runtime rules for the verifier: the solver is slashed and its task reopened.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use sp_core::H256;
use subxt::{OnlineClient, PolkadotConfig};
use subxt_signer::sr25519::dev;
use trainet_e2e::{
	adam, commit_args, final_tensors, ledger, made_up_final, settle, ss58, submit_in_block, Node,
	NodeConfig,
};
use trainet_primitives::{
	market::{Party, Timeouts},
	program::OpKind,
	referee::{Fault, TraceRun},
	task::{synthetic_dataset, TrainingSpec},
	trace::{trace_proof, trace_root},
	UNIT,
};
use trainet_worker::{chain::Chain, dataset::Dataset, dispute::Fighter};

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

/// What the dispute was settled on.
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
	let args = commit_args(0, spec, &liar.states, final_tensors(&liar))?;
	submit_in_block(&node, &api, &solver, "TaskEscrow", "commit", args).await?;
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

	// Both sides play with the worker's dispute logic, each from its own run of the task.
	let chain = Chain::connect(&node.ws_url(), Duration::from_secs(30)).await?;
	let dataset = Dataset {
		features: spec.dataset.features,
		classes: spec.dataset.classes,
		samples: data.to_vec(),
		manifest: Default::default(),
	};
	let mut solver_side =
		Fighter::new(Party::Solver, spec.clone(), dataset.clone(), liar.states, Some(fault));
	let mut verifier_side =
		Fighter::new(Party::Challenger, spec.clone(), dataset, honest.states, None);
	let mut settled = Settled::None;
	for round in 0.. {
		ensure!(round < 60, "the dispute did not end");
		let open: Vec<Value> = node.rpc("trainet_openDisputes", vec![]).await?;
		let Some(d) = open.first() else { break };
		let id = d["id"].as_u64().context("id")?;
		let game = &d["phase"]["operations"];
		if let Some(step) = game["step"].as_u64() {
			ensure!(step == u64::from(fault.step), "bisection found step {step}: {d}");
		}
		let stage = &game["stage"];
		if let Some(j) = stage["operation"].as_u64() {
			settled = Settled::Operation(j as u32);
		}
		if let Some(e) = stage.get("element") {
			let n = |k: &str| e[k].as_u64().map(|v| v as u32).context("element");
			settled = Settled::Element(n("operation")?, n("row")?, n("col")?);
		}
		let (a, b) = tokio::join!(
			solver_side.tick(&chain, &solver, id),
			verifier_side.tick(&chain, &verifier, id)
		);
		a?;
		b?;
	}

	// The solver lost: its task is open again and it may not claim it back.
	let task: Value = node.rpc("trainet_task", vec![json!(0)]).await?;
	ensure!(task["state"]["status"] == "open", "task: {task}");
	ensure!(task["lastFailedSolver"] == ss58(&solver), "task: {task}");

	// Its stake was slashed; the verifier's bond is free again.
	settle(&node, &api).await?;
	let l = ledger(&api, &solver).await?;
	ensure!(l.active == 100 * UNIT && l.locked == 0, "solver: {l:?}");
	let l = ledger(&api, &verifier).await?;
	ensure!(l.active == 100 * UNIT && l.locked == 0, "verifier: {l:?}");
	Ok(settled)
}

/// A side of one of the disputes of [`the_runtime_settles_large_models_value_by_value`].
struct Case {
	task: u64,
	solver: subxt_signer::sr25519::Keypair,
	verifier: subxt_signer::sr25519::Keypair,
	liar: Fighter,
	honest: Fighter,
	/// The stages the dispute went through, as the RPC names them.
	stages: Vec<String>,
}

/// The two leaves that let the chain settle models beyond what it recomputes in one block,
/// played at once on one dev chain, each side with the worker's dispute logic:
///
/// - a solver that commits an initial state with one value altered, on a model whose state
///   (3.2 M values) the chain does not recompute whole: both reveal their state's tensor
///   hashes, descend inside the first weight matrix to one line, and the runtime computes the
///   one initial value the lines differ on from the seed;
/// - a solver that alters the first layer's weight gradient on a batch of 1 024 samples of 784
///   features: one of its elements reads 0.8 M values, beyond one leaf, so after the element
///   descent both reveal their partial sums of it and the runtime computes one term from one
///   sample and one row.
#[tokio::test]
async fn the_runtime_settles_large_models_value_by_value() -> Result<()> {
	use trainet_primitives::{
		commit::state_hash,
		program::{initial_state, step_program},
	};
	let init_data = synthetic_dataset(3, 40, 1024, 10);
	let mut init_spec =
		TrainingSpec::example_mlp(&[1024, 1024, 10], adam(), 8).on_dataset(&init_data);
	init_spec.steps = 2;
	let program = step_program(&init_spec).map_err(|e| anyhow::anyhow!("{e:?}"))?;
	ensure!(program.state_values() > 3_000_000);
	let mut lie = initial_state(&init_spec, &program).map_err(|e| anyhow::anyhow!("{e:?}"))?;
	lie[0].data[5000] += 0.5;
	let honest_init =
		TraceRun::new(&init_spec, &init_data, None).map_err(|e| anyhow::anyhow!("{e:?}"))?;
	let mut liar_init = honest_init.states.clone();
	liar_init[0] = state_hash(&lie);
	for (t, s) in liar_init.iter_mut().enumerate().skip(1) {
		*s = H256::from_low_u64_be(0xbad0 + t as u64);
	}
	// It ends at a made-up final state (the dispute is over `h_0`).
	let (liar_init_final, last) = made_up_final(&init_spec, 1);
	*liar_init.last_mut().context("a trace")? = last;

	let term_data = synthetic_dataset(5, 1100, 784, 10);
	let mut term_spec =
		TrainingSpec::example_mlp(&[784, 16, 10], adam(), 1024).on_dataset(&term_data);
	term_spec.steps = 2;
	let program = step_program(&term_spec).map_err(|e| anyhow::anyhow!("{e:?}"))?;
	let op = program.batch_column_product().context("the first layer's weight gradient")?;
	let fault = Fault { step: 1, op };
	let honest_term =
		TraceRun::new(&term_spec, &term_data, None).map_err(|e| anyhow::anyhow!("{e:?}"))?;
	let liar_term =
		TraceRun::new(&term_spec, &term_data, Some(fault)).map_err(|e| anyhow::anyhow!("{e:?}"))?;

	let dir = tempfile::tempdir()?;
	let node = Node::start(NodeConfig::dev(dir.path())).await?;
	node.wait_for_finalized(1, Duration::from_secs(90)).await?;
	let api = OnlineClient::<PolkadotConfig>::from_url(node.ws_url()).await?;
	let chain = Chain::connect(&node.ws_url(), Duration::from_secs(30)).await?;
	let submitter = dev::alice();
	let timeouts = Timeouts::<u32> { claim: 300, commit: 300, challenge: 300 };
	let dataset = |spec: &TrainingSpec, data: &[(Vec<f32>, u32)]| Dataset {
		features: spec.dataset.features,
		classes: spec.dataset.classes,
		samples: data.to_vec(),
		manifest: Default::default(),
	};
	let mut cases = vec![
		Case {
			task: 0,
			solver: dev::dave(),
			verifier: dev::eve(),
			liar: Fighter::new(
				Party::Solver,
				init_spec.clone(),
				dataset(&init_spec, &init_data),
				liar_init.clone(),
				None,
			)
			.with_initial_state(lie),
			honest: Fighter::new(
				Party::Challenger,
				init_spec.clone(),
				dataset(&init_spec, &init_data),
				honest_init.states.clone(),
				None,
			),
			stages: Vec::new(),
		},
		Case {
			task: 1,
			solver: dev::charlie(),
			verifier: dev::ferdie(),
			liar: Fighter::new(
				Party::Solver,
				term_spec.clone(),
				dataset(&term_spec, &term_data),
				liar_term.states.clone(),
				Some(fault),
			),
			honest: Fighter::new(
				Party::Challenger,
				term_spec.clone(),
				dataset(&term_spec, &term_data),
				honest_term.states.clone(),
				None,
			),
			stages: Vec::new(),
		},
	];
	let traces = [
		(&init_spec, &liar_init, &liar_init_final, &honest_init.states),
		(&term_spec, &liar_term.states, &final_tensors(&liar_term), &honest_term.states),
	];
	for (case, (spec, liar, liar_final, honest)) in cases.iter().zip(traces) {
		tokio::try_join!(
			submit_in_block(
				&node,
				&api,
				&case.solver,
				"ComputeStaking",
				"register",
				((true, false), 200 * UNIT)
			),
			submit_in_block(
				&node,
				&api,
				&case.verifier,
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
		submit_in_block(&node, &api, &case.solver, "TaskEscrow", "claim", (case.task,)).await?;
		let steps = spec.steps;
		let args = commit_args(case.task, spec, liar, liar_final.clone())?;
		submit_in_block(&node, &api, &case.solver, "TaskEscrow", "commit", args).await?;
		let proof = trace_proof(honest, steps).context("proof")?;
		submit_in_block(
			&node,
			&api,
			&case.verifier,
			"Challenge",
			"open",
			(case.task, trace_root(honest), proof),
		)
		.await?;
	}

	for round in 0.. {
		ensure!(round < 80, "the disputes did not end");
		let open: Vec<Value> = node.rpc("trainet_openDisputes", vec![]).await?;
		if open.is_empty() {
			break;
		}
		let mut moves = Vec::new();
		for case in cases.iter_mut() {
			let Some(d) = open.iter().find(|d| d["task"].as_u64() == Some(case.task)) else {
				continue;
			};
			let id = d["id"].as_u64().context("id")?;
			let phase = &d["phase"];
			let stage = [&phase["initialization"]["stage"], &phase["operations"]["stage"]]
				.into_iter()
				.find(|s| !s.is_null())
				.map(|s| match s.as_object() {
					Some(o) => o.keys().next().cloned().unwrap_or_default(),
					None => s.as_str().unwrap_or_default().to_string(),
				});
			if let Some(stage) = stage {
				if case.stages.last() != Some(&stage) {
					case.stages.push(stage);
				}
			}
			let Case { solver, verifier, liar, honest, .. } = case;
			let chain = &chain;
			moves.push(async move {
				let (a, b) =
					tokio::join!(liar.tick(chain, solver, id), honest.tick(chain, verifier, id));
				a.and(b)
			});
		}
		futures::future::try_join_all(moves).await?;
	}

	// The initialization game went to one line of the first weight matrix; the term game
	// through the element descent to the partial sums and one term.
	let [init, term] = &cases[..] else { unreachable!() };
	ensure!(
		init.stages.starts_with(&["revealing".into(), "opening".into()])
			&& init.stages.contains(&"line".into()),
		"initialization stages: {:?}",
		init.stages
	);
	for stage in ["opening", "line", "partials", "term"] {
		ensure!(term.stages.contains(&stage.into()), "term stages: {:?}", term.stages);
	}
	for case in &cases {
		let task: Value = node.rpc("trainet_task", vec![json!(case.task)]).await?;
		ensure!(task["state"]["status"] == "open", "task {}: {task}", case.task);
		ensure!(task["lastFailedSolver"] == ss58(&case.solver), "task {}: {task}", case.task);
	}
	settle(&node, &api).await?;
	for case in &cases {
		let l = ledger(&api, &case.solver).await?;
		ensure!(l.active < 200 * UNIT && l.locked == 0, "solver of task {}: {l:?}", case.task);
		let l = ledger(&api, &case.verifier).await?;
		ensure!(l.active == 100 * UNIT && l.locked == 0, "verifier of task {}: {l:?}", case.task);
	}
	Ok(())
}
