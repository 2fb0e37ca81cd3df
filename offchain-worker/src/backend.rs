//! RepOps as a burn backend extension: burn tensors, modules and autodiff, with every
//! arithmetic operation of training done by a RepOps kernel.
//!
//! [`RepOpsBackend`] extends burn's `Backend` with the operations an MLP's training step is
//! made of: the three matrix products, bias addition, ReLU and its backward, column sums,
//! the loss (softmax cross-entropy, or squared error) and its batch-mean gradient, and the
//! optimizers' per-value updates.
//! On a plain backend each runs as the RepOps kernel of the step program
//! ([`crate::engine::execute`], the very function the program path and the dispute game use);
//! on `Autodiff<B>` the differentiable ones ([`RepOpsBackend::repops_matmul`],
//! [`RepOpsBackend::repops_bias_add`], [`RepOpsBackend::repops_relu`],
//! [`RepOpsBackend::repops_loss_mean`]) record a backward step whose gradients are again
//! RepOps kernels, the ones the step program lists: `dW = Aᵀ·dZ`, `db = colsum(dZ)`,
//! `dA = dZ·Wᵀ`, `relu_backward(Z, dA)`, and the loss's gradient. So a burn
//! training loop over these ops ([`crate::train`]) computes bit for bit the states the step
//! program computes, which is what the chain's commitments and disputes are about.
//!
//! burn's own float ops (`matmul`, `+`, `relu`, burn's optimizers) are not used in training:
//! their rounding is the backend's choice (blocked sums, vendor BLAS), which is exactly what
//! bit-exact training cannot allow. Only value-preserving burn ops (creation from data,
//! reshapes, reading back) touch the values outside the kernels.
//!
//! A kernel cannot fail in burn's op signatures; a shape error (a bug: shapes come from a
//! validated spec) is recorded in the [`StepContext`] and an empty tensor returned, and the
//! training loop turns the record into an error after the step ([`StepContext::failure`]).
//!
//! `NdArray`'s kernels read their input tensors' memory in place and hand their outputs to
//! burn without a copy. [`host_kernel`] is the generic way, for any backend: it reads the
//! tensors into host memory around each kernel. A GPU backend implements
//! [`RepOpsBackend::repops`] with device kernels (`crate::cuda`, feature `cuda`).

use std::{
	borrow::Cow,
	sync::{Arc, Mutex},
};

use burn::{
	backend::{
		autodiff::{
			checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
			grads::Gradients,
			ops::{binary, unary, Backward, Ops, OpsKind},
			Autodiff, NodeId,
		},
		ndarray::{NdArray, NdArrayTensor},
	},
	tensor::{
		backend::Backend, ops::FloatTensor, try_read_sync, DType, Shape, TensorData, TensorMetadata,
	},
};
use trainet_primitives::{
	program::{self, Op, OpKind, Source},
	repops::{canon, Matrix, ShapeError},
	task::TrainingSpec,
};

use crate::engine::{self, MatRef};

/// What the kernels of one training step need besides their tensors: the spec (the
/// optimizer's hyperparameters), the batch's labels (for the loss) and the step's index (for
/// Adam's bias corrections); and where a failed kernel leaves its error.
#[derive(Debug)]
pub struct StepContext {
	pub(crate) spec: TrainingSpec,
	pub(crate) labels: Vec<u32>,
	pub(crate) step: u32,
	failure: Mutex<Option<ShapeError>>,
}

impl StepContext {
	/// The context of step `step` of `spec`, whose batch has these labels.
	pub fn new(spec: TrainingSpec, labels: Vec<u32>, step: u32) -> Arc<Self> {
		Arc::new(Self { spec, labels, step, failure: Mutex::new(None) })
	}

	/// The first error a kernel of this step met, if any.
	pub fn failure(&self) -> Option<ShapeError> {
		self.failure.lock().map(|f| *f).unwrap_or(Some(ShapeError::Mismatch))
	}

	/// Records `e` as the step's failure (the first one is kept).
	pub(crate) fn fail(&self, e: ShapeError) {
		if let Ok(mut f) = self.failure.lock() {
			f.get_or_insert(e);
		}
	}
}

/// One RepOps operation of a step.
#[derive(Clone, Debug)]
pub struct Kernel {
	/// Which operation.
	pub kind: OpKind,
	/// The step it belongs to.
	pub ctx: Arc<StepContext>,
}

impl Kernel {
	/// Operation `kind` of the step `ctx`.
	pub fn new(kind: OpKind, ctx: &Arc<StepContext>) -> Self {
		Self { kind, ctx: ctx.clone() }
	}
}

/// A burn backend whose training arithmetic is RepOps (see the module's documentation).
///
/// Tensors are `f32`, of rank 2, or of rank 1 for a row (`[n]` is read as `1 x n`, as a
/// `Linear` layer's bias).
pub trait RepOpsBackend: Backend {
	/// Runs `kernel` on `inputs` (in the operator's order, as the step program lists them).
	/// No gradient is tracked: this is how the backward pass and the optimizer run kernels.
	fn repops(kernel: Kernel, inputs: Vec<FloatTensor<Self>>) -> FloatTensor<Self>;

	/// Momentum SGD's update of one parameter `p` with gradient `g` and velocity `v`: the new
	/// velocity (`Momentum` of `v`, `g`) and the new parameter (`SgdStep` of `p` and the new
	/// velocity), in that order. A backend may merge the two passes over memory (the bits
	/// are those of the two kernels); by default it runs them.
	fn repops_momentum_sgd(
		ctx: &Arc<StepContext>,
		v: FloatTensor<Self>,
		g: FloatTensor<Self>,
		p: FloatTensor<Self>,
	) -> (FloatTensor<Self>, FloatTensor<Self>) {
		let v = Self::repops(Kernel::new(OpKind::Momentum, ctx), vec![v, g]);
		let p = Self::repops(Kernel::new(OpKind::SgdStep, ctx), vec![p, v.clone()]);
		(v, p)
	}

	/// Reads a tensor into a RepOps matrix ([`to_matrix`], or a faster way the backend has).
	fn repops_read(tensor: FloatTensor<Self>) -> Result<Matrix, ShapeError> {
		to_matrix::<Self>(tensor)
	}

	/// [`RepOpsBackend::repops_read`] for a tensor nothing else will read: a backend may hand
	/// over its memory rather than copy it.
	fn repops_take(tensor: FloatTensor<Self>) -> Result<Matrix, ShapeError> {
		Self::repops_read(tensor)
	}

	/// [`RepOpsBackend::repops_take`] of several tensors, in order. A GPU backend reads them
	/// in one transaction, waiting for the device once rather than once per tensor.
	fn repops_take_all(tensors: Vec<FloatTensor<Self>>) -> Result<Vec<Matrix>, ShapeError> {
		tensors.into_iter().map(Self::repops_take).collect()
	}

	/// `A · W`, differentiable with respect to both.
	fn repops_matmul(
		a: FloatTensor<Self>,
		w: FloatTensor<Self>,
		ctx: &Arc<StepContext>,
	) -> FloatTensor<Self> {
		Self::repops(Kernel::new(OpKind::MatMul, ctx), vec![a, w])
	}

	/// `Z + b`, `b` added to every row; differentiable with respect to both.
	fn repops_bias_add(
		z: FloatTensor<Self>,
		b: FloatTensor<Self>,
		ctx: &Arc<StepContext>,
	) -> FloatTensor<Self> {
		Self::repops(Kernel::new(OpKind::BiasAdd, ctx), vec![z, b])
	}

	/// `relu(Z)`, differentiable.
	fn repops_relu(z: FloatTensor<Self>, ctx: &Arc<StepContext>) -> FloatTensor<Self> {
		Self::repops(Kernel::new(OpKind::Relu, ctx), vec![z])
	}

	/// The batch's mean loss (the spec's: softmax cross-entropy against the context's class
	/// labels, or squared error against its targets), `1 x 1`, differentiable with respect to
	/// the model's output.
	fn repops_loss_mean(logits: FloatTensor<Self>, ctx: &Arc<StepContext>) -> FloatTensor<Self> {
		let (loss, _) = program::loss_ops(ctx.spec.loss);
		let losses = Self::repops(Kernel::new(loss, ctx), vec![logits]);
		Self::repops(Kernel::new(OpKind::Mean, ctx), vec![losses])
	}

	/// A sequence model's mean per-token loss over the batch `x` (whose samples hold the next
	/// tokens), `1 x 1`, differentiable with respect to the logits (`kind` is the program's
	/// [`OpKind::TokenXent`]).
	fn repops_token_loss_mean(
		kind: OpKind,
		logits: FloatTensor<Self>,
		x: FloatTensor<Self>,
		ctx: &Arc<StepContext>,
	) -> FloatTensor<Self> {
		let losses = Self::repops(Kernel::new(kind, ctx), vec![logits, x]);
		Self::repops(Kernel::new(OpKind::Mean, ctx), vec![losses])
	}

	/// Any other forward operation of a step program (`kind`: a convolution, a pool, a layer
	/// normalization, GELU, dropout, a residual sum, an embedding, attention, or a dense
	/// layer's product and bias) on `inputs` in its input order, differentiable with respect
	/// to each: its backward pass runs the kernels the step program's backward pass lists for
	/// it ([`input_gradient`]).
	fn repops_op(
		kind: OpKind,
		inputs: Vec<FloatTensor<Self>>,
		ctx: &Arc<StepContext>,
	) -> FloatTensor<Self> {
		Self::repops(Kernel::new(kind, ctx), inputs)
	}
}

/// How the gradient of one input of an operation is computed from the operation's inputs
/// and its output's gradient.
#[derive(Debug)]
pub(crate) enum Gradient<T> {
	/// It is the output's gradient itself (a bias sum's input, a residual sum's two).
	Same(T),
	/// A kernel on these inputs.
	Kernel(OpKind, Vec<T>),
}

/// The gradient of input `i` of forward operation `kind` (whose inputs are `inputs`) from its
/// output's gradient `dy`, as the step program's backward pass computes it
/// ([`program::step_program`]): the same kernels on the same tensors, so that burn's autodiff
/// gives the program's bits. `None` for an input nothing differentiates (the batch) or an
/// operation that is not a layer's forward one.
pub(crate) fn input_gradient<T: Clone>(
	kind: OpKind,
	i: usize,
	inputs: &[T],
	dy: T,
) -> Option<Gradient<T>> {
	use Gradient::{Kernel as K, Same};
	let arg = |n: usize| inputs.get(n).cloned();
	Some(match (kind, i) {
		(OpKind::MatMul, 0) => K(OpKind::MatMulNt, vec![dy, arg(1)?]),
		(OpKind::MatMul, 1) => K(OpKind::MatMulTn, vec![arg(0)?, dy]),
		(OpKind::BiasAdd, 0) | (OpKind::Add, 0 | 1) => Same(dy),
		(OpKind::BiasAdd, 1) => K(OpKind::ColSum, vec![dy]),
		(OpKind::Relu, 0) => K(OpKind::ReluBackward, vec![arg(0)?, dy]),
		(OpKind::Gelu, 0) => K(OpKind::GeluBackward, vec![arg(0)?, dy]),
		(OpKind::Dropout(m), 0) => K(OpKind::DropoutGrad(m), vec![dy]),
		(OpKind::LayerNorm, 0) => K(OpKind::LayerNormInputGrad, vec![arg(0)?, arg(1)?, dy]),
		(OpKind::LayerNorm, 1) => K(OpKind::LayerNormGammaGrad, vec![arg(0)?, dy]),
		(OpKind::LayerNorm, 2) => K(OpKind::ColSum, vec![dy]),
		(OpKind::Conv2d(g), 0) => K(OpKind::Conv2dInputGrad(g), vec![dy, arg(1)?]),
		(OpKind::Conv2d(g), 1) => K(OpKind::Conv2dWeightGrad(g), vec![arg(0)?, dy]),
		(OpKind::Conv2d(g), 2) => K(OpKind::ConvBiasGrad(g), vec![dy]),
		(OpKind::MaxPool2d(g), 0) => K(OpKind::MaxPool2dGrad(g), vec![arg(0)?, dy]),
		(OpKind::AvgPool2d(g), 0) => K(OpKind::AvgPool2dGrad(g), vec![dy]),
		(OpKind::Embed(g), 1) => K(OpKind::EmbedGrad(g), vec![arg(0)?, dy]),
		(OpKind::Embed(g), 2) => K(OpKind::PositionGrad(g), vec![dy]),
		(OpKind::Attention(g), 0) => K(OpKind::AttentionGrad(g), vec![arg(0)?, dy]),
		_ => return None,
	})
}

/// Reads a rank-1 or rank-2 `f32` tensor into a RepOps matrix (a copy).
pub fn to_matrix<B: Backend>(tensor: FloatTensor<B>) -> Result<Matrix, ShapeError> {
	if tensor.dtype() != DType::F32 {
		return Err(ShapeError::Mismatch);
	}
	let shape = tensor.shape();
	let data = try_read_sync(B::float_into_data(tensor))
		.and_then(Result::ok)
		.ok_or(ShapeError::Mismatch)?;
	let values = data.into_vec::<f32>().map_err(|_| ShapeError::Mismatch)?;
	let (rows, cols) = matrix_shape(shape.as_slice())?;
	Matrix::new(rows, cols, values)
}

/// The matrix shape of a rank-1 (`[n]`, read as `1 x n`) or rank-2 tensor.
pub(crate) fn matrix_shape(dims: &[usize]) -> Result<(u32, u32), ShapeError> {
	let (rows, cols) = match dims {
		[n] => (1, *n),
		[r, c] => (*r, *c),
		_ => return Err(ShapeError::Mismatch),
	};
	let dim = |n: usize| u32::try_from(n).map_err(|_| ShapeError::Overflow);
	Ok((dim(rows)?, dim(cols)?))
}

/// A RepOps matrix as a `rows x cols` tensor on `device` (a copy; no value changes).
pub fn from_matrix<B: Backend>(m: Matrix, device: &B::Device) -> FloatTensor<B> {
	let shape = [m.rows as usize, m.cols as usize];
	B::float_from_data(TensorData::new(m.data, shape), device)
}

/// The output shape of `kind` on these inputs (the step program's shapes).
pub(crate) fn output_shape(kind: OpKind, inputs: &[MatRef]) -> Result<(u32, u32), ShapeError> {
	let dims = |i: usize| inputs.get(i).map(|m| (m.rows, m.cols)).ok_or(ShapeError::Mismatch);
	Ok(match kind {
		OpKind::MatMul => (dims(0)?.0, dims(1)?.1),
		OpKind::MatMulTn => (dims(0)?.1, dims(1)?.1),
		OpKind::MatMulNt => (dims(0)?.0, dims(1)?.0),
		OpKind::SoftmaxXent | OpKind::SquaredError => (dims(0)?.0, 1),
		OpKind::Mean => (1, 1),
		OpKind::ColSum => (1, dims(0)?.1),
		OpKind::ReluBackward => dims(1)?,
		OpKind::BiasAdd
		| OpKind::Relu
		| OpKind::SoftmaxXentBackward
		| OpKind::SquaredErrorBackward
		| OpKind::Momentum
		| OpKind::SgdStep
		| OpKind::AdamM
		| OpKind::AdamV
		| OpKind::AdamStep
		| OpKind::AdamWStep
		| OpKind::Add
		| OpKind::Gelu
		| OpKind::LayerNorm
		| OpKind::LayerNormInputGrad
		| OpKind::Dropout(_)
		| OpKind::DropoutGrad(_) => dims(0)?,
		OpKind::GeluBackward => dims(1)?,
		OpKind::LayerNormGammaGrad => (1, dims(0)?.1),
		OpKind::Conv2d(g) => (dims(0)?.0, g.output().values()),
		OpKind::Conv2dWeightGrad(g) => (g.out_channels, g.patch()),
		OpKind::ConvBiasGrad(g) => (1, g.out_channels),
		OpKind::Conv2dInputGrad(g) => (dims(0)?.0, g.input.values()),
		OpKind::MaxPool2d(g) | OpKind::AvgPool2d(g) => (dims(0)?.0, g.output().values()),
		OpKind::MaxPool2dGrad(g) | OpKind::AvgPool2dGrad(g) => (dims(0)?.0, g.input.values()),
		OpKind::Embed(g) => (dims(0)?.0.saturating_mul(g.context), g.dim),
		OpKind::EmbedGrad(g) => (g.vocab, g.dim),
		OpKind::PositionGrad(g) => (g.context, g.dim),
		OpKind::TokenXent(_) => (dims(0)?.0, 1),
		OpKind::TokenXentBackward(_) => dims(0)?,
		OpKind::Attention(g) => (dims(0)?.0, g.dim),
		OpKind::AttentionGrad(g) => (dims(0)?.0, g.dim.saturating_mul(3)),
		OpKind::SumSquares => (dims(0)?.0, 1),
		OpKind::ClipCoefficient(_) => (1, 1),
		OpKind::ClipScale => dims(0)?,
	})
}

/// Runs `kernel` on `inputs` in host memory through [`engine::execute_refs`] (the step
/// program's kernel).
fn run_kernel(kernel: &Kernel, inputs: &[MatRef]) -> Result<Matrix, ShapeError> {
	let (rows, cols) = output_shape(kernel.kind, inputs)?;
	let op = Op { kind: kernel.kind, inputs: vec![Source::Batch; inputs.len()], rows, cols };
	let ctx = &kernel.ctx;
	engine::execute_refs(&ctx.spec, &op, inputs, &ctx.labels, ctx.step)
}

/// A kernel's output as a tensor on `device`; a failure is recorded in the step's context
/// and an empty tensor returned (see the module's documentation).
fn kernel_output<B: Backend>(
	kernel: &Kernel,
	out: Result<Matrix, ShapeError>,
	device: &B::Device,
) -> FloatTensor<B> {
	let out = out.unwrap_or_else(|e| {
		kernel.ctx.fail(e);
		Matrix { rows: 0, cols: 0, data: Vec::new() }
	});
	from_matrix::<B>(out, device)
}

/// Runs `kernel` in host memory, its inputs read with [`RepOpsBackend::repops_read`], and
/// puts the result back on the inputs' device; any backend can use it.
pub fn host_kernel<B: RepOpsBackend>(
	kernel: &Kernel,
	inputs: Vec<FloatTensor<B>>,
) -> FloatTensor<B> {
	let Some(device) = inputs.first().map(B::float_device) else {
		kernel.ctx.fail(ShapeError::Mismatch);
		return B::float_from_data(TensorData::new(Vec::<f32>::new(), [0, 0]), &Default::default());
	};
	let run = || -> Result<Matrix, ShapeError> {
		let matrices = inputs.into_iter().map(B::repops_read).collect::<Result<Vec<_>, _>>()?;
		let refs: Vec<MatRef> = matrices.iter().map(MatRef::from).collect();
		run_kernel(kernel, &refs)
	};
	kernel_output::<B>(kernel, run(), &device)
}

/// An `NdArray` tensor's matrix shape and values: its memory itself when it is in standard
/// layout (kernel outputs, parameters and reshapes of them are), else a row-major copy.
fn ndarray_values(tensor: &NdArrayTensor) -> Result<(u32, u32, Cow<'_, [f32]>), ShapeError> {
	let NdArrayTensor::F32(storage) = tensor else { return Err(ShapeError::Mismatch) };
	let view = storage.view();
	let (rows, cols) = matrix_shape(view.shape())?;
	let values = match view.to_slice() {
		Some(values) => Cow::Borrowed(values),
		None => Cow::Owned(view.iter().copied().collect()),
	};
	Ok((rows, cols, values))
}

/// [`ndarray_values`]' result as the engine reads it.
fn mat_ref<'a>((rows, cols, data): &'a (u32, u32, Cow<'_, [f32]>)) -> MatRef<'a> {
	MatRef { rows: *rows, cols: *cols, data }
}

/// burn's CPU backend, `f32` (the only element type RepOps has).
impl RepOpsBackend for NdArray<f32> {
	/// The kernel reads the tensors' memory where it lies (kernel outputs, parameters and
	/// reshapes of them are in standard layout); only an array in another layout is copied
	/// first. Copying every input, as [`host_kernel`] does, cost a third of a large model's
	/// step.
	fn repops(kernel: Kernel, inputs: Vec<FloatTensor<Self>>) -> FloatTensor<Self> {
		let run = || -> Result<Matrix, ShapeError> {
			let values = inputs.iter().map(ndarray_values).collect::<Result<Vec<_>, _>>()?;
			let refs: Vec<MatRef> = values.iter().map(mat_ref).collect();
			run_kernel(&kernel, &refs)
		};
		kernel_output::<Self>(&kernel, run(), &Default::default())
	}

	/// One pass over memory instead of two ([`engine::momentum_sgd`]), a few percent of a
	/// large model's step.
	fn repops_momentum_sgd(
		ctx: &Arc<StepContext>,
		v: FloatTensor<Self>,
		g: FloatTensor<Self>,
		p: FloatTensor<Self>,
	) -> (FloatTensor<Self>, FloatTensor<Self>) {
		let run = || -> Result<(Matrix, Matrix), ShapeError> {
			let [v, g, p] = [&v, &g, &p].map(ndarray_values);
			let [v, g, p] = [v?, g?, p?];
			engine::momentum_sgd(&ctx.spec, mat_ref(&v), mat_ref(&g), mat_ref(&p))
		};
		let (v, p) = match run() {
			Ok((v, p)) => (Ok(v), Ok(p)),
			Err(e) => (Err(e), Err(e)),
		};
		let device = Default::default();
		(
			kernel_output::<Self>(&Kernel::new(OpKind::Momentum, ctx), v, &device),
			kernel_output::<Self>(&Kernel::new(OpKind::SgdStep, ctx), p, &device),
		)
	}

	/// A copy of the array's memory when it is in standard layout (as kernel outputs and
	/// reshapes of them are). burn's generic read collects element by element whenever the
	/// array is shared, which autodiff's saved tensors always are: that made it the largest
	/// cost of a small model's step.
	fn repops_read(tensor: FloatTensor<Self>) -> Result<Matrix, ShapeError> {
		let (rows, cols, data) = ndarray_values(&tensor)?;
		Matrix::new(rows, cols, data.into_owned())
	}

	/// The array's own memory, without a copy, when nothing else holds it and it is in
	/// standard layout (a kernel's output the caller kept alone); otherwise a copy.
	fn repops_take(tensor: FloatTensor<Self>) -> Result<Matrix, ShapeError> {
		let NdArrayTensor::F32(storage) = tensor else { return Err(ShapeError::Mismatch) };
		if !(storage.is_owned() && storage.is_unique()) {
			return Self::repops_read(NdArrayTensor::F32(storage));
		}
		let array = storage.into_owned().into_owned();
		let (rows, cols) = matrix_shape(array.shape())?;
		if !array.is_standard_layout() {
			return Matrix::new(rows, cols, array.iter().copied().collect());
		}
		let len = array.len();
		let (data, offset) = array.into_raw_vec_and_offset();
		let start = offset.unwrap_or(0);
		if start == 0 && data.len() == len {
			return Matrix::new(rows, cols, data);
		}
		// A window of a larger buffer (no kernel output is one): copy the window.
		let window = data.get(start..start.saturating_add(len)).ok_or(ShapeError::Mismatch)?;
		Matrix::new(rows, cols, window.to_vec())
	}
}

/// `A · W`: `dA = dZ · Wᵀ`, `dW = Aᵀ · dZ`.
#[derive(Debug)]
struct MatMulBackward;

impl<B: RepOpsBackend> Backward<B, 2> for MatMulBackward {
	type State = (NodeId, NodeId, Arc<StepContext>);

	fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, ckpt: &mut Checkpointer) {
		let (a, w, ctx) = ops.state;
		let a: FloatTensor<B> = ckpt.retrieve_node_output(a);
		let w: FloatTensor<B> = ckpt.retrieve_node_output(w);
		let nt = Kernel::new(OpKind::MatMulNt, &ctx);
		let tn = Kernel::new(OpKind::MatMulTn, &ctx);
		binary::<B, _, _>(
			ops.parents,
			ops.node,
			grads,
			|dz| B::repops(nt, vec![dz, w]),
			|dz| B::repops(tn, vec![a, dz]),
		);
	}
}

/// `Z + b`: `dZ` passes through, `db = colsum(dZ)` (in `b`'s shape).
#[derive(Debug)]
struct BiasAddBackward;

impl<B: RepOpsBackend> Backward<B, 2> for BiasAddBackward {
	type State = (Shape, Arc<StepContext>);

	fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
		let (b_shape, ctx) = ops.state;
		let sum = Kernel::new(OpKind::ColSum, &ctx);
		binary::<B, _, _>(
			ops.parents,
			ops.node,
			grads,
			|dz| dz,
			|dz| B::float_reshape(B::repops(sum, vec![dz]), b_shape),
		);
	}
}

/// `relu(Z)`: `relu_backward(Z, dA)`.
#[derive(Debug)]
struct ReluBackward;

impl<B: RepOpsBackend> Backward<B, 1> for ReluBackward {
	type State = (NodeId, Arc<StepContext>);

	fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, ckpt: &mut Checkpointer) {
		let (z, ctx) = ops.state;
		let z: FloatTensor<B> = ckpt.retrieve_node_output(z);
		let kernel = Kernel::new(OpKind::ReluBackward, &ctx);
		unary::<B, _>(ops.parents, ops.node, grads, |da| B::repops(kernel, vec![z, da]));
	}
}

/// The mean loss: the RepOps batch-mean gradient with respect to the model's output (scaled
/// by the incoming gradient when that is not exactly 1, which training never does).
#[derive(Debug)]
struct LossMeanBackward;

impl<B: RepOpsBackend> Backward<B, 1> for LossMeanBackward {
	type State = (NodeId, Arc<StepContext>);

	fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, ckpt: &mut Checkpointer) {
		let (logits, ctx) = ops.state;
		let logits: FloatTensor<B> = ckpt.retrieve_node_output(logits);
		let kernel = Kernel::new(program::loss_ops(ctx.spec.loss).1, &ctx);
		unary::<B, _>(ops.parents, ops.node, grads, |g| {
			scaled::<B>(B::repops(kernel, vec![logits]), g, &ctx)
		});
	}
}

/// Any forward operation of a step program: each tracked input's gradient by
/// [`input_gradient`].
#[derive(Debug)]
struct OpBackward;

impl<B: RepOpsBackend, const N: usize> Backward<B, N> for OpBackward {
	type State = (OpKind, Vec<NodeId>, Arc<StepContext>);

	fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, ckpt: &mut Checkpointer) {
		let (kind, ids, ctx) = ops.state;
		let inputs: Vec<FloatTensor<B>> =
			ids.into_iter().map(|id| ckpt.retrieve_node_output(id)).collect();
		let dy = grads.consume::<B>(&ops.node);
		for (i, parent) in ops.parents.into_iter().enumerate() {
			let Some(parent) = parent else { continue };
			let g = match input_gradient(kind, i, &inputs, dy.clone()) {
				Some(Gradient::Same(g)) => g,
				Some(Gradient::Kernel(k, args)) => B::repops(Kernel::new(k, &ctx), args),
				None => {
					ctx.fail(ShapeError::Mismatch);
					continue;
				}
			};
			grads.register::<B>(parent.id, g);
		}
	}
}

/// [`RepOpsBackend::repops_op`] on `Autodiff<B, C>` for an operation of `N` inputs.
fn tracked_op<B: RepOpsBackend, C: CheckpointStrategy, const N: usize>(
	kind: OpKind,
	inputs: Vec<FloatTensor<Autodiff<B, C>>>,
	ctx: &Arc<StepContext>,
) -> FloatTensor<Autodiff<B, C>> {
	let kernel = Kernel::new(kind, ctx);
	if inputs.len() != N {
		ctx.fail(ShapeError::Mismatch);
		let inner = inputs.into_iter().map(|t| t.primitive).collect();
		return FloatTensor::<Autodiff<B, C>>::new(B::repops(kernel, inner));
	}
	// (`N` inputs: checked above.)
	let nodes = std::array::from_fn::<_, N, _>(|i| inputs[i].node.clone());
	match <OpBackward as Backward<B, N>>::prepare::<C>(OpBackward, nodes).compute_bound().stateful()
	{
		OpsKind::Tracked(mut prep) => {
			let ids = inputs.iter().map(|t| prep.checkpoint(t)).collect();
			let inner = inputs.into_iter().map(|t| t.primitive).collect();
			prep.finish((kind, ids, ctx.clone()), B::repops(kernel, inner))
		}
		OpsKind::UnTracked(prep) => {
			prep.finish(B::repops(kernel, inputs.into_iter().map(|t| t.primitive).collect()))
		}
	}
}

/// A sequence model's mean per-token loss: the program's [`OpKind::TokenXentBackward`] with
/// respect to the logits (scaled as [`LossMeanBackward`] does).
#[derive(Debug)]
struct TokenLossBackward;

impl<B: RepOpsBackend> Backward<B, 2> for TokenLossBackward {
	type State = (OpKind, NodeId, NodeId, Arc<StepContext>);

	fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, ckpt: &mut Checkpointer) {
		let (kind, logits, x, ctx) = ops.state;
		let logits: FloatTensor<B> = ckpt.retrieve_node_output(logits);
		let x: FloatTensor<B> = ckpt.retrieve_node_output(x);
		let OpKind::TokenXent(g) = kind else {
			ctx.fail(ShapeError::Mismatch);
			return;
		};
		let kernel = Kernel::new(OpKind::TokenXentBackward(g), &ctx);
		binary::<B, _, _>(
			ops.parents,
			ops.node,
			grads,
			|scale| scaled::<B>(B::repops(kernel, vec![logits, x]), scale, &ctx),
			|scale| scale,
		);
	}
}

/// `dz` times the incoming gradient `g` of a mean loss (`1 x 1`): `dz` itself when that is
/// exactly 1 (training's case).
fn scaled<B: RepOpsBackend>(
	dz: FloatTensor<B>,
	g: FloatTensor<B>,
	ctx: &Arc<StepContext>,
) -> FloatTensor<B> {
	let device = B::float_device(&dz);
	let scale = B::repops_read(g).ok().and_then(|m| m.data.first().copied());
	match scale {
		Some(s) if s.to_bits() == 1.0f32.to_bits() => dz,
		Some(s) => match B::repops_read(dz) {
			Ok(mut m) => {
				m.data.iter_mut().for_each(|v| *v = canon(*v * s));
				from_matrix::<B>(m, &device)
			}
			Err(e) => {
				ctx.fail(e);
				from_matrix::<B>(Matrix { rows: 0, cols: 0, data: Vec::new() }, &device)
			}
		},
		None => {
			ctx.fail(ShapeError::Mismatch);
			dz
		}
	}
}

impl<B: RepOpsBackend, C: CheckpointStrategy> RepOpsBackend for Autodiff<B, C> {
	fn repops_op(
		kind: OpKind,
		inputs: Vec<FloatTensor<Self>>,
		ctx: &Arc<StepContext>,
	) -> FloatTensor<Self> {
		match inputs.len() {
			1 => tracked_op::<B, C, 1>(kind, inputs, ctx),
			2 => tracked_op::<B, C, 2>(kind, inputs, ctx),
			_ => tracked_op::<B, C, 3>(kind, inputs, ctx),
		}
	}

	fn repops_token_loss_mean(
		kind: OpKind,
		logits: FloatTensor<Self>,
		x: FloatTensor<Self>,
		ctx: &Arc<StepContext>,
	) -> FloatTensor<Self> {
		let forward = |logits, x| B::repops_token_loss_mean(kind, logits, x, ctx);
		match TokenLossBackward
			.prepare::<C>([logits.node.clone(), x.node.clone()])
			.compute_bound()
			.stateful()
		{
			OpsKind::Tracked(mut prep) => {
				let state = (kind, prep.checkpoint(&logits), prep.checkpoint(&x), ctx.clone());
				prep.finish(state, forward(logits.primitive, x.primitive))
			}
			OpsKind::UnTracked(prep) => prep.finish(forward(logits.primitive, x.primitive)),
		}
	}

	fn repops(kernel: Kernel, inputs: Vec<FloatTensor<Self>>) -> FloatTensor<Self> {
		let inner = inputs.into_iter().map(|t| t.primitive).collect();
		FloatTensor::<Self>::new(B::repops(kernel, inner))
	}

	fn repops_read(tensor: FloatTensor<Self>) -> Result<Matrix, ShapeError> {
		B::repops_read(tensor.primitive)
	}

	fn repops_take(tensor: FloatTensor<Self>) -> Result<Matrix, ShapeError> {
		B::repops_take(tensor.primitive)
	}

	fn repops_take_all(tensors: Vec<FloatTensor<Self>>) -> Result<Vec<Matrix>, ShapeError> {
		B::repops_take_all(tensors.into_iter().map(|t| t.primitive).collect())
	}

	fn repops_matmul(
		a: FloatTensor<Self>,
		w: FloatTensor<Self>,
		ctx: &Arc<StepContext>,
	) -> FloatTensor<Self> {
		let kernel = Kernel::new(OpKind::MatMul, ctx);
		match MatMulBackward
			.prepare::<C>([a.node.clone(), w.node.clone()])
			.compute_bound()
			.stateful()
		{
			OpsKind::Tracked(mut prep) => {
				let state = (prep.checkpoint(&a), prep.checkpoint(&w), ctx.clone());
				prep.finish(state, B::repops(kernel, vec![a.primitive, w.primitive]))
			}
			OpsKind::UnTracked(prep) => {
				prep.finish(B::repops(kernel, vec![a.primitive, w.primitive]))
			}
		}
	}

	fn repops_bias_add(
		z: FloatTensor<Self>,
		b: FloatTensor<Self>,
		ctx: &Arc<StepContext>,
	) -> FloatTensor<Self> {
		let kernel = Kernel::new(OpKind::BiasAdd, ctx);
		let b_shape = b.primitive.shape();
		match BiasAddBackward
			.prepare::<C>([z.node.clone(), b.node.clone()])
			.compute_bound()
			.stateful()
		{
			OpsKind::Tracked(prep) => prep
				.finish((b_shape, ctx.clone()), B::repops(kernel, vec![z.primitive, b.primitive])),
			OpsKind::UnTracked(prep) => {
				prep.finish(B::repops(kernel, vec![z.primitive, b.primitive]))
			}
		}
	}

	fn repops_relu(z: FloatTensor<Self>, ctx: &Arc<StepContext>) -> FloatTensor<Self> {
		let kernel = Kernel::new(OpKind::Relu, ctx);
		match ReluBackward.prepare::<C>([z.node.clone()]).compute_bound().stateful() {
			OpsKind::Tracked(mut prep) => {
				let state = (prep.checkpoint(&z), ctx.clone());
				prep.finish(state, B::repops(kernel, vec![z.primitive]))
			}
			OpsKind::UnTracked(prep) => prep.finish(B::repops(kernel, vec![z.primitive])),
		}
	}

	fn repops_loss_mean(logits: FloatTensor<Self>, ctx: &Arc<StepContext>) -> FloatTensor<Self> {
		let forward = |logits| B::repops_loss_mean(logits, ctx);
		match LossMeanBackward.prepare::<C>([logits.node.clone()]).compute_bound().stateful() {
			OpsKind::Tracked(mut prep) => {
				let state = (prep.checkpoint(&logits), ctx.clone());
				prep.finish(state, forward(logits.primitive))
			}
			OpsKind::UnTracked(prep) => prep.finish(forward(logits.primitive)),
		}
	}
}

#[cfg(test)]
mod tests {
	use burn::tensor::ops::FloatTensorOps;
	use trainet_primitives::{repops, task::Optimizer};

	use super::*;

	type B = NdArray<f32>;

	/// The `rows x cols` matrix of `f(i, j)`.
	fn matrix(rows: u32, cols: u32, f: impl Fn(u32, u32) -> f32) -> Matrix {
		let data = (0..rows).flat_map(|i| (0..cols).map(move |j| (i, j))).map(|(i, j)| f(i, j));
		Matrix::new(rows, cols, data.collect()).unwrap()
	}

	fn ctx() -> Arc<StepContext> {
		let sgd = Optimizer::sgd(0.1, 0.9);
		StepContext::new(TrainingSpec::example_mlp(&[4, 3, 2], sgd, 3), vec![0, 1, 0], 0)
	}

	fn bits(m: &Matrix) -> (u32, u32, Vec<u32>) {
		(m.rows, m.cols, m.data.iter().map(|v| v.to_bits()).collect())
	}

	/// The NdArray kernels read tensors where they lie; one not in row-major layout (a
	/// transpose) is read as the same values, and gives the bits the reference gives.
	#[test]
	fn kernels_read_tensors_in_any_layout() {
		let ctx = ctx();
		let a = matrix(3, 4, |i, j| (i as f32 - 1.0) * 0.75 + j as f32 * -0.5);
		let b = matrix(4, 5, |i, j| (i * 5 + j) as f32 * 0.125 - 1.0);
		let at = matrix(4, 3, |i, j| a.data[j as usize * 4 + i as usize]);
		let device = Default::default();
		// `a` itself, and `a` as the transpose of its transpose (a strided view).
		let plain = || from_matrix::<B>(a.clone(), &device);
		let strided = || B::float_transpose(from_matrix::<B>(at.clone(), &device));
		assert!(matches!(&strided(), NdArrayTensor::F32(s) if s.view().as_slice().is_none()));
		let want_relu = repops::relu_matrix(&a).unwrap();
		let want_product = repops::matmul(&a, &b).unwrap();
		for input in [plain(), strided()] {
			let relu = B::repops(Kernel::new(OpKind::Relu, &ctx), vec![input.clone()]);
			assert_eq!(bits(&B::repops_read(relu).unwrap()), bits(&want_relu));
			let b = from_matrix::<B>(b.clone(), &device);
			let product = B::repops(Kernel::new(OpKind::MatMul, &ctx), vec![input, b]);
			assert_eq!(bits(&B::repops_take(product).unwrap()), bits(&want_product));
		}
		assert_eq!(ctx.failure(), None);
	}

	/// Taking a tensor another handle still holds copies it: the other handle's values stay.
	#[test]
	fn taking_a_shared_tensor_leaves_the_other_holder_its_values() {
		let m = matrix(2, 3, |i, j| (i * 3 + j) as f32);
		let t = from_matrix::<B>(m.clone(), &Default::default());
		let kept = t.clone();
		let mut taken = B::repops_take(t).unwrap();
		taken.data.iter_mut().for_each(|v| *v = -1.0);
		assert_eq!(bits(&B::repops_take(kept).unwrap()), bits(&m));
	}
}
