//! The solver: finds an open task it can run (its dataset is in the local store, or fetched
//! from a peer), claims it, trains it bit-exactly, commits the trace root, and waits until the
//! challenge window closes and the reward is paid.
//!
//! While the task is open to challenges it defends it: every dispute against it is fought to
//! the end ([`crate::dispute::Fighter`]). The verifier ([`verify_one`]) checks committed
//! tasks and challenges a wrong one.
//!
//! Its promises survive crashes: every state hash goes to the task's [`Journal`] and a
//! checkpoint of the state is kept every `checkpoint_every` steps ([`Local`]). A restarted
//! solver first looks for a task it holds on chain ([`my_task`]): a claimed one is resumed
//! from its last checkpoint, a committed one is defended with the journal's trace.
//!
//! The verifier ([`verify_one`]) samples transitions at random from the solver's trace and
//! states, fetched over libp2p ([`sample`]), and recomputes the whole task only when one is
//! wrong or not served.

use std::{collections::HashMap, path::Path, time::Duration};

use codec::{Decode, Encode};
use serde_json::Value;
use sp_core::{bytes::to_hex, H256};
use subxt_signer::sr25519::Keypair;
use thiserror::Error;
use trainet_primitives::{
	market::{Party, Task, TaskState, TraceCommitment},
	referee::Fault,
	settle,
	task::{Model, TrainingSpec},
	trace::{trace_proof, trace_root},
	AccountId, Balance, BlockNumber,
};

use crate::{
	chain::{Chain, ChainError},
	checkpoint::{decode_state, CheckpointError, CheckpointStore, Journal},
	dataset::{Dataset, DatasetError, DatasetStore},
	dispute::{FightError, Fighter},
	metrics::{metrics, Speed},
	model::{Mlp, ModelError},
	p2p::{decode_trace, Key, P2p},
	train::{memory_needed, Cheat, Engine, TrainError, Training},
};

/// A task as the runtime stores it.
pub type ChainTask = Task<AccountId, Balance, BlockNumber>;

/// A paid task's receipt as the runtime stores it.
pub type ChainReceipt = trainet_primitives::market::Receipt<AccountId, BlockNumber>;

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
	/// Checkpoints or the journal.
	#[error(transparent)]
	Checkpoint(#[from] CheckpointError),
	/// Saving the trained model.
	#[error(transparent)]
	Model(#[from] ModelError),
	/// Another solver claimed the task first (a race every solver can lose; try another).
	#[error("task {0} was claimed by another solver first")]
	Taken(u64),
	/// A task this worker cannot take or go on with.
	#[error("task {task}: {reason}")]
	Task {
		/// The task.
		task: u64,
		/// Why.
		reason: String,
	},
}

/// What a worker keeps on disk, all under one data directory: the dataset store (the
/// directory itself), checkpoints (`checkpoints/`), task journals (`tasks/`) and trained
/// models (`models/`).
#[derive(Clone, Debug)]
pub struct Local {
	/// Datasets.
	pub datasets: DatasetStore,
	/// Training states.
	pub checkpoints: CheckpointStore,
	/// Where the journals are.
	pub journals: std::path::PathBuf,
	/// Where trained models are saved (burn records).
	pub models: std::path::PathBuf,
	/// A checkpoint every this many steps (and of the first and last state).
	pub checkpoint_every: u32,
}

impl Local {
	/// The worker's files in `dir`, created if missing.
	pub fn open(dir: &Path, checkpoint_every: u32) -> Result<Self, SolveError> {
		Ok(Self {
			datasets: DatasetStore::open(dir)?,
			checkpoints: CheckpointStore::open(dir.join("checkpoints"))?,
			journals: dir.join("tasks"),
			models: dir.join("models"),
			checkpoint_every: checkpoint_every.max(1),
		})
	}
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

/// Calls runtime API function `method` (`TrainetApi_task`, ...) with SCALE-encoded `args` at
/// the best block and decodes its answer.
async fn runtime_api<R: Decode>(
	chain: &Chain,
	method: &str,
	args: impl Encode,
) -> Result<R, SolveError> {
	let raw: String = chain
		.rpc("state_call", vec![Value::from(method), Value::from(to_hex(&args.encode(), false))])
		.await?;
	let bytes = sp_core::bytes::from_hex(&raw).map_err(|e| SolveError::Decode(e.to_string()))?;
	R::decode(&mut &bytes[..]).map_err(|e| SolveError::Decode(format!("{method}: {e}")))
}

/// Task `id` as the runtime stores it (through the `TrainetApi_task` runtime API), or `None`
/// once it has ended.
pub async fn chain_task(chain: &Chain, id: u64) -> Result<Option<ChainTask>, SolveError> {
	runtime_api(chain, "TrainetApi_task", id).await
}

/// The receipt of task `id`, paid not long ago, if the chain still keeps it.
pub async fn chain_receipt(chain: &Chain, id: u64) -> Result<Option<ChainReceipt>, SolveError> {
	runtime_api(chain, "TrainetApi_receipt", id).await
}

/// The first open task this worker can run: training it takes at most `max_memory` bytes
/// (see [`memory_needed`]), and its dataset is in `store` or (given a peer-to-peer node) can
/// be fetched from a peer.
pub async fn find_task(
	chain: &Chain,
	store: &DatasetStore,
	p2p: Option<&P2p>,
	max_memory: Option<u64>,
	speed: Option<&Throughput>,
) -> Result<Option<(u64, ChainTask)>, SolveError> {
	let block_time = match speed {
		Some(_) => chain.block_time().await?,
		None => Duration::ZERO,
	};
	for id in 0..next_task_id(chain).await? {
		let Some(task) = chain_task(chain, id).await? else { continue };
		if !matches!(task.state, TaskState::Open { .. }) {
			continue;
		}
		let needed = memory_needed(&task.spec)?;
		if let Some(max) = max_memory.filter(|max| needed > *max) {
			tracing::debug!(task = id, needed, max, "skipping: it needs more memory than allowed");
			continue;
		}
		// A claim this worker could not commit in time would cost its stake.
		if let Some(speed) = speed {
			let window = block_time.saturating_mul(task.timeouts.commit);
			let needed = speed.time_to_train(&task.spec);
			if needed > window {
				tracing::info!(
					task = id,
					?needed,
					?window,
					"skipping: this worker could not train it inside its commit window"
				);
				continue;
			}
		}
		let Some(data) = task_dataset(store, p2p, id, task.spec.dataset.root).await? else {
			continue;
		};
		// A spec whose declared shape is not its dataset's cannot be trained or settled.
		match data.matches(&task.spec.dataset) {
			Ok(()) => return Ok(Some((id, task))),
			Err(e) => tracing::warn!(task = id, "skipping: {e}"),
		}
	}
	Ok(None)
}

/// Task `id`'s dataset, of root `root`: from the store, or fetched from a peer (every chunk and
/// the root checked) and stored; `None` when neither has it.
async fn task_dataset(
	store: &DatasetStore,
	p2p: Option<&P2p>,
	id: u64,
	root: H256,
) -> Result<Option<Dataset>, SolveError> {
	match (store.get(&root), p2p) {
		(Ok(data), _) => Ok(Some(data)),
		(Err(DatasetError::NotFound { .. }), Some(p2p)) => {
			match p2p.fetch(Key::Dataset(root), &[], |_, _| {}).await {
				Ok(_) => {
					tracing::info!(task = id, "fetched its dataset from a peer");
					Ok(Some(store.get(&root)?))
				}
				Err(e) => {
					tracing::debug!(task = id, "its dataset is neither here nor at peers: {e}");
					Ok(None)
				}
			}
		}
		(Err(DatasetError::NotFound { .. }), None) => {
			tracing::debug!(task = id, "its dataset is not in the store");
			Ok(None)
		}
		(Err(e), _) => Err(e.into()),
	}
}

/// How fast this worker trains, in units of work ([`settle::step_work`]: values handled and
/// multiply-adds) per second, measured on a real training run.
#[derive(Clone, Copy, Debug)]
pub struct Throughput {
	/// Work per second.
	pub per_second: f64,
}

impl Throughput {
	/// The margin kept on a measured speed: a task is claimed only if it trains in under half
	/// its commit window (hashing, checkpoints and a busy machine take their share).
	pub const MARGIN: f64 = 2.0;

	/// Measures this machine: eight steps of a 128-256-256-10 MLP, batch 64, with the
	/// engine the worker trains with (a few tens of milliseconds).
	pub fn measure() -> Result<Self, SolveError> {
		let data = Dataset::synthetic(11, 256, 128, 10);
		let mut spec = TrainingSpec::example_mlp(
			&[128, 256, 256, 10],
			trainet_primitives::task::Optimizer::Sgd {
				learning_rate: trainet_primitives::task::F32Bits::from_f32(0.05),
				momentum: trainet_primitives::task::F32Bits::from_f32(0.9),
			},
			64,
		)
		.with_dataset(data.commitment());
		spec.steps = 8;
		let work = Self::work(&spec);
		let start = std::time::Instant::now();
		Training::new(spec, data)?.trace(|_| {})?;
		let seconds = start.elapsed().as_secs_f64().max(1e-6);
		Ok(Self { per_second: work / seconds })
	}

	/// The work of training `spec` whole.
	fn work(spec: &TrainingSpec) -> f64 {
		let Ok(program) = trainet_primitives::program::step_program(spec) else { return f64::MAX };
		settle::step_work(spec, &program) as f64 * f64::from(spec.steps)
	}

	/// How long training `spec` would take here, with [`Self::MARGIN`].
	pub fn time_to_train(&self, spec: &TrainingSpec) -> Duration {
		let seconds = Self::work(spec) / self.per_second.max(1.0) * Self::MARGIN;
		Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
	}
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
	/// The trace's entries: `h_0, h_C, h_2C, ..., h_N` for checkpoint interval `C`.
	pub states: Vec<H256>,
	/// The trained model, saved as a burn record (when this run trained it).
	pub model: Option<std::path::PathBuf>,
}

/// Saves the model of a training `state` (an MLP of `spec`) as a burn record at `path`
/// (`.mpk`); returns the file. `None` for a graph model (a CNN), which has no burn module yet:
/// its state stays in the checkpoint store.
pub fn save_model(
	spec: &TrainingSpec,
	state: &[trainet_primitives::repops::Matrix],
	path: &Path,
) -> Result<Option<std::path::PathBuf>, ModelError> {
	let Model::Mlp { widths, .. } = &spec.model else { return Ok(None) };
	let device = Default::default();
	Mlp::<burn::backend::NdArray>::from_state(widths, state, &device)?.save(path).map(Some)
}

/// How a task's life ended for its solver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
	/// Paid (the task is gone from the chain after its window).
	Ended,
	/// Lost a dispute: the task was reopened for others (or refunded).
	Lost,
}

/// A task `who` holds on chain: claimed (to train and commit) or committed and still open to
/// challenges (to defend). What a restarted solver goes back to first.
pub async fn my_task(
	chain: &Chain,
	who: &AccountId,
) -> Result<Option<(u64, ChainTask)>, SolveError> {
	for id in 0..next_task_id(chain).await? {
		let Some(task) = chain_task(chain, id).await? else { continue };
		match &task.state {
			TaskState::Claimed { solver, .. } | TaskState::Committed { solver, .. }
				if solver == who =>
			{
				return Ok(Some((id, task)))
			}
			_ => {}
		}
	}
	Ok(None)
}

/// Trains task `id` with the journal and checkpoints of `local`: from its last intact
/// checkpoint when `resume` (a restarted solver), else from `h_0`. Returns the trace: the
/// hashes of the states the spec's checkpoint interval names (every step's when it is 1),
/// the only states hashed. `engine` runs the steps (the CPU's burn, or a GPU's).
#[allow(clippy::too_many_arguments)]
pub fn train_task(
	local: &Local,
	id: u64,
	spec: &TrainingSpec,
	cheat: Option<Cheat>,
	engine: Engine,
	resume: bool,
	mut progress: impl FnMut(u32, f32),
) -> Result<Vec<H256>, SolveError> {
	let data = local.datasets.get(&spec.dataset.root)?;
	let steps = spec.steps;
	let bad = |reason: String| SolveError::Task { task: id, reason };
	let points = spec.trace_points().ok_or_else(|| bad("a checkpoint interval of 0".into()))?;
	let mut journal = Journal::open(&local.journals, id)?;
	Journal::save_spec(&local.journals, id, spec)?;
	let start = match resume {
		true => local.checkpoints.latest(journal.states(), usize::MAX)?,
		false => None,
	};
	let mut run = match start {
		Some((k, state)) => {
			let c = points.step(k).ok_or_else(|| bad(format!("no trace entry {k}")))?;
			tracing::info!(task = id, step = c, "resuming from the checkpoint of h_{c}");
			journal.truncate((k as usize).saturating_add(1))?;
			Training::resume(spec.clone(), data, c, state)?
		}
		None => {
			journal.truncate(0)?;
			let run = Training::new(spec.clone(), data)?;
			journal.push(run.state_hash())?;
			journal.sync()?;
			local.checkpoints.put(run.state())?;
			run
		}
	}
	.with_engine(engine)
	.with_cheat(cheat);
	let mut speed = Speed::default();
	let mut saved = run.steps_done();
	while run.steps_done() < steps {
		let r = run.step()?;
		speed.step();
		let done = r.step.saturating_add(1);
		if run.at_trace_point() {
			journal.push(run.state_hash())?;
			// Checkpoints go at trace entries (a state is found by its hash there), once
			// `checkpoint_every` steps have passed since the last one, and at the end.
			if done.saturating_sub(saved) >= local.checkpoint_every || done == steps {
				// The journal first: a checkpoint is only ever found through it.
				journal.sync()?;
				local.checkpoints.put(run.state())?;
				saved = done;
			}
		}
		progress(r.step, r.loss);
	}
	Ok(journal.states().to_vec())
}

/// Takes task `id` to a commitment: claims it if it is open (or resumes it if this worker
/// already holds the claim), trains it (calling `progress` after every step), and commits its
/// trace. A task this worker has already committed comes back with the journal's trace.
/// Returns once the commitment is in a block. `engine` runs the steps.
#[allow(clippy::too_many_arguments)]
pub async fn solve(
	chain: &Chain,
	signer: &Keypair,
	local: &Local,
	id: u64,
	task: &ChainTask,
	cheat: Option<Cheat>,
	engine: Engine,
	progress: impl FnMut(u32, f32),
) -> Result<Solved, SolveError> {
	let me = AccountId::from(signer.public_key().0);
	let not_mine = |reason: &str| SolveError::Task { task: id, reason: reason.into() };
	let resume = match &task.state {
		TaskState::Open { .. } => {
			local.datasets.get(&task.spec.dataset.root)?;
			match chain.submit(signer, "TaskEscrow", "claim", (id,)).await {
				Err(ChainError::Transaction { reason, .. }) if reason.contains("NotOpen") => {
					return Err(SolveError::Taken(id))
				}
				r => r?,
			};
			tracing::info!(task = id, steps = task.spec.steps, "claimed; training");
			false
		}
		TaskState::Claimed { solver, .. } if *solver == me => true,
		TaskState::Committed { solver, commitment, .. } if *solver == me => {
			let journal = Journal::open(&local.journals, id)?;
			let states = journal.states().to_vec();
			if trace_root(&states) != commitment.trace_root {
				return Err(not_mine(
					"committed by this account, but this worker's journal holds another trace \
					 (was it committed from another machine?)",
				));
			}
			tracing::info!(task = id, "already committed; defending it");
			return Ok(Solved {
				task: id,
				final_state: commitment.final_state,
				trace_root: commitment.trace_root,
				states,
				model: None,
			});
		}
		_ => return Err(not_mine("held by another solver")),
	};
	let states = train_task(local, id, &task.spec, cheat, engine, resume, progress)?;
	let steps = task.spec.steps;
	let final_state = *states.last().unwrap_or(&H256::zero());
	let last = local.checkpoints.get(&final_state)?.ok_or_else(|| {
		not_mine("the checkpoint of the final state is missing from this worker's store")
	})?;
	// The chain checks the model hash against the final state's tensor hashes (its
	// parameter part), which go with the commitment.
	let params =
		trainet_primitives::program::step_program(&task.spec).map_or(0, |p| p.params as usize);
	let tensors = last.iter().map(crate::commit::tensor_hash).collect();
	let fin = trainet_primitives::availability::FinalState::of(tensors, params)
		.ok_or_else(|| not_mine("the final state has more tensors than a state may have"))?;
	let commitment = TraceCommitment {
		trace_root: trace_root(&states),
		steps,
		final_state,
		model_hash: fin.model,
	};
	let last_entry = states.len().saturating_sub(1) as u32;
	let proof = trace_proof(&states, last_entry).ok_or(SolveError::NoProof(steps))?;
	chain.submit(signer, "TaskEscrow", "commit", (id, commitment, proof, fin.tensors)).await?;
	metrics().tasks_committed.inc();
	tracing::info!(task = id, final_state = ?final_state, "committed");
	let model = save_model(&task.spec, &last, &local.models.join(format!("task-{id}")))?;
	Ok(Solved { task: id, final_state, trace_root: commitment.trace_root, states, model })
}

/// Defends committed task `id` (whose trace is `solved.states`, from a run with `cheat`):
/// fights every dispute against it until the task ends.
pub async fn defend(
	chain: &Chain,
	signer: &Keypair,
	local: &Local,
	task: &ChainTask,
	solved: &Solved,
	cheat: Option<Cheat>,
) -> Result<Outcome, SolveError> {
	// A skipping cheat has no run of its own to answer from: it answers with the honest one
	// (and loses where its claimed state differs from what honest outputs assemble).
	let fault = Cheat::fault(cheat);
	let data = local.datasets.get(&task.spec.dataset.root)?;
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
				.with_checkpoints(local.checkpoints.clone())
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
	/// It could not be checked (its spec misstates its dataset, or checking it failed): the
	/// verifier leaves it and goes on with the others.
	Skipped(u64),
}

/// What sampling a committed task's transitions found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sample {
	/// This many transitions were checked, all right.
	Passed(u32),
	/// The steps from entry `h_t` do not reach the committed next entry (`t` is the first).
	Wrong(u32),
	/// The trace or a state could not be fetched intact.
	Unserved(String),
}

/// Checks `transitions` transitions of `commitment`'s trace chosen at random (all of them if
/// the task has no more): fetches the trace by its root and each chosen entry's state by its
/// hash from peers, runs the steps to the next entry (one step, or a segment of up to the
/// checkpoint interval) and compares with that entry. [`Sample::Wrong`] names the first
/// step of the wrong transition.
pub async fn sample(
	p2p: &P2p,
	spec: &TrainingSpec,
	data: &Dataset,
	commitment: &TraceCommitment,
	transitions: u32,
	fault: Option<Fault>,
) -> Result<Sample, SolveError> {
	use rand::seq::index::sample as choose;
	let points = spec
		.trace_points()
		.ok_or_else(|| SolveError::Decode("a spec with a checkpoint interval of 0".into()))?;
	// What the spec implies of the sizes: a hash per trace entry, the state's tensors.
	let trace_len = u64::from(points.len()).saturating_mul(32);
	let state_len = trainet_primitives::program::step_program(spec)
		.map(|p| crate::checkpoint::encoded_state_len(&p.state_shapes))
		.unwrap_or(0);
	let trace_key = Key::Trace(commitment.trace_root);
	// Those who served the trace serve its states (recomputed on demand): asked first.
	let (states, holders) = match p2p.fetch_bounded(trace_key, trace_len, &[], |_, _| {}).await {
		Ok((bytes, holders)) => match decode_trace(&bytes) {
			Ok(states) => (states, holders),
			Err(e) => return Ok(Sample::Unserved(e)),
		},
		Err(e) => return Ok(Sample::Unserved(e.to_string())),
	};
	if states.len() != points.len() as usize || states.last() != Some(&commitment.final_state) {
		return Ok(Sample::Unserved("a trace that does not end in the committed state".into()));
	}
	// Chosen here, from the operating system's randomness: the solver cannot know which.
	// Transitions between consecutive entries.
	let count = points.len().saturating_sub(1) as usize;
	let mut chosen: Vec<u32> =
		choose(&mut rand::rngs::OsRng, count, (transitions as usize).min(count))
			.into_iter()
			.map(|k| k as u32)
			.collect();
	chosen.sort_unstable();
	for &k in &chosen {
		let (Some(before), Some(after), Some((t, len))) =
			(states.get(k as usize), states.get(k as usize + 1), points.segment(k))
		else {
			continue;
		};
		let state =
			match p2p.fetch_bounded(Key::State(*before), state_len, &holders, |_, _| {}).await {
				Ok((bytes, _)) => match decode_state(&bytes) {
					Ok(s) => s,
					Err(e) => return Ok(Sample::Unserved(e)),
				},
				Err(e) => return Ok(Sample::Unserved(e.to_string())),
			};
		let mut run = Training::resume(spec.clone(), data.clone(), t, state)?.with_fault(fault);
		for _ in 0..len {
			run.step()?;
		}
		let got = run.state_hash();
		tracing::debug!(step = t, steps = len, right = got == *after, "sampled");
		if got != *after {
			return Ok(Sample::Wrong(t));
		}
	}
	Ok(Sample::Passed(chosen.len() as u32))
}

/// Recomputes the first committed task (whose dataset is in `store`, or fetched from `peers`)
/// not in `skip`, and challenges it if its final state is wrong, fighting the dispute to its
/// end.
///
/// With `peers` and `transitions` (N), it first checks only N transitions, chosen at random
/// (unpredictably to the solver), from the solver's trace and states fetched over libp2p: the whole task is
/// recomputed only if one of them is wrong, or the solver does not serve what it committed.
///
/// `fault` makes the recomputation wrong on purpose (a false challenge, for tests and
/// demonstrations that an honest solver wins).
pub async fn verify_one(
	chain: &Chain,
	signer: &Keypair,
	store: &DatasetStore,
	skip: &[u64],
	fault: Option<Fault>,
	peers: Option<&P2p>,
	transitions: Option<u32>,
) -> Result<Option<Verdict>, SolveError> {
	for id in 0..next_task_id(chain).await? {
		if skip.contains(&id) {
			continue;
		}
		let Some(task) = chain_task(chain, id).await? else { continue };
		if !matches!(task.state, TaskState::Committed { .. }) {
			continue;
		}
		match check_task(chain, signer, store, id, &task, fault, peers, transitions).await {
			Ok(None) => continue,
			Ok(Some(verdict)) => return Ok(Some(verdict)),
			// The node went away: the caller retries once it is back.
			Err(SolveError::Chain(e)) => return Err(e.into()),
			// Anything else belongs to this task (a malformed state a peer served, a dispute
			// that cannot go on): leave it, keep checking the others.
			Err(e) => {
				tracing::warn!(task = id, "could not check it: {e}");
				return Ok(Some(Verdict::Skipped(id)));
			}
		}
	}
	Ok(None)
}

/// [`verify_one`] for committed task `id`: `None` when its dataset is nowhere to be had.
#[allow(clippy::too_many_arguments)]
async fn check_task(
	chain: &Chain,
	signer: &Keypair,
	store: &DatasetStore,
	id: u64,
	task: &ChainTask,
	fault: Option<Fault>,
	peers: Option<&P2p>,
	transitions: Option<u32>,
) -> Result<Option<Verdict>, SolveError> {
	let sampling = peers.zip(transitions);
	let TaskState::Committed { commitment, .. } = &task.state else { return Ok(None) };
	let Some(data) = task_dataset(store, peers, id, task.spec.dataset.root).await? else {
		return Ok(None);
	};
	// A challenge over a spec that misstates its dataset could not be settled.
	if let Err(e) = data.matches(&task.spec.dataset) {
		tracing::warn!(task = id, "not checking it: {e}");
		return Ok(Some(Verdict::Skipped(id)));
	}
	// A dispute of this worker's own still open (it restarted mid-dispute): recompute, then
	// fight it on instead of opening another.
	let resumed = my_dispute(chain, signer, id).await?;
	metrics().tasks_verified.inc();
	if let (Some((p2p, transitions)), None) = (sampling, resumed) {
		match sample(p2p, &task.spec, &data, commitment, transitions, fault).await? {
			Sample::Passed(n) => {
				tracing::info!(task = id, transitions = n, "every sampled transition is right");
				return Ok(Some(Verdict::Honest(id)));
			}
			Sample::Wrong(t) => {
				tracing::warn!(task = id, step = t, "a sampled transition is wrong");
			}
			Sample::Unserved(why) => tracing::warn!(
				task = id,
				"the solver does not serve its trace or states ({why}): recomputing all"
			),
		}
	}
	tracing::info!(task = id, steps = task.spec.steps, "recomputing");
	let mut run = Training::new(task.spec.clone(), data.clone())?.with_fault(fault);
	let mut speed = Speed::default();
	let states = run.trace(|_| speed.step())?;
	let steps = task.spec.steps;
	if resumed.is_none() && states.last() == Some(&commitment.final_state) {
		return Ok(Some(Verdict::Honest(id)));
	}
	let dispute = match resumed {
		Some(dispute) => {
			tracing::info!(task = id, dispute, "resuming this worker's open dispute");
			dispute
		}
		None => {
			tracing::warn!(task = id, "the committed final state is wrong: challenging");
			let last_entry = states.len().saturating_sub(1) as u32;
			let proof = trace_proof(&states, last_entry).ok_or(SolveError::NoProof(steps))?;
			chain.submit(signer, "Challenge", "open", (id, trace_root(&states), proof)).await?;
			metrics().challenges_opened.inc();
			my_dispute(chain, signer, id)
				.await?
				.ok_or_else(|| SolveError::Decode("the dispute just opened is not listed".into()))?
		}
	};
	let mut fighter = Fighter::new(Party::Challenger, task.spec.clone(), data, states, fault);
	while fighter.tick(chain, signer, dispute).await? {
		tokio::time::sleep(Duration::from_secs(2)).await;
	}
	let lost = match chain_task(chain, id).await? {
		Some(t) => !matches!(t.state, TaskState::Committed { .. }),
		None => false,
	};
	Ok(Some(if lost { Verdict::CaughtCheating(id) } else { Verdict::ChallengeFailed(id) }))
}

/// The open dispute of this worker's (`signer` as challenger) against task `task`, if any.
async fn my_dispute(chain: &Chain, signer: &Keypair, task: u64) -> Result<Option<u64>, SolveError> {
	let me = crate::chain::address(signer);
	let open: Vec<Value> = chain.rpc("trainet_openDisputes", vec![Value::from(task)]).await?;
	Ok(open.iter().find(|d| d["challenger"] == me.as_str()).and_then(|d| d["id"].as_u64()))
}

/// Task `task` once it is committed, with its solver and commitment, waiting while it is open
/// or being trained (`waiting` is called once, when it has to wait); `None` when it is not on
/// chain (never posted, or ended).
pub async fn wait_for_commitment(
	chain: &Chain,
	task: u64,
	waiting: impl FnOnce(),
) -> Result<Option<(ChainTask, AccountId, TraceCommitment)>, SolveError> {
	let mut waiting = Some(waiting);
	loop {
		let Some(t) = chain_task(chain, task).await? else { return Ok(None) };
		if let TaskState::Committed { solver, commitment, .. } = &t.state {
			let (solver, commitment) = (solver.clone(), *commitment);
			return Ok(Some((t, solver, commitment)));
		}
		if let Some(w) = waiting.take() {
			w();
		}
		tokio::time::sleep(Duration::from_secs(1)).await;
	}
}

/// How an availability challenge ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
	/// The asked rows were shown: the state is available (the challenger's bond went to the
	/// solver).
	Shown,
	/// Nobody showed them by the deadline: the solver lost its stake and the task.
	Withheld,
}

/// Asks the solver of committed task `task` to show its state at trace entry `entry` (by
/// default the last: the final model) through an availability challenge
/// ([`trainet_primitives::availability`]), and waits for it to end.
pub async fn demand_availability(
	chain: &Chain,
	signer: &Keypair,
	task: u64,
	entry: Option<u32>,
) -> Result<(u64, Availability), SolveError> {
	let waiting = || tracing::info!(task, "not committed yet: waiting for its solver");
	let (t, solver, _) = wait_for_commitment(chain, task, waiting)
		.await?
		.ok_or_else(|| SolveError::Task { task, reason: "not on chain".into() })?;
	let solver: [u8; 32] = *solver.as_ref();
	let entry =
		entry.unwrap_or_else(|| crate::train::trace_points(&t.spec).len().saturating_sub(1));
	let before = chain.offences(solver).await?;
	chain.submit(signer, "Challenge", "request_availability", (task, entry)).await?;
	let id = my_dispute(chain, signer, task)
		.await?
		.ok_or_else(|| SolveError::Decode("the challenge just opened is not listed".into()))?;
	tracing::info!(task, dispute = id, entry, "asked the solver to show its state");
	loop {
		let open: Vec<Value> = chain.rpc("trainet_openDisputes", vec![Value::from(task)]).await?;
		let Some(d) = open.iter().find(|d| d["id"].as_u64() == Some(id)) else { break };
		let deadline = d["deadline"].as_u64().unwrap_or(u64::MAX);
		if u64::from(chain.best_number().await?) >= deadline {
			// Ended at its deadline by `on_initialize`, or by this call if its queue was full.
			if let Err(e) = chain.submit(signer, "Challenge", "timeout", (id,)).await {
				tracing::debug!(dispute = id, "timeout not (yet) accepted: {e}");
			}
		}
		tokio::time::sleep(Duration::from_secs(2)).await;
	}
	// A solver that did not answer has one more offence on record.
	let outcome = if chain.offences(solver).await? > before {
		Availability::Withheld
	} else {
		Availability::Shown
	};
	Ok((id, outcome))
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::spec_file::SpecFile;

	fn spec(data: &Dataset, steps: u32) -> TrainingSpec {
		let text = format!(
			"[model]\nwidths = [16, 8, 4]\n[optimizer]\nkind = \"adam\"\nlearning_rate = \
			 0.01\nbeta1 = 0.9\nbeta2 = 0.999\nepsilon = 1e-7\n[training]\nbatch_size = 8\nsteps = {steps}\nseed = 3\n[dataset]\nroot = \
			 \"{:?}\"\n",
			data.root()
		);
		SpecFile::parse(&text).unwrap().to_spec(data).unwrap()
	}

	/// The time a task is expected to take grows with its steps and its model, with the
	/// margin kept; a measured speed is positive.
	#[test]
	fn the_time_to_train_scales_with_the_work() {
		let data = Dataset::synthetic(3, 64, 16, 4);
		let speed = Throughput { per_second: 1e9 };
		let short = spec(&data, 10);
		let long = spec(&data, 20);
		let (a, b) = (speed.time_to_train(&short), speed.time_to_train(&long));
		assert!(a > Duration::ZERO && b > a);
		assert!((b.as_secs_f64() / a.as_secs_f64() - 2.0).abs() < 1e-6);
		let program = trainet_primitives::program::step_program(&short).unwrap();
		let work = settle::step_work(&short, &program) as f64 * 10.0;
		assert!((a.as_secs_f64() - work / 1e9 * Throughput::MARGIN).abs() < 1e-9);
		assert!(Throughput::measure().unwrap().per_second > 0.0);
	}

	/// A solver killed at any point (the journal a few steps past its last checkpoint, the
	/// last record torn) resumes and ends with the trace of a run never interrupted.
	#[test]
	fn a_resumed_run_gives_the_uninterrupted_trace() {
		let data = Dataset::synthetic(3, 64, 16, 4);
		let spec = spec(&data, 25);
		let dir = tempfile::tempdir().unwrap();
		let local = Local::open(dir.path(), 7).unwrap();
		local.datasets.put(&data).unwrap();
		let whole = train_task(&local, 1, &spec, None, Engine::Burn, false, |_, _| {}).unwrap();
		assert_eq!(whole.len(), 26);

		// A run of task 2 that dies after step 17: checkpoints at 0, 7, 14; 3 states past the
		// last one are in the journal, then half a record.
		let mut seen = 0;
		let short = TrainingSpec { steps: 17, ..spec.clone() };
		let first =
			train_task(&local, 2, &short, None, Engine::Burn, false, |_, _| seen += 1).unwrap();
		assert_eq!((seen, &first[..]), (17, &whole[..18]));
		let journal = local.journals.join("task-2.trace");
		let mut f = std::fs::OpenOptions::new().append(true).open(&journal).unwrap();
		std::io::Write::write_all(&mut f, &[1u8; 20]).unwrap();
		drop(f);
		// (The short run's last state was checkpointed as its end: forget it, as if the
		// process had died before step 17's checkpoint.)
		std::fs::remove_file(local.checkpoints.path(&whole[17])).unwrap();

		let mut resumed_from = None;
		let rest = train_task(&local, 2, &spec, None, Engine::Burn, true, |t, _| {
			resumed_from.get_or_insert(t);
		})
		.unwrap();
		assert_eq!(resumed_from, Some(14), "resumes after the checkpoint of h_14");
		assert_eq!(rest, whole);

		// Not resuming starts over, whatever the journal held.
		let again = train_task(&local, 2, &spec, None, Engine::Burn, false, |_, _| {}).unwrap();
		assert_eq!(again, whole);
	}

	/// With a checkpoint interval, the journal holds only the trace's entries, checkpoints go
	/// at entries, and a resumed run still ends with the uninterrupted trace.
	#[test]
	fn a_checkpointed_trace_holds_every_third_state_and_resumes() {
		let data = Dataset::synthetic(3, 64, 16, 4);
		let spec = TrainingSpec { checkpoint_interval: 3, ..spec(&data, 25) };
		let dir = tempfile::tempdir().unwrap();
		let local = Local::open(dir.path(), 7).unwrap();
		local.datasets.put(&data).unwrap();
		let whole = train_task(&local, 1, &spec, None, Engine::Burn, false, |_, _| {}).unwrap();
		// h_0, h_3, ..., h_24, h_25: the states of a run of every step at those points.
		let every = TrainingSpec { checkpoint_interval: 1, ..spec.clone() };
		let per_step = Training::new(every, data.clone()).unwrap().trace(|_| {}).unwrap();
		let expected: Vec<H256> =
			(0..=25).filter(|t| t % 3 == 0 || *t == 25).map(|t| per_step[t]).collect();
		assert_eq!(whole, expected);

		// A run dying after step 17: checkpoints at steps 9 (the first entry 7 steps on) and
		// 17 (its end); forget the last, tear the journal.
		let short = TrainingSpec { steps: 17, ..spec.clone() };
		let first = train_task(&local, 2, &short, None, Engine::Burn, false, |_, _| {}).unwrap();
		assert_eq!(&first[..6], &whole[..6]);
		std::fs::remove_file(local.checkpoints.path(first.last().unwrap())).unwrap();
		let journal = local.journals.join("task-2.trace");
		let mut f = std::fs::OpenOptions::new().append(true).open(&journal).unwrap();
		std::io::Write::write_all(&mut f, &[1u8; 20]).unwrap();
		drop(f);
		let mut resumed_from = None;
		let rest = train_task(&local, 2, &spec, None, Engine::Burn, true, |t, _| {
			resumed_from.get_or_insert(t);
		})
		.unwrap();
		assert_eq!(resumed_from, Some(9), "resumes after the checkpoint of h_9");
		assert_eq!(rest, whole);
	}
}
