//! `trainet_*` JSON-RPC methods: the market's tasks and disputes as plain JSON, read through
//! the runtime's `TrainetApi`, so a dapp needs neither the metadata nor a SCALE decoder.
//!
//! Accounts are SS58 strings, hashes `0x` hex, balances decimal strings (they exceed what a
//! JavaScript number holds exactly), floats JSON numbers.
//!
//! - `trainet_task(id, at?)`: the task, or `null` once it has ended (paid, refunded or
//!   cancelled: the chain's events tell how).
//! - `trainet_openDisputes(task?, at?, after?, limit?)`: the open disputes against one task, by
//!   id; or, without a task, one page of at most `limit` (at most 256, the default) in storage
//!   order after dispute `after` (pass the last id of a page to get the next).

use std::sync::Arc;

use jsonrpsee::{
	core::RpcResult,
	proc_macros::rpc,
	types::{ErrorObject, ErrorObjectOwned},
};
use serde_json::{json, Value};
use sp_api::ProvideRuntimeApi;
use sp_blockchain::HeaderBackend;
use sp_core::{crypto::Ss58Codec, H256};
use sp_runtime::traits::Block as BlockT;
use trainet_primitives::{
	api::TrainetApi,
	bisection::Transition,
	commit::OpLeaf,
	descent::Axis,
	market::{
		DescentStage, Dispute, DisputeId, DisputePhase, InitStage, OpStage, StateTensors, Task,
		TaskId, TaskState,
	},
	task::{Model, Optimizer, TrainingSpec},
};
use trainet_runtime::{AccountId, Balance, BlockNumber};

/// The JSON-RPC error code of a failed runtime API call.
pub const RUNTIME_ERROR: i32 = 9000;

/// The `trainet_*` methods.
#[rpc(client, server, namespace = "trainet")]
pub trait TrainetRpc<BlockHash> {
	/// A task still in the market, or `null`.
	#[method(name = "task")]
	fn task(&self, id: TaskId, at: Option<BlockHash>) -> RpcResult<Option<Value>>;

	/// The receipt of a task paid not long ago (whom it paid, its spec, the commitment that
	/// names the model), or `null`.
	#[method(name = "receipt")]
	fn receipt(&self, id: TaskId, at: Option<BlockHash>) -> RpcResult<Option<Value>>;

	/// The open disputes against `task`, in order of id; without a task, one page of at most
	/// `limit` (256 at most and by default) in storage order, after dispute `after`.
	#[method(name = "openDisputes")]
	fn open_disputes(
		&self,
		task: Option<TaskId>,
		at: Option<BlockHash>,
		after: Option<DisputeId>,
		limit: Option<u32>,
	) -> RpcResult<Vec<Value>>;
}

/// Serves the `trainet_*` methods from a client's runtime API.
pub struct Trainet<C, B> {
	client: Arc<C>,
	_block: std::marker::PhantomData<B>,
}

impl<C, B> Trainet<C, B> {
	/// Serves from `client`.
	pub fn new(client: Arc<C>) -> Self {
		Self { client, _block: Default::default() }
	}
}

fn runtime_error(e: impl std::fmt::Debug) -> ErrorObjectOwned {
	ErrorObject::owned(RUNTIME_ERROR, "runtime API call failed", Some(format!("{e:?}")))
}

impl<C, B> TrainetRpcServer<<B as BlockT>::Hash> for Trainet<C, B>
where
	B: BlockT,
	C: ProvideRuntimeApi<B> + HeaderBackend<B> + Send + Sync + 'static,
	C::Api: TrainetApi<B, AccountId, Balance, BlockNumber>,
{
	fn task(&self, id: TaskId, at: Option<B::Hash>) -> RpcResult<Option<Value>> {
		let at = at.unwrap_or_else(|| self.client.info().best_hash);
		let task = self.client.runtime_api().task(at, id).map_err(runtime_error)?;
		Ok(task.map(|t| task_json(id, &t)))
	}

	fn receipt(&self, id: TaskId, at: Option<B::Hash>) -> RpcResult<Option<Value>> {
		let at = at.unwrap_or_else(|| self.client.info().best_hash);
		let receipt = self.client.runtime_api().receipt(at, id).map_err(runtime_error)?;
		Ok(receipt.map(|r| {
			json!({
				"task": id,
				"submitter": account(&r.submitter),
				"solver": account(&r.solver),
				"spec": spec_json(&r.spec),
				"traceRoot": hash(&r.commitment.trace_root),
				"steps": r.commitment.steps,
				"finalState": hash(&r.commitment.final_state),
				"modelHash": hash(&r.commitment.model_hash),
				"keptUntil": r.kept_until,
			})
		}))
	}

	fn open_disputes(
		&self,
		task: Option<TaskId>,
		at: Option<B::Hash>,
		after: Option<DisputeId>,
		limit: Option<u32>,
	) -> RpcResult<Vec<Value>> {
		let at = at.unwrap_or_else(|| self.client.info().best_hash);
		let limit = limit.unwrap_or(trainet_primitives::api::MAX_DISPUTE_PAGE);
		let disputes = self
			.client
			.runtime_api()
			.open_disputes(at, task, after, limit)
			.map_err(runtime_error)?;
		Ok(disputes.iter().map(|(id, d)| dispute_json(*id, d)).collect())
	}
}

fn account(a: &AccountId) -> Value {
	Value::String(a.to_ss58check())
}

fn hash(h: &H256) -> Value {
	Value::String(format!("{h:?}"))
}

fn balance(b: Balance) -> Value {
	Value::String(b.to_string())
}

fn spec_json(s: &TrainingSpec) -> Value {
	let model = match &s.model {
		Model::Mlp { widths, activation } => json!({
			"mlp": {
				"widths": widths.to_vec(),
				"activation": format!("{activation:?}").to_lowercase(),
			}
		}),
		Model::Graph { input, layers } => json!({
			"graph": {
				"input": [input.channels, input.height, input.width],
				"layers": layers.iter().map(|l| format!("{l:?}")).collect::<Vec<_>>(),
			}
		}),
	};
	let optimizer = match s.optimizer {
		Optimizer::Sgd { learning_rate, momentum } => json!({
			"sgd": { "learningRate": learning_rate.to_f32(), "momentum": momentum.to_f32() }
		}),
		Optimizer::Adam { learning_rate, beta1, beta2, epsilon } => json!({
			"adam": {
				"learningRate": learning_rate.to_f32(),
				"beta1": beta1.to_f32(),
				"beta2": beta2.to_f32(),
				"epsilon": epsilon.to_f32(),
			}
		}),
		Optimizer::AdamW { learning_rate, beta1, beta2, epsilon, weight_decay } => json!({
			"adamw": {
				"learningRate": learning_rate.to_f32(),
				"beta1": beta1.to_f32(),
				"beta2": beta2.to_f32(),
				"epsilon": epsilon.to_f32(),
				"weightDecay": weight_decay.to_f32(),
			}
		}),
	};
	json!({
		"model": model,
		"loss": format!("{:?}", s.loss),
		"optimizer": optimizer,
		"batchSize": s.batch_size,
		"steps": s.steps,
		"checkpointInterval": s.checkpoint_interval,
		"maxGradNorm": s.max_grad_norm.map(|m| m.to_f32()),
		"seed": s.seed,
		"dataset": {
			"root": hash(&s.dataset.root),
			"samples": s.dataset.samples,
			"features": s.dataset.features,
			"classes": s.dataset.classes,
			"manifest": hash(&s.dataset.manifest),
		},
	})
}

/// A task as JSON.
pub fn task_json(id: TaskId, t: &Task<AccountId, Balance, BlockNumber>) -> Value {
	let state = match &t.state {
		TaskState::Open { claim_by } => json!({ "status": "open", "claimBy": claim_by }),
		TaskState::Claimed { solver, commit_by } => {
			json!({ "status": "claimed", "solver": account(solver), "commitBy": commit_by })
		}
		TaskState::Committed { solver, commitment, challenge_until } => json!({
			"status": "committed",
			"solver": account(solver),
			"traceRoot": hash(&commitment.trace_root),
			"steps": commitment.steps,
			"finalState": hash(&commitment.final_state),
			"modelHash": hash(&commitment.model_hash),
			"challengeUntil": challenge_until,
		}),
	};
	json!({
		"id": id,
		"submitter": account(&t.submitter),
		"spec": spec_json(&t.spec),
		"reward": balance(t.reward),
		"solverStake": balance(t.solver_stake),
		"timeouts": { "claim": t.timeouts.claim, "commit": t.timeouts.commit, "challenge": t.timeouts.challenge },
		"state": state,
		"reopened": t.reopened,
		"lastFailedSolver": t.last_failed_solver.as_ref().map(account),
	})
}

/// A dispute as JSON.
pub fn dispute_json(id: DisputeId, d: &Dispute<AccountId, Balance, BlockNumber>) -> Value {
	let axis_name = |a: Axis| match a {
		Axis::Rows => "rows",
		Axis::Columns => "columns",
	};
	let phase = match &d.phase {
		DisputePhase::Bisecting { round, reveals } => json!({
			"bisecting": {
				"round": round,
				"position": d.bisection.midpoint(),
				"solverReveal": reveals.solver.as_ref().map(hash),
				"challengerReveal": reveals.challenger.as_ref().map(hash),
			}
		}),
		DisputePhase::Segment(g) => {
			let stage = match g.position() {
				Some(position) => json!({ "revealing": { "position": position } }),
				None => json!("committing"),
			};
			json!({ "segment": {
				"first": g.first,
				"steps": g.len,
				"stage": stage,
				"round": g.round,
				"agreed": g.bisection.agreed,
				"disputed": g.bisection.disputed,
				"solverRoot": g.roots.solver.as_ref().map(hash),
				"challengerRoot": g.roots.challenger.as_ref().map(hash),
				"solverReveal": g.reveals.solver.as_ref().map(hash),
				"challengerReveal": g.reveals.challenger.as_ref().map(hash),
			} })
		}
		DisputePhase::Leaf { transition } => {
			let transition = match transition {
				Transition::Initialization => json!("initialization"),
				Transition::Step(t) => json!({ "step": t }),
			};
			json!({ "leaf": { "transition": transition } })
		}
		DisputePhase::Availability(g) => json!({ "availability": {
			"point": g.point,
			"chunks": g.chunks.iter()
				.map(|c| json!({ "tensor": c.tensor, "row": c.row }))
				.collect::<Vec<_>>(),
		} }),
		DisputePhase::Initialization(g) => {
			let stage = match g.stage() {
				InitStage::Revealing => json!("revealing"),
				InitStage::Descent { tensor, stage } => match stage {
					DescentStage::Opening => json!({ "opening": { "tensor": tensor } }),
					DescentStage::Descending(cursor) => json!({ "descending": {
						"tensor": tensor, "level": cursor.level, "index": cursor.index,
					} }),
					DescentStage::Line { axis, index } => json!({ "line": {
						"tensor": tensor, "axis": axis_name(axis), "index": index,
					} }),
					DescentStage::Element { row, col }
					| DescentStage::Partials { row, col }
					| DescentStage::Term { row, col, .. } => json!({ "element": {
						"tensor": tensor, "row": row, "col": col,
					} }),
				},
			};
			let tensors = |t: &Option<StateTensors>| {
				t.as_ref().map(|t| t.iter().map(hash).collect::<Vec<_>>())
			};
			json!({ "initialization": {
				"stage": stage,
				"solverTensors": tensors(&g.tensors.solver),
				"challengerTensors": tensors(&g.tensors.challenger),
				"descentAxis": g.descent.walk.as_ref().map(|w| axis_name(w.axis)),
			} })
		}
		DisputePhase::Operations(g) => {
			let leaf = |l: &Option<OpLeaf>| {
				l.as_ref().map(|l| json!({ "output": hash(&l.output), "link": hash(&l.link) }))
			};
			let stage = match g.stage() {
				OpStage::Committing => json!("committing"),
				OpStage::Revealing(position) => json!({ "revealing": { "position": position } }),
				OpStage::Operation(j) => json!({ "operation": j }),
				OpStage::Assembly => json!("assembly"),
				OpStage::Opening(j) => json!({ "opening": { "operation": j } }),
				OpStage::Descending { op, cursor } => json!({ "descending": {
					"operation": op, "level": cursor.level, "index": cursor.index,
				} }),
				OpStage::Line { op, axis, index } => json!({ "line": {
					"operation": op,
					"axis": axis_name(axis),
					"index": index,
				} }),
				OpStage::Element { op, row, col } => json!({ "element": {
					"operation": op, "row": row, "col": col,
				} }),
				OpStage::Partials { op, row, col } => json!({ "partials": {
					"operation": op, "row": row, "col": col,
				} }),
				OpStage::Term { op, row, col, k } => json!({ "term": {
					"operation": op, "row": row, "col": col, "k": k,
				} }),
			};
			json!({ "operations": {
				"step": g.step,
				"ops": g.ops,
				"stage": stage,
				"round": g.round,
				"agreed": g.bisection.agreed,
				"disputed": g.bisection.disputed,
				"agreedLink": hash(&g.agreed_link),
				"solverRoot": g.roots.solver.as_ref().map(hash),
				"challengerRoot": g.roots.challenger.as_ref().map(hash),
				"solverReveal": leaf(&g.reveals.solver),
				"challengerReveal": leaf(&g.reveals.challenger),
				"solverDisputed": leaf(&g.disputed.solver),
				"challengerDisputed": leaf(&g.disputed.challenger),
				"descentAxis": g.descent.as_ref().and_then(|x| x.walk.as_ref()).map(|w| axis_name(w.axis)),
			} })
		}
	};
	json!({
		"id": id,
		"task": d.task,
		"solver": account(&d.solver),
		"challenger": account(&d.challenger),
		"bond": balance(d.bond),
		"solverStake": balance(d.solver_stake),
		"solverRoot": hash(&d.roots.solver),
		"challengerRoot": hash(&d.roots.challenger),
		"traceLen": d.points.len(),
		"checkpointInterval": d.points.interval,
		"agreed": d.bisection.agreed,
		"disputed": d.bisection.disputed,
		"agreedState": d.agreed_state.as_ref().map(hash),
		"solverDisputed": hash(&d.disputed.solver),
		"challengerDisputed": hash(&d.disputed.challenger),
		"phase": phase,
		"deadline": d.deadline,
	})
}
