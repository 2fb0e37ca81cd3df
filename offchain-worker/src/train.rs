//! Training a task's model with the RepOps engine: step by step from the seed's
//! initialization, each step's state hashed (`h_t`, what the trace commits to), with held-out
//! accuracy for whoever wants to see that the model learns.

use std::sync::Arc;

use sp_core::H256;
use thiserror::Error;
use trainet_primitives::{
	program::{self, initial_state, step_program, OpKind, Source, StepProgram},
	referee::Fault,
	repops::{self, batch_indices, sequence::Tokens, Matrix, ShapeError},
	task::{Loss, Model, Optimizer, SpecError, TrainingSpec},
	trace::TracePoints,
};

use burn::{
	backend::{Autodiff, NdArray},
	tensor::{ops::FloatTensor, Tensor, TensorPrimitive},
};

use crate::{
	backend::{from_matrix, Kernel, RepOpsBackend, StepContext},
	dataset::Dataset,
	engine,
	graph_model::{GraphLayer, GraphNet},
	model::Mlp,
};

/// Which states the trace of `spec` commits to. For a spec that validates (every spec the
/// worker trains or disputes: `Training::new` refuses the others); the fallback for an
/// interval of zero, every step, is never taken for those.
pub fn trace_points(spec: &TrainingSpec) -> TracePoints {
	spec.trace_points().unwrap_or(TracePoints { steps: spec.steps, interval: 1 })
}

/// The backend training runs on: burn's autodiff over its CPU backend, RepOps kernels inside.
pub type TrainBackend = Autodiff<NdArray<f32>>;
type Inner = NdArray<f32>;

/// Which implementation runs a step. Both give the same bits (tested); the program is what
/// disputes and the deliberate operation-level cheat need, burn what a model author uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
	/// The model as a burn `Module` on [`TrainBackend`]: forward, `backward()`, update.
	#[default]
	Burn,
	/// The step program, operation by operation ([`engine::run_step`]).
	Program,
	/// The burn model on the first NVIDIA GPU (`Autodiff<crate::cuda::Cuda>`), RepOps CUDA
	/// kernels inside: the same bits as [`Engine::Burn`].
	#[cfg(feature = "cuda")]
	Cuda,
}

/// Why training cannot go on.
#[derive(Debug, Error)]
pub enum TrainError {
	/// The spec cannot be run bit-exactly.
	#[error("the task spec is invalid: {0}")]
	Spec(SpecError),
	/// The dataset is not the one the spec commits to.
	#[error("the dataset's root is {actual:?}, the spec commits to {expected:?}")]
	WrongDataset {
		/// The spec's root.
		expected: H256,
		/// The dataset's.
		actual: H256,
	},
	/// The spec names this dataset's root but declares another shape.
	#[error(transparent)]
	Misstated(#[from] crate::dataset::DatasetError),
	/// A tensor operation failed (a bug, or a label out of range).
	#[error("a tensor operation failed: {0:?}")]
	Shape(ShapeError),
	/// Every step of the spec has run.
	#[error("all {0} steps are done")]
	Finished(u32),
	/// The engine asked for cannot run this model yet.
	#[error("{0}")]
	Unsupported(&'static str),
	/// A state to resume from that does not fit the spec.
	#[error("cannot resume at step {step}: {reason}")]
	BadResume {
		/// The step.
		step: u32,
		/// Why.
		reason: String,
	},
}

impl From<ShapeError> for TrainError {
	fn from(e: ShapeError) -> Self {
		Self::Shape(e)
	}
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
	/// The step's index `t` (the state after it is `h_{t+1}`).
	pub step: u32,
	/// The batch's mean loss before the update.
	pub loss: f32,
}

/// A deliberate cheat, for tests and demonstrations of the dispute game.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cheat {
	/// Alter one operation of one step ([`Fault::alter`]).
	Alter(Fault),
	/// Skip the work from this step on: every later state is claimed to be the one before.
	SkipFrom(u32),
}

impl Cheat {
	/// The altered operation, if that is the cheat.
	pub fn fault(cheat: Option<Cheat>) -> Option<Fault> {
		match cheat {
			Some(Cheat::Alter(f)) => Some(f),
			_ => None,
		}
	}
}

/// A training run of one task.
#[derive(Clone, Debug)]
pub struct Training {
	spec: TrainingSpec,
	program: StepProgram,
	data: Dataset,
	state: Vec<Matrix>,
	step: u32,
	loss_op: usize,
	fault: Option<Fault>,
	skip_from: Option<u32>,
	engine: Engine,
}

impl Training {
	/// A run of `spec` on `data` (which must be the dataset the spec commits to), at `h_0`.
	pub fn new(spec: TrainingSpec, data: Dataset) -> Result<Self, TrainError> {
		let program = step_program(&spec).map_err(TrainError::Spec)?;
		let actual = data.root();
		if actual != spec.dataset.root {
			return Err(TrainError::WrongDataset { expected: spec.dataset.root, actual });
		}
		data.matches(&spec.dataset)?;
		let state = initial_state(&spec, &program)?;
		let loss_op = program.ops.iter().position(|op| op.kind == OpKind::Mean).unwrap_or(0);
		Ok(Self {
			spec,
			program,
			data,
			state,
			step: 0,
			loss_op,
			fault: None,
			skip_from: None,
			engine: Engine::default(),
		})
	}

	/// A run of `spec` on `data` resumed at step `step` from `state` (a checkpoint of
	/// `h_step`): it continues exactly as the run that wrote the checkpoint would have.
	pub fn resume(
		spec: TrainingSpec,
		data: Dataset,
		step: u32,
		state: Vec<Matrix>,
	) -> Result<Self, TrainError> {
		let mut run = Self::new(spec, data)?;
		let bad = |reason: String| TrainError::BadResume { step, reason };
		if step > run.spec.steps {
			return Err(bad(format!("the task has {} steps", run.spec.steps)));
		}
		let shapes: Vec<(u32, u32)> = state.iter().map(|m| (m.rows, m.cols)).collect();
		if shapes != run.program.state_shapes {
			return Err(bad(format!(
				"the state's tensors are {shapes:?}, the spec's {:?}",
				run.program.state_shapes
			)));
		}
		run.state = state;
		run.step = step;
		Ok(run)
	}

	/// Makes this run cheat on purpose: operation `fault.op` of step `fault.step` is altered
	/// by [`Fault::alter`], as [`trainet_primitives::referee::StepRun::with_fault`] does (for
	/// the end-to-end tests of the dispute game).
	pub fn with_fault(mut self, fault: Option<Fault>) -> Self {
		self.fault = fault;
		self
	}

	/// Runs the steps with `engine` (burn by default).
	pub fn with_engine(mut self, engine: Engine) -> Self {
		self.engine = engine;
		self
	}

	/// Makes this run cheat on purpose with `cheat` (see [`Cheat`]).
	pub fn with_cheat(mut self, cheat: Option<Cheat>) -> Self {
		self.fault = Cheat::fault(cheat);
		self.skip_from = match cheat {
			Some(Cheat::SkipFrom(t)) => Some(t),
			_ => None,
		};
		self
	}

	/// The steps done so far.
	pub fn steps_done(&self) -> u32 {
		self.step
	}

	/// The spec.
	pub fn spec(&self) -> &TrainingSpec {
		&self.spec
	}

	/// The current state (parameters, then optimizer tensors).
	pub fn state(&self) -> &[Matrix] {
		&self.state
	}

	/// The current state's hash. A step does not hash its state: the trace commits only to
	/// every `checkpoint_interval`-th one ([`Self::at_trace_point`]), and hashing is the
	/// costly part of proving.
	pub fn state_hash(&self) -> H256 {
		crate::commit::state_hash(&self.state)
	}

	/// Which states the task's trace commits to.
	pub fn trace_points(&self) -> TracePoints {
		trace_points(&self.spec)
	}

	/// Whether the current state is an entry of the trace.
	pub fn at_trace_point(&self) -> bool {
		self.trace_points().entry(self.step).is_some()
	}

	/// Runs to the end from the current state (which must be an entry of the trace) and
	/// returns the trace's entries from it on, hashing only those states; `on_step` sees each
	/// step's report.
	pub fn trace(&mut self, mut on_step: impl FnMut(&StepReport)) -> Result<Vec<H256>, TrainError> {
		let mut entries = vec![self.state_hash()];
		while self.step < self.spec.steps {
			let r = self.step()?;
			on_step(&r);
			if self.at_trace_point() {
				entries.push(self.state_hash());
			}
		}
		Ok(entries)
	}

	/// Runs the next step.
	pub fn step(&mut self) -> Result<StepReport, TrainError> {
		if self.step >= self.spec.steps {
			return Err(TrainError::Finished(self.spec.steps));
		}
		let t = self.step;
		if self.skip_from.is_some_and(|s| t >= s) {
			// The cheat: no work, the state stays as it was.
			self.step = t.saturating_add(1);
			return Ok(StepReport { step: t, loss: f32::NAN });
		}
		let (batch, labels) = self.batch(t)?;
		let fault = self.fault.filter(|f| f.step == t).map(|f| f.op);
		// A graph model (a CNN, a transformer) runs as a burn module on the CPU (the same
		// bits as its step program, tested); CUDA kernels for its operators are not built yet.
		#[cfg(feature = "cuda")]
		let graph = matches!(self.spec.model, Model::Graph { .. });
		#[cfg(feature = "cuda")]
		if self.engine == Engine::Cuda
			&& (graph
				|| matches!(self.spec.optimizer, Optimizer::AdamW { .. })
				|| self.spec.max_grad_norm.is_some())
		{
			return Err(TrainError::Unsupported(
				"the CUDA engine has no kernels for graph models' operators, AdamW or gradient \
				 clipping yet: train this spec with the CPU engine",
			));
		}
		if fault.is_none() && self.engine != Engine::Program {
			// The state moves into the step (no copy of it into burn's tensors). A step of
			// a state that fits the spec and a checked dataset does not fail; if one did, a
			// bug, the run has no state left and its later steps fail too.
			let state = std::mem::take(&mut self.state);
			let (loss, next) = match self.engine {
				#[cfg(feature = "cuda")]
				Engine::Cuda => burn_step_on::<crate::cuda::Cuda>(
					&Default::default(),
					&self.spec,
					state,
					batch,
					labels,
					t,
				)?,
				_ => burn_step(&self.spec, state, batch, labels, t)?,
			};
			self.state = next;
			self.step = t.saturating_add(1);
			return Ok(StepReport { step: t, loss });
		}
		// The step program, operation by operation (the only way to alter one operation).
		let mut n = 0u32;
		let mut outputs =
			program::run_ops_with(&self.program, &self.state, &batch, |op, inputs| {
				let mut out = engine::execute(&self.spec, op, inputs, &labels, t)?;
				if fault == Some(n) {
					Fault::alter(&mut out);
				}
				n = n.saturating_add(1);
				Ok(out)
			})?;
		let loss = outputs.get(self.loss_op).and_then(|m| m.data.first()).copied().unwrap_or(0.0);
		self.state = self.program.take_next_state(&mut outputs)?;
		self.step = t.saturating_add(1);
		Ok(StepReport { step: t, loss })
	}

	/// The batch of step `t`: the samples the seed draws, in draw order.
	fn batch(&self, t: u32) -> Result<(Matrix, Vec<u32>), TrainError> {
		let d = &self.spec.dataset;
		let indices = batch_indices(self.spec.seed, t, self.spec.batch_size, d.samples);
		let mut x = Vec::with_capacity(indices.len() * d.features as usize);
		let mut labels = Vec::with_capacity(indices.len());
		for i in indices {
			let (features, label) =
				self.data.samples.get(i as usize).ok_or(ShapeError::Mismatch)?;
			x.extend_from_slice(features);
			labels.push(*label);
		}
		Ok((Matrix::new(self.spec.batch_size, d.features, x)?, labels))
	}

	/// How the current model does on `samples` (accuracy, or mean squared error).
	pub fn evaluate(&self, samples: &Dataset) -> Result<Evaluation, TrainError> {
		evaluate(&self.spec, &self.state, samples)
	}

	/// The figure of [`Self::evaluate`]: the share of `samples` the current model classifies
	/// correctly (or, on targets, its mean squared error).
	pub fn accuracy(&self, samples: &Dataset) -> Result<f32, TrainError> {
		Ok(self.evaluate(samples)?.value())
	}
}

/// One training step of `spec` in burn: the state's parameters become an [`Mlp`] on
/// [`TrainBackend`], its RepOps forward pass and loss run, burn's autodiff computes the
/// gradients (RepOps kernels, see [`crate::backend`]), and the optimizer's RepOps updates give
/// the next state. Returns the batch's mean loss and the next state, in state order.
pub fn burn_step(
	spec: &TrainingSpec,
	state: Vec<Matrix>,
	batch: Matrix,
	labels: Vec<u32>,
	step: u32,
) -> Result<(f32, Vec<Matrix>), TrainError> {
	burn_step_on::<Inner>(&Default::default(), spec, state, batch, labels, step)
}

/// [`burn_step`] on any RepOps backend `B` (its autodiff, `Autodiff<B>`, runs the model) and
/// device: the CPU's `NdArray`, or `crate::cuda::Cuda` on a GPU. The state comes from and goes
/// back to host memory (where it is hashed and checkpointed).
pub fn burn_step_on<B: RepOpsBackend>(
	device: &B::Device,
	spec: &TrainingSpec,
	state: Vec<Matrix>,
	batch: Matrix,
	labels: Vec<u32>,
	step: u32,
) -> Result<(f32, Vec<Matrix>), TrainError> {
	let bad = |reason: String| TrainError::BadResume { step, reason };
	let ctx = StepContext::new(spec.clone(), labels, step);
	let (mut pairs, loss, moments) = match &spec.model {
		Model::Mlp { widths, .. } => mlp_gradients::<B>(device, widths, state, batch, &ctx)?,
		Model::Graph { .. } => graph_gradients::<B>(device, spec, state, batch, &ctx)?,
	};
	let params = pairs.len();
	let mut moments: Vec<_> =
		moments.into_iter().map(|m| Some(from_matrix::<B>(m, device))).collect();
	let run = |kind: OpKind, inputs| B::repops(Kernel::new(kind, &ctx), inputs);
	if let Some(max_norm) = spec.max_grad_norm {
		// Clipping by global norm: the step program's three kernels, in its order.
		let mut grads = Vec::with_capacity(pairs.len());
		for (i, (g, _)) in pairs.iter_mut().enumerate() {
			grads.push(g.take().ok_or_else(|| bad(format!("burn gave no gradient for {i}")))?);
		}
		let sums = grads.iter().map(|g| run(OpKind::SumSquares, vec![g.clone()])).collect();
		let factor = run(OpKind::ClipCoefficient(max_norm), sums);
		for ((g, _), grad) in pairs.iter_mut().zip(grads) {
			*g = Some(run(OpKind::ClipScale, vec![grad, factor.clone()]));
		}
	}
	let (mut next, mut first, mut second) = (Vec::new(), Vec::new(), Vec::new());
	for (i, (g, p)) in pairs.into_iter().enumerate() {
		let g = g.ok_or_else(|| bad(format!("burn gave no gradient for parameter {i}")))?;
		let mut moment = |j: usize| {
			moments
				.get_mut(j)
				.and_then(Option::take)
				.ok_or_else(|| bad("no optimizer state".into()))
		};
		match spec.optimizer {
			Optimizer::Sgd { .. } => {
				let (v, p) = B::repops_momentum_sgd(&ctx, moment(i)?, g, p);
				next.push(p);
				first.push(v);
			}
			Optimizer::Adam { .. } | Optimizer::AdamW { .. } => {
				let step = match spec.optimizer {
					Optimizer::AdamW { .. } => OpKind::AdamWStep,
					_ => OpKind::AdamStep,
				};
				let m = run(OpKind::AdamM, vec![moment(i)?, g.clone()]);
				let v = run(OpKind::AdamV, vec![moment(params.saturating_add(i))?, g]);
				next.push(run(step, vec![p, m.clone(), v.clone()]));
				first.push(m);
				second.push(v);
			}
		}
	}
	if let Some(e) = ctx.failure() {
		return Err(e.into());
	}
	// The next state and the loss, read together (one wait for a GPU).
	let mut next: Vec<_> = next.into_iter().chain(first).chain(second).collect();
	next.push(loss);
	let mut next = B::repops_take_all(next)?;
	let loss = next.pop().and_then(|m| m.data.first().copied()).unwrap_or(f32::NAN);
	Ok((loss, next))
}

/// Each parameter's gradient (if burn gave one) and value on the inner backend, in state
/// order.
type Pairs<B> = Vec<(Option<FloatTensor<B>>, FloatTensor<B>)>;

/// What a forward pass and `backward()` give the update: each parameter's gradient and value,
/// the loss, and the optimizer's tensors of the state (untouched).
type Backwards<B> = (Pairs<B>, FloatTensor<B>, Vec<Matrix>);

/// An MLP's forward pass, loss and `backward()` in burn: the parameters' gradients and values,
/// the loss, and the optimizer's tensors of the state (untouched).
fn mlp_gradients<B: RepOpsBackend>(
	device: &B::Device,
	widths: &[u32],
	state: Vec<Matrix>,
	batch: Matrix,
	ctx: &Arc<StepContext>,
) -> Result<Backwards<B>, TrainError> {
	let params = widths.len().saturating_sub(1).saturating_mul(2);
	let bad = |reason: String| TrainError::BadResume { step: ctx.step, reason };
	if state.len() < params {
		return Err(bad(format!("the state has {} tensors", state.len())));
	}
	// The parameters and the optimizer's moments, moved (megabytes each on large models).
	let mut param_state = state;
	let moments = param_state.split_off(params);
	let model = Mlp::<Autodiff<B>>::from_owned_state(widths, param_state, device)
		.map_err(|e| bad(e.to_string()))?;
	let x = Tensor::<Autodiff<B>, 2>::from_primitive(TensorPrimitive::Float(from_matrix::<
		Autodiff<B>,
	>(batch, device)));
	let logits = model.forward_repops(x, ctx).into_primitive().tensor();
	let loss = Autodiff::<B>::repops_loss_mean(logits, ctx);
	let grads = loss.clone().backward();

	// Each parameter and its gradient, in state order, on the inner backend.
	let mut pairs = Vec::with_capacity(params);
	for layer in &model.layers {
		let w = layer.weight.val();
		pairs.push((
			w.grad(&grads).map(|g| g.into_primitive().tensor()),
			w.inner().into_primitive().tensor(),
		));
		if let Some(b) = &layer.bias {
			let b = b.val();
			pairs.push((
				b.grad(&grads).map(|g| g.into_primitive().tensor()),
				b.inner().into_primitive().tensor(),
			));
		}
	}
	Ok((pairs, loss.primitive, moments))
}

/// A graph model's forward pass, loss and `backward()` in burn ([`GraphNet`] on
/// `Autodiff<B>`): the step program's forward operations in its order, each a differentiable
/// RepOps kernel ([`RepOpsBackend::repops_op`]) on the module's parameters, then the loss; the
/// parameters' gradients and values as the state holds them (2-D), the loss, and the
/// optimizer's tensors of the state (untouched).
fn graph_gradients<B: RepOpsBackend>(
	device: &B::Device,
	spec: &TrainingSpec,
	state: Vec<Matrix>,
	batch: Matrix,
	ctx: &Arc<StepContext>,
) -> Result<Backwards<B>, TrainError> {
	let bad = |reason: String| TrainError::BadResume { step: ctx.step, reason };
	let program = step_program(spec).map_err(TrainError::Spec)?;
	let params = program.params as usize;
	if state.len() < params {
		return Err(bad(format!("the state has {} tensors", state.len())));
	}
	let mut param_state = state;
	let moments = param_state.split_off(params);
	let shapes: Vec<(u32, u32)> = param_state.iter().map(|m| (m.rows, m.cols)).collect();
	let net = GraphNet::<Autodiff<B>>::from_owned_state(&spec.model, param_state, device)
		.map_err(|e| bad(e.to_string()))?;
	let views: Vec<FloatTensor<Autodiff<B>>> =
		net.params_2d().into_iter().map(|t| t.into_primitive().tensor()).collect();
	let x = from_matrix::<Autodiff<B>>(batch, device);
	let loss_at = program
		.ops
		.iter()
		.position(|o| {
			matches!(o.kind, OpKind::SoftmaxXent | OpKind::SquaredError | OpKind::TokenXent(_))
		})
		.ok_or(TrainError::Unsupported("a step program without a loss"))?;
	let mut outs: Vec<FloatTensor<Autodiff<B>>> = Vec::with_capacity(loss_at);
	let read = |s: &Source, outs: &[FloatTensor<Autodiff<B>>]| match s {
		Source::Batch => Some(x.clone()),
		Source::State(i) => views.get(*i as usize).cloned(),
		Source::Op(j) => outs.get(*j as usize).cloned(),
	};
	let missing = || TrainError::Shape(ShapeError::Mismatch);
	for op in program.ops.iter().take(loss_at) {
		let inputs = op.inputs.iter().map(|s| read(s, &outs)).collect::<Option<Vec<_>>>();
		outs.push(Autodiff::<B>::repops_op(op.kind, inputs.ok_or_else(missing)?, ctx));
	}
	let loss_op = program.ops.get(loss_at).ok_or_else(missing)?;
	let logits = loss_op.inputs.first().and_then(|s| read(s, &outs)).ok_or_else(missing)?;
	let loss = match loss_op.kind {
		OpKind::TokenXent(_) => {
			Autodiff::<B>::repops_token_loss_mean(loss_op.kind, logits, x.clone(), ctx)
		}
		_ => Autodiff::<B>::repops_loss_mean(logits, ctx),
	};
	drop(outs);
	let grads = loss.clone().backward();

	// Each module parameter's gradient and value, in state order, in the state's 2-D shape.
	fn pair<B: RepOpsBackend, const D: usize>(
		p: &burn::module::Param<Tensor<Autodiff<B>, D>>,
		grads: &<Autodiff<B> as burn::tensor::backend::AutodiffBackend>::Gradients,
		(rows, cols): (u32, u32),
	) -> (Option<FloatTensor<B>>, FloatTensor<B>) {
		let shape = burn::tensor::Shape::new([rows as usize, cols as usize]);
		let flat = |t: FloatTensor<B>| B::float_reshape(t, shape.clone());
		let v = p.val();
		(
			v.grad(grads).map(|g| flat(g.into_primitive().tensor())),
			flat(v.inner().into_primitive().tensor()),
		)
	}
	let mut shape = shapes.into_iter();
	let mut next = || shape.next().ok_or_else(missing);
	let mut pairs = Vec::with_capacity(params);
	for layer in &net.layers {
		match layer {
			GraphLayer::Linear(l) => {
				pairs.push(pair::<B, 2>(&l.weight, &grads, next()?));
				let b = l.bias.as_ref().ok_or_else(missing)?;
				pairs.push(pair::<B, 1>(b, &grads, next()?));
			}
			GraphLayer::Conv2d(c) => {
				pairs.push(pair::<B, 4>(&c.weight, &grads, next()?));
				let b = c.bias.as_ref().ok_or_else(missing)?;
				pairs.push(pair::<B, 1>(b, &grads, next()?));
			}
			GraphLayer::LayerNorm(n) => {
				pairs.push(pair::<B, 1>(&n.gamma, &grads, next()?));
				let b = n.beta.as_ref().ok_or_else(missing)?;
				pairs.push(pair::<B, 1>(b, &grads, next()?));
			}
			GraphLayer::Embedding(e) => {
				pairs.push(pair::<B, 2>(&e.tokens.weight, &grads, next()?));
				pairs.push(pair::<B, 2>(&e.positions, &grads, next()?));
			}
		}
	}
	Ok((pairs, loss.primitive, moments))
}

/// How well a model does on a dataset: the share of samples it classifies correctly (the
/// largest output is the label), or its mean squared error on real-valued targets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Evaluation {
	/// The share of samples classified correctly.
	Accuracy(f32),
	/// The mean of `(output - target)^2` over the samples.
	MeanSquaredError(f32),
	/// A sequence model's: the mean over every position of every sample of the softmax
	/// cross-entropy of its prediction of the next token (the validation loss).
	TokenCrossEntropy(f32),
}

impl Evaluation {
	/// The figure itself.
	pub fn value(self) -> f32 {
		match self {
			Evaluation::Accuracy(v)
			| Evaluation::MeanSquaredError(v)
			| Evaluation::TokenCrossEntropy(v) => v,
		}
	}
}

impl std::fmt::Display for Evaluation {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		match self {
			Evaluation::Accuracy(a) => write!(f, "accuracy {a:.4}"),
			Evaluation::MeanSquaredError(e) => write!(f, "mean squared error {e:.6}"),
			Evaluation::TokenCrossEntropy(e) => write!(f, "per-token cross-entropy {e:.4}"),
		}
	}
}

/// How the model of `spec` with parameters `state` (in state order) does on `data`
/// ([`Evaluation`]): the forward pass with RepOps, then the largest output, or the squared
/// error of the one output.
pub fn evaluate(
	spec: &TrainingSpec,
	state: &[Matrix],
	data: &Dataset,
) -> Result<Evaluation, TrainError> {
	evaluate_of(&spec.model, state, data)
}

/// Rows per forward pass of [`forward`] (a batch a spec may have).
const FORWARD_ROWS: usize = 1024;

/// The outputs of `model` with parameters `params` (in state order) on the rows of `x`: the
/// forward operations of its step program ([`program::step_program`], the operations training
/// runs), run by the engine, `FORWARD_ROWS` rows at a time. A sequence model gives a row per
/// position of each sample (`x.rows * context` rows: the logits of each next token).
pub fn forward(model: &Model, params: &[Matrix], x: &Matrix) -> Result<Matrix, TrainError> {
	let outputs = model.shapes().map_err(TrainError::Spec)?.last().map(|s| s.values());
	let outputs = outputs.ok_or(TrainError::Spec(SpecError::TooFewLayers))?;
	let positions = model.context().unwrap_or(1);
	let chunk = (FORWARD_ROWS / positions.max(1) as usize).max(1);
	// A spec only to compile the model: the loss follows the output's width and is not run.
	let loss = if outputs == 1 { Loss::MeanSquaredError } else { Loss::SoftmaxCrossEntropy };
	let optimizer = trainet_primitives::task::Optimizer::sgd(0.1, 0.0);
	let mut result = Vec::with_capacity(x.data.len() / x.cols.max(1) as usize * outputs as usize);
	for rows in x.data.chunks(chunk * x.cols.max(1) as usize) {
		let n = (rows.len() / x.cols.max(1) as usize) as u32;
		let spec = TrainingSpec::example_graph(model.clone(), loss, optimizer, n);
		let program = step_program(&spec).map_err(TrainError::Spec)?;
		let end = program
			.ops
			.iter()
			.position(|op| {
				matches!(op.kind, OpKind::SoftmaxXent | OpKind::SquaredError | OpKind::TokenXent(_))
			})
			.ok_or(TrainError::Shape(ShapeError::Mismatch))?;
		let forward = program::StepProgram { ops: program.ops[..end].to_vec(), ..program };
		let batch = Matrix::new(n, x.cols, rows.to_vec())?;
		// No dropout at evaluation.
		let mut outs =
			program::run_ops_with(&forward, params, &batch, |op, inputs| match op.kind {
				OpKind::Dropout(_) => {
					inputs.first().map(|m| (*m).clone()).ok_or(ShapeError::Mismatch)
				}
				_ => engine::execute(&spec, op, inputs, &[], 0),
			})?;
		let last = outs.pop().ok_or(TrainError::Shape(ShapeError::Mismatch))?;
		result.extend(last.data);
	}
	Ok(Matrix::new(x.rows.saturating_mul(positions), outputs, result)?)
}

/// [`evaluate`] of `model`.
pub fn evaluate_of(
	model: &Model,
	state: &[Matrix],
	data: &Dataset,
) -> Result<Evaluation, TrainError> {
	let empty = match data.is_regression() {
		true => Evaluation::MeanSquaredError(0.0),
		false => Evaluation::Accuracy(0.0),
	};
	if data.samples.is_empty() {
		return Ok(empty);
	}
	let n = data.samples.len() as u32;
	let x: Vec<f32> = data.samples.iter().flat_map(|(x, _)| x.iter().copied()).collect();
	let x = Matrix::new(n, data.features, x)?;
	let a = forward(model, state, &x)?;
	if let Some(context) = model.context() {
		// The training loss's own operations, over every position of every sample.
		let tokens = Tokens { vocab: a.cols, context, dim: a.cols };
		let losses = repops::sequence::token_xent(&tokens, &a, &x)?;
		return Ok(Evaluation::TokenCrossEntropy(repops::mean(&losses.data)));
	}
	if data.is_regression() {
		// The training loss's own operations, over every sample.
		let targets: Vec<u32> = data.samples.iter().map(|(_, t)| *t).collect();
		let errors = repops::squared_error(&a, &targets)?;
		return Ok(Evaluation::MeanSquaredError(repops::mean(&errors.data)));
	}
	let correct = data
		.samples
		.iter()
		.enumerate()
		.filter(|(i, (_, y))| {
			let row = a.row(*i as u32).unwrap_or_default();
			let best = row.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |m, (j, v)| {
				if *v > m.1 {
					(j, *v)
				} else {
					m
				}
			});
			best.0 == *y as usize
		})
		.count();
	Ok(Evaluation::Accuracy(correct as f32 / n as f32))
}

/// The memory, in bytes, training `spec` takes: the dataset, the state, and every output of
/// one step (the engine keeps a step's outputs until the step ends), all `f32`.
pub fn memory_needed(spec: &TrainingSpec) -> Result<u64, TrainError> {
	let program = step_program(spec).map_err(TrainError::Spec)?;
	let values = |(r, c): (u32, u32)| u64::from(r).saturating_mul(u64::from(c));
	let data = values((spec.dataset.samples, spec.dataset.features));
	let state = program.state_shapes.iter().map(|s| values(*s)).fold(0u64, u64::saturating_add);
	let outputs =
		program.ops.iter().map(|op| values((op.rows, op.cols))).fold(0u64, u64::saturating_add);
	Ok(data.saturating_add(state).saturating_add(outputs).saturating_mul(4))
}

/// The memory this machine has, from `/proc/meminfo` (Linux), if known.
pub fn machine_memory() -> Option<u64> {
	let text = std::fs::read_to_string("/proc/meminfo").ok()?;
	let kib: u64 = text
		.lines()
		.find_map(|l| l.strip_prefix("MemTotal:"))?
		.trim()
		.strip_suffix("kB")?
		.trim()
		.parse()
		.ok()?;
	kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn the_memory_a_task_needs_grows_with_its_model_and_batch() {
		let sgd = Optimizer::sgd(0.1, 0.9);
		let digits = Dataset::digits().unwrap();
		let small =
			TrainingSpec::example_mlp(&[64, 32, 10], sgd, 32).with_dataset(digits.commitment());
		let n = memory_needed(&small).unwrap();
		// The dataset alone is 1 797 x 64 f32; the whole stays well under a MiB.
		assert!(n > 1797 * 64 * 4 && n < 1 << 20, "{n}");
		let wide =
			TrainingSpec::example_mlp(&[64, 4096, 10], sgd, 32).with_dataset(digits.commitment());
		let batch =
			TrainingSpec::example_mlp(&[64, 32, 10], sgd, 512).with_dataset(digits.commitment());
		assert!(memory_needed(&wide).unwrap() > 4 * n);
		assert!(memory_needed(&batch).unwrap() > n);
		assert!(machine_memory().is_some_and(|m| m > 1 << 20));
	}

	/// Every step run through burn (module, autodiff, RepOps kernels) against the same step run
	/// through the step program: the same loss and the same state, bit for bit, every step, for
	/// both optimizers, two and three layers, a synthetic dataset whose batches repeat
	/// samples, and regressions (mean squared error on real-valued targets).
	#[test]
	fn burn_training_gives_the_step_programs_bits_at_every_step() {
		let sgd = Optimizer::sgd(0.1, 0.9);
		let adam = Optimizer::adam(0.01);
		let digits = Dataset::digits().unwrap();
		let synthetic = Dataset::synthetic(7, 40, 12, 3);
		let targets = Dataset::synthetic_regression(7, 40, 12);
		let adamw = Optimizer::adamw(0.01, 0.1);
		// Clipping by global norm at a small and a large largest norm.
		let clip = |m: f32| Some(trainet_primitives::task::F32Bits::from_f32(m));
		let cases: [(&Dataset, &[u32], Optimizer, u32, _); 9] = [
			(&digits, &[64, 32, 10], sgd, 32, None),
			(&digits, &[64, 24, 16, 10], adam, 16, None),
			(&synthetic, &[12, 8, 3], adam, 64, None),
			(&synthetic, &[12, 5, 6, 3], sgd, 7, None),
			(&targets, &[12, 8, 1], adam, 16, None),
			(&targets, &[12, 5, 6, 1], sgd, 7, None),
			(&digits, &[64, 32, 10], sgd, 32, clip(0.5)),
			(&digits, &[64, 24, 16, 10], adamw, 16, clip(5.0)),
			(&targets, &[12, 8, 1], adam, 16, clip(0.5)),
		];
		for (data, widths, optimizer, batch, max_grad_norm) in cases {
			let example = match data.is_regression() {
				true => TrainingSpec::example_regression,
				false => TrainingSpec::example_mlp,
			};
			let mut spec = example(widths, optimizer, batch).with_dataset(data.commitment());
			spec.steps = 25;
			spec.max_grad_norm = max_grad_norm;
			let run =
				|engine| Training::new(spec.clone(), data.clone()).unwrap().with_engine(engine);
			let (mut burn, mut program) = (run(Engine::Burn), run(Engine::Program));
			assert_eq!(burn.state_hash(), program.state_hash());
			for t in 0..spec.steps {
				let (a, b) = (burn.step().unwrap(), program.step().unwrap());
				assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "{widths:?} step {t}");
				let ctx = format!("{widths:?} {optimizer:?} step {t}");
				assert_eq!(burn.state_hash(), program.state_hash(), "{ctx}");
			}
			assert!(burn.step().is_err());
		}
	}

	/// Graph models through burn (the [`GraphNet`] module, autodiff, RepOps kernels) against
	/// their step program: the same loss and state, bit for bit, every step. A CNN of every
	/// image layer, a residual net with layer norms, GELU and dropout, and a transformer; SGD,
	/// Adam, AdamW, with and without clipping; 1 and 3 threads. The parameters get values
	/// with NaN, infinities, subnormals and signed zeros at the end (every later state NaN
	/// where they reach).
	#[test]
	fn burn_training_of_graph_models_gives_the_step_programs_bits() {
		use trainet_primitives::{
			repops::image::ImageShape,
			task::{F32Bits, Layer, Layers},
		};
		let graph = |input: ImageShape, layers: Vec<Layer>| Model::Graph {
			input,
			layers: Layers::truncate_from(layers),
		};
		let cnn = graph(
			ImageShape { channels: 1, height: 8, width: 8 },
			vec![
				Layer::Conv2d { out_channels: 3, kernel: 3, stride: 1, padding: 1 },
				Layer::Relu,
				Layer::MaxPool2d { kernel: 2, stride: 2 },
				Layer::Conv2d { out_channels: 4, kernel: 2, stride: 2, padding: 1 },
				Layer::Gelu,
				Layer::AvgPool2d { kernel: 2, stride: 1 },
				Layer::Flatten,
				Layer::Linear { out: 10 },
			],
		);
		let mixed = graph(
			ImageShape::flat(64),
			vec![
				Layer::Linear { out: 12 },
				Layer::Residual { layers: 4 },
				Layer::LayerNorm,
				Layer::Linear { out: 12 },
				Layer::Gelu,
				Layer::Dropout { p: F32Bits::from_f32(0.2) },
				Layer::Relu,
				Layer::Linear { out: 10 },
			],
		);
		let digits = Dataset::digits().unwrap();
		let dir = tempfile::tempdir().unwrap();
		let corpus = dir.path().join("corpus.txt");
		std::fs::write(&corpus, "the quick brown fox jumps over the lazy dog; ".repeat(20))
			.unwrap();
		let tokens = crate::import::text_sequences(&corpus, 8, 9).unwrap();
		let vocab = tokens.commitment().classes;
		let clip = |m: f32| Some(F32Bits::from_f32(m));
		let cases = [
			(cnn.clone(), &digits, Optimizer::adam(0.01), None),
			(cnn, &digits, Optimizer::sgd(0.05, 0.9), clip(0.5)),
			(mixed.clone(), &digits, Optimizer::adamw(0.01, 0.1), None),
			(mixed, &digits, Optimizer::sgd(0.05, 0.9), clip(1.0)),
			(
				TrainingSpec::example_transformer(tokens.root(), vocab, 8).model,
				&tokens,
				Optimizer::adamw(0.003, 0.01),
				None,
			),
			(
				TrainingSpec::example_transformer(tokens.root(), vocab, 8).model,
				&tokens,
				Optimizer::sgd(0.05, 0.9),
				clip(0.5),
			),
		];
		for (model, data, optimizer, max_grad_norm) in cases {
			let mut spec =
				TrainingSpec::example_graph(model, Loss::SoftmaxCrossEntropy, optimizer, 6)
					.with_dataset(data.commitment());
			spec.steps = 6;
			spec.max_grad_norm = max_grad_norm;
			for threads in [1, 3] {
				let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
				pool.install(|| {
					let run = |engine| {
						Training::new(spec.clone(), data.clone()).unwrap().with_engine(engine)
					};
					let (mut burn, mut program) = (run(Engine::Burn), run(Engine::Program));
					for t in 0..spec.steps {
						if t == 4 {
							// Specials in the last parameter tensor of both.
							for m in [&mut burn.state, &mut program.state] {
								let p = program_params(&spec) - 1;
								let v = &mut m[p].data;
								let specials = [f32::NAN, f32::INFINITY, -0.0, f32::from_bits(1)];
								for (x, s) in v.iter_mut().zip(specials) {
									*x = s;
								}
							}
						}
						let (a, b) = (burn.step().unwrap(), program.step().unwrap());
						let ctx = format!(
							"{:?} {optimizer:?} {max_grad_norm:?} step {t} threads {threads}",
							spec.model.context()
						);
						assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "{ctx}");
						assert_eq!(burn.state_hash(), program.state_hash(), "{ctx}");
					}
				});
			}
		}
	}

	fn program_params(spec: &TrainingSpec) -> usize {
		step_program(spec).unwrap().params as usize
	}

	/// A state that does not fit the spec is an error from the burn step, not a panic.
	#[test]
	fn a_burn_step_on_a_wrong_state_is_an_error() {
		let sgd = Optimizer::sgd(0.1, 0.9);
		let data = Dataset::synthetic(1, 10, 4, 2);
		let spec = TrainingSpec::example_mlp(&[4, 3, 2], sgd, 5).with_dataset(data.commitment());
		let batch = Matrix::new(5, 4, vec![0.5; 20]).unwrap();
		let labels = vec![0, 1, 0, 1, 1];
		let short = vec![Matrix::zeros(4, 3).unwrap()];
		assert!(burn_step(&spec, short, batch.clone(), labels.clone(), 0).is_err());
		let program = step_program(&spec).unwrap();
		let mut state = initial_state(&spec, &program).unwrap();
		state[5] = Matrix::zeros(1, 4).unwrap(); // the first bias's velocity: 1x3, not 1x4
		let err = burn_step(&spec, state, batch, labels, 0).unwrap_err();
		assert!(matches!(err, TrainError::Shape(_)), "{err}");
	}
}
