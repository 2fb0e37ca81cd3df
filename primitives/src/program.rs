//! The canonical step program: one training step of a task as an ordered list of RepOps, a
//! pure function of the spec. Solver, verifier and chain derive the same list, so "operation
//! `j` of step `t`" names one operation, its shapes and the tensors it reads.
//!
//! For an MLP with widths `d_0 .. d_L` and batch `B` (`A_0` is the batch's inputs `X`):
//!
//! 1. forward, for `l = 1 ..= L`: `Z'_l = A_{l-1} · W_l`, `Z_l = Z'_l + b_l`, and for
//!    `l < L`: `A_l = relu(Z_l)`;
//! 2. loss: per-row softmax cross-entropy of `Z_L`, then its mean (reported, not trained on);
//! 3. backward: `dZ_L = softmax_xent_backward(Z_L)`; for `l = L ..= 1`:
//!    `dW_l = A_{l-1}ᵀ · dZ_l`, `db_l = colsum(dZ_l)`, and for `l > 1`:
//!    `dA_{l-1} = dZ_l · W_lᵀ`, `dZ_{l-1} = relu_backward(Z_{l-1}, dA_{l-1})`;
//! 4. update, for every parameter in state order (`W_1, b_1, ..., W_L, b_L`): SGD with
//!    momentum (`v' = momentum(v, g)`, `p' = sgd(p, v')`) or Adam (`m' = adam_m(m, g)`,
//!    `v' = adam_v(v, g)`, `p' = adam_step(p, m', v')`).
//!
//! The training state is the parameters followed by the optimizer's tensors:
//! `[W_1, b_1, ..., W_L, b_L]`, then SGD's velocities in the same order, or Adam's first
//! moments then second moments.

use crate::repops::{
	self, clip,
	image::{self, Conv, ImageShape, Pool},
	layers,
	sequence::{self, Attention, Tokens},
	Matrix, ShapeError,
};
use crate::task::{Layer, Loss, Optimizer, SpecError, TrainingSpec};
use alloc::vec::Vec;
use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;

/// Where an operation's input comes from.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Debug,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
)]
pub enum Source {
	/// Tensor `i` of the state before the step.
	State(u32),
	/// The batch's input rows `X` (`B x d_0`).
	Batch,
	/// The output of operation `j` of this step.
	Op(u32),
}

/// What an operation computes (see [`crate::repops`] and `docs/repops.md`).
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Debug,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
)]
pub enum OpKind {
	/// `A · B`.
	MatMul,
	/// `Aᵀ · B`.
	MatMulTn,
	/// `A · Bᵀ`.
	MatMulNt,
	/// `X + b` (row broadcast).
	BiasAdd,
	/// `relu(X)`.
	Relu,
	/// `relu_backward(X, dY)`.
	ReluBackward,
	/// Per-row softmax cross-entropy against the batch's labels (`B x 1`).
	SoftmaxXent,
	/// Its batch-mean gradient with respect to the logits.
	SoftmaxXentBackward,
	/// The mean of all values (`1 x 1`), rows in order.
	Mean,
	/// Column sums (`1 x N`).
	ColSum,
	/// SGD velocity: `mu * v + g`.
	Momentum,
	/// SGD step: `p - lr * v`.
	SgdStep,
	/// Adam first moment.
	AdamM,
	/// Adam second moment.
	AdamV,
	/// Adam step: `p - lr * (m/c1) / (sqrt(v/c2) + eps)`.
	AdamStep,
	/// Per-row squared error `(y - t)^2` of a one-column output against the batch's targets
	/// (`B x 1`).
	SquaredError,
	/// Its batch-mean gradient with respect to the output: `2 (y - t) / B`.
	SquaredErrorBackward,
	/// A convolution of a batch of images by filters, plus a bias per filter (inputs
	/// `x, w, b`; [`repops::image::conv2d`]).
	Conv2d(Conv),
	/// A convolution's input gradient (inputs `dy, w`).
	Conv2dInputGrad(Conv),
	/// A convolution's filter gradient (inputs `x, dy`).
	Conv2dWeightGrad(Conv),
	/// A convolution's bias gradient (input `dy`).
	ConvBiasGrad(Conv),
	/// A max pool (input `x`).
	MaxPool2d(Pool),
	/// A max pool's input gradient (inputs `x, dy`).
	MaxPool2dGrad(Pool),
	/// An average pool (input `x`).
	AvgPool2d(Pool),
	/// An average pool's input gradient (input `dy`).
	AvgPool2dGrad(Pool),
	/// `a + b` (a residual connection's sum, or two gradients' where a value feeds both a
	/// block and its skip).
	Add,
	/// GELU, tanh form ([`repops::layers::gelu`]).
	Gelu,
	/// Its gradient (inputs `x, dy`).
	GeluBackward,
	/// Layer normalization of each row (inputs `x, gamma, beta`).
	LayerNorm,
	/// Its input gradient (inputs `x, gamma, dy`).
	LayerNormInputGrad,
	/// Its scale's gradient (inputs `x, dy`); the shift's is a [`OpKind::ColSum`].
	LayerNormGammaGrad,
	/// Dropout of a layer (input `x`), its mask drawn from the seed, the step and the layer.
	Dropout(DropoutMask),
	/// Its gradient (input `dy`): the same mask.
	DropoutGrad(DropoutMask),
	/// AdamW's step: Adam's after the decay `p (1 - lr wd)` (inputs `p, m, v`).
	AdamWStep,
	/// A sequence model's embedding (inputs: the batch, the token table, the position
	/// table): one row per token ([`repops::sequence::embed`]).
	Embed(Tokens),
	/// The token table's gradient (inputs: the batch, `dy`).
	EmbedGrad(Tokens),
	/// The position table's gradient (input `dy`).
	PositionGrad(Tokens),
	/// The per-token softmax cross-entropy against the next token (inputs: the logits, the
	/// batch).
	TokenXent(Tokens),
	/// Its mean's gradient with respect to the logits (inputs: the logits, the batch).
	TokenXentBackward(Tokens),
	/// Causal multi-head self-attention (input: `q | k | v`).
	Attention(Attention),
	/// Its gradient `dq | dk | dv` (inputs: `q | k | v`, `dy`).
	AttentionGrad(Attention),
	/// The sum of the squares of each row of a gradient (`rows x 1`;
	/// [`repops::clip::sum_squares`]).
	SumSquares,
	/// Gradient clipping's factor (`1 x 1`) from every gradient's [`OpKind::SumSquares`], in
	/// state order, with the spec's largest norm ([`repops::clip::clip_coefficient`]).
	ClipCoefficient(crate::task::F32Bits),
	/// A gradient scaled by the clipping factor (inputs `g`, the factor).
	ClipScale,
}

/// Which values a dropout keeps: its probability and the layer whose stream draws the mask.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Debug,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
)]
pub struct DropoutMask {
	/// The probability of dropping a value.
	pub p: crate::task::F32Bits,
	/// The layer's index in the model (its mask's stream).
	pub layer: u32,
}

impl OpKind {
	/// For an image or sequence operator, on a batch of `batch` samples: the values it outputs
	/// (for a table's gradient, its rows) and the terms (multiply-adds, or values compared or
	/// added) one output takes when computed alone. `None` for the others.
	pub fn element_terms(&self, batch: u64) -> Option<(u64, u64)> {
		let n = u64::from;
		let windows = |g: &Pool| {
			let per_side = n(g.kernel.div_ceil(g.stride.max(1)));
			per_side.saturating_mul(per_side)
		};
		let area = |k: u32| n(k).saturating_mul(n(k));
		Some(match self {
			OpKind::Conv2d(g) => (batch.saturating_mul(n(g.output().values())), n(g.patch())),
			OpKind::Conv2dInputGrad(g) => (
				batch.saturating_mul(n(g.input.values())),
				n(g.out_channels).saturating_mul(area(g.kernel)),
			),
			OpKind::Conv2dWeightGrad(g) => {
				let plane = n(g.output().height).saturating_mul(n(g.output().width));
				(n(g.out_channels).saturating_mul(n(g.patch())), batch.saturating_mul(plane))
			}
			OpKind::ConvBiasGrad(g) => {
				let plane = n(g.output().height).saturating_mul(n(g.output().width));
				(n(g.out_channels), batch.saturating_mul(plane))
			}
			OpKind::MaxPool2d(g) | OpKind::AvgPool2d(g) => {
				(batch.saturating_mul(n(g.output().values())), area(g.kernel))
			}
			OpKind::MaxPool2dGrad(g) => (
				batch.saturating_mul(n(g.input.values())),
				windows(g).saturating_mul(area(g.kernel)),
			),
			OpKind::AvgPool2dGrad(g) => (batch.saturating_mul(n(g.input.values())), windows(g)),
			// An attention output reads its position's scores against every earlier one; a
			// gradient of a key or value, every later position's scores and their gradients.
			OpKind::Attention(g) => {
				let t = n(g.context);
				let dh = n(g.dim).checked_div(n(g.heads)).unwrap_or(0);
				let outputs = batch.saturating_mul(t).saturating_mul(n(g.dim));
				(outputs, t.saturating_mul(dh.saturating_add(3)))
			}
			OpKind::AttentionGrad(g) => {
				let t = n(g.context);
				let dh = n(g.dim).checked_div(n(g.heads)).unwrap_or(0);
				let outputs = batch.saturating_mul(t).saturating_mul(n(g.dim).saturating_mul(3));
				let rows = t.saturating_mul(t.saturating_add(1));
				(outputs, rows.saturating_mul(dh.saturating_add(2)))
			}
			// A table's gradient reads every token of the batch.
			OpKind::EmbedGrad(g) => {
				(n(g.vocab).saturating_mul(n(g.dim)), batch.saturating_mul(n(g.context)))
			}
			OpKind::PositionGrad(g) => (n(g.context).saturating_mul(n(g.dim)), batch),
			_ => return None,
		})
	}
}

/// One operation of the step program.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, DecodeWithMemTracking, TypeInfo)]
pub struct Op {
	/// What it computes.
	pub kind: OpKind,
	/// Its inputs, in the operator's order.
	pub inputs: Vec<Source>,
	/// Output rows.
	pub rows: u32,
	/// Output columns.
	pub cols: u32,
}

/// A step program and where the next state's tensors come from.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StepProgram {
	/// The operations, in execution order.
	pub ops: Vec<Op>,
	/// The shapes `(rows, cols)` of the state's tensors.
	pub state_shapes: Vec<(u32, u32)>,
	/// For each tensor of the state after the step, the operation that produced it.
	pub next_state: Vec<u32>,
	/// How many of the state's tensors, from the first, are the model's parameters (the rest
	/// are the optimizer's): the trained model is the state's first `params` tensors.
	pub params: u32,
	/// How each state tensor starts.
	pub init: Vec<Init>,
}

/// How a state tensor starts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Init {
	/// At zero (biases, shifts, the optimizer's tensors).
	Zeros,
	/// At one (a layer normalization's scale).
	Ones,
	/// He-uniform ([`repops::init_tensor`]) from stream `stream` (the layer's index among the
	/// layers with parameters) with fan-in `fan_in`.
	Random {
		/// The stream.
		stream: u32,
		/// The fan-in.
		fan_in: u32,
	},
}

struct Builder {
	ops: Vec<Op>,
}

impl Builder {
	fn push(&mut self, kind: OpKind, inputs: Vec<Source>, rows: u32, cols: u32) -> Source {
		let j = self.ops.len() as u32;
		self.ops.push(Op { kind, inputs, rows, cols });
		Source::Op(j)
	}
}

/// The operations of `loss`: its per-row value (`B x 1`) and its batch-mean gradient with
/// respect to the model's output.
pub fn loss_ops(loss: Loss) -> (OpKind, OpKind) {
	match loss {
		Loss::SoftmaxCrossEntropy => (OpKind::SoftmaxXent, OpKind::SoftmaxXentBackward),
		Loss::MeanSquaredError => (OpKind::SquaredError, OpKind::SquaredErrorBackward),
	}
}

/// What the forward pass kept of one layer, for its backward pass.
struct Forward {
	/// The layer, or `None` for the end of a residual block (its sum).
	layer: Option<Layer>,
	/// Its index in the model.
	index: u32,
	/// Its input.
	input: Source,
	/// Its input's shape.
	shape: ImageShape,
	/// Its input's rows: the batch's samples, or (from a sequence model's embedding on) its
	/// tokens.
	rows: u32,
	/// The state index of its first parameter (and, one further, its second), if it has any.
	weight: Option<u32>,
}

/// The step program of `spec` (which must validate).
///
/// The model is compiled layer by layer ([`crate::task::Model::graph`]; an MLP is `Linear,
/// Relu, ..., Linear`): forward, the loss, then backward through the layers in reverse, each
/// layer with parameters giving its parameters' gradients and, unless no layer before it has
/// parameters, its input's gradient; then the optimizer's updates in state order. A residual
/// block's end adds its input to its output ([`OpKind::Add`]); going back, the gradient at the
/// block's start is the block's input gradient plus the gradient that took the skip.
pub fn step_program(spec: &TrainingSpec) -> Result<StepProgram, SpecError> {
	spec.validate()?;
	let (input, layers) = spec.model.graph();
	let b = spec.batch_size;
	let context = spec.model.context();
	// The rows of the current activation: samples, then tokens after an embedding.
	let mut rows = b;
	let mut p = Builder { ops: Vec::new() };
	let mut shapes: Vec<(u32, u32)> = Vec::new();
	let mut init: Vec<Init> = Vec::new();

	// Forward.
	let mut forward: Vec<Forward> = Vec::with_capacity(layers.len());
	let (mut x, mut shape) = (Source::Batch, input);
	// Open residual blocks: the index of their last layer and their input.
	let mut open: Vec<(usize, Source)> = Vec::new();
	for (i, layer) in layers.iter().copied().enumerate() {
		let index = u32::try_from(i).map_err(|_| SpecError::TooFewLayers)?;
		let weight = u32::try_from(shapes.len()).map_err(|_| SpecError::TooFewLayers)?;
		let w = Source::State(weight);
		let bias = Source::State(weight.saturating_add(1));
		let stream = u32::try_from(shapes.len() / 2).map_err(|_| SpecError::TooFewLayers)?;
		let values = shape.values();
		let in_rows = rows;
		let b = rows;
		let (output, out_shape) = match layer {
			Layer::Linear { out } => {
				shapes.extend([(values, out), (1, out)]);
				init.extend([Init::Random { stream, fan_in: values }, Init::Zeros]);
				let z = p.push(OpKind::MatMul, alloc::vec![x, w], b, out);
				(p.push(OpKind::BiasAdd, alloc::vec![z, bias], b, out), ImageShape::flat(out))
			}
			Layer::Embedding { vocab, dim } => {
				let t = context.unwrap_or(0);
				let g = Tokens { vocab, context: t, dim };
				shapes.extend([(vocab, dim), (t, dim)]);
				init.extend([Init::Random { stream, fan_in: dim }, Init::Zeros]);
				rows = b.checked_mul(t).ok_or(SpecError::BadBatchSize)?;
				(
					p.push(OpKind::Embed(g), alloc::vec![x, w, bias], rows, dim),
					ImageShape::flat(dim),
				)
			}
			Layer::Attention { heads } => {
				let dim = values / 3;
				let g = Attention { heads, context: context.unwrap_or(0), dim };
				(p.push(OpKind::Attention(g), alloc::vec![x], b, dim), ImageShape::flat(dim))
			}
			Layer::Conv2d { out_channels, kernel, stride, padding } => {
				let g = Conv { input: shape, out_channels, kernel, stride, padding };
				shapes.extend([(out_channels, g.patch()), (1, out_channels)]);
				init.extend([Init::Random { stream, fan_in: g.patch() }, Init::Zeros]);
				let out = g.output();
				(p.push(OpKind::Conv2d(g), alloc::vec![x, w, bias], b, out.values()), out)
			}
			Layer::MaxPool2d { kernel, stride } => {
				let g = Pool { input: shape, kernel, stride };
				let out = g.output();
				(p.push(OpKind::MaxPool2d(g), alloc::vec![x], b, out.values()), out)
			}
			Layer::AvgPool2d { kernel, stride } => {
				let g = Pool { input: shape, kernel, stride };
				let out = g.output();
				(p.push(OpKind::AvgPool2d(g), alloc::vec![x], b, out.values()), out)
			}
			Layer::Relu => (p.push(OpKind::Relu, alloc::vec![x], b, values), shape),
			Layer::Gelu => (p.push(OpKind::Gelu, alloc::vec![x], b, values), shape),
			Layer::LayerNorm => {
				shapes.extend([(1, values), (1, values)]);
				init.extend([Init::Ones, Init::Zeros]);
				(p.push(OpKind::LayerNorm, alloc::vec![x, w, bias], b, values), shape)
			}
			Layer::Dropout { p: drop } => {
				let mask = DropoutMask { p: drop, layer: index };
				(p.push(OpKind::Dropout(mask), alloc::vec![x], b, values), shape)
			}
			Layer::Residual { layers: n } => {
				open.push((i.saturating_add(n as usize), x));
				(x, shape)
			}
			Layer::Flatten => (x, ImageShape::flat(values)),
		};
		let weight = layer.has_params().then_some(weight);
		forward.push(Forward { layer: Some(layer), index, input: x, shape, rows: in_rows, weight });
		(x, shape) = (output, out_shape);
		// Blocks ending here: the sum of the block's output and its input.
		while let Some((end, skip)) = open.last().copied() {
			if end != i {
				break;
			}
			open.pop();
			forward.push(Forward { layer: None, index, input: x, shape, rows, weight: None });
			x = p.push(OpKind::Add, alloc::vec![x, skip], rows, shape.values());
		}
	}
	let outputs = shape.values();
	let (loss, loss_backward, loss_inputs) = match context {
		// A sequence model's loss is per token, against the batch's next tokens.
		Some(t) => {
			let g = Tokens { vocab: outputs, context: t, dim: outputs };
			(OpKind::TokenXent(g), OpKind::TokenXentBackward(g), alloc::vec![x, Source::Batch])
		}
		None => {
			let (l, lb) = loss_ops(spec.loss);
			(l, lb, alloc::vec![x])
		}
	};
	let losses = p.push(loss, loss_inputs.clone(), rows, 1);
	p.push(OpKind::Mean, alloc::vec![losses], 1, 1);

	// Backward: `dy` is the gradient of the current layer's output.
	let params = u32::try_from(shapes.len()).map_err(|_| SpecError::TooFewLayers)?;
	let mut grads = alloc::vec![Source::Batch; params as usize];
	let mut dy = p.push(loss_backward, loss_inputs, rows, outputs);
	// The gradients that took the skips of the blocks being walked back through.
	let mut skips: Vec<Source> = Vec::new();
	for (n, f) in forward.iter().enumerate().rev() {
		// The input's gradient is wanted if a layer before this one has parameters.
		let wanted =
			forward.get(..n).is_some_and(|before| before.iter().any(|f| f.weight.is_some()));
		let values = f.shape.values();
		let b = f.rows;
		let w = f.weight.map(Source::State).unwrap_or(Source::Batch);
		let weight = f.weight.unwrap_or(0);
		let mut grad = |i: u32, g: Source| {
			if let Some(slot) = grads.get_mut(i as usize) {
				*slot = g;
			}
		};
		let Some(layer) = f.layer else {
			// A block's end: the same gradient goes into the block and takes the skip.
			skips.push(dy);
			continue;
		};
		dy = match layer {
			Layer::Linear { out } => {
				grad(weight, p.push(OpKind::MatMulTn, alloc::vec![f.input, dy], values, out));
				grad(weight.saturating_add(1), p.push(OpKind::ColSum, alloc::vec![dy], 1, out));
				if !wanted {
					break;
				}
				p.push(OpKind::MatMulNt, alloc::vec![dy, w], b, values)
			}
			Layer::Conv2d { out_channels, kernel, stride, padding } => {
				let g = Conv { input: f.shape, out_channels, kernel, stride, padding };
				let dw = p.push(
					OpKind::Conv2dWeightGrad(g),
					alloc::vec![f.input, dy],
					out_channels,
					g.patch(),
				);
				grad(weight, dw);
				let db = p.push(OpKind::ConvBiasGrad(g), alloc::vec![dy], 1, out_channels);
				grad(weight.saturating_add(1), db);
				if !wanted {
					break;
				}
				p.push(OpKind::Conv2dInputGrad(g), alloc::vec![dy, w], b, values)
			}
			Layer::LayerNorm => {
				let dg = p.push(OpKind::LayerNormGammaGrad, alloc::vec![f.input, dy], 1, values);
				grad(weight, dg);
				grad(weight.saturating_add(1), p.push(OpKind::ColSum, alloc::vec![dy], 1, values));
				if !wanted {
					break;
				}
				p.push(OpKind::LayerNormInputGrad, alloc::vec![f.input, w, dy], b, values)
			}
			Layer::MaxPool2d { kernel, stride } => {
				let g = Pool { input: f.shape, kernel, stride };
				p.push(OpKind::MaxPool2dGrad(g), alloc::vec![f.input, dy], b, values)
			}
			Layer::AvgPool2d { kernel, stride } => {
				let g = Pool { input: f.shape, kernel, stride };
				p.push(OpKind::AvgPool2dGrad(g), alloc::vec![dy], b, values)
			}
			Layer::Relu => p.push(OpKind::ReluBackward, alloc::vec![f.input, dy], b, values),
			Layer::Gelu => p.push(OpKind::GeluBackward, alloc::vec![f.input, dy], b, values),
			Layer::Dropout { p: drop } => {
				let mask = DropoutMask { p: drop, layer: f.index };
				p.push(OpKind::DropoutGrad(mask), alloc::vec![dy], b, values)
			}
			Layer::Residual { .. } => {
				// A block's start: its input's gradient and the skip's, summed.
				let skip = skips.pop().unwrap_or(dy);
				p.push(OpKind::Add, alloc::vec![dy, skip], b, values)
			}
			Layer::Flatten => dy,
			Layer::Embedding { vocab, dim } => {
				let g = Tokens { vocab, context: context.unwrap_or(0), dim };
				grad(
					weight,
					p.push(OpKind::EmbedGrad(g), alloc::vec![Source::Batch, dy], vocab, dim),
				);
				let dpos = p.push(OpKind::PositionGrad(g), alloc::vec![dy], g.context, dim);
				grad(weight.saturating_add(1), dpos);
				// The first layer: nothing before it to take a gradient.
				break;
			}
			Layer::Attention { heads } => {
				let g = Attention { heads, context: context.unwrap_or(0), dim: values / 3 };
				p.push(OpKind::AttentionGrad(g), alloc::vec![f.input, dy], b, values)
			}
		};
		if !wanted {
			break;
		}
	}

	// Gradient clipping by global norm: each gradient's row sums of squares, the factor from
	// all of them in state order, every gradient scaled by it.
	let param_shapes = shapes.clone();
	if let Some(max_norm) = spec.max_grad_norm {
		let sums: Vec<Source> = grads
			.iter()
			.enumerate()
			.map(|(i, g)| {
				let rows = param_shapes.get(i).map_or(0, |s| s.0);
				p.push(OpKind::SumSquares, alloc::vec![*g], rows, 1)
			})
			.collect();
		let factor = p.push(OpKind::ClipCoefficient(max_norm), sums, 1, 1);
		for (i, g) in grads.iter_mut().enumerate() {
			let (rows, cols) = param_shapes.get(i).copied().unwrap_or((0, 0));
			*g = p.push(OpKind::ClipScale, alloc::vec![*g, factor], rows, cols);
		}
	}

	// Update.
	let copies = match spec.optimizer {
		Optimizer::Sgd { .. } => 1,
		Optimizer::Adam { .. } | Optimizer::AdamW { .. } => 2,
	};
	for _ in 0..copies {
		shapes.extend(param_shapes.iter().copied());
		init.extend(param_shapes.iter().map(|_| Init::Zeros));
	}
	let mut new_params = Vec::new();
	let mut new_first = Vec::new();
	let mut new_second = Vec::new();
	for (i, g) in grads.iter().enumerate() {
		let (rows, cols) = param_shapes.get(i).copied().unwrap_or((0, 0));
		let param = Source::State(i as u32);
		match spec.optimizer {
			Optimizer::Sgd { .. } => {
				let v = Source::State(params.saturating_add(i as u32));
				let v2 = p.push(OpKind::Momentum, alloc::vec![v, *g], rows, cols);
				new_first.push(v2);
				new_params.push(p.push(OpKind::SgdStep, alloc::vec![param, v2], rows, cols));
			}
			Optimizer::Adam { .. } | Optimizer::AdamW { .. } => {
				let step = match spec.optimizer {
					Optimizer::AdamW { .. } => OpKind::AdamWStep,
					_ => OpKind::AdamStep,
				};
				let m = Source::State(params.saturating_add(i as u32));
				let v = Source::State(params.saturating_mul(2).saturating_add(i as u32));
				let m2 = p.push(OpKind::AdamM, alloc::vec![m, *g], rows, cols);
				let v2 = p.push(OpKind::AdamV, alloc::vec![v, *g], rows, cols);
				new_first.push(m2);
				new_second.push(v2);
				new_params.push(p.push(step, alloc::vec![param, m2, v2], rows, cols));
			}
		}
	}
	let next_state = new_params
		.into_iter()
		.chain(new_first)
		.chain(new_second)
		.filter_map(|s| match s {
			Source::Op(j) => Some(j),
			_ => None,
		})
		.collect();
	Ok(StepProgram { ops: p.ops, state_shapes: shapes, next_state, params, init })
}

/// The state after initialization: He-uniform weights from the seed (each layer's own
/// stream, [`repops::init_tensor`]), zero biases, zero optimizer tensors.
pub fn initial_state(
	spec: &TrainingSpec,
	program: &StepProgram,
) -> Result<Vec<Matrix>, ShapeError> {
	let mut state = Vec::with_capacity(program.state_shapes.len());
	for (i, (rows, cols)) in program.state_shapes.iter().enumerate() {
		state.push(match program.init.get(i).copied().unwrap_or(Init::Zeros) {
			Init::Random { stream, fan_in } => {
				repops::init_tensor(spec.seed, stream, *rows, *cols, fan_in)?
			}
			Init::Ones => {
				let len =
					(*rows as usize).checked_mul(*cols as usize).ok_or(ShapeError::Overflow)?;
				Matrix::new(*rows, *cols, alloc::vec![1.0; len])?
			}
			Init::Zeros => Matrix::zeros(*rows, *cols)?,
		});
	}
	Ok(state)
}

/// The most tensors a state has: a weight and a bias per layer with parameters (at most
/// [`crate::task::MAX_PARAM_LAYERS`]), each with up to two optimizer tensors (Adam's).
pub const MAX_STATE_TENSORS: u32 = crate::task::MAX_PARAM_LAYERS * 2 * 3;

/// Value `(r, c)` of state tensor `i` right after initialization, as bits, computed alone
/// ([`repops::init_value`]): what the chain checks to settle a dispute over `h_0` element
/// by element. `None` outside the state.
pub fn initial_value(
	spec: &TrainingSpec,
	program: &StepProgram,
	i: u32,
	(r, c): (u32, u32),
) -> Option<u32> {
	let (rows, cols) = *program.state_shapes.get(i as usize)?;
	if r >= rows || c >= cols {
		return None;
	}
	Some(match program.init.get(i as usize).copied().unwrap_or(Init::Zeros) {
		Init::Random { stream, fan_in } => {
			repops::init_value(spec.seed, stream, cols, fan_in, r, c).to_bits()
		}
		Init::Ones => 1.0f32.to_bits(),
		Init::Zeros => 0.0f32.to_bits(),
	})
}

/// The hash `h_0` of the state right after initialization, if the chain can afford to
/// recompute it: at most [`repops::MAX_CHAIN_ELEMENTS`] values in the whole state (larger
/// models give [`ShapeError::TooLarge`]).
pub fn initial_state_hash(spec: &TrainingSpec) -> Result<sp_core::H256, ShapeError> {
	let program = step_program(spec).map_err(|_| ShapeError::Mismatch)?;
	if program.state_values() > u64::from(repops::MAX_CHAIN_ELEMENTS) {
		return Err(ShapeError::TooLarge);
	}
	Ok(crate::commit::state_hash(&initial_state(spec, &program)?))
}

/// Runs operation `op` of a step on its input tensors (in `op.inputs` order). This is what
/// the chain executes for a disputed operation, and what every engine must match bit for bit.
pub fn execute(
	spec: &TrainingSpec,
	op: &Op,
	inputs: &[&Matrix],
	labels: &[u32],
	step: u32,
) -> Result<Matrix, ShapeError> {
	let arg = |i: usize| inputs.get(i).copied().ok_or(ShapeError::Mismatch);
	let out = match op.kind {
		OpKind::MatMul => repops::matmul(arg(0)?, arg(1)?)?,
		OpKind::MatMulTn => repops::matmul_tn(arg(0)?, arg(1)?)?,
		OpKind::MatMulNt => repops::matmul_nt(arg(0)?, arg(1)?)?,
		OpKind::BiasAdd => repops::bias_add(arg(0)?, arg(1)?)?,
		OpKind::Relu => repops::relu_matrix(arg(0)?)?,
		OpKind::ReluBackward => repops::relu_backward_matrix(arg(0)?, arg(1)?)?,
		OpKind::SoftmaxXent => repops::softmax_xent(arg(0)?, labels)?,
		OpKind::SoftmaxXentBackward => repops::softmax_xent_backward(arg(0)?, labels)?,
		OpKind::SquaredError => repops::squared_error(arg(0)?, labels)?,
		OpKind::SquaredErrorBackward => repops::squared_error_backward(arg(0)?, labels)?,
		OpKind::Mean => Matrix::new(1, 1, alloc::vec![repops::mean(&arg(0)?.data)])?,
		OpKind::ColSum => repops::col_sum(arg(0)?)?,
		OpKind::Conv2d(g) => image::conv2d(&g, arg(0)?, arg(1)?, arg(2)?)?,
		OpKind::Conv2dInputGrad(g) => image::conv2d_input_grad(&g, arg(0)?, arg(1)?)?,
		OpKind::Conv2dWeightGrad(g) => image::conv2d_weight_grad(&g, arg(0)?, arg(1)?)?,
		OpKind::ConvBiasGrad(g) => image::conv_bias_grad(&g, arg(0)?)?,
		OpKind::MaxPool2d(g) => image::max_pool(&g, arg(0)?)?,
		OpKind::MaxPool2dGrad(g) => image::max_pool_grad(&g, arg(0)?, arg(1)?)?,
		OpKind::AvgPool2d(g) => image::avg_pool(&g, arg(0)?)?,
		OpKind::AvgPool2dGrad(g) => image::avg_pool_grad(&g, arg(0)?)?,
		OpKind::Add => repops::add_matrix(arg(0)?, arg(1)?)?,
		OpKind::Gelu => layers::gelu_matrix(arg(0)?)?,
		OpKind::GeluBackward => layers::gelu_backward_matrix(arg(0)?, arg(1)?)?,
		OpKind::LayerNorm => layers::layer_norm(arg(0)?, arg(1)?, arg(2)?)?,
		OpKind::LayerNormInputGrad => layers::layer_norm_input_grad(arg(0)?, arg(1)?, arg(2)?)?,
		OpKind::LayerNormGammaGrad => layers::layer_norm_gamma_grad(arg(0)?, arg(1)?)?,
		OpKind::Dropout(m) | OpKind::DropoutGrad(m) => {
			layers::dropout(arg(0)?, spec.seed, step, m.layer, m.p.to_f32())?
		}
		OpKind::Embed(g) => sequence::embed(&g, arg(0)?, arg(1)?, arg(2)?)?,
		OpKind::EmbedGrad(g) => sequence::embed_grad(&g, arg(0)?, arg(1)?)?,
		OpKind::PositionGrad(g) => sequence::position_grad(&g, arg(0)?)?,
		OpKind::TokenXent(g) => sequence::token_xent(&g, arg(0)?, arg(1)?)?,
		OpKind::TokenXentBackward(g) => sequence::token_xent_backward(&g, arg(0)?, arg(1)?)?,
		OpKind::Attention(g) => sequence::attention(&g, arg(0)?)?,
		OpKind::AttentionGrad(g) => sequence::attention_grad(&g, arg(0)?, arg(1)?)?,
		OpKind::SumSquares => clip::sum_squares_matrix(arg(0)?)?,
		OpKind::ClipCoefficient(max_norm) => {
			clip::clip_coefficient_matrix(inputs, max_norm.to_f32())?
		}
		OpKind::ClipScale => clip::clip_scale_matrix(arg(0)?, arg(1)?)?,
		OpKind::Momentum
		| OpKind::SgdStep
		| OpKind::AdamM
		| OpKind::AdamV
		| OpKind::AdamStep
		| OpKind::AdamWStep => {
			let f = Pointwise::new(spec, op.kind, step)?;
			let first = arg(0)?;
			let others = (1..op.inputs.len()).map(arg).collect::<Result<Vec<_>, _>>()?;
			if others.iter().any(|m| {
				(m.rows, m.cols, m.data.len()) != (first.rows, first.cols, first.data.len())
			}) {
				return Err(ShapeError::Mismatch);
			}
			let mut args = [0.0f32; 3];
			let data = (0..first.data.len())
				.map(|n| {
					for (slot, m) in
						args.iter_mut().zip(core::iter::once(first).chain(others.iter().copied()))
					{
						*slot = m.data.get(n).copied().unwrap_or(0.0);
					}
					f.apply(&args)
				})
				.collect();
			Matrix::new(first.rows, first.cols, data)?
		}
	};
	if (out.rows, out.cols) != (op.rows, op.cols) {
		return Err(ShapeError::Mismatch);
	}
	Ok(out)
}

/// The optimizer's per-value updates, with the spec's hyperparameters: the one definition
/// the whole-tensor operation ([`execute`]) and the chain's single-element check share.
#[derive(Clone, Copy, Debug)]
pub struct Pointwise {
	kind: OpKind,
	lr: f32,
	mu: f32,
	b1: f32,
	b2: f32,
	eps: f32,
	corrections: (f32, f32),
	/// AdamW's decay factor `1 - lr wd` (1 for the others).
	decay: f32,
}

impl Pointwise {
	/// The update `kind` of step `step` (`Momentum`, `SgdStep`, `AdamM`, `AdamV` or
	/// `AdamStep`, matching the spec's optimizer).
	pub fn new(spec: &TrainingSpec, kind: OpKind, step: u32) -> Result<Self, ShapeError> {
		let mut f = Self {
			kind,
			lr: 0.0,
			mu: 0.0,
			b1: 0.0,
			b2: 0.0,
			eps: 0.0,
			corrections: (1.0, 1.0),
			decay: 1.0,
		};
		match (spec.optimizer, kind) {
			(Optimizer::Sgd { learning_rate, momentum }, OpKind::Momentum | OpKind::SgdStep) => {
				f.lr = learning_rate.to_f32();
				f.mu = momentum.to_f32();
			}
			(
				Optimizer::Adam { learning_rate, beta1, beta2, epsilon },
				OpKind::AdamM | OpKind::AdamV | OpKind::AdamStep,
			) => {
				f.lr = learning_rate.to_f32();
				f.b1 = beta1.to_f32();
				f.b2 = beta2.to_f32();
				f.eps = epsilon.to_f32();
				f.corrections = repops::adam_corrections(f.b1, f.b2, step.saturating_add(1));
			}
			(
				Optimizer::AdamW { learning_rate, beta1, beta2, epsilon, weight_decay },
				OpKind::AdamM | OpKind::AdamV | OpKind::AdamWStep,
			) => {
				f.lr = learning_rate.to_f32();
				f.b1 = beta1.to_f32();
				f.b2 = beta2.to_f32();
				f.eps = epsilon.to_f32();
				f.corrections = repops::adam_corrections(f.b1, f.b2, step.saturating_add(1));
				f.decay = repops::sub(1.0, repops::mul(f.lr, weight_decay.to_f32()));
			}
			_ => return Err(ShapeError::Mismatch),
		}
		Ok(f)
	}

	/// The constants the update uses, `[lr, mu, b1, b2, eps, c1, c2]` (`c1`, `c2`: Adam's bias
	/// corrections of the step; zeros for what the optimizer lacks): for a device kernel that
	/// applies the same update.
	pub fn constants(&self) -> [f32; 7] {
		let (c1, c2) = self.corrections;
		[self.lr, self.mu, self.b1, self.b2, self.eps, c1, c2]
	}

	/// The updated value from the operation's inputs at one position, in input order.
	pub fn apply(&self, args: &[f32; 3]) -> f32 {
		let [a, b, c] = *args;
		match self.kind {
			OpKind::Momentum => repops::momentum(a, b, self.mu),
			OpKind::SgdStep => repops::sgd_step(a, b, self.lr),
			OpKind::AdamM => repops::adam_m(a, b, self.b1),
			OpKind::AdamV => repops::adam_v(a, b, self.b2),
			OpKind::AdamWStep => repops::adam_step(
				repops::mul(a, self.decay),
				b,
				c,
				self.lr,
				self.eps,
				self.corrections,
			),
			_ => repops::adam_step(a, b, c, self.lr, self.eps, self.corrections),
		}
	}
}

/// What executing `op` on `inputs` costs, from the tensors themselves (never from the shapes
/// `op` declares, which a caller may set to anything): the values read and written, and the
/// multiply-adds of a product. Tensors whose bits do not match their shape are refused.
pub fn execution_cost(
	op: &Op,
	inputs: &[repops::TensorBits],
	labels: &[u32],
) -> Result<(u64, u64), ShapeError> {
	let mut values = labels.len() as u64;
	let mut largest = u64::from(op.rows).saturating_mul(u64::from(op.cols));
	for t in inputs {
		let n = u64::from(t.rows).saturating_mul(u64::from(t.cols));
		if n != t.bits.len() as u64 {
			return Err(ShapeError::Mismatch);
		}
		values = values.saturating_add(n);
		largest = largest.max(n);
	}
	let dims =
		|i: usize| inputs.get(i).map(|t| (u64::from(t.rows), u64::from(t.cols))).unwrap_or((0, 0));
	let (a, b) = (dims(0), dims(1));
	// (output rows, contraction, output columns) of the products; elementwise operations,
	// sums and the loss write at most as many values as their largest input.
	// An image operator's work follows from its geometry (which execution checks against the
	// tensors before any work) and the batch's rows.
	// (A sequence operator's first input has a row per token.)
	let samples = match op.kind {
		OpKind::Attention(g) | OpKind::AttentionGrad(g) => a.0.checked_div(u64::from(g.context)),
		OpKind::PositionGrad(g) => a.0.checked_div(u64::from(g.context)),
		_ => Some(a.0),
	}
	.unwrap_or(0);
	if let Some((outputs, terms)) = op.kind.element_terms(samples) {
		let out = largest.max(outputs);
		return Ok((values.saturating_add(out), outputs.saturating_mul(terms)));
	}
	let (m, k, n) = match op.kind {
		OpKind::MatMul => (a.0, a.1, b.1),
		OpKind::MatMulTn => (a.1, a.0, b.1),
		OpKind::MatMulNt => (a.0, a.1, b.0),
		_ => (0, 0, 0),
	};
	let out = largest.max(m.saturating_mul(n));
	Ok((values.saturating_add(out), m.saturating_mul(n).saturating_mul(k)))
}

/// [`execute`] on tensors given as bits, refusing more than [`repops::MAX_CHAIN_ELEMENTS`]
/// values or [`crate::referee::MAX_LEAF_MACS`] multiply-adds, counted from the tensors given
/// ([`execution_cost`]): what the runtime API runs, so one request costs a node at most one
/// leaf's work.
pub fn execute_bits(
	spec: &TrainingSpec,
	op: &Op,
	inputs: &[repops::TensorBits],
	labels: &[u32],
	step: u32,
) -> Result<repops::TensorBits, ShapeError> {
	let (values, macs) = execution_cost(op, inputs, labels)?;
	if values > u64::from(repops::MAX_CHAIN_ELEMENTS) || macs > crate::referee::MAX_LEAF_MACS {
		return Err(ShapeError::TooLarge);
	}
	let matrices = inputs.iter().map(Matrix::try_from).collect::<Result<Vec<Matrix>, _>>()?;
	let refs: Vec<&Matrix> = matrices.iter().collect();
	execute(spec, op, &refs, labels, step).map(|m| repops::TensorBits::from(&m))
}

/// One training step with the reference operators: every operation's output, and the state
/// after the step. `step` is the 0-based step index (Adam's bias correction uses `step + 1`).
pub fn run_step(
	spec: &TrainingSpec,
	program: &StepProgram,
	state: &[Matrix],
	batch: &Matrix,
	labels: &[u32],
	step: u32,
) -> Result<(Vec<Matrix>, Vec<Matrix>), ShapeError> {
	run_step_with(program, state, batch, |op, inputs| execute(spec, op, inputs, labels, step))
}

/// One training step with `execute` running each operation (the reference, or an engine that
/// must give the same bits): every operation's output, and the state after the step.
pub fn run_step_with(
	program: &StepProgram,
	state: &[Matrix],
	batch: &Matrix,
	execute: impl FnMut(&Op, &[&Matrix]) -> Result<Matrix, ShapeError>,
) -> Result<(Vec<Matrix>, Vec<Matrix>), ShapeError> {
	let outputs = run_ops_with(program, state, batch, execute)?;
	let next = program
		.next_state
		.iter()
		.map(|j| outputs.get(*j as usize).cloned())
		.collect::<Option<Vec<Matrix>>>()
		.ok_or(ShapeError::Mismatch)?;
	Ok((outputs, next))
}

/// Every operation's output of one training step, `execute` running each operation (the
/// state after the step is among them: [`StepProgram::take_next_state`]).
pub fn run_ops_with(
	program: &StepProgram,
	state: &[Matrix],
	batch: &Matrix,
	mut execute: impl FnMut(&Op, &[&Matrix]) -> Result<Matrix, ShapeError>,
) -> Result<Vec<Matrix>, ShapeError> {
	let mut outputs: Vec<Matrix> = Vec::with_capacity(program.ops.len());
	for op in &program.ops {
		let inputs = op
			.inputs
			.iter()
			.map(|s| match s {
				Source::State(i) => state.get(*i as usize),
				Source::Batch => Some(batch),
				Source::Op(j) => outputs.get(*j as usize),
			})
			.collect::<Option<Vec<&Matrix>>>()
			.ok_or(ShapeError::Mismatch)?;
		let out = execute(op, &inputs)?;
		outputs.push(out);
	}
	Ok(outputs)
}

impl StepProgram {
	/// The first layer's weight gradient `Xᵀ · dZ`: the product whose every element reads a
	/// column of the batch (every sample of it), the largest element leaf of a step.
	pub fn batch_column_product(&self) -> Option<u32> {
		let j = self.ops.iter().position(|op| {
			op.kind == OpKind::MatMulTn && op.inputs.first() == Some(&Source::Batch)
		})?;
		u32::try_from(j).ok()
	}

	/// The values of the state (every tensor's rows times columns).
	pub fn state_values(&self) -> u64 {
		self.state_shapes.iter().fold(0u64, |acc, (r, c)| {
			acc.saturating_add(u64::from(*r).saturating_mul(u64::from(*c)))
		})
	}

	/// The state after the step, moved out of the step's `outputs` ([`run_ops_with`]) instead
	/// of copied: a trainer that keeps only the state saves a copy of it per step. The moved
	/// outputs are left empty (`0 x 0`).
	pub fn take_next_state(&self, outputs: &mut [Matrix]) -> Result<Vec<Matrix>, ShapeError> {
		let empty = || Matrix { rows: 0, cols: 0, data: Vec::new() };
		let mut next = Vec::with_capacity(self.next_state.len());
		for (n, j) in self.next_state.iter().enumerate() {
			// A tensor produced by an operation that an earlier one already took is copied.
			let earlier = self.next_state.get(..n).and_then(|e| e.iter().position(|k| k == j));
			let m = match earlier {
				Some(e) => next.get(e).cloned(),
				None => outputs.get_mut(*j as usize).map(|o| core::mem::replace(o, empty())),
			};
			next.push(m.ok_or(ShapeError::Mismatch)?);
		}
		Ok(next)
	}
}

#[cfg(test)]
#[allow(
	clippy::unwrap_used,
	clippy::expect_used,
	clippy::arithmetic_side_effects,
	clippy::indexing_slicing
)]
pub(crate) mod tests {
	use super::*;
	use crate::repops::SplitMix64;

	use sp_core::H256;

	fn sgd() -> Optimizer {
		Optimizer::sgd(0.1, 0.9)
	}

	fn adam() -> Optimizer {
		Optimizer::adam(0.01)
	}

	/// Attack: the runtime API counted the output by the shape the caller declared, so an
	/// operation declared `0 x 0` over two 512 x 1024 inputs (a quarter of a giga
	/// multiply-add) passed the size check and took a node's CPU for seconds per request.
	#[test]
	fn execute_bits_counts_the_work_of_the_tensors_given_not_the_declared_shape() {
		let t = |rows: u32, cols: u32| repops::TensorBits {
			rows,
			cols,
			bits: alloc::vec![0; (rows * cols) as usize],
		};
		let spec = TrainingSpec::example_mlp(&[4, 2], sgd(), 4);
		let lie = Op { kind: OpKind::MatMul, inputs: alloc::vec![], rows: 0, cols: 0 };
		let (a, b) = (t(512, 1024), t(1024, 512));
		assert_eq!(
			execution_cost(&lie, &[a.clone(), b.clone()], &[]),
			Ok((2 * 512 * 1024 + 512 * 1024, 512 * 1024 * 512))
		);
		assert_eq!(execute_bits(&spec, &lie, &[a, b], &[], 0), Err(ShapeError::TooLarge));
		// Bits that do not match the shape are refused before anything runs.
		let bad = repops::TensorBits { rows: 1000, cols: 1000, bits: alloc::vec![0; 4] };
		assert_eq!(
			execute_bits(&spec, &lie, &[bad.clone(), bad], &[], 0),
			Err(ShapeError::Mismatch)
		);
		// A product within one leaf runs.
		let ok = Op { kind: OpKind::MatMul, inputs: alloc::vec![], rows: 64, cols: 32 };
		assert!(execute_bits(&spec, &ok, &[t(64, 128), t(128, 32)], &[], 0).is_ok());
	}

	/// The deepest model has the most state tensors a spec may have, every layer and layer
	/// with parameters the bounds allow, and is settleable.
	#[test]
	fn the_deepest_model_has_the_largest_state() {
		use crate::task::{MAX_GRAPH_LAYERS, MAX_PARAM_LAYERS};
		let s = TrainingSpec::example_deepest(H256::zero());
		let p = step_program(&s).unwrap();
		assert_eq!(p.state_shapes.len() as u32, MAX_STATE_TENSORS);
		let (_, layers) = s.model.graph();
		assert_eq!(layers.len() as u32, MAX_GRAPH_LAYERS);
		assert_eq!(layers.iter().filter(|l| l.has_params()).count() as u32, MAX_PARAM_LAYERS);
		let mut s = s;
		s.dataset.samples = 1797;
		crate::settle::check(&s, &crate::settle::LeafBudget::CHAIN).unwrap();
	}

	#[test]
	fn every_initial_value_is_the_initial_states_own() {
		for spec in [
			TrainingSpec::example_mlp(&[6, 5, 3], sgd(), 4),
			TrainingSpec::example_mlp(&[7, 4, 4, 2], adam(), 4),
		] {
			let program = step_program(&spec).unwrap();
			let state = initial_state(&spec, &program).unwrap();
			assert!(state.len() <= MAX_STATE_TENSORS as usize);
			for (i, m) in state.iter().enumerate() {
				for r in 0..m.rows {
					for c in 0..m.cols {
						let want = m.row(r).unwrap()[c as usize].to_bits();
						assert_eq!(initial_value(&spec, &program, i as u32, (r, c)), Some(want));
					}
				}
				assert_eq!(initial_value(&spec, &program, i as u32, (m.rows, 0)), None);
			}
			assert_eq!(initial_value(&spec, &program, state.len() as u32, (0, 0)), None);
		}
	}

	/// A separable toy task: the label is the index of the largest of the first `classes`
	/// features.
	fn batch(seed: u64, rows: u32, features: u32, classes: u32) -> (Matrix, Vec<u32>) {
		let mut rng = SplitMix64::new(seed);
		let data: Vec<f32> = (0..rows * features).map(|_| rng.next_unit() * 2.0 - 1.0).collect();
		let labels = data
			.chunks(features as usize)
			.map(|r| {
				(0..classes as usize).max_by(|a, b| r[*a].partial_cmp(&r[*b]).unwrap()).unwrap()
					as u32
			})
			.collect();
		(Matrix::new(rows, features, data).unwrap(), labels)
	}

	#[test]
	fn the_digits_program_has_the_expected_operations() {
		let s = TrainingSpec::example_digits(H256::zero());
		let p = step_program(&s).unwrap();
		use OpKind::*;
		let kinds: Vec<OpKind> = p.ops.iter().map(|o| o.kind).collect();
		assert_eq!(
			kinds,
			vec![
				MatMul,
				BiasAdd,
				Relu,
				MatMul,
				BiasAdd,
				SoftmaxXent,
				Mean,
				SoftmaxXentBackward,
				MatMulTn,
				ColSum,
				MatMulNt,
				ReluBackward,
				MatMulTn,
				ColSum,
				Momentum,
				SgdStep,
				Momentum,
				SgdStep,
				Momentum,
				SgdStep,
				Momentum,
				SgdStep,
			]
		);
		assert_eq!(
			p.state_shapes,
			vec![(64, 32), (1, 32), (32, 10), (1, 10), (64, 32), (1, 32), (32, 10), (1, 10)]
		);
		assert_eq!(p.next_state.len(), 8);
		let adam_p = step_program(&TrainingSpec::example_mlp(&[64, 32, 10], adam(), 32)).unwrap();
		assert_eq!(adam_p.state_shapes.len(), 12);
		assert_eq!(adam_p.next_state.len(), 12);
		let mut bad = s.clone();
		bad.batch_size = 0;
		assert_eq!(step_program(&bad), Err(SpecError::BadBatchSize));
	}

	#[test]
	fn every_operation_reads_only_earlier_outputs_and_matches_its_shape() {
		for widths in [&[4u32, 3][..], &[8, 16, 8, 3], &[5, 7, 7, 7, 2]] {
			for opt in [sgd(), adam()] {
				let s = TrainingSpec::example_mlp(widths, opt, 6);
				let p = step_program(&s).unwrap();
				let state = initial_state(&s, &p).unwrap();
				let (x, y) = batch(1, 6, widths[0], *widths.last().unwrap());
				let (outs, next) = run_step(&s, &p, &state, &x, &y, 0).unwrap();
				for (j, op) in p.ops.iter().enumerate() {
					for src in &op.inputs {
						if let Source::Op(i) = src {
							assert!((*i as usize) < j);
						}
					}
					assert_eq!((outs[j].rows, outs[j].cols), (op.rows, op.cols));
				}
				assert_eq!(next.len(), state.len());
				for (a, b) in next.iter().zip(&state) {
					assert_eq!((a.rows, a.cols), (b.rows, b.cols));
				}
			}
		}
	}

	/// Checks the gradients the program of `s` (SGD) computes at step `step` from `state` on
	/// the batch `(x, y)` (each `Momentum` update's gradient operand, in state order) against
	/// central differences, step `h`, of the f64 loss `loss` of the state's parameters, to
	/// within `tol.0 + tol.1 * |numeric|`. Returns how many values were checked.
	#[allow(clippy::too_many_arguments)]
	fn assert_gradients(
		s: &TrainingSpec,
		state: &[Matrix],
		(x, y): (&Matrix, &[u32]),
		step: u32,
		h: f64,
		tol: (f64, f64),
		loss: impl Fn(&[Vec<f64>]) -> f64,
		ctx: &str,
	) -> usize {
		let p = step_program(s).unwrap();
		let (outs, _) = run_step(s, &p, state, x, y, step).unwrap();
		let grads: Vec<&Matrix> = p
			.ops
			.iter()
			.filter(|o| o.kind == OpKind::Momentum)
			.map(|o| match o.inputs[1] {
				Source::Op(j) => &outs[j as usize],
				_ => unreachable!(),
			})
			.collect();
		let base: Vec<Vec<f64>> = state[..p.params as usize]
			.iter()
			.map(|m| m.data.iter().map(|v| *v as f64).collect())
			.collect();
		let mut checked = 0;
		for (t, g) in grads.iter().enumerate() {
			for i in 0..g.data.len() {
				let mut plus = base.clone();
				plus[t][i] += h;
				let mut minus = base.clone();
				minus[t][i] -= h;
				let numeric = (loss(&plus) - loss(&minus)) / (2.0 * h);
				let analytic = g.data[i] as f64;
				assert!(
					(numeric - analytic).abs() <= tol.0 + tol.1 * numeric.abs(),
					"{ctx} tensor {t} element {i}: numeric {numeric} vs program {analytic}"
				);
				checked += 1;
			}
		}
		checked
	}

	/// Checks the program's gradients for a 5-6-`outputs` ReLU MLP `s` (SGD) on batch `(x, y)`
	/// of 8 rows against central differences of the mean of `row_loss(output row, label)`,
	/// recomputed in f64, to a float tolerance.
	fn check_gradients(
		s: &TrainingSpec,
		(x, y): (&Matrix, &[u32]),
		outputs: usize,
		row_loss: impl Fn(&[f64], u32) -> f64,
	) {
		let p = step_program(s).unwrap();
		let state = initial_state(s, &p).unwrap();
		let loss = |params: &[Vec<f64>]| -> f64 {
			let (w1, b1, w2, b2) = (&params[0], &params[1], &params[2], &params[3]);
			let mut total = 0.0;
			for r in 0..8 {
				let xr: Vec<f64> = x.row(r).unwrap().iter().map(|v| *v as f64).collect();
				let h: Vec<f64> = (0..6)
					.map(|j| ((0..5).map(|k| xr[k] * w1[k * 6 + j]).sum::<f64>() + b1[j]).max(0.0))
					.collect();
				let z: Vec<f64> = (0..outputs)
					.map(|j| (0..6).map(|k| h[k] * w2[k * outputs + j]).sum::<f64>() + b2[j])
					.collect();
				total += row_loss(&z, y[r as usize]);
			}
			total / 8.0
		};
		assert_gradients(s, &state, (x, y), 0, 1e-5, (1e-4, 1e-3), loss, "mlp");
	}

	/// The backward program computes the true gradient of the softmax cross-entropy.
	#[test]
	fn gradients_match_finite_differences() {
		let s = TrainingSpec::example_mlp(&[5, 6, 4], sgd(), 8);
		let (x, y) = batch(3, 8, 5, 4);
		check_gradients(&s, (&x, &y), 4, |z, label| {
			let m = z.iter().cloned().fold(f64::MIN, f64::max);
			let lse = z.iter().map(|v| (v - m).exp()).sum::<f64>().ln() + m;
			lse - z[label as usize]
		});
	}

	/// The mean loss over 150 steps of `s` on the batches `batch_of(step)`: the mean of the
	/// first ten and of the last ten.
	fn loss_trend(s: &TrainingSpec, batch_of: impl Fn(u64) -> (Matrix, Vec<u32>)) -> (f32, f32) {
		let p = step_program(s).unwrap();
		let mut state = initial_state(s, &p).unwrap();
		let mean_op = p.ops.iter().position(|o| o.kind == OpKind::Mean).unwrap();
		let mut losses = vec![];
		for step in 0..150 {
			let (x, y) = batch_of(1000 + step as u64);
			let (outs, next) = run_step(s, &p, &state, &x, &y, step).unwrap();
			losses.push(outs[mean_op].data[0]);
			state = next;
		}
		(losses[..10].iter().sum::<f32>() / 10.0, losses[140..].iter().sum::<f32>() / 10.0)
	}

	#[test]
	fn training_lowers_the_loss_with_both_optimizers() {
		for opt in [sgd(), adam()] {
			let s = TrainingSpec::example_mlp(&[8, 16, 4], opt, 32);
			let (first, last) = loss_trend(&s, |seed| batch(seed, 32, 8, 4));
			assert!(last < first * 0.7, "{opt:?}: loss {first} -> {last}");
		}
	}

	#[test]
	fn a_step_is_a_pure_function_of_its_inputs() {
		let s = TrainingSpec::example_mlp(&[8, 16, 4], adam(), 16);
		let p = step_program(&s).unwrap();
		let state = initial_state(&s, &p).unwrap();
		let (x, y) = batch(9, 16, 8, 4);
		let a = run_step(&s, &p, &state, &x, &y, 3).unwrap();
		let b = run_step(&s, &p, &state, &x, &y, 3).unwrap();
		let bits = |m: &Vec<Matrix>| {
			m.iter().flat_map(|t| t.data.iter().map(|v| v.to_bits())).collect::<Vec<_>>()
		};
		assert_eq!(bits(&a.0), bits(&b.0));
		assert_eq!(bits(&a.1), bits(&b.1));
		// Adam's step index matters.
		let c = run_step(&s, &p, &state, &x, &y, 4).unwrap();
		assert_ne!(bits(&a.1), bits(&c.1));
	}

	#[test]
	fn the_next_state_moved_out_of_the_outputs_is_the_copied_one() {
		for opt in [sgd(), adam()] {
			let s = TrainingSpec::example_mlp(&[8, 16, 4], opt, 16);
			let p = step_program(&s).unwrap();
			let state = initial_state(&s, &p).unwrap();
			let (x, y) = batch(9, 16, 8, 4);
			let (_, want) = run_step(&s, &p, &state, &x, &y, 2).unwrap();
			let mut outputs =
				run_ops_with(&p, &state, &x, |op, inputs| execute(&s, op, inputs, &y, 2)).unwrap();
			assert_eq!(p.take_next_state(&mut outputs).unwrap(), want);
			// Taken, not copied.
			for j in &p.next_state {
				assert!(outputs[*j as usize].data.is_empty());
			}
		}
	}

	/// A regression batch: targets of [`crate::task::synthetic_regression`], as `f32` bits.
	fn regression_batch(seed: u64, rows: u32, features: u32) -> (Matrix, Vec<u32>) {
		let data = crate::task::synthetic_regression(seed, rows, features);
		let x = data.iter().flat_map(|(x, _)| x.iter().copied()).collect();
		(Matrix::new(rows, features, x).unwrap(), data.iter().map(|(_, t)| *t).collect())
	}

	#[test]
	fn squared_error_and_its_gradient_are_the_textbook_ones() {
		let y = Matrix::new(3, 1, vec![1.5, -2.0, 0.25]).unwrap();
		let t: Vec<u32> = [0.5f32, 1.0, 0.25].iter().map(|v| v.to_bits()).collect();
		assert_eq!(repops::squared_error(&y, &t).unwrap().data, vec![1.0, 9.0, 0.0]);
		assert_eq!(
			repops::squared_error_backward(&y, &t).unwrap().data,
			vec![2.0 / 3.0, -2.0, 0.0]
		);
		// One output per row, one target per row.
		let wide = Matrix::new(3, 2, vec![0.0; 6]).unwrap();
		assert_eq!(repops::squared_error(&wide, &t), Err(ShapeError::Mismatch));
		assert_eq!(repops::squared_error(&y, &t[..2]), Err(ShapeError::Mismatch));
	}

	#[test]
	fn a_regression_has_one_output_and_a_dataset_of_targets() {
		let s = TrainingSpec::example_regression(&[5, 6, 1], adam(), 8);
		let p = step_program(&s).unwrap();
		let kinds: Vec<OpKind> = p.ops.iter().map(|o| o.kind).collect();
		assert!(
			kinds.contains(&OpKind::SquaredError) && kinds.contains(&OpKind::SquaredErrorBackward)
		);
		assert!(!kinds.contains(&OpKind::SoftmaxXent));
		// Two outputs, or a dataset of classes: refused.
		let two = TrainingSpec::example_regression(&[5, 6, 2], adam(), 8);
		assert_eq!(two.validate(), Err(SpecError::DatasetShapeMismatch));
		let mut classes = s.clone();
		classes.dataset.classes = 1;
		assert_eq!(classes.validate(), Err(SpecError::DatasetShapeMismatch));
		// A classification on a dataset of targets (0 classes): refused.
		let mut softmax = s.clone();
		softmax.loss = crate::task::Loss::SoftmaxCrossEntropy;
		assert_eq!(softmax.validate(), Err(SpecError::TooFewClasses));
	}

	/// The regression's backward program computes the true gradient of the mean squared
	/// error.
	#[test]
	fn regression_gradients_match_finite_differences() {
		let s = TrainingSpec::example_regression(&[5, 6, 1], sgd(), 8);
		let (x, y) = regression_batch(3, 8, 5);
		check_gradients(&s, (&x, &y), 1, |z, target| {
			let d = z[0] - f32::from_bits(target) as f64;
			d * d
		});
	}

	#[test]
	fn regression_training_lowers_the_squared_error() {
		for opt in [sgd(), adam()] {
			let s = TrainingSpec::example_regression(&[8, 16, 1], opt, 32);
			let (first, last) = loss_trend(&s, |seed| regression_batch(seed, 32, 8));
			assert!(last < first * 0.5, "{opt:?}: squared error {first} -> {last}");
		}
	}

	/// A small net with every image layer: a strided, padded convolution, overlapping max
	/// and average pools, a second convolution, then a dense layer.
	pub(crate) fn small_cnn(loss: Loss, optimizer: Optimizer, batch: u32) -> TrainingSpec {
		use crate::task::{Layers, Model};
		let layers = vec![
			Layer::Conv2d { out_channels: 3, kernel: 3, stride: 2, padding: 1 },
			Layer::Relu,
			Layer::MaxPool2d { kernel: 2, stride: 1 },
			Layer::Conv2d { out_channels: 4, kernel: 2, stride: 1, padding: 1 },
			Layer::AvgPool2d { kernel: 2, stride: 1 },
			Layer::Flatten,
			Layer::Linear { out: if loss == Loss::MeanSquaredError { 1 } else { 3 } },
		];
		let model = Model::Graph {
			input: ImageShape { channels: 2, height: 5, width: 5 },
			layers: Layers::try_from(layers).unwrap(),
		};
		TrainingSpec::example_graph(model, loss, optimizer, batch)
	}

	#[test]
	fn a_cnn_compiles_to_image_operations_with_their_gradients() {
		let s = small_cnn(Loss::SoftmaxCrossEntropy, sgd(), 4);
		let p = step_program(&s).unwrap();
		let names: Vec<&str> = p
			.ops
			.iter()
			.map(|o| match o.kind {
				OpKind::Conv2d(_) => "conv",
				OpKind::Conv2dInputGrad(_) => "conv_dx",
				OpKind::Conv2dWeightGrad(_) => "conv_dw",
				OpKind::ConvBiasGrad(_) => "conv_db",
				OpKind::MaxPool2d(_) => "max",
				OpKind::MaxPool2dGrad(_) => "max_dx",
				OpKind::AvgPool2d(_) => "avg",
				OpKind::AvgPool2dGrad(_) => "avg_dx",
				OpKind::MatMul => "mm",
				OpKind::MatMulTn => "mm_tn",
				OpKind::MatMulNt => "mm_nt",
				OpKind::BiasAdd => "bias",
				OpKind::Relu => "relu",
				OpKind::ReluBackward => "relu_dx",
				OpKind::SoftmaxXent => "xent",
				OpKind::SoftmaxXentBackward => "xent_dx",
				OpKind::Mean => "mean",
				OpKind::ColSum => "colsum",
				OpKind::Momentum => "v",
				OpKind::SgdStep => "p",
				_ => "?",
			})
			.collect();
		assert_eq!(
			names,
			vec![
				"conv", "relu", "max", "conv", "avg", "mm", "bias", "xent", "mean", "xent_dx",
				"mm_tn", "colsum", "mm_nt", "avg_dx", "conv_dw", "conv_db", "conv_dx", "max_dx",
				"relu_dx", "conv_dw", "conv_db", "v", "p", "v", "p", "v", "p", "v", "p", "v", "p",
				"v", "p",
			]
		);
		// Filters are out_channels x (channels * k * k), PyTorch's layout.
		assert_eq!(&p.state_shapes[..6], &[(3, 18), (1, 3), (4, 12), (1, 4), (16, 3), (1, 3)]);
		let random = |stream, fan_in| Init::Random { stream, fan_in };
		let zeros = Init::Zeros;
		assert_eq!(p.init[..6], [random(0, 18), zeros, random(1, 12), zeros, random(2, 16), zeros]);
	}

	/// One row's `loss` in f64 from its outputs `z` and its label (a class, or a target's bits).
	fn row_loss_f64(loss: Loss, z: &[f64], label: u32) -> f64 {
		match loss {
			Loss::SoftmaxCrossEntropy => {
				let m = z.iter().cloned().fold(f64::MIN, f64::max);
				let lse = z.iter().map(|v| (v - m).exp()).sum::<f64>().ln() + m;
				lse - z[label as usize]
			}
			Loss::MeanSquaredError => (z[0] - f32::from_bits(label) as f64).powi(2),
		}
	}

	/// The f64 loss of a [`small_cnn`] with parameters `params` (its six tensors, flat) on the
	/// batch `x` (`B` rows of `2 x 5 x 5`), straight from the definitions.
	fn small_cnn_loss(params: &[Vec<f64>], x: &Matrix, labels: &[u32], loss: Loss) -> f64 {
		type Image = Vec<Vec<Vec<f64>>>;
		fn conv(
			x: &Image,
			w: &[f64],
			b: &[f64],
			out: usize,
			k: usize,
			s: usize,
			p: usize,
		) -> Image {
			let (c_in, h, wd) = (x.len(), x[0].len(), x[0][0].len());
			let oh = (h + 2 * p - k) / s + 1;
			let ow = (wd + 2 * p - k) / s + 1;
			(0..out)
				.map(|o| {
					(0..oh)
						.map(|oy| {
							(0..ow)
								.map(|ox| {
									let mut acc = b[o];
									for c in 0..c_in {
										for ky in 0..k {
											for kx in 0..k {
												let y = (oy * s + ky) as isize - p as isize;
												let xx = (ox * s + kx) as isize - p as isize;
												if y >= 0
													&& xx >= 0 && (y as usize) < h && (xx as usize)
													< wd
												{
													acc += x[c][y as usize][xx as usize]
														* w[((o * c_in + c) * k + ky) * k + kx];
												}
											}
										}
									}
									acc
								})
								.collect()
						})
						.collect()
				})
				.collect()
		}
		fn pool(x: &Image, k: usize, s: usize, max: bool) -> Image {
			let (h, w) = (x[0].len(), x[0][0].len());
			let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
			x.iter()
				.map(|plane| {
					(0..oh)
						.map(|oy| {
							(0..ow)
								.map(|ox| {
									let window = (0..k).flat_map(|ky| {
										(0..k).map(move |kx| plane[oy * s + ky][ox * s + kx])
									});
									if max {
										window.fold(f64::MIN, f64::max)
									} else {
										window.sum::<f64>() / (k * k) as f64
									}
								})
								.collect()
						})
						.collect()
				})
				.collect()
		}
		let mut total = 0.0;
		for r in 0..x.rows {
			let row = x.row(r).unwrap();
			let img: Image = (0..2)
				.map(|c| {
					(0..5)
						.map(|y| (0..5).map(|xx| row[c * 25 + y * 5 + xx] as f64).collect())
						.collect()
				})
				.collect();
			let a = conv(&img, &params[0], &params[1], 3, 3, 2, 1);
			let a: Image = a
				.iter()
				.map(|p| p.iter().map(|l| l.iter().map(|v| v.max(0.0)).collect()).collect())
				.collect();
			let a = pool(&a, 2, 1, true);
			let a = conv(&a, &params[2], &params[3], 4, 2, 1, 1);
			let a = pool(&a, 2, 1, false);
			let flat: Vec<f64> = a.iter().flatten().flatten().copied().collect();
			let outs = params[5].len();
			let z: Vec<f64> = (0..outs)
				.map(|j| {
					(0..flat.len()).map(|i| flat[i] * params[4][i * outs + j]).sum::<f64>()
						+ params[5][j]
				})
				.collect();
			total += row_loss_f64(loss, &z, labels[r as usize]);
		}
		total / x.rows as f64
	}

	/// The step program's gradients of a CNN are the true gradients of its loss (central
	/// differences of an f64 forward written from the definitions), for both losses.
	#[test]
	fn cnn_gradients_match_finite_differences() {
		for loss in [Loss::SoftmaxCrossEntropy, Loss::MeanSquaredError] {
			let s = small_cnn(loss, sgd(), 4);
			let p = step_program(&s).unwrap();
			let state = initial_state(&s, &p).unwrap();
			let (x, y) = match loss {
				Loss::SoftmaxCrossEntropy => batch(5, 4, 50, 3),
				Loss::MeanSquaredError => regression_batch(5, 4, 50),
			};
			let loss_of = |params: &[Vec<f64>]| small_cnn_loss(params, &x, &y, loss);
			let ctx = format!("{loss:?}");
			let checked =
				assert_gradients(&s, &state, (&x, &y), 0, 1e-6, (1e-4, 1e-3), loss_of, &ctx);
			let outputs = s.dataset.classes.max(1) as usize;
			assert_eq!(checked, 54 + 3 + 48 + 4 + 16 * outputs + outputs);
		}
	}

	#[test]
	fn cnn_training_lowers_the_loss() {
		// One batch over and over: the net fits it (its gradients are checked above; this is
		// that the update uses them).
		let s = small_cnn(Loss::SoftmaxCrossEntropy, Optimizer::adam(0.01), 16);
		let (first, last) = loss_trend(&s, |_| batch(7, 16, 50, 3));
		assert!(last < first * 0.7, "loss {first} -> {last}");
	}

	/// An MLP with every other layer: a residual block of layer normalization, a dense layer
	/// and GELU, then dropout, then the output layer. Inputs of 6 values.
	pub(crate) fn small_mixed(loss: Loss, optimizer: Optimizer, batch: u32) -> TrainingSpec {
		use crate::task::{F32Bits, Layers, Model};
		let layers = vec![
			Layer::Linear { out: 8 },
			Layer::Residual { layers: 3 },
			Layer::LayerNorm,
			Layer::Linear { out: 8 },
			Layer::Gelu,
			Layer::Dropout { p: F32Bits::from_f32(0.25) },
			Layer::Linear { out: if loss == Loss::MeanSquaredError { 1 } else { 3 } },
		];
		let model =
			Model::Graph { input: ImageShape::flat(6), layers: Layers::try_from(layers).unwrap() };
		TrainingSpec::example_graph(model, loss, optimizer, batch)
	}

	/// The f64 loss of [`small_mixed`] at step `step` with parameters `params` (its eight
	/// tensors, flat), straight from the definitions (the dropout mask from the RepOps stream).
	fn small_mixed_loss(
		s: &TrainingSpec,
		step: u32,
		params: &[Vec<f64>],
		x: &Matrix,
		labels: &[u32],
	) -> f64 {
		let dense = |a: &[f64], w: &[f64], b: &[f64]| -> Vec<f64> {
			let out = b.len();
			(0..out)
				.map(|j| (0..a.len()).map(|i| a[i] * w[i * out + j]).sum::<f64>() + b[j])
				.collect()
		};
		let gelu = |v: f64| {
			0.5 * v
				* (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh())
		};
		let mut total = 0.0;
		for r in 0..x.rows {
			let xr: Vec<f64> = x.row(r).unwrap().iter().map(|v| *v as f64).collect();
			let h = dense(&xr, &params[0], &params[1]);
			let mean = h.iter().sum::<f64>() / 8.0;
			let var = h.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 8.0;
			let ln: Vec<f64> = (0..8)
				.map(|i| (h[i] - mean) / (var + 1e-5).sqrt() * params[2][i] + params[3][i])
				.collect();
			let z = dense(&ln, &params[4], &params[5]);
			let h2: Vec<f64> = (0..8).map(|i| gelu(z[i]) + h[i]).collect();
			let d: Vec<f64> = (0..8)
				.map(|c| {
					let keep =
						repops::layers::dropout_keeps(s.seed, step, 5, 0.25, 8, (r, c as u32));
					if keep {
						h2[c] / 0.75
					} else {
						0.0
					}
				})
				.collect();
			let out = dense(&d, &params[6], &params[7]);
			total += row_loss_f64(s.loss, &out, labels[r as usize]);
		}
		total / x.rows as f64
	}

	/// A one-block transformer (vocabulary 5, context 4, width 8, two heads): the embedding,
	/// an attention block (layer norm, `q | k | v`, attention, projection) and an MLP block
	/// (layer norm, dense, GELU, dense), then the output layer.
	pub(crate) fn small_transformer(optimizer: Optimizer, batch: u32) -> TrainingSpec {
		use crate::task::{Layers, Model};
		let layers = vec![
			Layer::Embedding { vocab: 5, dim: 8 },
			Layer::Residual { layers: 4 },
			Layer::LayerNorm,
			Layer::Linear { out: 24 },
			Layer::Attention { heads: 2 },
			Layer::Linear { out: 8 },
			Layer::Residual { layers: 4 },
			Layer::LayerNorm,
			Layer::Linear { out: 16 },
			Layer::Gelu,
			Layer::Linear { out: 8 },
			Layer::Linear { out: 5 },
		];
		let model =
			Model::Graph { input: ImageShape::flat(5), layers: Layers::try_from(layers).unwrap() };
		TrainingSpec::example_graph(model, Loss::SoftmaxCrossEntropy, optimizer, batch)
	}

	/// A batch of `rows` token sequences of [`crate::task::synthetic_tokens`].
	fn token_batch(seed: u64, rows: u32) -> (Matrix, Vec<u32>) {
		let data = crate::task::synthetic_tokens(seed, rows, 4, 5);
		let x = data.iter().flat_map(|(x, _)| x.clone()).collect();
		(Matrix::new(rows, 5, x).unwrap(), vec![0; rows as usize])
	}

	/// The f64 per-token loss of [`small_transformer`] with parameters `params` (its 16
	/// tensors, flat) on the token batch `x`, straight from the definitions.
	fn small_transformer_loss(params: &[Vec<f64>], x: &Matrix) -> f64 {
		let (t, d, heads) = (4usize, 8usize, 2usize);
		let dh = d / heads;
		let dense = |a: &[f64], w: &[f64], b: &[f64]| -> Vec<f64> {
			let out = b.len();
			(0..out)
				.map(|j| (0..a.len()).map(|i| a[i] * w[i * out + j]).sum::<f64>() + b[j])
				.collect()
		};
		let norm = |h: &[f64], g: &[f64], b: &[f64]| -> Vec<f64> {
			let n = h.len() as f64;
			let mean = h.iter().sum::<f64>() / n;
			let var = h.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
			(0..h.len()).map(|i| (h[i] - mean) / (var + 1e-5).sqrt() * g[i] + b[i]).collect()
		};
		let gelu = |v: f64| {
			0.5 * v
				* (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh())
		};
		let mut total = 0.0;
		for r in 0..x.rows {
			let tokens: Vec<usize> = x.row(r).unwrap().iter().map(|v| *v as usize).collect();
			let mut h: Vec<Vec<f64>> = (0..t)
				.map(|i| {
					(0..d).map(|c| params[0][tokens[i] * d + c] + params[1][i * d + c]).collect()
				})
				.collect();
			// Attention block.
			let qkv: Vec<Vec<f64>> = h
				.iter()
				.map(|hi| dense(&norm(hi, &params[2], &params[3]), &params[4], &params[5]))
				.collect();
			let mut att = vec![vec![0.0; d]; t];
			for head in 0..heads {
				for i in 0..t {
					let q = &qkv[i][head * dh..(head + 1) * dh];
					let s: Vec<f64> = (0..=i)
						.map(|j| {
							let k = &qkv[j][d + head * dh..d + (head + 1) * dh];
							q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() / (dh as f64).sqrt()
						})
						.collect();
					let m = s.iter().cloned().fold(f64::MIN, f64::max);
					let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
					let z: f64 = e.iter().sum();
					for e_ in 0..dh {
						att[i][head * dh + e_] =
							(0..=i).map(|j| e[j] / z * qkv[j][2 * d + head * dh + e_]).sum();
					}
				}
			}
			for i in 0..t {
				let o = dense(&att[i], &params[6], &params[7]);
				for c in 0..d {
					h[i][c] += o[c];
				}
			}
			// MLP block, then the output layer and the loss against the next token.
			for i in 0..t {
				let a = dense(&norm(&h[i], &params[8], &params[9]), &params[10], &params[11]);
				let a: Vec<f64> = a.into_iter().map(gelu).collect();
				let o = dense(&a, &params[12], &params[13]);
				for c in 0..d {
					h[i][c] += o[c];
				}
				let z = dense(&h[i], &params[14], &params[15]);
				total += row_loss_f64(Loss::SoftmaxCrossEntropy, &z, tokens[i + 1] as u32);
			}
		}
		total / (x.rows as usize * t) as f64
	}

	#[test]
	fn a_transformer_compiles_to_token_rows_with_attention_and_a_per_token_loss() {
		let s = small_transformer(sgd(), 3);
		let p = step_program(&s).unwrap();
		let kinds: Vec<OpKind> = p.ops.iter().map(|o| o.kind).collect();
		let tokens = Tokens { vocab: 5, context: 4, dim: 8 };
		assert_eq!(
			p.ops[0],
			Op {
				kind: OpKind::Embed(tokens),
				inputs: vec![Source::Batch, Source::State(0), Source::State(1)],
				rows: 12,
				cols: 8
			}
		);
		let att = Attention { heads: 2, context: 4, dim: 8 };
		let a = kinds.iter().position(|k| *k == OpKind::Attention(att)).unwrap();
		assert_eq!((p.ops[a].rows, p.ops[a].cols), (12, 8));
		let xent = Tokens { vocab: 5, context: 4, dim: 5 };
		let loss = kinds.iter().position(|k| *k == OpKind::TokenXent(xent)).unwrap();
		assert_eq!(p.ops[loss].inputs[1], Source::Batch);
		assert_eq!((p.ops[loss].rows, p.ops[loss].cols), (12, 1));
		assert!(kinds.contains(&OpKind::AttentionGrad(att)));
		// The tables' gradients, and no gradient of the tokens.
		let dtok = kinds.iter().position(|k| *k == OpKind::EmbedGrad(tokens)).unwrap();
		assert_eq!((p.ops[dtok].rows, p.ops[dtok].cols), (5, 8));
		assert_eq!(kinds[dtok + 1], OpKind::PositionGrad(tokens));
		assert_eq!(kinds[dtok + 2], OpKind::Momentum);
		assert_eq!(&p.state_shapes[..2], &[(5, 8), (4, 8)]);
		assert_eq!(p.params, 16);
	}

	/// The step program's gradients of a transformer (embeddings, causal attention, layer
	/// norms, GELU, residual sums, the per-token loss) are the true gradients of its loss.
	#[test]
	fn transformer_gradients_match_finite_differences() {
		let s = small_transformer(sgd(), 3);
		let p = step_program(&s).unwrap();
		let mut state = initial_state(&s, &p).unwrap();
		// Parameters away from their initial zeros and ones, so every path carries gradient.
		let mut rng = SplitMix64::new(11);
		for m in state.iter_mut().take(p.params as usize) {
			for v in m.data.iter_mut() {
				*v += rng.next_unit() * 0.4 - 0.2;
			}
		}
		let (x, y) = token_batch(3, 3);
		let loss_of = |params: &[Vec<f64>]| small_transformer_loss(params, &x);
		let checked = assert_gradients(&s, &state, (&x, &y), 0, 1e-5, (1e-4, 2e-3), loss_of, "gpt");
		let values: u32 = p.state_shapes[..16].iter().map(|(r, c)| r * c).sum();
		assert_eq!(checked, values as usize);
	}

	#[test]
	fn transformer_training_lowers_the_loss() {
		let s = small_transformer(Optimizer::adam(0.01), 8);
		let (first, last) = loss_trend(&s, |seed| token_batch(seed, 8));
		assert!(last < first * 0.6, "loss {first} -> {last}");
	}

	#[test]
	fn bad_sequence_models_are_refused() {
		use crate::task::{Layers, Model};
		let spec = |input: u32, layers: Vec<Layer>, loss: Loss| {
			let model = Model::Graph {
				input: ImageShape::flat(input),
				layers: Layers::try_from(layers).unwrap(),
			};
			let mut s = TrainingSpec::example_graph(model, Loss::SoftmaxCrossEntropy, sgd(), 2);
			s.loss = loss;
			s.validate()
		};
		let xent = Loss::SoftmaxCrossEntropy;
		let embed = Layer::Embedding { vocab: 5, dim: 6 };
		assert_eq!(spec(5, vec![embed, Layer::Linear { out: 5 }], xent), Ok(()));
		// The output must be the vocabulary.
		assert_eq!(
			spec(5, vec![embed, Layer::Linear { out: 4 }], xent),
			Err(SpecError::BadLayer(1))
		);
		// An embedding only first; a context within the bound.
		assert_eq!(
			spec(5, vec![Layer::Relu, embed, Layer::Linear { out: 5 }], xent),
			Err(SpecError::BadLayer(1))
		);
		let long = sequence::MAX_CONTEXT + 2;
		assert_eq!(
			spec(long, vec![embed, Layer::Linear { out: 5 }], xent),
			Err(SpecError::BadLayer(0))
		);
		// Attention after an embedding, on `3d` values with heads dividing `d`.
		let att = |heads| {
			vec![
				embed,
				Layer::Linear { out: 18 },
				Layer::Attention { heads },
				Layer::Linear { out: 5 },
			]
		};
		assert_eq!(spec(5, att(3), xent), Ok(()));
		assert_eq!(spec(5, att(4), xent), Err(SpecError::BadLayer(2)));
		assert_eq!(spec(5, att(0), xent), Err(SpecError::BadLayer(2)));
		let no_embed = vec![
			Layer::Linear { out: 18 },
			Layer::Attention { heads: 3 },
			Layer::Linear { out: 5 },
		];
		assert_eq!(spec(5, no_embed, xent), Err(SpecError::BadLayer(1)));
		let odd = vec![
			embed,
			Layer::Linear { out: 17 },
			Layer::Attention { heads: 1 },
			Layer::Linear { out: 5 },
		];
		assert_eq!(spec(5, odd, xent), Err(SpecError::BadLayer(2)));
		// The per-token loss is the softmax cross-entropy.
		let regression = vec![embed, Layer::Linear { out: 1 }];
		assert!(spec(5, regression, Loss::MeanSquaredError).is_err());
	}

	#[test]
	fn a_token_id_is_a_whole_number_below_the_vocabulary() {
		use sequence::token;
		assert_eq!(token(3.0, 5), 3);
		assert_eq!(token(0.0, 5), 0);
		assert_eq!(token(-0.0, 5), 0);
		for bad in [5.0, 2.5, -1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-45] {
			assert_eq!(token(bad, 5), 0, "{bad}");
		}
	}

	#[test]
	fn a_residual_block_compiles_to_a_sum_forward_and_backward() {
		let s = small_mixed(Loss::SoftmaxCrossEntropy, sgd(), 4);
		let p = step_program(&s).unwrap();
		let kinds: Vec<OpKind> = p.ops.iter().map(|o| o.kind).collect();
		// Forward: the block's sum after GELU; backward: the skip's gradient added to the
		// block's input gradient, after layer normalization's.
		let add = kinds.iter().position(|k| *k == OpKind::Add).unwrap();
		assert_eq!(kinds[add - 1], OpKind::Gelu);
		let back = kinds.iter().rposition(|k| *k == OpKind::Add).unwrap();
		assert_eq!(kinds[back - 1], OpKind::LayerNormInputGrad);
		assert_eq!(kinds.iter().filter(|k| **k == OpKind::Add).count(), 2);
		assert!(kinds.iter().any(|k| matches!(k, OpKind::Dropout(m) if m.layer == 5)));
		// Layer normalization's scale starts at one, its shift at zero.
		assert_eq!(&p.state_shapes[2..4], &[(1, 8), (1, 8)]);
		assert_eq!(&p.init[2..4], &[Init::Ones, Init::Zeros]);
		let state = initial_state(&s, &p).unwrap();
		assert!(state[2].data.iter().all(|v| *v == 1.0));
		assert_eq!(initial_value(&s, &p, 2, (0, 5)), Some(1.0f32.to_bits()));
	}

	/// The step program's gradients through layer normalization, GELU, a residual block and
	/// dropout are the true gradients of the loss (an f64 forward from the definitions, the
	/// same dropout mask), for both losses and at two steps (two masks).
	#[test]
	fn residual_layer_norm_gelu_and_dropout_gradients_match_finite_differences() {
		for loss in [Loss::SoftmaxCrossEntropy, Loss::MeanSquaredError] {
			for step in [0, 5] {
				let s = small_mixed(loss, sgd(), 6);
				let p = step_program(&s).unwrap();
				let mut state = initial_state(&s, &p).unwrap();
				// Scales and shifts away from 1 and 0, so that their gradients matter.
				let mut rng = SplitMix64::new(3);
				for t in [2, 3] {
					for v in state[t].data.iter_mut() {
						*v += rng.next_unit() - 0.5;
					}
				}
				let (x, y) = match loss {
					Loss::SoftmaxCrossEntropy => batch(5, 6, 6, 3),
					Loss::MeanSquaredError => regression_batch(5, 6, 6),
				};
				let loss_of = |params: &[Vec<f64>]| small_mixed_loss(&s, step, params, &x, &y);
				let ctx = format!("{loss:?} step {step}");
				let checked =
					assert_gradients(&s, &state, (&x, &y), step, 1e-6, (2e-4, 2e-3), loss_of, &ctx);
				assert_eq!(
					checked,
					48 + 8
						+ 8 + 8 + 64 + 8 + 8 * p.state_shapes[6].1 as usize
						+ p.state_shapes[7].1 as usize
				);
			}
		}
	}

	/// Clipping by global norm: each gradient's row sums of squares, one factor from all of
	/// them, every gradient scaled by it before the update. The factor is PyTorch's from the
	/// norm of every gradient value (f64 here); a largest norm above the gradients' leaves the
	/// step's bits as without clipping.
	#[test]
	fn clipping_scales_every_gradient_by_one_factor_of_their_global_norm() {
		use crate::task::F32Bits;
		for (plain, (x, y)) in [
			(
				small_mixed(Loss::SoftmaxCrossEntropy, Optimizer::adamw(0.01, 0.1), 4),
				batch(2, 4, 6, 3),
			),
			(small_transformer(Optimizer::sgd(0.1, 0.9), 3), token_batch(4, 3)),
		] {
			let p0 = step_program(&plain).unwrap();
			let state = initial_state(&plain, &p0).unwrap();
			let (outs0, next0) = run_step(&plain, &p0, &state, &x, &y, 0).unwrap();
			let params = p0.params as usize;
			let mut s = plain.clone();
			s.max_grad_norm = Some(F32Bits::from_f32(0.01));
			let p = step_program(&s).unwrap();
			assert_eq!(p.ops.len(), p0.ops.len() + 2 * params + 1);
			let first = p.ops.iter().position(|o| o.kind == OpKind::SumSquares).unwrap();
			assert_eq!(p.ops[..first], p0.ops[..first]);
			let (outs, _) = run_step(&s, &p, &state, &x, &y, 0).unwrap();
			assert_eq!(outs[..first], outs0[..first]);
			// The factor, from every gradient.
			let factor_op = first + params;
			assert_eq!(p.ops[factor_op].kind, OpKind::ClipCoefficient(F32Bits::from_f32(0.01)));
			let grads: Vec<&Matrix> = p.ops[factor_op + 1..factor_op + 1 + params]
				.iter()
				.map(|o| {
					assert_eq!(o.kind, OpKind::ClipScale);
					let Source::Op(g) = o.inputs[0] else { panic!() };
					&outs[g as usize]
				})
				.collect();
			let norm =
				grads.iter().flat_map(|g| &g.data).map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
			assert!(norm > 0.02, "{norm}: the test should clip");
			let factor = outs[factor_op].data[0];
			let expected = 0.01 / (norm + 1e-6);
			assert!(((factor as f64) - expected).abs() < 1e-5 * expected, "{factor} {expected}");
			for (k, g) in grads.iter().enumerate() {
				let scaled = &outs[factor_op + 1 + k];
				let want: Vec<f32> = g.data.iter().map(|v| repops::mul(*v, factor)).collect();
				assert_eq!(scaled.data, want);
			}
			// The update reads the scaled gradients, never the raw ones.
			let raw: Vec<Source> =
				p.ops[factor_op + 1..factor_op + 1 + params].iter().map(|o| o.inputs[0]).collect();
			for o in &p.ops[factor_op + 1 + params..] {
				assert!(o.inputs.iter().all(|i| !raw.contains(i)), "{o:?} reads a raw gradient");
			}
			// A largest norm above the gradients': the step's bits without clipping.
			s.max_grad_norm = Some(F32Bits::from_f32((norm * 2.0) as f32));
			let (_, next) = run_step(&s, &step_program(&s).unwrap(), &state, &x, &y, 0).unwrap();
			assert_eq!(next, next0);
		}
	}

	/// AdamW is Adam after scaling each parameter by `1 - lr wd`: with no decay, Adam's bits.
	#[test]
	fn adamw_decays_then_takes_adams_step() {
		let s = small_mixed(Loss::SoftmaxCrossEntropy, Optimizer::adamw(0.01, 0.0), 4);
		let adam = small_mixed(Loss::SoftmaxCrossEntropy, Optimizer::adam(0.01), 4);
		let p = step_program(&s).unwrap();
		assert!(p.ops.iter().any(|o| o.kind == OpKind::AdamWStep));
		let state = initial_state(&s, &p).unwrap();
		let (x, y) = batch(2, 4, 6, 3);
		let (_, a) = run_step(&s, &p, &state, &x, &y, 3).unwrap();
		let (_, b) = run_step(&adam, &step_program(&adam).unwrap(), &state, &x, &y, 3).unwrap();
		assert_eq!(a, b);
		// With decay: each parameter is Adam's step from the decayed value.
		let decayed = small_mixed(Loss::SoftmaxCrossEntropy, Optimizer::adamw(0.01, 0.1), 4);
		let (outs, next) = run_step(&decayed, &p, &state, &x, &y, 3).unwrap();
		let step_op = p.ops.iter().position(|o| o.kind == OpKind::AdamWStep).unwrap();
		let [Source::State(i), Source::Op(m), Source::Op(v)] = p.ops[step_op].inputs[..] else {
			panic!()
		};
		let c = repops::adam_corrections(0.9, 0.999, 4);
		for n in 0..state[i as usize].data.len() {
			let w =
				repops::mul(state[i as usize].data[n], repops::sub(1.0, repops::mul(0.01, 0.1)));
			let want = repops::adam_step(
				w,
				outs[m as usize].data[n],
				outs[v as usize].data[n],
				0.01,
				1e-7,
				c,
			);
			assert_eq!(next[i as usize].data[n].to_bits(), want.to_bits());
		}
	}

	#[test]
	fn bad_residual_blocks_and_dropouts_are_refused() {
		use crate::task::{F32Bits, Layers, Model};
		let model = |layers: Vec<Layer>| Model::Graph {
			input: ImageShape::flat(6),
			layers: Layers::try_from(layers).unwrap(),
		};
		let linear = |out| Layer::Linear { out };
		for (layers, error) in [
			// A block past the last layer; an empty block; a block that changes the shape.
			(vec![linear(6), Layer::Residual { layers: 2 }, linear(6)], SpecError::BadLayer(1)),
			(vec![Layer::Residual { layers: 0 }, linear(3)], SpecError::BadLayer(0)),
			(vec![Layer::Residual { layers: 1 }, linear(4), linear(3)], SpecError::BadLayer(1)),
			// A block that ends after the block holding it.
			(
				vec![
					Layer::Residual { layers: 2 },
					Layer::Residual { layers: 2 },
					linear(6),
					linear(6),
					linear(3),
				],
				SpecError::BadLayer(1),
			),
			// A dropout probability of one or more, or not a number.
			(vec![Layer::Dropout { p: F32Bits::from_f32(1.0) }, linear(3)], SpecError::BadLayer(0)),
			(
				vec![Layer::Dropout { p: F32Bits::from_f32(f32::NAN) }, linear(3)],
				SpecError::BadLayer(0),
			),
		] {
			assert_eq!(model(layers.clone()).shapes().map(|_| ()), Err(error), "{layers:?}");
		}
		// Nested blocks that close together are sound.
		let nested = vec![
			Layer::Residual { layers: 3 },
			Layer::Gelu,
			Layer::Residual { layers: 1 },
			linear(6),
			linear(3),
		];
		assert!(model(nested).shapes().is_ok());
		let mut s = small_mixed(Loss::SoftmaxCrossEntropy, Optimizer::adamw(0.01, 1.0), 4);
		assert_eq!(s.validate(), Err(SpecError::BadHyperparameter));
		s.optimizer = Optimizer::adamw(0.01, 0.05);
		assert_eq!(s.validate(), Ok(()));
	}

	#[test]
	fn mixed_training_lowers_the_loss() {
		let s = small_mixed(Loss::SoftmaxCrossEntropy, Optimizer::adamw(0.01, 0.01), 16);
		let (first, last) = loss_trend(&s, |seed| batch(seed, 16, 6, 3));
		assert!(last < first * 0.7, "loss {first} -> {last}");
	}
}
