//! The solver: finds an open task it can run (its dataset is in the local store), claims it,
//! trains it bit-exactly, commits the trace root, and waits until the challenge window closes
//! and the reward is paid.
//!
//! While the task is open to challenges it defends it: every dispute against it is fought to
//! the end ([`crate::dispute::Fighter`]). The verifier ([`verify_one`]) recomputes committed
//! tasks and challenges a wrong one.
//!
//! Not yet: checkpoints and resuming after a crash, serving checkpoints over libp2p, sampling
//! transitions instead of recomputing whole tasks.

use std::{collections::HashMap, time::Duration};

use codec::{Decode, Encode};
use serde_json::Value;
use sp_core::{bytes::to_hex, H256};
use subxt_signer::sr25519::Keypair;
use thiserror::Error;
use trainet_primitives::{
	commit::state_hash,
	market::{Party, Task, TaskState, TraceCommitment},
	referee::Fault,
	task::Model,
	trace::{trace_proof, trace_root},
	AccountId, Balance, BlockNumber,
};

use crate::{
	chain::{Chain, ChainError},
	dataset::{DatasetError, DatasetStore},
	dispute::{FightError, Fighter},
	train::{TrainError, Training},
};

/// A task as the runtime stores it.
pub type ChainTask = Task<AccountId, Balance, BlockNumber>;

/// Why solving stopped.
#[derive(Debug, Error)]
pub enum SolveError {
	/// The chain.
	#[error(transparent)]
	Chain(#[from] ChainError),
	/// The dataset store.
	#[error(transparent)]
	Dataset(#[from] DatasetError),
	/// Training.
	#[error(transparent)]
	Train(#[from] TrainError),
	/// The node answered with something that is not what the runtime should give.
	#[error("unexpected answer from the node: {0}")]
	Decode(String),
	/// A dispute.
	#[error(transparent)]
	Fight(#[from] FightError),
	/// The trace is too long to prove (cannot happen for a valid spec).
	#[error("no proof for the final state of a {0}-step trace")]
	NoProof(u32),
}

/// The storage key of `TaskEscrow::NextTaskId`.
fn next_task_id_key() -> String {
	let mut key = sp_crypto_hashing::twox_128(b"TaskEscrow").to_vec();
	key.extend(sp_crypto_hashing::twox_128(b"NextTaskId"));
	to_hex(&key, false)
}

/// The id the next task will get (so every task ever posted is below it).
pub async fn next_task_id(chain: &Chain) -> Result<u64, SolveError> {
	let raw: Option<String> =
		chain.rpc("state_getStorage", vec![Value::from(next_task_id_key())]).await?;
	let Some(raw) = raw else { return Ok(0) };
	let bytes = sp_core::bytes::from_hex(&raw).map_err(|e| SolveError::Decode(e.to_string()))?;
	u64::decode(&mut &bytes[..]).map_err(|e| SolveError::Decode(e.to_string()))
}

/// Task `id` as the runtime stores it (through the `TrainetApi_task` runtime API), or `None`
/// once it has ended.
pub async fn chain_task(chain: &Chain, id: u64) -> Result<Option<ChainTask>, SolveError> {
	let raw: String = chain
		.rpc(
			"state_call",
			vec![Value::from("TrainetApi_task"), Value::from(to_hex(&id.encode(), false))],
		)
		.await?;
	let bytes = sp_core::bytes::from_hex(&raw).map_err(|e| SolveError::Decode(e.to_string()))?;
	Option::<ChainTask>::decode(&mut &bytes[..]).map_err(|e| SolveError::Decode(e.to_string()))
}

/// The first open task whose dataset is in `store`.
pub async fn find_task(
	chain: &Chain,
	store: &DatasetStore,
) -> Result<Option<(u64, ChainTask)>, SolveError> {
	for id in 0..next_task_id(chain).await? {
		let Some(task) = chain_task(chain, id).await? else { continue };
		if !matches!(task.state, TaskState::Open { .. }) {
			continue;
		}
		match store.get(&task.spec.dataset.root) {
			Ok(_) => return Ok(Some((id, task))),
			Err(DatasetError::NotFound { .. }) => {
				tracing::debug!(task = id, "skipping: its dataset is not in the store");
			}
			Err(e) => return Err(e.into()),
		}
	}
	Ok(None)
}

/// What a solved task left behind.
#[derive(Clone, Debug)]
pub struct Solved {
	/// The task.
	pub task: u64,
	/// `h_N`.
	pub final_state: H256,
	/// The trace root committed.
	pub trace_root: H256,
	/// The whole trace `h_0 ..= h_N`.
	pub states: Vec<H256>,
}

/// How a task's life ended for its solver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
	/// Paid (the task is gone from the chain after its window).
	Ended,
	/// Lost a dispute: the task was reopened for others (or refunded).
	Lost,
}

/// Claims open task `id`, trains it (calling `progress` after every step) and commits its
/// trace. Returns once the commitment is in a block.
pub async fn solve(
	chain: &Chain,
	signer: &Keypair,
	store: &DatasetStore,
	id: u64,
	task: &ChainTask,
	fault: Option<Fault>,
	mut progress: impl FnMut(u32, f32),
) -> Result<Solved, SolveError> {
	let data = store.get(&task.spec.dataset.root)?;
	chain.submit(signer, "TaskEscrow", "claim", (id,)).await?;
	tracing::info!(task = id, steps = task.spec.steps, "claimed; training");
	let mut run = Training::new(task.spec.clone(), data)?.with_fault(fault);
	let mut states = vec![run.state_hash()];
	while run.steps_done() < task.spec.steps {
		let r = run.step()?;
		states.push(r.state_hash);
		progress(r.step, r.loss);
	}
	let Model::Mlp { widths, .. } = &task.spec.model;
	let params = widths.len().saturating_sub(1) * 2;
	let steps = task.spec.steps;
	let final_state = *states.last().unwrap_or(&H256::zero());
	let commitment = TraceCommitment {
		trace_root: trace_root(&states),
		steps,
		final_state,
		model_hash: state_hash(run.state().get(..params).unwrap_or_default()),
	};
	let proof = trace_proof(&states, steps).ok_or(SolveError::NoProof(steps))?;
	chain.submit(signer, "TaskEscrow", "commit", (id, commitment, proof)).await?;
	tracing::info!(task = id, final_state = ?final_state, "committed");
	Ok(Solved { task: id, final_state, trace_root: commitment.trace_root, states })
}

/// Defends committed task `id` (whose trace is `solved.states`, from a run with `fault`):
/// fights every dispute against it until the task ends.
pub async fn defend(
	chain: &Chain,
	signer: &Keypair,
	store: &DatasetStore,
	task: &ChainTask,
	solved: &Solved,
	fault: Option<Fault>,
) -> Result<Outcome, SolveError> {
	let data = store.get(&task.spec.dataset.root)?;
	let mut fighters = HashMap::new();
	loop {
		match chain_task(chain, solved.task).await? {
			None => return Ok(Outcome::Ended),
			Some(t) if !matches!(t.state, TaskState::Committed { .. }) => return Ok(Outcome::Lost),
			Some(_) => {}
		}
		let open: Vec<Value> =
			chain.rpc("trainet_openDisputes", vec![Value::from(solved.task)]).await?;
		for d in open {
			let Some(id) = d["id"].as_u64() else { continue };
			tracing::debug!(dispute = id, task = solved.task, "defending");
			let fighter = fighters.entry(id).or_insert_with(|| {
				Fighter::new(
					Party::Solver,
					task.spec.clone(),
					data.clone(),
					solved.states.clone(),
					fault,
				)
			});
			fighter.tick(chain, signer, id).await?;
		}
		tokio::time::sleep(Duration::from_secs(2)).await;
	}
}

/// What the verifier found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
	/// The committed final state is the one recomputed.
	Honest(u64),
	/// It was not: this worker challenged, and the solver lost the dispute.
	CaughtCheating(u64),
	/// It was not, but the dispute ended without the solver losing.
	ChallengeFailed(u64),
}

/// Recomputes the first committed task (whose dataset is in `store`) not in `skip`, and
/// challenges it if its final state is wrong, fighting the dispute to its end.
pub async fn verify_one(
	chain: &Chain,
	signer: &Keypair,
	store: &DatasetStore,
	skip: &[u64],
) -> Result<Option<Verdict>, SolveError> {
	for id in 0..next_task_id(chain).await? {
		if skip.contains(&id) {
			continue;
		}
		let Some(task) = chain_task(chain, id).await? else { continue };
		let TaskState::Committed { commitment, .. } = &task.state else { continue };
		let data = match store.get(&task.spec.dataset.root) {
			Ok(d) => d,
			Err(DatasetError::NotFound { .. }) => continue,
			Err(e) => return Err(e.into()),
		};
		tracing::info!(task = id, steps = task.spec.steps, "recomputing");
		let mut run = Training::new(task.spec.clone(), data.clone())?;
		let mut states = vec![run.state_hash()];
		while run.steps_done() < task.spec.steps {
			states.push(run.step()?.state_hash);
		}
		let steps = task.spec.steps;
		if states.last() == Some(&commitment.final_state) {
			return Ok(Some(Verdict::Honest(id)));
		}
		tracing::warn!(task = id, "the committed final state is wrong: challenging");
		let proof = trace_proof(&states, steps).ok_or(SolveError::NoProof(steps))?;
		chain.submit(signer, "Challenge", "open", (id, trace_root(&states), proof)).await?;
		let me = crate::chain::address(signer);
		let open: Vec<Value> = chain.rpc("trainet_openDisputes", vec![Value::from(id)]).await?;
		let dispute = open
			.iter()
			.find(|d| d["challenger"] == me.as_str())
			.and_then(|d| d["id"].as_u64())
			.ok_or_else(|| SolveError::Decode("the dispute just opened is not listed".into()))?;
		let mut fighter = Fighter::new(Party::Challenger, task.spec.clone(), data, states, None);
		while fighter.tick(chain, signer, dispute).await? {
			tokio::time::sleep(Duration::from_secs(2)).await;
		}
		let lost = match chain_task(chain, id).await? {
			Some(t) => !matches!(t.state, TaskState::Committed { .. }),
			None => false,
		};
		return Ok(Some(if lost {
			Verdict::CaughtCheating(id)
		} else {
			Verdict::ChallengeFailed(id)
		}));
	}
	Ok(None)
}
