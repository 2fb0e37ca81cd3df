//! The market on a real dev chain, as the worker and a dapp use it: stakers register, a task
//! is posted, claimed and committed, a verifier disputes it and both sides play a bisection
//! round; `trainet_task` and `trainet_openDisputes` show each state as JSON.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use sp_core::H256;
use subxt::{OnlineClient, PolkadotConfig};
use subxt_signer::sr25519::dev;
use trainet_e2e::{commit_args, made_up_final, ss58, submit_in_block, Node, NodeConfig};
use trainet_primitives::{
	bisection::Bisection,
	market::Timeouts,
	task::TrainingSpec,
	trace::{trace_proof, trace_root},
	UNIT,
};

const STEPS: u32 = 16;

#[tokio::test]
async fn a_task_is_posted_claimed_committed_and_disputed_on_a_dev_chain() -> Result<()> {
	let dir = tempfile::tempdir()?;
	let node = Node::start(NodeConfig::dev(dir.path())).await?;
	node.wait_for_finalized(1, Duration::from_secs(90)).await?;
	let api = OnlineClient::<PolkadotConfig>::from_url(node.ws_url()).await?;
	let (submitter, solver, verifier) = (dev::ferdie(), dev::dave(), dev::eve());

	// Nothing yet.
	ensure!(node.rpc::<Value>("trainet_task", vec![json!(0)]).await? == Value::Null);
	ensure!(node.rpc::<Vec<Value>>("trainet_openDisputes", vec![]).await?.is_empty());

	// Stakers register and the task is posted, in the same block or close.
	let spec = {
		let mut s = TrainingSpec::example_digits(H256::repeat_byte(7));
		s.steps = STEPS;
		s
	};
	let timeouts = Timeouts::<u32> { claim: 200, commit: 200, challenge: 200 };
	let reward = 10 * UNIT;
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
		submit_in_block(&node, &api, &submitter, "TaskEscrow", "submit", (&spec, reward, timeouts)),
	)?;
	let task: Value = node.rpc("trainet_task", vec![json!(0)]).await?;
	ensure!(task["state"]["status"] == "open", "after submit: {task}");
	ensure!(task["submitter"] == ss58(&submitter), "{task}");
	ensure!(task["reward"] == reward.to_string(), "{task}");
	ensure!(
		task["spec"]["steps"] == STEPS
			&& task["spec"]["model"]["mlp"]["widths"] == json!([64, 32, 10]),
		"{task}"
	);

	// The solver claims and commits a trace that goes wrong at entry 11.
	// (Both end at made-up final states the chain accepts: tensor hashes whose parameter
	// part makes the model hash.)
	let (_, honest_final) = made_up_final(&spec, 1);
	let (lying_tensors, lying_final) = made_up_final(&spec, 2);
	let mut honest: Vec<H256> =
		(0..STEPS).map(|t| H256::from_low_u64_be(100 + u64::from(t))).collect();
	honest.push(honest_final);
	let lying: Vec<H256> = honest
		.iter()
		.enumerate()
		.map(|(t, h)| match t {
			t if t == STEPS as usize => lying_final,
			t if t >= 11 => H256::from_low_u64_be(900 + t as u64),
			_ => *h,
		})
		.collect();
	submit_in_block(&node, &api, &solver, "TaskEscrow", "claim", (0u64,)).await?;
	let args = commit_args(0, &spec, &lying, lying_tensors)?;
	let commitment = args.1;
	submit_in_block(&node, &api, &solver, "TaskEscrow", "commit", args).await?;
	let task: Value = node.rpc("trainet_task", vec![json!(0)]).await?;
	ensure!(task["state"]["status"] == "committed", "after commit: {task}");
	ensure!(task["state"]["solver"] == ss58(&solver), "{task}");
	ensure!(task["state"]["traceRoot"] == format!("{:?}", commitment.trace_root), "{task}");

	// The verifier disputes it with the honest trace.
	let open_args = (0u64, trace_root(&honest), trace_proof(&honest, STEPS).context("proof")?);
	submit_in_block(&node, &api, &verifier, "Challenge", "open", open_args.clone()).await?;
	let disputes: Vec<Value> = node.rpc("trainet_openDisputes", vec![]).await?;
	ensure!(disputes.len() == 1, "{disputes:?}");
	let d = &disputes[0];
	let mid = Bisection::new(STEPS).and_then(|b| b.midpoint()).context("midpoint")?;
	ensure!(d["task"] == 0 && d["challenger"] == ss58(&verifier), "{d}");
	ensure!(d["agreed"] == 0 && d["disputed"] == STEPS + 1, "{d}");
	ensure!(d["phase"]["bisecting"]["position"] == mid, "{d}");
	ensure!(node.rpc::<Vec<Value>>("trainet_openDisputes", vec![json!(0)]).await?.len() == 1);
	ensure!(node.rpc::<Vec<Value>>("trainet_openDisputes", vec![json!(5)]).await?.is_empty());
	// Pages: `limit` caps one answer; after the last id of a page comes the next (none here).
	let page = |after: Value, limit: u32| {
		node.rpc::<Vec<Value>>(
			"trainet_openDisputes",
			vec![Value::Null, Value::Null, after, json!(limit)],
		)
	};
	ensure!(page(Value::Null, 0).await?.is_empty());
	ensure!(page(Value::Null, 1).await?.len() == 1);
	ensure!(page(d["id"].clone(), 256).await?.is_empty());

	// A second dispute by the same verifier is refused with a named error.
	let err = submit_in_block(&node, &api, &verifier, "Challenge", "open", open_args)
		.await
		.expect_err("a second dispute by the same verifier");
	ensure!(format!("{err:#}").contains("AlreadyDisputing"), "unexpected error: {err:#}");

	// One bisection round: both reveal the hash at the midpoint (entry mid - 1 = 7, where the
	// traces agree), so the agreed end moves up to it.
	let index = mid - 1;
	tokio::try_join!(
		submit_in_block(
			&node,
			&api,
			&solver,
			"Challenge",
			"reveal",
			(0u64, mid, trace_proof(&lying, index).context("p")?)
		),
		submit_in_block(
			&node,
			&api,
			&verifier,
			"Challenge",
			"reveal",
			(0u64, mid, trace_proof(&honest, index).context("p")?)
		),
	)?;
	let d: Value = node.rpc::<Vec<Value>>("trainet_openDisputes", vec![json!(0)]).await?.remove(0);
	ensure!(d["agreed"] == mid && d["disputed"] == STEPS + 1, "after a round: {d}");
	ensure!(d["agreedState"] == format!("{:?}", honest[index as usize]), "{d}");
	ensure!(d["phase"]["bisecting"]["round"] == 1, "{d}");
	Ok(())
}
