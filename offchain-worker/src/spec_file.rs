//! Task specs as people write them: a TOML file.
//!
//! ```toml
//! [model]
//! widths = [64, 32, 10]          # input, hidden..., classes; ReLU between layers
//!
//! [optimizer]
//! kind = "sgd"                   # or "adam" (learning_rate, beta1, beta2, epsilon), or "adamw"
//! learning_rate = 0.05
//! momentum = 0.9
//!
//! [training]
//! batch_size = 32
//! steps = 300
//! seed = 7
//! checkpoint_interval = 10       # optional (default 1): commit the state every 10 steps
//! max_grad_norm = 1.0            # optional: clip the gradients to this global norm
//!
//! [dataset]
//! root = "0x…"                   # the dataset's root, as `trainet-worker dataset` prints it
//! ```
//!
//! A convolutional net (or any graph of layers) gives the input image's shape and the layers
//! instead of `widths`:
//!
//! ```toml
//! [model]
//! input = [1, 8, 8]              # channels, height, width: the dataset's features, in that order
//! layers = [
//!   { type = "conv2d", out_channels = 8, kernel = 3, padding = 1 },   # stride 1 by default
//!   { type = "relu" },
//!   { type = "max_pool2d", kernel = 2 },                               # stride = kernel by default
//!   { type = "flatten" },
//!   { type = "linear", out = 10 },
//! ]
//! ```
//!
//! (`avg_pool2d` as `max_pool2d`.) Also `{ type = "gelu" }`, `{ type = "layer_norm" }`,
//! `{ type = "dropout", p = 0.1 }`, and `{ type = "residual", layers = 3 }`: the next 3 layers
//! are a block whose input is added to its output. The optimizer may be `kind = "adamw"` with
//! Adam's fields and `weight_decay`.
//!
//! The dataset's size, features and classes come from the dataset itself (looked up by its
//! root), so the file cannot contradict them. So does the loss: softmax cross-entropy on a
//! dataset of classes, mean squared error on one of real-valued targets (a regression, whose
//! model has one output: `widths = [.., 1]`).

use serde::Deserialize;
use sp_core::H256;
use thiserror::Error;
use trainet_primitives::{
	repops::image::ImageShape,
	task::{
		Activation, F32Bits, Layer, LayerWidths, Layers, Loss, Model, Optimizer, SpecError,
		TrainingSpec, MAX_GRAPH_LAYERS, MAX_LAYER_WIDTHS,
	},
};

use crate::dataset::Dataset;

/// Why a spec file cannot become a task spec.
#[derive(Debug, Error)]
pub enum SpecFileError {
	/// Not TOML, or not this shape.
	#[error(transparent)]
	Toml(#[from] toml::de::Error),
	/// The dataset root is not a 32-byte hex string.
	#[error("dataset.root {0:?} is not a 0x-prefixed 32-byte hex hash")]
	BadRoot(String),
	/// Too many layers.
	#[error("model.widths has {0} entries; at most {MAX_LAYER_WIDTHS} are allowed")]
	TooManyLayers(usize),
	/// Too many layers in a graph.
	#[error("model.layers has {0} entries; at most {MAX_GRAPH_LAYERS} are allowed")]
	TooManyGraphLayers(usize),
	/// Neither or both ways of describing a model.
	#[error(
		"[model] takes widths (an MLP), or input and layers (a graph), or context and layers (a \
		 sequence model), one of them"
	)]
	ModelShape,
	/// The dataset given is not the one the file names.
	#[error("the file names dataset {expected:?}, the dataset given is {actual:?}")]
	WrongDataset {
		/// The file's root.
		expected: H256,
		/// The dataset's.
		actual: H256,
	},
	/// The spec is not runnable (a width of zero, a learning rate that is not positive...).
	#[error("the spec is invalid: {0}")]
	Invalid(SpecError),
}

/// A spec file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
	/// `[model]`.
	pub model: ModelSection,
	/// `[optimizer]`.
	pub optimizer: OptimizerSection,
	/// `[training]`.
	pub training: TrainingSection,
	/// `[dataset]`.
	pub dataset: DatasetSection,
}

fn every_step() -> u32 {
	1
}

/// `[model]`: an MLP (`widths`), a graph of layers (`input` and `layers`), or a sequence
/// model (`context` and `layers`, the first an embedding).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
	/// An MLP's layer widths, input first, classes last.
	#[serde(default)]
	pub widths: Vec<u32>,
	/// A graph's input image: channels, height, width.
	#[serde(default)]
	pub input: Option<[u32; 3]>,
	/// A sequence model's context: each sample is `context + 1` token ids (the input, and
	/// the targets one position on).
	#[serde(default)]
	pub context: Option<u32>,
	/// A graph's layers, in order.
	#[serde(default)]
	pub layers: Vec<LayerSection>,
}

fn one() -> u32 {
	1
}

/// One layer of `model.layers`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSection {
	/// A dense layer.
	Linear {
		/// Outputs.
		out: u32,
	},
	/// A 2-D convolution.
	Conv2d {
		/// Filters.
		out_channels: u32,
		/// The filters' side.
		kernel: u32,
		/// The step between windows (1 when left out).
		#[serde(default = "one")]
		stride: u32,
		/// Zeros on every side (0 when left out).
		#[serde(default)]
		padding: u32,
	},
	/// A max pool.
	MaxPool2d {
		/// The window's side.
		kernel: u32,
		/// The step between windows (the kernel when left out).
		stride: Option<u32>,
	},
	/// An average pool.
	AvgPool2d {
		/// The window's side.
		kernel: u32,
		/// The step between windows (the kernel when left out).
		stride: Option<u32>,
	},
	/// ReLU.
	Relu,
	/// Flatten.
	Flatten,
	/// GELU (tanh form).
	Gelu,
	/// Layer normalization over each sample's values.
	LayerNorm,
	/// Dropout.
	Dropout {
		/// The probability of dropping a value, in `[0, 1)`.
		p: f32,
	},
	/// A residual block: the next `layers` layers, their input added to their output.
	Residual {
		/// The layers of the block.
		layers: u32,
	},
	/// A sequence model's token and position embeddings (its first layer).
	Embedding {
		/// Token ids are `0 .. vocab`.
		vocab: u32,
		/// The embedding's width.
		dim: u32,
	},
	/// Causal multi-head self-attention on each token's `q | k | v`.
	Attention {
		/// Heads.
		heads: u32,
	},
}

impl From<LayerSection> for Layer {
	fn from(l: LayerSection) -> Self {
		match l {
			LayerSection::Linear { out } => Layer::Linear { out },
			LayerSection::Conv2d { out_channels, kernel, stride, padding } => {
				Layer::Conv2d { out_channels, kernel, stride, padding }
			}
			LayerSection::MaxPool2d { kernel, stride } => {
				Layer::MaxPool2d { kernel, stride: stride.unwrap_or(kernel) }
			}
			LayerSection::AvgPool2d { kernel, stride } => {
				Layer::AvgPool2d { kernel, stride: stride.unwrap_or(kernel) }
			}
			LayerSection::Relu => Layer::Relu,
			LayerSection::Flatten => Layer::Flatten,
			LayerSection::Gelu => Layer::Gelu,
			LayerSection::LayerNorm => Layer::LayerNorm,
			LayerSection::Dropout { p } => Layer::Dropout { p: F32Bits::from_f32(p) },
			LayerSection::Residual { layers } => Layer::Residual { layers },
			LayerSection::Embedding { vocab, dim } => Layer::Embedding { vocab, dim },
			LayerSection::Attention { heads } => Layer::Attention { heads },
		}
	}
}

impl ModelSection {
	/// The model this section describes.
	pub fn to_model(&self) -> Result<Model, SpecFileError> {
		let input = match (self.input, self.context) {
			(Some([channels, height, width]), None) => Some(ImageShape { channels, height, width }),
			(None, Some(context)) => Some(ImageShape::flat(context.saturating_add(1))),
			(None, None) => None,
			(Some(_), Some(_)) => return Err(SpecFileError::ModelShape),
		};
		match (self.widths.is_empty(), input, self.layers.is_empty()) {
			(false, None, true) => {
				let widths = LayerWidths::try_from(self.widths.clone())
					.map_err(|_| SpecFileError::TooManyLayers(self.widths.len()))?;
				Ok(Model::Mlp { widths, activation: Activation::Relu })
			}
			(true, Some(input), false) => {
				let layers: Vec<Layer> = self.layers.iter().map(|l| Layer::from(*l)).collect();
				let layers = Layers::try_from(layers)
					.map_err(|_| SpecFileError::TooManyGraphLayers(self.layers.len()))?;
				Ok(Model::Graph { input, layers })
			}
			_ => Err(SpecFileError::ModelShape),
		}
	}
}

/// `[optimizer]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum OptimizerSection {
	/// SGD with momentum.
	Sgd {
		/// The learning rate.
		learning_rate: f32,
		/// The momentum.
		momentum: f32,
	},
	/// Adam.
	Adam {
		/// The learning rate.
		learning_rate: f32,
		/// First-moment decay.
		beta1: f32,
		/// Second-moment decay.
		beta2: f32,
		/// The denominator's epsilon.
		epsilon: f32,
	},
	/// AdamW: Adam with decoupled weight decay.
	#[serde(rename = "adamw")]
	AdamW {
		/// The learning rate.
		learning_rate: f32,
		/// First-moment decay.
		beta1: f32,
		/// Second-moment decay.
		beta2: f32,
		/// The denominator's epsilon.
		epsilon: f32,
		/// The weight decay.
		weight_decay: f32,
	},
}

/// `[training]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainingSection {
	/// Samples per step.
	pub batch_size: u32,
	/// Steps.
	pub steps: u32,
	/// Seed of initialization and batch sampling.
	pub seed: u64,
	/// The checkpoint interval `C`: the trace commits to every `C`-th state (and the last).
	/// 1 (every step) when left out.
	#[serde(default = "every_step")]
	pub checkpoint_interval: u32,
	/// Gradient clipping by global norm: every gradient scaled by `min(1, max_grad_norm /
	/// (norm + 1e-6))` before the update. No clipping when left out.
	#[serde(default)]
	pub max_grad_norm: Option<f32>,
}

/// `[dataset]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetSection {
	/// The dataset's root, `0x`-prefixed hex.
	pub root: String,
}

impl SpecFile {
	/// Parses a spec file's text.
	pub fn parse(text: &str) -> Result<Self, SpecFileError> {
		Ok(toml::from_str(text)?)
	}

	/// The dataset root the file names.
	pub fn dataset_root(&self) -> Result<H256, SpecFileError> {
		let bad = || SpecFileError::BadRoot(self.dataset.root.clone());
		let bytes = sp_core::bytes::from_hex(&self.dataset.root).map_err(|_| bad())?;
		if bytes.len() != 32 {
			return Err(bad());
		}
		Ok(H256::from_slice(&bytes))
	}

	/// The task spec of this file on `data` (which must be the dataset it names), validated.
	pub fn to_spec(&self, data: &Dataset) -> Result<TrainingSpec, SpecFileError> {
		let expected = self.dataset_root()?;
		// One Merkle root over every sample: the commitment the spec takes is the one checked.
		let dataset = data.commitment();
		if expected != dataset.root {
			return Err(SpecFileError::WrongDataset { expected, actual: dataset.root });
		}
		let model = self.model.to_model()?;
		let f = F32Bits::from_f32;
		let optimizer = match self.optimizer {
			OptimizerSection::Sgd { learning_rate, momentum } => {
				Optimizer::Sgd { learning_rate: f(learning_rate), momentum: f(momentum) }
			}
			OptimizerSection::Adam { learning_rate, beta1, beta2, epsilon } => Optimizer::Adam {
				learning_rate: f(learning_rate),
				beta1: f(beta1),
				beta2: f(beta2),
				epsilon: f(epsilon),
			},
			OptimizerSection::AdamW { learning_rate, beta1, beta2, epsilon, weight_decay } => {
				Optimizer::AdamW {
					learning_rate: f(learning_rate),
					beta1: f(beta1),
					beta2: f(beta2),
					epsilon: f(epsilon),
					weight_decay: f(weight_decay),
				}
			}
		};
		let spec = TrainingSpec {
			model,
			loss: match data.is_regression() {
				true => Loss::MeanSquaredError,
				false => Loss::SoftmaxCrossEntropy,
			},
			optimizer,
			batch_size: self.training.batch_size,
			steps: self.training.steps,
			checkpoint_interval: self.training.checkpoint_interval,
			seed: self.training.seed,
			dataset,
			max_grad_norm: self.training.max_grad_norm.map(f),
		};
		spec.validate().map_err(SpecFileError::Invalid)?;
		Ok(spec)
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	fn file(root: &H256, extra: &str) -> String {
		format!(
			"[model]\nwidths = [4, 5, 3]\n\n[optimizer]\nkind = \"sgd\"\nlearning_rate = \
			 0.1\nmomentum = 0.9\n\n[training]\nbatch_size = 8\nsteps = 10\nseed = 1\n{extra}\n\
			 [dataset]\nroot = \"{root:?}\"\n"
		)
	}

	#[test]
	fn a_spec_file_becomes_the_spec_of_its_dataset() {
		let data = Dataset::synthetic(1, 30, 4, 3);
		let f = SpecFile::parse(&file(&data.root(), "")).unwrap();
		let spec = f.to_spec(&data).unwrap();
		assert_eq!(spec.dataset.root, data.root());
		assert_eq!(spec.dataset.samples, 30);
		assert_eq!(spec.batch_size, 8);
		assert_eq!(spec.max_grad_norm, None);
		let clipped = SpecFile::parse(&file(&data.root(), "max_grad_norm = 1.5")).unwrap();
		assert_eq!(clipped.to_spec(&data).unwrap().max_grad_norm, Some(F32Bits::from_f32(1.5)));
		// Another dataset is refused.
		let other = Dataset::synthetic(2, 30, 4, 3);
		assert!(matches!(f.to_spec(&other), Err(SpecFileError::WrongDataset { .. })));
	}

	#[test]
	fn bad_files_get_clear_errors() {
		let data = Dataset::synthetic(1, 30, 4, 3);
		let root = data.root();
		let err = SpecFile::parse(&file(&root, "colour = 3")).unwrap_err();
		assert!(err.to_string().contains("unknown field `colour`"), "{err}");
		let err = SpecFile::parse("[model]\nwidths = \"wide\"").unwrap_err();
		assert!(err.to_string().contains("invalid type"), "{err}");
		let f = SpecFile::parse(&file(&root, "").replace(&format!("{root:?}"), "0x1234")).unwrap();
		assert!(matches!(f.to_spec(&data), Err(SpecFileError::BadRoot(_))));
		let f = SpecFile::parse(&file(&root, "").replace("[4, 5, 3]", "[4, 0, 3]")).unwrap();
		assert!(matches!(f.to_spec(&data), Err(SpecFileError::Invalid(SpecError::BadWidth))));
		let f = SpecFile::parse(&file(&root, "").replace("0.1", "-0.1")).unwrap();
		assert!(matches!(f.to_spec(&data), Err(SpecFileError::Invalid(_))));
		let f = SpecFile::parse(&file(&root, "max_grad_norm = 0.0")).unwrap();
		let err = f.to_spec(&data).unwrap_err();
		assert!(matches!(err, SpecFileError::Invalid(SpecError::BadHyperparameter)), "{err}");
	}

	#[test]
	fn a_dataset_of_targets_makes_a_regression_of_one_output() {
		let data = Dataset::synthetic_regression(1, 30, 4);
		let one = file(&data.root(), "").replace("[4, 5, 3]", "[4, 5, 1]");
		let spec = SpecFile::parse(&one).unwrap().to_spec(&data).unwrap();
		assert_eq!((spec.loss, spec.dataset.classes), (Loss::MeanSquaredError, 0));
		// Three outputs for one target: refused.
		let f = SpecFile::parse(&file(&data.root(), "")).unwrap();
		let err = f.to_spec(&data).unwrap_err();
		assert!(matches!(err, SpecFileError::Invalid(SpecError::DatasetShapeMismatch)), "{err}");
	}

	/// A CNN: the input image and its layers, as the module documentation writes them.
	#[test]
	fn a_graph_of_layers_becomes_a_cnn_spec() {
		let data = Dataset::synthetic(1, 30, 16, 3);
		let graph = "[model]\ninput = [1, 4, 4]\nlayers = [\n  { type = \"conv2d\", \
		             out_channels = 2, kernel = 3, padding = 1 },\n  { type = \"relu\" },\n  \
		             { type = \"max_pool2d\", kernel = 2 },\n  { type = \"avg_pool2d\", kernel = \
		             2, stride = 1 },\n  { type = \"flatten\" },\n  { type = \"linear\", out = 3 \
		             },\n]\n";
		let text = file(&data.root(), "").replace("[model]\nwidths = [4, 5, 3]\n", graph);
		let spec = SpecFile::parse(&text).unwrap().to_spec(&data).unwrap();
		let Model::Graph { input, layers } = &spec.model else { panic!("{:?}", spec.model) };
		assert_eq!((input.channels, input.height, input.width), (1, 4, 4));
		assert_eq!(
			layers.to_vec(),
			vec![
				Layer::Conv2d { out_channels: 2, kernel: 3, stride: 1, padding: 1 },
				Layer::Relu,
				Layer::MaxPool2d { kernel: 2, stride: 2 },
				Layer::AvgPool2d { kernel: 2, stride: 1 },
				Layer::Flatten,
				Layer::Linear { out: 3 },
			]
		);
		// An input that is not the dataset's features; a window too large; both kinds of
		// model at once; a layer type that does not exist.
		let f = SpecFile::parse(&text.replace("[1, 4, 4]", "[1, 4, 5]")).unwrap();
		let err = f.to_spec(&data).unwrap_err();
		assert!(matches!(err, SpecFileError::Invalid(SpecError::DatasetShapeMismatch)), "{err}");
		let f = SpecFile::parse(&text.replace("kernel = 3", "kernel = 9")).unwrap();
		let err = f.to_spec(&data).unwrap_err();
		assert!(matches!(err, SpecFileError::Invalid(SpecError::BadLayer(0))), "{err}");
		assert!(err.to_string().contains("layer 0 does not fit"), "{err}");
		let both = text.replace("input =", "widths = [16, 3]\ninput =");
		let err = SpecFile::parse(&both).unwrap().to_spec(&data).unwrap_err();
		assert!(matches!(err, SpecFileError::ModelShape), "{err}");
		let err = SpecFile::parse(&text.replace("\"relu\"", "\"swish\"")).unwrap_err();
		assert!(err.to_string().contains("unknown variant `swish`"), "{err}");
	}

	/// Residual blocks, layer normalization, GELU, dropout and AdamW, as a file writes them.
	#[test]
	fn residual_blocks_normalization_and_adamw_are_written_as_layers() {
		let data = Dataset::synthetic(1, 30, 4, 3);
		let graph = "[model]\ninput = [4, 1, 1]\nlayers = [\n  { type = \"linear\", out = 6 \
		             },\n  { type = \"residual\", layers = 3 },\n  { type = \"layer_norm\" \
		             },\n  { type = \"linear\", out = 6 },\n  { type = \"gelu\" },\n  { type \
		             = \"dropout\", p = 0.1 },\n  { type = \"linear\", out = 3 },\n]\n";
		let adamw = "[optimizer]\nkind = \"adamw\"\nlearning_rate = 0.01\nbeta1 = 0.9\nbeta2 \
		             = 0.999\nepsilon = 1e-7\nweight_decay = 0.05\n";
		let text = file(&data.root(), "")
			.replace("[model]\nwidths = [4, 5, 3]\n", graph)
			.replace("[optimizer]\nkind = \"sgd\"\nlearning_rate = 0.1\nmomentum = 0.9\n", adamw);
		let spec = SpecFile::parse(&text).unwrap().to_spec(&data).unwrap();
		assert_eq!(spec.optimizer, Optimizer::adamw(0.01, 0.05));
		let Model::Graph { layers, .. } = &spec.model else { panic!("{:?}", spec.model) };
		assert_eq!(layers[1], Layer::Residual { layers: 3 });
		assert_eq!(layers[5], Layer::Dropout { p: F32Bits::from_f32(0.1) });
		// A block whose output is not its input's shape.
		let f = SpecFile::parse(
			&text.replace("out = 6 },\n  { type = \"gelu", "out = 5 },\n  { type = \"gelu"),
		)
		.unwrap();
		let err = f.to_spec(&data).unwrap_err();
		assert!(matches!(err, SpecFileError::Invalid(SpecError::BadLayer(4))), "{err}");
	}

	/// A sequence model: `context` instead of `input`, an embedding first, attention.
	#[test]
	fn a_transformer_is_written_with_a_context_and_its_layers() {
		let data = Dataset::synthetic_tokens(1, 30, 4, 5);
		let model = "[model]\ncontext = 4\nlayers = [\n  { type = \"embedding\", vocab = 5, dim = \
		             8 },\n  { type = \"linear\", out = 24 },\n  { type = \"attention\", heads = 2 \
		             },\n  { type = \"linear\", out = 5 },\n]\n";
		let text = file(&data.root(), "").replace("[model]\nwidths = [4, 5, 3]\n", model);
		let spec = SpecFile::parse(&text).unwrap().to_spec(&data).unwrap();
		let Model::Graph { input, layers } = &spec.model else { panic!("{:?}", spec.model) };
		assert_eq!(input.values(), 5);
		assert_eq!(layers[0], Layer::Embedding { vocab: 5, dim: 8 });
		assert_eq!(layers[2], Layer::Attention { heads: 2 });
		assert_eq!(spec.model.context(), Some(4));
		// Both an input and a context; heads that do not divide the width.
		let both = text.replace("context = 4", "context = 4\ninput = [1, 1, 5]");
		let err = SpecFile::parse(&both).unwrap().to_spec(&data).unwrap_err();
		assert!(matches!(err, SpecFileError::ModelShape), "{err}");
		let odd = text.replace("heads = 2", "heads = 3");
		let err = SpecFile::parse(&odd).unwrap().to_spec(&data).unwrap_err();
		assert!(matches!(err, SpecFileError::Invalid(SpecError::BadLayer(2))), "{err}");
	}
}
