//! The training task spec: everything a solver's work is a pure function of.
//!
//! Floats travel as their IEEE-754 bits ([`F32Bits`]) so that SCALE encoding, hashing and
//! comparison are exact. Every collection is bounded, so a spec has a fixed maximum encoded
//! size and storage that holds it is bounded too.

use crate::repops::{
	image::{Conv, ImageShape, Pool},
	sequence::{Attention, Tokens},
};
use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;
use sp_core::{ConstU32, H256};
use sp_runtime::BoundedVec;

/// The most layers of widths in an MLP spec (input, hidden layers, output).
pub const MAX_LAYER_WIDTHS: u32 = 9;
/// The widest layer a spec may ask for.
pub const MAX_WIDTH: u32 = 4096;
/// The largest batch a spec may ask for.
pub const MAX_BATCH: u32 = 4096;
/// The most training steps a task may have.
pub const MAX_STEPS: u32 = 10_000_000;

/// An `f32` carried as its IEEE-754 bit pattern.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	Debug,
)]
pub struct F32Bits(pub u32);

impl F32Bits {
	/// The bits of `value`.
	pub fn from_f32(value: f32) -> Self {
		Self(value.to_bits())
	}

	/// The float these bits stand for.
	pub fn to_f32(self) -> f32 {
		f32::from_bits(self.0)
	}

	/// Whether the value is finite (neither infinite nor NaN).
	pub fn is_finite(self) -> bool {
		// Exponent bits all ones means infinity or NaN.
		self.0 & 0x7f80_0000 != 0x7f80_0000
	}

	/// Whether the value is finite and strictly positive.
	pub fn is_positive_finite(self) -> bool {
		self.is_finite() && self.0 & 0x8000_0000 == 0 && self.0 != 0
	}

	/// Whether the value is finite and in `[0, 1)`.
	pub fn is_unit_fraction(self) -> bool {
		self.is_finite() && self.0 & 0x8000_0000 == 0 && self.0 < 0x3f80_0000
	}
}

/// The widths of an MLP's layers, input first.
pub type LayerWidths = BoundedVec<u32, ConstU32<MAX_LAYER_WIDTHS>>;

/// The nonlinearity between hidden layers.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	Debug,
)]
pub enum Activation {
	/// `max(x, 0)`.
	Relu,
}

/// The most layers of a [`Model::Graph`].
pub const MAX_GRAPH_LAYERS: u32 = 24;
/// The most layers with parameters (dense, convolutional, normalizations, embeddings) a model
/// may have: enough for a transformer of two blocks (an embedding, six a block, a final layer
/// normalization and the output layer: 15). It bounds the state's tensors, which the
/// initialization leaf reveals one hash each.
pub const MAX_PARAM_LAYERS: u32 = 16;

/// One layer of a [`Model::Graph`]. Images are held one sample per row, channel-major
/// (`crate::repops::image`); a flat vector is an image of height and width 1.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	Debug,
)]
pub enum Layer {
	/// A dense layer of `out` outputs on a flat input: weights `in x out`, biases `1 x out`.
	Linear {
		/// Outputs.
		out: u32,
	},
	/// A 2-D convolution: `out_channels` filters of `kernel x kernel` over all input channels,
	/// moved by `stride`, over the image with `padding` zeros on every side; one bias per
	/// filter. Filters are `out_channels x (channels * kernel * kernel)` (PyTorch's layout).
	Conv2d {
		/// Filters.
		out_channels: u32,
		/// The filters' side.
		kernel: u32,
		/// The step between windows.
		stride: u32,
		/// Zeros on every side (below `kernel`).
		padding: u32,
	},
	/// The largest value of each `kernel x kernel` window, windows `stride` apart.
	MaxPool2d {
		/// The window's side.
		kernel: u32,
		/// The step between windows.
		stride: u32,
	},
	/// The mean of each `kernel x kernel` window, windows `stride` apart.
	AvgPool2d {
		/// The window's side.
		kernel: u32,
		/// The step between windows.
		stride: u32,
	},
	/// `max(x, 0)`.
	Relu,
	/// The image as a flat vector (channel-major, as PyTorch's `flatten`; no value moves).
	Flatten,
	/// GELU, tanh form (PyTorch's `approximate="tanh"`).
	Gelu,
	/// Layer normalization over each sample's values, with a learned scale (starting at 1)
	/// and shift (starting at 0), one of each per value.
	LayerNorm,
	/// Each value zeroed with probability `p` (in `[0, 1)`), the rest scaled by `1 / (1 - p)`,
	/// by a mask drawn from the seed, the step and the layer's index; none at evaluation.
	Dropout {
		/// The probability of dropping a value.
		p: F32Bits,
	},
	/// A residual connection: the next `layers` layers are a block whose input is added to
	/// its output (which must have the input's shape). Blocks may nest.
	Residual {
		/// The layers of the block, at least one.
		layers: u32,
	},
	/// A sequence model's first layer: each sample is read as `context + 1` token ids (the
	/// input's values), tokens `0 .. context` looked up in a learned `vocab x dim` table and
	/// added to a learned `context x dim` table of positions (starting at 0); from here on,
	/// one row per token ([`crate::repops::sequence`]), and the loss is the softmax
	/// cross-entropy of each position against the next token.
	Embedding {
		/// Token ids are `0 .. vocab`; the model's output has `vocab` classes.
		vocab: u32,
		/// The embedding's width.
		dim: u32,
	},
	/// Causal multi-head self-attention on each token's `q | k | v` (`3d` values, from a
	/// dense layer before it): `d` values out, the heads side by side. Only after an
	/// [`Layer::Embedding`].
	Attention {
		/// Heads; they divide `d`.
		heads: u32,
	},
}

impl Layer {
	/// Whether the layer has parameters (a weight and a bias, or a scale and a shift).
	pub fn has_params(&self) -> bool {
		matches!(
			self,
			Layer::Linear { .. }
				| Layer::Conv2d { .. }
				| Layer::LayerNorm
				| Layer::Embedding { .. }
		)
	}
}

/// The layers of a [`Model::Graph`], input first.
pub type Layers = BoundedVec<Layer, ConstU32<MAX_GRAPH_LAYERS>>;

/// The model to train.
#[derive(
	Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, MaxEncodedLen, Debug,
)]
pub enum Model {
	/// A multi-layer perceptron: dense layers with `activation` between them.
	Mlp {
		/// Layer widths, input first, output (the number of classes) last; at least two.
		widths: LayerWidths,
		/// The nonlinearity after every layer but the last.
		activation: Activation,
	},
	/// A sequence of layers on samples of shape `input` (the dataset's features, read
	/// channel-major): convolutional nets and the like. The last layer's output is flat.
	Graph {
		/// One sample's shape; `channels * height * width` is the dataset's features.
		input: ImageShape,
		/// The layers, in order.
		layers: Layers,
	},
}

impl Model {
	/// The model as its input's shape and a sequence of layers: an MLP is `Linear, Relu, ...,
	/// Linear` on a flat input.
	pub fn graph(&self) -> (ImageShape, alloc::vec::Vec<Layer>) {
		match self {
			Model::Mlp { widths, activation: Activation::Relu } => {
				let mut layers = alloc::vec::Vec::new();
				for (l, out) in widths.iter().skip(1).enumerate() {
					if l > 0 {
						layers.push(Layer::Relu);
					}
					layers.push(Layer::Linear { out: *out });
				}
				(ImageShape::flat(widths.first().copied().unwrap_or(0)), layers)
			}
			Model::Graph { input, layers } => (*input, layers.to_vec()),
		}
	}

	/// Each layer's output shape, in order, once every layer is checked against its input:
	/// sizes positive and within bounds, windows that fit, dense layers on flat inputs, and at
	/// most [`MAX_WIDTH`] values per sample anywhere.
	pub fn shapes(&self) -> Result<alloc::vec::Vec<ImageShape>, SpecError> {
		let (input, layers) = self.graph();
		if let Model::Mlp { widths, .. } = self {
			if widths.len() < 2 {
				return Err(SpecError::TooFewLayers);
			}
			if widths.iter().any(|w| *w == 0 || *w > MAX_WIDTH) {
				return Err(SpecError::BadWidth);
			}
		}
		let fits = |s: &ImageShape| {
			s.channels >= 1 && s.height >= 1 && s.width >= 1 && s.values() <= MAX_WIDTH
		};
		if !fits(&input) {
			return Err(SpecError::BadWidth);
		}
		let mut shape = input;
		let mut shapes = alloc::vec::Vec::with_capacity(layers.len());
		// Open residual blocks: the index of their last layer and their input's shape.
		let mut open: alloc::vec::Vec<(usize, ImageShape)> = alloc::vec::Vec::new();
		for (i, layer) in layers.iter().enumerate() {
			let bad = SpecError::BadLayer(i as u32);
			shape = match *layer {
				Layer::Linear { out } if shape.is_flat() => ImageShape::flat(out),
				Layer::Linear { .. } => return Err(bad),
				Layer::Conv2d { out_channels, kernel, stride, padding } => {
					let g = Conv { input: shape, out_channels, kernel, stride, padding };
					if !g.is_valid() {
						return Err(bad);
					}
					g.output()
				}
				Layer::MaxPool2d { kernel, stride } | Layer::AvgPool2d { kernel, stride } => {
					let g = Pool { input: shape, kernel, stride };
					if !g.is_valid() {
						return Err(bad);
					}
					g.output()
				}
				Layer::Relu | Layer::Gelu | Layer::LayerNorm => shape,
				Layer::Dropout { p } if p.is_unit_fraction() => shape,
				Layer::Dropout { .. } => return Err(bad),
				Layer::Residual { layers: n } => {
					let end = i.saturating_add(n as usize);
					// A block of at least one layer, inside the list and inside any block
					// that holds it.
					if n == 0 || end >= layers.len() || open.last().is_some_and(|(e, _)| end > *e) {
						return Err(bad);
					}
					open.push((end, shape));
					shape
				}
				Layer::Flatten => ImageShape::flat(shape.values()),
				Layer::Embedding { vocab, dim } => {
					let context = shape.values().saturating_sub(1);
					let tokens = Tokens { vocab, context, dim };
					if i != 0 || !shape.is_flat() || !tokens.is_valid() {
						return Err(bad);
					}
					ImageShape::flat(dim)
				}
				Layer::Attention { heads } => {
					let dim = shape.values().checked_div(3).unwrap_or(0);
					let g = Attention { heads, context: self.context().unwrap_or(0), dim };
					if !shape.is_flat()
						|| Some(shape.values()) != dim.checked_mul(3)
						|| !g.is_valid()
					{
						return Err(bad);
					}
					ImageShape::flat(dim)
				}
			};
			if !fits(&shape) {
				return Err(bad);
			}
			// Blocks ending here: their output must have their input's shape.
			while let Some((end, input)) = open.last().copied() {
				if end != i {
					break;
				}
				if input != shape {
					return Err(bad);
				}
				open.pop();
			}
			shapes.push(shape);
		}
		let with_params = layers.iter().filter(|l| l.has_params());
		match with_params.count() {
			0 => return Err(SpecError::TooFewLayers),
			n if n > MAX_PARAM_LAYERS as usize => return Err(SpecError::TooManyParamLayers),
			_ => {}
		}
		// The output is flat; a sequence model's has one value per token of its vocabulary.
		let vocab = match layers.first() {
			Some(Layer::Embedding { vocab, .. }) => Some(*vocab),
			_ => None,
		};
		if !shape.is_flat() || vocab.is_some_and(|v| v != shape.values()) {
			return Err(SpecError::BadLayer(layers.len().saturating_sub(1) as u32));
		}
		Ok(shapes)
	}

	/// A sequence model's context (its first layer is an [`Layer::Embedding`]); `None` for
	/// the others.
	pub fn context(&self) -> Option<u32> {
		match self {
			Model::Graph { input, layers } => match layers.first() {
				Some(Layer::Embedding { .. }) => Some(input.values().saturating_sub(1)),
				_ => None,
			},
			Model::Mlp { .. } => None,
		}
	}

	/// Values per sample the model reads.
	pub fn inputs(&self) -> u32 {
		self.graph().0.values()
	}
}

/// The loss function.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	Debug,
)]
pub enum Loss {
	/// Softmax followed by cross-entropy against integer class labels, averaged over the batch.
	SoftmaxCrossEntropy,
	/// Regression: the model's one output against each sample's real-valued target (the
	/// sample's label holds the target's `f32` bits), squared, averaged over the batch. The
	/// dataset declares 0 classes.
	MeanSquaredError,
}

/// The optimizer and its hyperparameters.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	Debug,
)]
pub enum Optimizer {
	/// Stochastic gradient descent with (heavy-ball) momentum.
	Sgd {
		/// Learning rate, positive.
		learning_rate: F32Bits,
		/// Momentum in `[0, 1)`.
		momentum: F32Bits,
	},
	/// Adam.
	Adam {
		/// Learning rate, positive.
		learning_rate: F32Bits,
		/// First-moment decay in `[0, 1)`.
		beta1: F32Bits,
		/// Second-moment decay in `[0, 1)`.
		beta2: F32Bits,
		/// Denominator guard, positive.
		epsilon: F32Bits,
	},
	/// Adam with decoupled weight decay (AdamW, PyTorch's): each parameter is first scaled by
	/// `1 - learning_rate * weight_decay`, then takes Adam's step.
	AdamW {
		/// Learning rate, positive.
		learning_rate: F32Bits,
		/// First-moment decay in `[0, 1)`.
		beta1: F32Bits,
		/// Second-moment decay in `[0, 1)`.
		beta2: F32Bits,
		/// Denominator guard, positive.
		epsilon: F32Bits,
		/// The decay, in `[0, 1)`.
		weight_decay: F32Bits,
	},
}

impl Optimizer {
	/// SGD with `learning_rate` and `momentum`.
	pub fn sgd(learning_rate: f32, momentum: f32) -> Self {
		Optimizer::Sgd {
			learning_rate: F32Bits::from_f32(learning_rate),
			momentum: F32Bits::from_f32(momentum),
		}
	}

	/// AdamW with `learning_rate` and `weight_decay`, and [`Self::adam`]'s decays and guard.
	pub fn adamw(learning_rate: f32, weight_decay: f32) -> Self {
		Optimizer::AdamW {
			learning_rate: F32Bits::from_f32(learning_rate),
			beta1: F32Bits::from_f32(0.9),
			beta2: F32Bits::from_f32(0.999),
			epsilon: F32Bits::from_f32(1e-7),
			weight_decay: F32Bits::from_f32(weight_decay),
		}
	}

	/// Adam with `learning_rate` and the usual decays and guard: `beta1 = 0.9`,
	/// `beta2 = 0.999`, `epsilon = 1e-7`.
	pub fn adam(learning_rate: f32) -> Self {
		Optimizer::Adam {
			learning_rate: F32Bits::from_f32(learning_rate),
			beta1: F32Bits::from_f32(0.9),
			beta2: F32Bits::from_f32(0.999),
			epsilon: F32Bits::from_f32(1e-7),
		}
	}
}

/// A commitment to the training data: a Merkle root over its samples, so that the rows of one
/// batch can be proven on chain.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	Debug,
)]
pub struct DatasetCommitment {
	/// Merkle root over the encoded samples.
	pub root: H256,
	/// The number of samples.
	pub samples: u32,
	/// Features per sample (the model's input width).
	pub features: u32,
	/// The number of classes (the model's output width); 0 for real-valued targets (a
	/// regression, [`Loss::MeanSquaredError`]).
	pub classes: u32,
	/// The hash of the dataset's [`crate::dataset::Manifest`]: where the samples came from,
	/// what the classes are called, how the features were preprocessed.
	pub manifest: H256,
}

/// A training task: model, loss, optimizer, batch, steps, seed and data.
#[derive(
	Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, MaxEncodedLen, Debug,
)]
pub struct TrainingSpec {
	/// The model.
	pub model: Model,
	/// The loss.
	pub loss: Loss,
	/// The optimizer.
	pub optimizer: Optimizer,
	/// Samples per step.
	pub batch_size: u32,
	/// Training steps `N`.
	pub steps: u32,
	/// The checkpoint interval `C` (at least 1): the trace commits to the state hashes after
	/// steps `0, C, 2C, ...` and `N` ([`crate::trace::TracePoints`]). `1` commits every step;
	/// a larger `C` cuts the solver's hashing `C`-fold, and a dispute recomputes the one
	/// segment of `C` steps it narrows to.
	pub checkpoint_interval: u32,
	/// Seed of parameter initialization and batch sampling.
	pub seed: u64,
	/// The training data.
	pub dataset: DatasetCommitment,
	/// Gradient clipping by global norm (PyTorch's `clip_grad_norm_`): when set, before the
	/// optimizer's update every gradient is multiplied by `min(1, max / (norm + 1e-6))`, `norm`
	/// the square root of the sum of the squares of every gradient value
	/// ([`crate::repops::clip`]). Positive and finite.
	pub max_grad_norm: Option<F32Bits>,
}

/// A synthetic, learnable classification set: `samples` points of `features` values drawn
/// uniformly from `[-1, 1)` by a [`crate::repops::SplitMix64`] seeded with `seed`, each
/// labelled with the index of the largest of its first `classes` features (`classes` must not
/// exceed `features`). Examples, tests and the demo train on it.
pub fn synthetic_dataset(
	seed: u64,
	samples: u32,
	features: u32,
	classes: u32,
) -> alloc::vec::Vec<(alloc::vec::Vec<f32>, u32)> {
	let mut rng = crate::repops::SplitMix64::new(seed);
	(0..samples)
		.map(|_| {
			let x: alloc::vec::Vec<f32> = (0..features)
				.map(|_| crate::repops::sub(crate::repops::mul(rng.next_unit(), 2.0), 1.0))
				.collect();
			let mut label = 0u32;
			for (c, v) in x.iter().take(classes as usize).enumerate() {
				if x.get(label as usize).is_some_and(|best| v > best) {
					label = c as u32;
				}
			}
			(x, label)
		})
		.collect()
}

/// A synthetic, learnable regression set: `samples` points of `features` values drawn as in
/// [`synthetic_dataset`], each with the target `sum_i x_i * (i + 1) / features + |x_0|` (a
/// line plus a kink), given as its `f32` bits in the label's place.
pub fn synthetic_regression(
	seed: u64,
	samples: u32,
	features: u32,
) -> alloc::vec::Vec<(alloc::vec::Vec<f32>, u32)> {
	use crate::repops::{add, div, mul};
	synthetic_dataset(seed, samples, features, 1)
		.into_iter()
		.map(|(x, _)| {
			let line = x.iter().enumerate().fold(0.0f32, |acc, (i, v)| {
				add(acc, div(mul(*v, i.saturating_add(1) as f32), features as f32))
			});
			let kink = x.first().map(|v| v.abs()).unwrap_or(0.0);
			let target = add(line, kink);
			(x, target.to_bits())
		})
		.collect()
}

/// A synthetic, learnable token set for sequence models: `samples` sequences of `context + 1`
/// token ids below `vocab`, each counting from a random start by a random stride of 1 or 2
/// (modulo `vocab`), so the next token follows from the two before it. Labels are 0 (a
/// sequence model's targets are its next tokens).
pub fn synthetic_tokens(
	seed: u64,
	samples: u32,
	context: u32,
	vocab: u32,
) -> alloc::vec::Vec<(alloc::vec::Vec<f32>, u32)> {
	let mut rng = crate::repops::SplitMix64::new(seed);
	let vocab = vocab.max(1);
	(0..samples)
		.map(|_| {
			let start = rng.next_u64().checked_rem(u64::from(vocab)).unwrap_or(0) as u32;
			let stride = 1u32.saturating_add((rng.next_u64() % 2) as u32);
			let x = (0..=context)
				.map(|i| {
					let t = u64::from(start)
						.saturating_add(u64::from(i).saturating_mul(u64::from(stride)));
					t.checked_rem(u64::from(vocab)).unwrap_or(0) as f32
				})
				.collect();
			(x, 0)
		})
		.collect()
}

/// Why a spec cannot be run bit-exactly.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SpecError {
	/// An MLP needs at least an input and an output width.
	TooFewLayers,
	/// A layer width is zero or above [`MAX_WIDTH`].
	BadWidth,
	/// The dataset's features or classes differ from the model's input or output width (a
	/// regression needs one output and a dataset of targets).
	DatasetShapeMismatch,
	/// The batch size is zero or above [`MAX_BATCH`].
	BadBatchSize,
	/// The dataset has no samples.
	EmptyDataset,
	/// Steps are zero or above [`MAX_STEPS`].
	BadSteps,
	/// A hyperparameter is out of its range (non-finite, negative, or a decay not below 1).
	BadHyperparameter,
	/// A classification needs at least two classes.
	TooFewClasses,
	/// The checkpoint interval is zero or above [`MAX_STEPS`].
	BadCheckpointInterval,
	/// Layer `i` (0-based) of a graph does not fit its input: a size zero or above the
	/// bounds, a window larger than the (padded) image, a padding not below the kernel, a
	/// dense layer on an image that is not flattened, more than [`MAX_WIDTH`] values per
	/// sample, or (the last layer) an output that is not flat; an embedding that is not the
	/// first layer or reads more than [`crate::repops::sequence::MAX_CONTEXT`] positions, an
	/// attention not after one or whose heads do not divide its width, or a sequence model
	/// whose output is not its vocabulary or whose loss is not the softmax cross-entropy.
	BadLayer(u32),
	/// A graph has more than [`MAX_PARAM_LAYERS`] layers with parameters.
	TooManyParamLayers,
}

impl core::fmt::Display for SpecError {
	fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
		f.write_str(match self {
			SpecError::TooFewLayers => "an MLP needs an input and an output width at least",
			SpecError::BadWidth => "a layer width is zero or above the largest allowed",
			SpecError::DatasetShapeMismatch => {
				"the model's input or output width is not the dataset's (features in; classes \
				 out, or one output for a dataset of real-valued targets)"
			}
			SpecError::BadBatchSize => "the batch size is zero or above the largest allowed",
			SpecError::EmptyDataset => "the dataset has no samples",
			SpecError::BadSteps => "the steps are zero or above the most allowed",
			SpecError::BadHyperparameter => {
				"a hyperparameter is out of range (non-finite, not positive, or a decay not \
				 below 1)"
			}
			SpecError::TooFewClasses => "a classification needs two classes at least",
			SpecError::BadCheckpointInterval => {
				"the checkpoint interval is zero or above the most steps allowed"
			}
			SpecError::TooManyParamLayers => {
				return write!(
					f,
					"a model may have {MAX_PARAM_LAYERS} layers with parameters at most"
				)
			}
			SpecError::BadLayer(i) => {
				return write!(
					f,
					"layer {i} does not fit its input (a size zero or too large, a window \
					 larger than the padded image, padding not below the kernel, a dense layer \
					 on an image not flattened, more than {MAX_WIDTH} values per sample, a \
					 last output that is not flat; an embedding not first or with a context \
					 above {}, an attention not after an embedding or with heads that do not \
					 divide its width, a sequence model whose output is not its vocabulary or \
					 whose loss is not the softmax cross-entropy)",
					crate::repops::sequence::MAX_CONTEXT
				)
			}
		})
	}
}

impl TrainingSpec {
	/// Checks that a worker can run this spec bit-exactly.
	pub fn validate(&self) -> Result<(), SpecError> {
		let shapes = self.model.shapes()?;
		let first = self.model.inputs();
		let last = shapes.last().map(|s| s.values()).ok_or(SpecError::TooFewLayers)?;
		// A classification's output width is its classes (two at least); a regression has one
		// output and a dataset of targets (0 classes).
		// A sequence model's loss is per token, against the next token.
		if self.model.context().is_some() && self.loss != Loss::SoftmaxCrossEntropy {
			return Err(SpecError::BadLayer(0));
		}
		let classes = match self.loss {
			Loss::SoftmaxCrossEntropy if last < 2 => return Err(SpecError::TooFewClasses),
			Loss::SoftmaxCrossEntropy => last,
			Loss::MeanSquaredError if last != 1 => return Err(SpecError::DatasetShapeMismatch),
			Loss::MeanSquaredError => 0,
		};
		if self.dataset.features != first || self.dataset.classes != classes {
			return Err(SpecError::DatasetShapeMismatch);
		}
		if self.dataset.samples == 0 {
			return Err(SpecError::EmptyDataset);
		}
		if self.batch_size == 0 || self.batch_size > MAX_BATCH {
			return Err(SpecError::BadBatchSize);
		}
		if self.steps == 0 || self.steps > MAX_STEPS {
			return Err(SpecError::BadSteps);
		}
		if self.checkpoint_interval == 0 || self.checkpoint_interval > MAX_STEPS {
			return Err(SpecError::BadCheckpointInterval);
		}
		let ok = match self.optimizer {
			Optimizer::Sgd { learning_rate, momentum } => {
				learning_rate.is_positive_finite() && momentum.is_unit_fraction()
			}
			Optimizer::Adam { learning_rate, beta1, beta2, epsilon } => {
				learning_rate.is_positive_finite()
					&& beta1.is_unit_fraction()
					&& beta2.is_unit_fraction()
					&& epsilon.is_positive_finite()
			}
			Optimizer::AdamW { learning_rate, beta1, beta2, epsilon, weight_decay } => {
				learning_rate.is_positive_finite()
					&& beta1.is_unit_fraction()
					&& beta2.is_unit_fraction()
					&& epsilon.is_positive_finite()
					&& weight_decay.is_unit_fraction()
			}
		};
		if !ok || self.max_grad_norm.is_some_and(|m| !m.is_positive_finite()) {
			return Err(SpecError::BadHyperparameter);
		}
		Ok(())
	}

	/// A small valid spec: a 64-32-10 ReLU MLP on the 8x8 digits set (1797 samples), SGD
	/// with momentum, batch 32, 100 steps. Examples, tests and benchmarks use it.
	pub fn example_digits(dataset_root: H256) -> Self {
		TrainingSpec {
			model: Model::Mlp {
				widths: LayerWidths::truncate_from(alloc::vec![64, 32, 10]),
				activation: Activation::Relu,
			},
			loss: Loss::SoftmaxCrossEntropy,
			optimizer: Optimizer::sgd(0.05, 0.9),
			batch_size: 32,
			steps: 100,
			checkpoint_interval: 1,
			seed: 7,
			dataset: DatasetCommitment {
				root: dataset_root,
				samples: 1797,
				features: 64,
				classes: 10,
				manifest: crate::dataset::Manifest::default().hash(),
			},
			max_grad_norm: None,
		}
	}

	/// [`Self::example_digits`] with another MLP: `widths` (input first; at most
	/// [`MAX_LAYER_WIDTHS`] are kept), the dataset's shape matched to them, `optimizer` and
	/// `batch_size`. Tests, benchmarks and examples use it.
	pub fn example_mlp(widths: &[u32], optimizer: Optimizer, batch_size: u32) -> Self {
		let mut s = Self::example_digits(H256::zero());
		s.model = Model::Mlp {
			widths: LayerWidths::truncate_from(widths.to_vec()),
			activation: Activation::Relu,
		};
		s.dataset.features = widths.first().copied().unwrap_or(0);
		s.dataset.classes = widths.last().copied().unwrap_or(0);
		s.optimizer = optimizer;
		s.batch_size = batch_size;
		s
	}

	/// [`Self::example_mlp`] as a regression: mean squared error, the last width one output,
	/// a dataset of targets (0 classes).
	pub fn example_regression(widths: &[u32], optimizer: Optimizer, batch_size: u32) -> Self {
		let mut s = Self::example_mlp(widths, optimizer, batch_size);
		s.loss = Loss::MeanSquaredError;
		s.dataset.classes = 0;
		s
	}

	/// The reference transformer: a character-level GPT of two blocks on samples of
	/// `context + 1` tokens of a vocabulary of `vocab` (an embedding of 64; each block a layer
	/// norm, `q | k | v`, causal attention of 4 heads and its projection, then a layer norm and
	/// an MLP of 256 with GELU, each sub-block residual; a final layer norm and the output
	/// layer), AdamW (learning rate 0.003, betas 0.9 and 0.99, weight decay 0.01), batch 32.
	pub fn example_transformer(dataset_root: H256, vocab: u32, context: u32) -> Self {
		let d = 64;
		let mut layers = alloc::vec![Layer::Embedding { vocab, dim: d }];
		for _ in 0..2 {
			layers.extend([
				Layer::Residual { layers: 4 },
				Layer::LayerNorm,
				Layer::Linear { out: 3 * d },
				Layer::Attention { heads: 4 },
				Layer::Linear { out: d },
				Layer::Residual { layers: 4 },
				Layer::LayerNorm,
				Layer::Linear { out: 4 * d },
				Layer::Gelu,
				Layer::Linear { out: d },
			]);
		}
		layers.extend([Layer::LayerNorm, Layer::Linear { out: vocab }]);
		let model = Model::Graph {
			input: ImageShape::flat(context.saturating_add(1)),
			layers: Layers::truncate_from(layers),
		};
		let adamw = Optimizer::AdamW {
			learning_rate: F32Bits::from_f32(0.003),
			beta1: F32Bits::from_f32(0.9),
			beta2: F32Bits::from_f32(0.99),
			epsilon: F32Bits::from_f32(1e-8),
			weight_decay: F32Bits::from_f32(0.01),
		};
		let mut s = Self::example_graph(model, Loss::SoftmaxCrossEntropy, adamw, 32);
		s.dataset.root = dataset_root;
		s
	}

	/// The deepest model a spec may have, on the digits' shape: [`MAX_PARAM_LAYERS`] dense
	/// layers of 16 (the last of 10), ReLUs between the first ones up to [`MAX_GRAPH_LAYERS`]
	/// layers, trained with Adam: the state with the most tensors
	/// ([`crate::program::MAX_STATE_TENSORS`]) and a longest program, which benchmarks weigh.
	pub fn example_deepest(dataset_root: H256) -> Self {
		let dense = MAX_PARAM_LAYERS as usize;
		let relus = (MAX_GRAPH_LAYERS as usize).saturating_sub(dense).min(dense.saturating_sub(1));
		let mut layers = alloc::vec::Vec::with_capacity(dense.saturating_add(relus));
		for i in 0..dense {
			let out = if i.saturating_add(1) == dense { 10 } else { 16 };
			layers.push(Layer::Linear { out });
			if i < relus {
				layers.push(Layer::Relu);
			}
		}
		let model =
			Model::Graph { input: ImageShape::flat(64), layers: Layers::truncate_from(layers) };
		let mut s =
			Self::example_graph(model, Loss::SoftmaxCrossEntropy, Optimizer::adam(0.001), 32);
		s.dataset.root = dataset_root;
		s
	}

	/// A small LeNet-style convolutional net on the 8x8 digits (one channel): two 3x3
	/// convolutions (8 and 16 filters, padding 1) each followed by ReLU and a 2x2 max pool, then
	/// dense layers of 32 and 10, Adam, batch 32. The reference CNN task.
	pub fn example_cnn(dataset_root: H256) -> Self {
		let conv = |out_channels| Layer::Conv2d { out_channels, kernel: 3, stride: 1, padding: 1 };
		let pool = Layer::MaxPool2d { kernel: 2, stride: 2 };
		let layers = alloc::vec![
			conv(8),
			Layer::Relu,
			pool,
			conv(16),
			Layer::Relu,
			pool,
			Layer::Flatten,
			Layer::Linear { out: 32 },
			Layer::Relu,
			Layer::Linear { out: 10 },
		];
		let mut s = Self::example_digits(dataset_root);
		s.model = Model::Graph {
			input: ImageShape { channels: 1, height: 8, width: 8 },
			layers: Layers::truncate_from(layers),
		};
		s.optimizer = Optimizer::adam(0.003);
		s
	}

	/// A spec of `model` on a dataset shaped to it (classes `outputs`, or a regression when
	/// `loss` is the squared error), otherwise [`Self::example_digits`]'s.
	pub fn example_graph(model: Model, loss: Loss, optimizer: Optimizer, batch_size: u32) -> Self {
		let mut s = Self::example_digits(H256::zero());
		let outputs = model.shapes().ok().and_then(|s| s.last().map(|s| s.values())).unwrap_or(0);
		s.dataset.features = model.inputs();
		s.dataset.classes = match loss {
			Loss::SoftmaxCrossEntropy => outputs,
			Loss::MeanSquaredError => 0,
		};
		s.model = model;
		s.loss = loss;
		s.optimizer = optimizer;
		s.batch_size = batch_size;
		s
	}

	/// This spec training on the dataset `dataset` commits to.
	pub fn with_dataset(mut self, dataset: DatasetCommitment) -> Self {
		self.dataset = dataset;
		self
	}

	/// This spec training on `data` (its root and size; features, classes and manifest
	/// unchanged).
	pub fn on_dataset(mut self, data: &[(alloc::vec::Vec<f32>, u32)]) -> Self {
		let d = &self.dataset;
		self.dataset = crate::commit::dataset_commitment(d.features, d.classes, d.manifest, data);
		self
	}

	/// Which state hashes this task's trace commits to, or `None` for a checkpoint interval
	/// of zero.
	pub fn trace_points(&self) -> Option<crate::trace::TracePoints> {
		crate::trace::TracePoints::new(self.steps, self.checkpoint_interval)
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

	/// A small valid spec: 64-32-10 MLP on 8x8 digits, SGD.
	pub fn digits_spec() -> TrainingSpec {
		TrainingSpec::example_digits(H256::repeat_byte(1))
	}

	#[test]
	fn a_sound_spec_validates() {
		assert_eq!(digits_spec().validate(), Ok(()));
		assert_eq!(digits_spec().trace_points().map(|p| p.len()), Some(101));
	}

	#[test]
	fn each_bad_field_is_named() {
		let mut s = digits_spec();
		s.model = Model::Mlp {
			widths: LayerWidths::try_from(vec![64]).unwrap(),
			activation: Activation::Relu,
		};
		assert_eq!(s.validate(), Err(SpecError::TooFewLayers));

		let mut s = digits_spec();
		s.model = Model::Mlp {
			widths: LayerWidths::try_from(vec![64, 0, 10]).unwrap(),
			activation: Activation::Relu,
		};
		assert_eq!(s.validate(), Err(SpecError::BadWidth));

		let mut s = digits_spec();
		s.dataset.features = 63;
		assert_eq!(s.validate(), Err(SpecError::DatasetShapeMismatch));

		let mut s = digits_spec();
		s.batch_size = 0;
		assert_eq!(s.validate(), Err(SpecError::BadBatchSize));

		let mut s = digits_spec();
		s.steps = MAX_STEPS + 1;
		assert_eq!(s.validate(), Err(SpecError::BadSteps));

		for bad in [0, MAX_STEPS + 1] {
			let mut s = digits_spec();
			s.checkpoint_interval = bad;
			assert_eq!(s.validate(), Err(SpecError::BadCheckpointInterval));
		}

		let mut s = digits_spec();
		s.dataset.samples = 0;
		assert_eq!(s.validate(), Err(SpecError::EmptyDataset));

		for bad in [f32::NAN, f32::INFINITY, -0.1, 0.0] {
			let mut s = digits_spec();
			s.optimizer = Optimizer::sgd(bad, 0.9);
			assert_eq!(s.validate(), Err(SpecError::BadHyperparameter), "lr {bad}");
		}
		let mut s = digits_spec();
		s.optimizer = Optimizer::sgd(0.1, 1.0);
		assert_eq!(s.validate(), Err(SpecError::BadHyperparameter));
		for bad in [f32::NAN, f32::INFINITY, -1.0, 0.0, -0.0] {
			let mut s = digits_spec();
			s.max_grad_norm = Some(F32Bits::from_f32(bad));
			assert_eq!(s.validate(), Err(SpecError::BadHyperparameter), "max norm {bad}");
		}
		let mut s = digits_spec();
		s.max_grad_norm = Some(F32Bits::from_f32(1.0));
		assert_eq!(s.validate(), Ok(()));
	}

	fn graph(input: (u32, u32, u32), layers: Vec<Layer>) -> Model {
		let (channels, height, width) = input;
		Model::Graph {
			input: ImageShape { channels, height, width },
			layers: Layers::try_from(layers).unwrap(),
		}
	}

	#[test]
	fn the_reference_cnn_validates_and_its_shapes_are_lenets() {
		let s = TrainingSpec::example_cnn(H256::repeat_byte(1));
		assert_eq!(s.validate(), Ok(()));
		let shapes = s.model.shapes().unwrap();
		let values: Vec<u32> = shapes.iter().map(|s| s.values()).collect();
		assert_eq!(values, vec![512, 512, 128, 256, 256, 64, 64, 32, 32, 10]);
		// An MLP is the same sequence of layers.
		let mlp = digits_spec().model;
		assert_eq!(
			mlp.graph().1,
			vec![Layer::Linear { out: 32 }, Layer::Relu, Layer::Linear { out: 10 }]
		);
	}

	#[test]
	fn each_bad_layer_is_named() {
		let conv = |out_channels, kernel, stride, padding| Layer::Conv2d {
			out_channels,
			kernel,
			stride,
			padding,
		};
		let linear = Layer::Linear { out: 3 };
		let cases = [
			// A dense layer on an image that is not flattened.
			(graph((1, 4, 4), vec![linear]), SpecError::BadLayer(0)),
			// A kernel larger than the padded image; padding not below the kernel.
			(
				graph((1, 4, 4), vec![conv(2, 7, 1, 1), Layer::Flatten, linear]),
				SpecError::BadLayer(0),
			),
			(
				graph((1, 4, 4), vec![conv(2, 3, 1, 3), Layer::Flatten, linear]),
				SpecError::BadLayer(0),
			),
			// No filters; a zero stride.
			(
				graph((1, 4, 4), vec![conv(0, 3, 1, 1), Layer::Flatten, linear]),
				SpecError::BadLayer(0),
			),
			(
				graph((1, 4, 4), vec![conv(2, 3, 0, 1), Layer::Flatten, linear]),
				SpecError::BadLayer(0),
			),
			// A pool window larger than the image.
			(
				graph(
					(1, 4, 4),
					vec![Layer::MaxPool2d { kernel: 5, stride: 1 }, Layer::Flatten, linear],
				),
				SpecError::BadLayer(0),
			),
			// More than MAX_WIDTH values per sample.
			(
				graph((1, 64, 64), vec![conv(2, 3, 1, 1), Layer::Flatten, linear]),
				SpecError::BadLayer(0),
			),
			// The last output is an image.
			(graph((1, 4, 4), vec![conv(2, 3, 1, 1)]), SpecError::BadLayer(0)),
			// No parameters at all; too many.
			(graph((1, 4, 4), vec![Layer::Flatten, Layer::Relu]), SpecError::TooFewLayers),
			(
				graph((4, 1, 1), vec![Layer::Linear { out: 4 }; MAX_PARAM_LAYERS as usize + 1]),
				SpecError::TooManyParamLayers,
			),
			(graph((0, 4, 4), vec![Layer::Flatten, linear]), SpecError::BadWidth),
		];
		for (model, error) in cases {
			assert_eq!(model.shapes().map(|_| ()), Err(error), "{model:?}");
			let spec = TrainingSpec::example_graph(
				model,
				Loss::SoftmaxCrossEntropy,
				Optimizer::sgd(0.1, 0.9),
				4,
			);
			assert_eq!(spec.validate(), Err(error));
		}
		// The dataset's features are the input image's values.
		let mut s = TrainingSpec::example_cnn(H256::zero());
		s.dataset.features = 65;
		assert_eq!(s.validate(), Err(SpecError::DatasetShapeMismatch));
	}

	#[test]
	fn float_bit_predicates() {
		assert!(F32Bits::from_f32(1e-30).is_positive_finite());
		assert!(!F32Bits::from_f32(-0.0).is_positive_finite());
		assert!(F32Bits::from_f32(0.0).is_unit_fraction());
		assert!(F32Bits::from_f32(0.999).is_unit_fraction());
		assert!(!F32Bits::from_f32(1.0).is_unit_fraction());
		assert!(!F32Bits::from_f32(f32::NAN).is_finite());
	}
}
