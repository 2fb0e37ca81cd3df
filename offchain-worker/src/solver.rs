//! The solver: finds an open task it can run (its dataset is in the local store), claims it,
//! trains it bit-exactly, commits the trace root, and waits until the challenge window closes
//! and the reward is paid.
//!
//! Not yet: checkpoints and resuming after a crash, answering disputes, serving checkpoints.

use codec::{Decode, Encode};
use serde_json::Value;
use sp_core::{bytes::to_hex, H256};
use subxt_signer::sr25519::Keypair;
use thiserror::Error;
use trainet_primitives::{
	commit::state_hash,
	market::{Task, TaskState, TraceCommitment},
	task::Model,
	trace::{trace_proof, trace_root},
	AccountId, Balance, BlockNumber,
};

use crate::{
	chain::{Chain, ChainError},
	dataset::{DatasetError, DatasetStore},
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
}

/// Claims open task `id`, trains it (calling `progress` after every step) and commits its
/// trace. Returns once the commitment is in a block.
pub async fn solve(
	chain: &Chain,
	signer: &Keypair,
	store: &DatasetStore,
	id: u64,
	task: &ChainTask,
	mut progress: impl FnMut(u32, f32),
) -> Result<Solved, SolveError> {
	let data = store.get(&task.spec.dataset.root)?;
	chain.submit(signer, "TaskEscrow", "claim", (id,)).await?;
	tracing::info!(task = id, steps = task.spec.steps, "claimed; training");
	let mut run = Training::new(task.spec.clone(), data)?;
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
	Ok(Solved { task: id, final_state, trace_root: commitment.trace_root })
}

/// Waits until task `id` has ended (paid after its challenge window, or lost), polling every
/// block time.
pub async fn wait_until_ended(chain: &Chain, id: u64) -> Result<(), SolveError> {
	loop {
		if chain.task(id).await?.is_none() {
			return Ok(());
		}
		tokio::time::sleep(std::time::Duration::from_secs(3)).await;
	}
}
