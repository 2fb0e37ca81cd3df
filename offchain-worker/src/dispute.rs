//! Fighting a dispute: whichever side this worker is on, it answers every stage of the game
//! (step bisection, the segment between two checkpoints, op-trace commitment, operator
//! bisection, element descent) from its own run of the task, and hands the chain the leaf's
//! evidence. An honest worker that keeps
//! calling [`Fighter::tick`] before each deadline never loses.
//!
//! The disputed segment and step are recomputed when needed: training (with the engine) up to
//! the pre-state, from the latest checkpoint at or before it when this worker kept one (see
//! [`crate::checkpoint`]); a segment's per-step states are hashed as they come, the disputed
//! step is run with the reference operators ([`StepRun`]), which also builds every piece of
//! evidence.

use std::collections::HashSet;

use serde_json::Value;
use sp_core::H256;
use subxt_signer::sr25519::Keypair;
use thiserror::Error;
use trainet_primitives::{
	availability::{self, Chunk},
	commit::tensor_hash,
	descent::{
		element_evidence, element_partials, line, term_evidence, Axis, Cursor, DescentAnswer,
		LineTree, TensorOpening,
	},
	market::{Party, StateTensors},
	program::{initial_state, step_program},
	referee::{Fault, OpEvidence, StepRun},
	repops::Matrix,
	task::TrainingSpec,
	trace::{trace_proof, trace_root},
};

use crate::{
	chain::{Chain, ChainError},
	checkpoint::CheckpointStore,
	dataset::Dataset,
	train::{trace_points, TrainError, Training},
};

/// Why a dispute could not be answered.
#[derive(Debug, Error)]
pub enum FightError {
	/// The chain.
	#[error(transparent)]
	Chain(#[from] ChainError),
	/// Recomputing.
	#[error(transparent)]
	Train(#[from] TrainError),
	/// The node's account of the dispute is not what this worker understands.
	#[error("unexpected dispute state: {0}")]
	Unexpected(String),
}

/// One side of one dispute.
pub struct Fighter {
	party: Party,
	spec: TrainingSpec,
	data: Dataset,
	/// This side's trace: its entries `h_0, h_C, ..., h_N` (checkpoint interval `C`).
	states: Vec<H256>,
	/// This side's per-step states of the disputed segment, from its first step on, once
	/// recomputed.
	segment: Option<(u32, Vec<H256>)>,
	/// A deliberate fault this side's run had (the cheat switch), so its answers stay those
	/// of the run it committed.
	fault: Option<Fault>,
	/// Where this side's checkpoints are, if it kept any.
	checkpoints: Option<CheckpointStore>,
	/// The run of the disputed step, once known.
	step: Option<StepRun>,
	/// The initial state, once a dispute over it needs it.
	init: Option<Vec<Matrix>>,
	answered: HashSet<String>,
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, FightError> {
	v.get(name).ok_or_else(|| FightError::Unexpected(format!("no {name} in {v}")))
}

fn number(v: &Value, name: &str) -> Result<u32, FightError> {
	field(v, name)?
		.as_u64()
		.map(|n| n as u32)
		.ok_or_else(|| FightError::Unexpected(format!("{name} is not a number in {v}")))
}

/// The object of an element-descent stage (`opening`, `descending` or `line`, each naming
/// its tensor) in the RPC's `stage`, if the stage is one of those.
fn descent_stage(stage: &Value) -> Option<&Value> {
	["opening", "descending", "line"].into_iter().find_map(|k| stage.get(k))
}

/// This side's answer to the element-descent stage `stage` inside its tensor `m` (the walk
/// going down `walk_axis`, as the RPC names it), and what it did.
fn descent_answer(
	stage: &Value,
	walk_axis: &Value,
	m: &Matrix,
) -> Result<(DescentAnswer, String), FightError> {
	if stage.get("opening").is_some() {
		return Ok((DescentAnswer::Opening(TensorOpening::of(m)), "opened its hash".into()));
	}
	if let Some(o) = stage.get("descending") {
		let axis = if walk_axis == "columns" { Axis::Columns } else { Axis::Rows };
		let cursor = Cursor { level: number(o, "level")?, index: number(o, "index")? };
		let (l, r) = LineTree::new(m, axis)
			.children(cursor)
			.ok_or_else(|| FightError::Unexpected(format!("no children at {cursor:?}")))?;
		let what = format!("revealed the children at level {}", cursor.level);
		return Ok((DescentAnswer::Children(l, r), what));
	}
	let o = field(stage, "line")?;
	let axis = if o["axis"] == "columns" { Axis::Columns } else { Axis::Rows };
	let values = line(m, axis, number(o, "index")?)
		.try_into()
		.map_err(|_| FightError::Unexpected("a line longer than any tensor's".into()))?;
	Ok((DescentAnswer::Line(values), "revealed the disputed line".into()))
}

impl Fighter {
	/// The `party` side of a dispute over `spec`, whose own trace is `states` (from a run with
	/// `fault`, if any).
	pub fn new(
		party: Party,
		spec: TrainingSpec,
		data: Dataset,
		states: Vec<H256>,
		fault: Option<Fault>,
	) -> Self {
		crate::metrics::metrics().disputes.inc();
		Self {
			party,
			segment: None,
			spec,
			data,
			states,
			fault,
			checkpoints: None,
			step: None,
			init: None,
			answered: HashSet::new(),
		}
	}

	/// Recomputes from the latest of these checkpoints (of this side's own trace) before the
	/// disputed step, instead of from `h_0`.
	pub fn with_checkpoints(mut self, checkpoints: CheckpointStore) -> Self {
		self.checkpoints = Some(checkpoints);
		self
	}

	/// A run of this side's at step `t`: from the latest of its checkpoints at or before it
	/// (else from `h_0`), trained up to `t` without its fault (both sides agreed on the state
	/// at `t`, so the run this side committed had no fault before it).
	fn run_to(&self, t: u32) -> Result<Training, FightError> {
		let points = trace_points(&self.spec);
		// The last entry at or before step `t`.
		let upto = (t / points.interval.max(1)).min(points.len().saturating_sub(1));
		let start = match &self.checkpoints {
			Some(store) => store.latest(&self.states, upto as usize).map_err(|e| {
				FightError::Unexpected(format!("reading a checkpoint before step {t}: {e}"))
			})?,
			None => None,
		};
		let from = start.as_ref().and_then(|(k, _)| points.step(*k));
		let mut run = match (start, from) {
			(Some((_, state)), Some(c)) => {
				tracing::debug!(from = c, to = t, "recomputing from a checkpoint");
				Training::resume(self.spec.clone(), self.data.clone(), c, state)?
			}
			_ => Training::new(self.spec.clone(), self.data.clone())?,
		};
		while run.steps_done() < t {
			run.step()?;
		}
		Ok(run)
	}

	/// This side's per-step states `h_first ..= h_{first+len}` of a disputed segment
	/// (recomputed once, with this side's fault if it had one there).
	fn segment_states(&mut self, first: u32, len: u32) -> Result<&[H256], FightError> {
		if self.segment.as_ref().is_none_or(|(f, _)| *f != first) {
			let mut run = self.run_to(first)?.with_fault(self.fault);
			let mut states = vec![run.state_hash()];
			for _ in 0..len {
				run.step()?;
				states.push(run.state_hash());
			}
			self.segment = Some((first, states));
		}
		self.segment
			.as_ref()
			.map(|(_, s)| s.as_slice())
			.ok_or_else(|| FightError::Unexpected("no segment".into()))
	}

	/// Answers the initialization game from `state` instead of the spec's initial state: the
	/// cheat switch's lie about `h_0` (whose trace starts from its hash), for demonstrations
	/// and tests of the game.
	pub fn with_initial_state(mut self, state: Vec<Matrix>) -> Self {
		self.init = Some(state);
		self
	}

	/// The initial state (computed once from the spec, unless set by
	/// [`Self::with_initial_state`]).
	fn initial_state(&mut self) -> Result<&[Matrix], FightError> {
		if self.init.is_none() {
			let program = step_program(&self.spec)
				.map_err(|e| FightError::Unexpected(format!("the spec's program: {e:?}")))?;
			let state = initial_state(&self.spec, &program)
				.map_err(|e| FightError::Unexpected(format!("the initial state: {e:?}")))?;
			self.init = Some(state);
		}
		self.init.as_deref().ok_or_else(|| FightError::Unexpected("no initial state".into()))
	}

	/// Answers the initialization game ([`trainet_primitives::market::InitGame`]): the
	/// tensor hashes of `h_0`, then the element descent inside the disputed tensor.
	async fn answer_initialization(
		&mut self,
		chain: &Chain,
		signer: &Keypair,
		id: u64,
		game: &Value,
	) -> Result<String, FightError> {
		let stage = field(game, "stage")?.clone();
		let init = self.initial_state()?;
		if stage == "revealing" {
			let tensors: StateTensors =
				init.iter().map(tensor_hash).collect::<Vec<_>>().try_into().map_err(|_| {
					FightError::Unexpected("more state tensors than a reveal".into())
				})?;
			let n = tensors.len();
			chain.submit(signer, "Challenge", "reveal_state", (id, tensors)).await?;
			return Ok(format!("the parties disagree on h_0: revealed its {n} tensors' hashes"));
		}
		if let Some(o) = descent_stage(&stage) {
			let i = number(o, "tensor")? as usize;
			let m = init
				.get(i)
				.ok_or_else(|| FightError::Unexpected(format!("no state tensor {i}")))?;
			let (answer, what) = descent_answer(&stage, &game["descentAxis"], m)?;
			chain.submit(signer, "Challenge", "descend", (id, answer)).await?;
			return Ok(format!("initialization, inside state tensor {i}: {what}"));
		}
		Err(FightError::Unexpected(format!("initialization stage {stage}")))
	}

	/// Answers an availability challenge ([`trainet_primitives::availability`]) when this
	/// side is the solver: the asked rows of its state at the asked trace entry, from its
	/// checkpoint store (or recomputed, with its fault if it had one).
	async fn answer_availability(
		&mut self,
		chain: &Chain,
		signer: &Keypair,
		id: u64,
		game: &Value,
	) -> Result<String, FightError> {
		if self.party != Party::Solver {
			return Ok("asked the solver to show its state; waiting for the deadline".into());
		}
		let point = number(game, "point")?;
		let chunks = field(game, "chunks")?
			.as_array()
			.ok_or_else(|| FightError::Unexpected(format!("chunks in {game}")))?
			.iter()
			.map(|c| Ok(Chunk { tensor: number(c, "tensor")?, row: number(c, "row")? }))
			.collect::<Result<Vec<_>, FightError>>()?;
		let want = *self
			.states
			.get(point as usize)
			.ok_or_else(|| FightError::Unexpected(format!("no trace entry {point}")))?;
		let kept = match &self.checkpoints {
			Some(store) => store.get(&want).map_err(|e| {
				FightError::Unexpected(format!("reading the state at entry {point}: {e}"))
			})?,
			None => None,
		};
		let state = match kept {
			Some(state) => state,
			None => {
				let step = trace_points(&self.spec)
					.step(point)
					.ok_or_else(|| FightError::Unexpected(format!("no step at entry {point}")))?;
				tracing::info!(dispute = id, step, "recomputing the asked state");
				let mut run =
					Training::new(self.spec.clone(), self.data.clone())?.with_fault(self.fault);
				while run.steps_done() < step {
					run.step()?;
				}
				run.state().to_vec()
			}
		};
		let answer =
			availability::answer(&self.states, point, &state, &chunks).ok_or_else(|| {
				FightError::Unexpected(format!("the asked rows {chunks:?} are not in the state"))
			})?;
		chain.submit(signer, "Challenge", "prove_availability", (id, answer)).await?;
		Ok(format!(
			"asked to show its state at trace entry {point}: showed {} rows of it",
			chunks.len()
		))
	}

	/// This side's run of step `t` (recomputed once).
	fn step_run(&mut self, t: u32) -> Result<&StepRun, FightError> {
		if self.step.as_ref().is_none() {
			let run = self.run_to(t)?;
			let fault = self.fault.filter(|f| f.step == t).map(|f| f.op);
			let state = run.state().to_vec();
			let r = StepRun::with_fault(&self.spec, t, state, &self.data.samples, fault)
				.map_err(|e| FightError::Unexpected(format!("recomputing step {t}: {e:?}")))?;
			self.step = Some(r);
		}
		self.step.as_ref().ok_or_else(|| FightError::Unexpected("no step run".into()))
	}

	/// Answers what dispute `id` needs from this side now, if anything. Returns `false` once
	/// the dispute is no longer open.
	pub async fn tick(
		&mut self,
		chain: &Chain,
		signer: &Keypair,
		id: u64,
	) -> Result<bool, FightError> {
		let open: Vec<Value> = chain.rpc("trainet_openDisputes", vec![]).await?;
		let Some(d) = open.iter().find(|d| d["id"].as_u64() == Some(id)) else { return Ok(false) };
		let phase = field(d, "phase")?;
		let key = format!(
			"{}/{}/{}/{}/{}/{}/{}/{}",
			phase["bisecting"]["round"],
			phase["bisecting"]["position"],
			phase["segment"]["round"],
			phase["segment"]["stage"],
			phase["operations"]["round"],
			phase["operations"]["stage"],
			phase["initialization"]["stage"],
			phase["availability"]["point"],
		);
		// Past its deadline nobody can answer: end it. `on_initialize` ends most disputes by
		// itself; one whose deadline found the queue full waits for anyone's `timeout`, and
		// the side that wins at the deadline calls it (the other side's call fails harmlessly).
		let deadline = number(d, "deadline")?;
		if chain.best_number().await? >= deadline {
			match chain.submit(signer, "Challenge", "timeout", (id,)).await {
				Ok(_) => {
					tracing::info!(dispute = id, party = ?self.party, "ended it at its deadline")
				}
				Err(e) => tracing::debug!(dispute = id, "timeout not (yet) accepted: {e}"),
			}
			return Ok(true);
		}
		if self.answered.contains(&key) {
			return Ok(true);
		}
		let result = self.answer(chain, signer, id, phase).await;
		match result {
			Ok(done) => {
				tracing::info!(dispute = id, party = ?self.party, "{done}");
				self.answered.insert(key);
			}
			// The other side settled first: the next tick finds the dispute closed.
			Err(e) if e.to_string().contains("DisputeNotFound") => {
				tracing::debug!(dispute = id, party = ?self.party, "already settled: {e}")
			}
			// This side's evidence is refused (a lying run's): shows in the next tick.
			Err(e) => {
				tracing::warn!(dispute = id, party = ?self.party, error = %e, "answer refused")
			}
		}
		Ok(true)
	}

	async fn answer(
		&mut self,
		chain: &Chain,
		signer: &Keypair,
		id: u64,
		phase: &Value,
	) -> Result<String, FightError> {
		if let Some(position) = phase["bisecting"]["position"].as_u64() {
			let position = position as u32;
			let proof = trace_proof(&self.states, position.saturating_sub(1))
				.ok_or_else(|| FightError::Unexpected(format!("no state at {position}")))?;
			chain.submit(signer, "Challenge", "reveal", (id, position, proof)).await?;
			return Ok(format!(
				"step bisection, round {}: revealed its trace entry {}",
				phase["bisecting"]["round"],
				position.saturating_sub(1)
			));
		}
		if let Some(game) = phase.get("segment") {
			let (first, len) = (number(game, "first")?, number(game, "steps")?);
			let states = self.segment_states(first, len)?;
			if game["stage"] == "committing" {
				chain
					.submit(signer, "Challenge", "commit_segment", (id, trace_root(states)))
					.await?;
				return Ok(format!(
					"the parties disagree between steps {first} and {}: committed its {len} \
					 steps' states",
					first.saturating_add(len)
				));
			}
			let position = number(&game["stage"]["revealing"], "position")?;
			let proof = trace_proof(states, position)
				.ok_or_else(|| FightError::Unexpected(format!("no segment state {position}")))?;
			chain.submit(signer, "Challenge", "reveal_segment", (id, position, proof)).await?;
			return Ok(format!(
				"segment bisection, round {}: revealed its state after step {}",
				game["round"],
				first.saturating_add(position)
			));
		}
		if let Some(game) = phase.get("initialization") {
			return self.answer_initialization(chain, signer, id, game).await;
		}
		if let Some(game) = phase.get("availability") {
			return self.answer_availability(chain, signer, id, game).await;
		}
		let game = field(phase, "operations")?;
		let step = number(game, "step")?;
		let stage = field(game, "stage")?.clone();
		let run = self.step_run(step)?.clone();
		let output = |v: &Value| -> Result<_, FightError> {
			let j = number(v, "operation")? as usize;
			run.outputs.get(j).cloned().ok_or_else(|| FightError::Unexpected(format!("no op {j}")))
		};
		let descend = |answer: DescentAnswer| (id, answer);
		let done;
		if stage == "committing" {
			chain.submit(signer, "Challenge", "commit_ops", (id, run.op_trace().root)).await?;
			done = format!(
				"the parties disagree on step {step}: committed its {} operations' outputs",
				run.outputs.len()
			);
		} else if let Some(position) = stage["revealing"]["position"].as_u64() {
			let proof = run
				.op_trace()
				.proof(position as u32 - 1)
				.ok_or_else(|| FightError::Unexpected(format!("no op leaf {position}")))?;
			chain.submit(signer, "Challenge", "reveal_op", (id, position as u32, proof)).await?;
			done = format!("operation bisection in step {step}: revealed operation {position}");
		} else if let Some(j) = stage["operation"].as_u64() {
			let evidence = run
				.evidence(j as u32)
				.ok_or_else(|| FightError::Unexpected(format!("no evidence for op {j}")))?;
			chain.submit(signer, "Challenge", "settle_op", (id, evidence)).await?;
			done = format!(
				"operation {j} of step {step} is the first they disagree on: gave the chain its \
				 inputs to re-execute it"
			);
		} else if stage == "assembly" {
			let evidence = OpEvidence { outputs: run.output_hashes(), ..Default::default() };
			chain.submit(signer, "Challenge", "settle_op", (id, evidence)).await?;
			done = format!("gave the chain step {step}'s output hashes to check the next state");
		} else if let Some(o) = descent_stage(&stage) {
			let (answer, what) = descent_answer(&stage, &game["descentAxis"], &output(o)?)?;
			chain.submit(signer, "Challenge", "descend", descend(answer)).await?;
			done = format!("element descent inside operation {}: {what}", o["operation"]);
		} else if let Some(o) = stage.get("element") {
			let (j, row, col) = (number(o, "operation")?, number(o, "row")?, number(o, "col")?);
			let evidence = element_evidence(&run, &self.spec, j, (row, col))
				.ok_or_else(|| FightError::Unexpected(format!("no evidence for ({row}, {col})")))?;
			chain.submit(signer, "Challenge", "settle_element", (id, evidence)).await?;
			done = format!(
				"element ({row}, {col}) of operation {j} is disputed: gave the chain what \
				 computing it takes"
			);
		} else if let Some(o) = stage.get("partials") {
			let (j, row, col) = (number(o, "operation")?, number(o, "row")?, number(o, "col")?);
			let sums = element_partials(&run, j, (row, col))
				.ok_or_else(|| FightError::Unexpected(format!("no sums for ({row}, {col})")))?
				.try_into()
				.map_err(|_| FightError::Unexpected("more terms than a line".into()))?;
			chain
				.submit(signer, "Challenge", "descend", descend(DescentAnswer::Partials(sums)))
				.await?;
			done = format!(
				"element ({row}, {col}) of operation {j} is too large for one leaf: revealed its \
				 partial sums"
			);
		} else if let Some(o) = stage.get("term") {
			let (j, row, col) = (number(o, "operation")?, number(o, "row")?, number(o, "col")?);
			let k = number(o, "k")?;
			let evidence = term_evidence(&run, j, (row, col), k)
				.ok_or_else(|| FightError::Unexpected(format!("no evidence for term {k}")))?;
			chain.submit(signer, "Challenge", "settle_element", (id, evidence)).await?;
			done = format!(
				"term {k} of element ({row}, {col}) of operation {j} is disputed: gave the chain \
				 the values it multiplies"
			);
		} else {
			return Err(FightError::Unexpected(format!("stage {stage}")));
		}
		Ok(done)
	}
}
