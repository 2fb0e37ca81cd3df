//! The trained model, handed over: a task's final state exported as a burn record, as
//! SafeTensors, and with a model card that says what it is, what it was trained on and how to
//! prepare its inputs.
//!
//! The parameters are the first `2 x layers` tensors of the final state `h_N` whose hash the
//! chain holds: an export is made only from a state that hashes to it (the checkpoint store
//! checks every state it holds against its name), so the buyer's file is bit for bit what the
//! solver trained and verifiers could check.

use std::path::{Path, PathBuf};

use codec::{Decode, Encode};
use serde::{Deserialize, Serialize};
use sp_core::H256;
use thiserror::Error;
use trainet_primitives::{
	commit::state_hash,
	dataset::{Labels, Manifest, Preprocessing},
	repops::Matrix,
	task::{Layer, Loss, Model, Optimizer, TrainingSpec},
};

use crate::{
	dataset::Dataset,
	graph_model::GraphNet,
	model::{Mlp, ModelError},
	train::{evaluate_of, Evaluation, TrainError},
};

/// The model card's file name in an export folder.
pub const CARD: &str = "model-card.json";
/// The burn record's file name (burn's `NamedMpkFileRecorder`, full precision).
pub const RECORD: &str = "model.mpk";
/// The SafeTensors file's name.
pub const SAFETENSORS: &str = "model.safetensors";

/// What can go wrong with an export or its use.
#[derive(Debug, Error)]
pub enum ExportError {
	/// A file could not be read or written.
	#[error("{path}: {source}")]
	Io {
		/// The file.
		path: PathBuf,
		/// Why.
		#[source]
		source: std::io::Error,
	},
	/// The model card is not one.
	#[error("{path}: not a model card: {reason}")]
	Card {
		/// The file.
		path: PathBuf,
		/// Why.
		reason: String,
	},
	/// The state does not hold the spec's model.
	#[error(transparent)]
	Model(#[from] ModelError),
	/// SafeTensors could not be written.
	/// This model cannot be exported yet.
	#[error("{0}")]
	Unsupported(&'static str),
	#[error("writing SafeTensors: {0}")]
	SafeTensors(String),
	/// Evaluation failed.
	#[error(transparent)]
	Eval(#[from] TrainError),
	/// The dataset is not the model's kind of input.
	#[error("the model takes {model} features and tells {classes} classes; the dataset has {features} features and {data_classes} classes")]
	Mismatch {
		/// The model's input width.
		model: u32,
		/// The model's output width.
		classes: u32,
		/// The dataset's features.
		features: u32,
		/// The dataset's classes.
		data_classes: u32,
	},
}

/// What a model is and where it came from (`model-card.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
	/// `mlp`: `Linear` layers with ReLU between them; `graph`: the layers of `layers` (a
	/// convolutional net, ...).
	pub architecture: String,
	/// An MLP's input width, hidden widths, classes; a graph's input values and outputs.
	pub widths: Vec<u32>,
	/// A graph's input image (channels, height, width) and layers, in order.
	#[serde(default)]
	pub layers: Option<GraphCard>,
	/// The task it was trained for, when known.
	pub task: Option<u64>,
	/// The training state it was taken from (`h_N` on chain), `0x` hex.
	pub final_state: String,
	/// The hash of its parameters (the state hash of the parameter tensors), `0x` hex.
	pub model_hash: String,
	/// How it was trained.
	pub training: TrainingCard,
	/// What it was trained on.
	pub dataset: DatasetCard,
	/// The files: the burn record and the SafeTensors file, and their layouts.
	pub files: FilesCard,
}

/// A graph model: what PyTorch's `nn.Sequential` of the same layers is, the SafeTensors
/// names following its indices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphCard {
	/// Channels, height, width of one input (its features, channel-major).
	pub input: [u32; 3],
	/// The layers, each as its spec writes it (`Conv2d { out_channels: 8, ... }`).
	pub layers: Vec<String>,
	/// The model exactly, SCALE-encoded, `0x` hex (what `load` reads).
	pub scale: String,
}

/// How a model was trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingCard {
	/// `sgd` or `adam`, with their hyperparameters.
	pub optimizer: String,
	/// Samples per step.
	pub batch_size: u32,
	/// Steps.
	pub steps: u32,
	/// The seed of initialization and batch order.
	pub seed: u64,
	/// The loss.
	pub loss: String,
}

/// What a model was trained on, and how to prepare new inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetCard {
	/// The dataset's root, `0x` hex.
	pub root: String,
	/// Its samples.
	pub samples: u32,
	/// Features a sample (the model's input width).
	pub features: u32,
	/// Classes (the model's output width); 0 for a regression (one output, a real-valued
	/// target).
	pub classes: u32,
	/// The manifest's hash, `0x` hex.
	pub manifest: String,
	/// Where the samples came from (`csv`, `npy`, `images`, ...), when the manifest is known.
	pub source: Option<String>,
	/// The features' names, when known.
	pub feature_names: Vec<String>,
	/// The class names in output order, when known (else the class ids are the names).
	pub class_names: Vec<String>,
	/// A regression's target, by name (a CSV column's), when known.
	#[serde(default)]
	pub target: Option<String>,
	/// What to do to a raw input before the model sees it; `None` when the manifest is not
	/// known here.
	pub preprocessing: Option<PreprocessingCard>,
}

/// [`Preprocessing`], for people and other programs. Externally tagged (`{"scale": {...}}`):
/// serde reads an internally tagged enum's numbers through a buffer that breaks when another
/// crate of the build turns on `serde_json`'s `arbitrary_precision` (the node's crates do).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreprocessingCard {
	/// Use the values as they are.
	None,
	/// Multiply each value by `factor`.
	Scale {
		/// The factor.
		factor: f32,
	},
	/// `(x - min) / (max - min)` per feature (`0` where they are equal).
	MinMax {
		/// Each feature's minimum.
		min: Vec<f32>,
		/// Each feature's maximum.
		max: Vec<f32>,
	},
	/// Decode the image, convert it to grey or RGB, resize it to `width x height` (triangle
	/// filter), read it channel-major (each channel's plane row by row, R, G, B) and multiply
	/// by `1/255`.
	Image {
		/// Pixels a row.
		width: u32,
		/// Rows.
		height: u32,
		/// Grey (one channel) or RGB.
		grey: bool,
	},
}

impl From<&Preprocessing> for PreprocessingCard {
	fn from(p: &Preprocessing) -> Self {
		let f = |v: &[trainet_primitives::task::F32Bits]| v.iter().map(|b| b.to_f32()).collect();
		match p {
			Preprocessing::None => Self::None,
			Preprocessing::Scale(s) => Self::Scale { factor: s.to_f32() },
			Preprocessing::MinMax { min, max } => Self::MinMax { min: f(min), max: f(max) },
			Preprocessing::Image { width, height, grey } => {
				Self::Image { width: *width, height: *height, grey: *grey }
			}
		}
	}
}

/// The files of an export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilesCard {
	/// The burn record (`Mlp` of `Linear` layers, weights `[in, out]`; for a graph,
	/// `GraphNet` of burn's own layers).
	pub burn_record: Option<String>,
	/// The SafeTensors file.
	pub safetensors: String,
	/// The SafeTensors layout.
	pub safetensors_layout: String,
}

/// An exported model, read back.
pub struct Exported {
	/// Its card.
	pub card: ModelCard,
	/// Its parameters, in state order.
	pub params: Vec<Matrix>,
}

fn hex(h: &H256) -> String {
	format!("{h:?}")
}

fn optimizer_name(o: &Optimizer) -> String {
	match o {
		Optimizer::Sgd { learning_rate, momentum } => format!(
			"sgd (learning rate {}, momentum {})",
			learning_rate.to_f32(),
			momentum.to_f32()
		),
		Optimizer::Adam { learning_rate, beta1, beta2, epsilon } => format!(
			"adam (learning rate {}, beta1 {}, beta2 {}, epsilon {})",
			learning_rate.to_f32(),
			beta1.to_f32(),
			beta2.to_f32(),
			epsilon.to_f32()
		),
		Optimizer::AdamW { learning_rate, beta1, beta2, epsilon, weight_decay } => format!(
			"adamw (learning rate {}, beta1 {}, beta2 {}, epsilon {}, weight decay {})",
			learning_rate.to_f32(),
			beta1.to_f32(),
			beta2.to_f32(),
			epsilon.to_f32(),
			weight_decay.to_f32()
		),
	}
}

/// Writes the model of `spec` whose parameters lead `state` (the final state of a run or task
/// `task`) into `dir`: the burn record, the SafeTensors file and the card. `manifest` is the
/// dataset's, when this worker has it (its hash must be the spec's). Returns the card.
pub fn export(
	spec: &TrainingSpec,
	state: &[Matrix],
	manifest: Option<&Manifest>,
	task: Option<u64>,
	dir: &Path,
) -> Result<ModelCard, ExportError> {
	let io = |path: &Path, source| ExportError::Io { path: path.into(), source };
	let (input, layers) = spec.model.graph();
	let outputs = spec.model.shapes().map_err(|_| ExportError::Unsupported("an invalid model"))?;
	let outputs = outputs.last().map(|s| s.values()).unwrap_or(0);
	let params = layers.iter().filter(|l| l.has_params()).count().saturating_mul(2);
	let parameters = state.get(..params).unwrap_or(state);
	std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
	let (widths, graph, record, layout) = match &spec.model {
		Model::Mlp { widths, .. } => {
			let device = Default::default();
			Mlp::<burn::backend::NdArray>::from_state(widths, parameters, &device)?
				.save(&dir.join(RECORD))?;
			write_safetensors(&mlp_tensors(parameters), &dir.join(SAFETENSORS))?;
			let layout = "layers.{l}.weight: [out, in], layers.{l}.bias: [out], f32 (PyTorch's \
			              nn.Linear); the burn record keeps burn's [in, out]";
			(widths.to_vec(), None, Some(RECORD.to_string()), layout)
		}
		Model::Graph { .. } => {
			let device = Default::default();
			GraphNet::<burn::backend::NdArray>::from_owned_state(
				&spec.model,
				parameters.to_vec(),
				&device,
			)?
			.save(&dir.join(RECORD))?;
			write_safetensors(&graph_tensors(&layers, parameters)?, &dir.join(SAFETENSORS))?;
			let graph = GraphCard {
				input: [input.channels, input.height, input.width],
				layers: layers.iter().map(|l| format!("{l:?}")).collect(),
				scale: sp_core::bytes::to_hex(&spec.model.encode(), false),
			};
			let layout = "{i}.weight, {i}.bias for layer i (as indexed in nn.Sequential of the \
			              same layers): Conv2d [out_channels, channels, k, k], Linear [out, in], \
			              biases [out]; Embedding {i}.weight [vocab, dim] (nn.Embedding) and \
			              {i}.position [context, dim]; f32. The burn record is \
			              trainet_worker::graph_model::GraphNet (burn's Linear [in, out], \
			              Conv2d, LayerNorm, Embedding and a position table, for the layers \
			              with parameters in order)";
			(vec![input.values(), outputs], Some(graph), Some(RECORD.to_string()), layout)
		}
	};
	let manifest = manifest.filter(|m| m.hash() == spec.dataset.manifest);
	let d = &spec.dataset;
	let card = ModelCard {
		architecture: if graph.is_some() { "graph".into() } else { "mlp".into() },
		widths,
		layers: graph,
		task,
		final_state: hex(&state_hash(state)),
		model_hash: hex(&state_hash(parameters)),
		training: TrainingCard {
			optimizer: optimizer_name(&spec.optimizer),
			batch_size: spec.batch_size,
			steps: spec.steps,
			seed: spec.seed,
			loss: match spec.loss {
				Loss::SoftmaxCrossEntropy => "softmax cross-entropy".into(),
				Loss::MeanSquaredError => "mean squared error".into(),
			},
		},
		dataset: DatasetCard {
			root: hex(&d.root),
			samples: d.samples,
			features: d.features,
			classes: d.classes,
			manifest: hex(&d.manifest),
			source: manifest.map(|m| m.source.clone()),
			feature_names: manifest.map(|m| m.feature_names.clone()).unwrap_or_default(),
			class_names: manifest
				.and_then(|m| m.class_names().map(<[String]>::to_vec))
				.unwrap_or_default(),
			target: manifest.and_then(|m| match &m.labels {
				Labels::Target(name) => Some(name.clone()),
				Labels::Classes(_) => None,
			}),
			preprocessing: manifest.map(|m| (&m.preprocessing).into()),
		},
		files: FilesCard {
			burn_record: record,
			safetensors: SAFETENSORS.into(),
			safetensors_layout: layout.into(),
		},
	};
	let text = serde_json::to_string_pretty(&card)
		.map_err(|e| ExportError::Card { path: dir.join(CARD), reason: e.to_string() })?;
	let path = dir.join(CARD);
	crate::files::write_atomically(&path, text.as_bytes())
		.map_err(|e| ExportError::Io { path: e.path, source: e.source })?;
	Ok(card)
}

/// A named tensor for SafeTensors: its name, shape and values.
type Named = (String, Vec<usize>, Vec<f32>);

/// `m` (`[in, out]`) as `[out, in]`.
fn transposed(m: &Matrix) -> Vec<f32> {
	(0..m.cols).flat_map(|c| m.col(c).collect::<Vec<_>>()).collect()
}

/// An MLP's parameters, named as burn's `Mlp` names them, in PyTorch's `nn.Linear` layout
/// (weights `[out, in]`).
fn mlp_tensors(params: &[Matrix]) -> Vec<Named> {
	params
		.iter()
		.enumerate()
		.map(|(i, m)| {
			let (l, bias) = (i / 2, i % 2 == 1);
			let name = format!("layers.{l}.{}", if bias { "bias" } else { "weight" });
			if bias {
				(name, vec![m.cols as usize], m.data.clone())
			} else {
				(name, vec![m.cols as usize, m.rows as usize], transposed(m))
			}
		})
		.collect()
}

/// A graph's parameters, named as PyTorch's `nn.Sequential` of the same layers names them
/// (`{index}.weight`, `{index}.bias`), in PyTorch's layouts.
fn graph_tensors(layers: &[Layer], params: &[Matrix]) -> Result<Vec<Named>, ExportError> {
	let mut tensors = Vec::new();
	let mut next = params.iter();
	let mut take = || next.next().ok_or(ExportError::Unsupported("a state without parameters"));
	for (i, layer) in layers.iter().enumerate() {
		let (w, b) = match layer {
			l if l.has_params() => (take()?, take()?),
			_ => continue,
		};
		let (bias_name, bias_shape) = match layer {
			// A sequence model's position table: `[context, dim]`.
			Layer::Embedding { .. } => ("position", vec![b.rows as usize, b.cols as usize]),
			_ => ("bias", vec![b.cols as usize]),
		};
		let weight = match layer {
			Layer::LayerNorm => (vec![w.cols as usize], w.data.clone()),
			// `[vocab, dim]`, as `nn.Embedding` holds it.
			Layer::Embedding { .. } => (vec![w.rows as usize, w.cols as usize], w.data.clone()),
			Layer::Conv2d { kernel, .. } => {
				let k = *kernel as usize;
				let channels = w.cols as usize / (k * k).max(1);
				(vec![w.rows as usize, channels, k, k], w.data.clone())
			}
			_ => (vec![w.cols as usize, w.rows as usize], transposed(w)),
		};
		tensors.push((format!("{i}.weight"), weight.0, weight.1));
		tensors.push((format!("{i}.{bias_name}"), bias_shape, b.data.clone()));
	}
	Ok(tensors)
}

/// The named tensors as a SafeTensors file at `path`.
fn write_safetensors(named: &[Named], path: &Path) -> Result<(), ExportError> {
	use safetensors::tensor::{Dtype, TensorView};
	let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = named
		.iter()
		.map(|(n, shape, values)| {
			(n.clone(), shape.clone(), values.iter().flat_map(|v| v.to_le_bytes()).collect())
		})
		.collect();
	let views = tensors
		.iter()
		.map(|(name, shape, bytes)| {
			TensorView::new(Dtype::F32, shape.clone(), bytes)
				.map(|v| (name.clone(), v))
				.map_err(|e| ExportError::SafeTensors(e.to_string()))
		})
		.collect::<Result<Vec<_>, _>>()?;
	let bytes =
		safetensors::serialize(views, None).map_err(|e| ExportError::SafeTensors(e.to_string()))?;
	crate::files::write_atomically(path, &bytes)
		.map_err(|e| ExportError::Io { path: e.path, source: e.source })
}

/// Reads an export folder back: its card and, from the burn record, its parameters.
pub fn load(dir: &Path) -> Result<Exported, ExportError> {
	let path = dir.join(CARD);
	let text = std::fs::read_to_string(&path)
		.map_err(|source| ExportError::Io { path: path.clone(), source })?;
	let card: ModelCard = serde_json::from_str(&text)
		.map_err(|e| ExportError::Card { path: path.clone(), reason: e.to_string() })?;
	if let Some(graph) = &card.layers {
		let model = decode_model(&graph.scale)
			.ok_or_else(|| ExportError::Card { path: path.clone(), reason: "bad model".into() })?;
		let params = read_graph(&model, &dir.join(SAFETENSORS))?;
		return Ok(Exported { params, card });
	}
	let device = Default::default();
	let mlp = Mlp::<burn::backend::NdArray>::load(&card.widths, &dir.join(RECORD), &device)?;
	Ok(Exported { params: mlp.to_state(), card })
}

/// The model SCALE-encoded in `hex`, if it is one.
fn decode_model(hex: &str) -> Option<Model> {
	let bytes = sp_core::bytes::from_hex(hex).ok()?;
	Model::decode(&mut &bytes[..]).ok()
}

/// A graph's parameters, in state order, from the SafeTensors file [`graph_tensors`] wrote.
fn read_graph(model: &Model, path: &Path) -> Result<Vec<Matrix>, ExportError> {
	let bytes = std::fs::read(path)
		.map_err(|source| ExportError::Io { path: path.to_path_buf(), source })?;
	let file = safetensors::SafeTensors::deserialize(&bytes)
		.map_err(|e| ExportError::SafeTensors(e.to_string()))?;
	let program = trainet_primitives::program::step_program(&TrainingSpec::example_graph(
		model.clone(),
		Loss::SoftmaxCrossEntropy,
		Optimizer::sgd(0.1, 0.0),
		1,
	));
	let (_, layers) = model.graph();
	let mut params = Vec::new();
	let missing = |name: &str| ExportError::SafeTensors(format!("no tensor {name}"));
	for (i, layer) in layers.iter().enumerate() {
		if !layer.has_params() {
			continue;
		}
		let parts = match layer {
			Layer::Embedding { .. } => ["weight", "position"],
			_ => ["weight", "bias"],
		};
		for part in parts {
			let name = format!("{i}.{part}");
			let t = file.tensor(&name).map_err(|_| missing(&name))?;
			let values: Vec<f32> = t
				.data()
				.chunks_exact(4)
				.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
				.collect();
			let shape = t.shape();
			let shaped = |rows: usize, cols: usize, values: Vec<f32>| {
				Matrix::new(rows as u32, cols as u32, values).map_err(|_| {
					ExportError::SafeTensors(format!("{name}: {} values", rows * cols))
				})
			};
			let m = match (layer, part, shape) {
				(Layer::Embedding { .. }, _, [rows, cols]) => shaped(*rows, *cols, values)?,
				(Layer::Linear { .. }, "weight", [out, inputs]) => {
					let stored = shaped(*out, *inputs, values)?;
					shaped(*inputs, *out, transposed(&stored))?
				}
				(_, _, [out]) if part == "bias" || *layer == Layer::LayerNorm => {
					shaped(1, *out, values)?
				}
				(Layer::Conv2d { .. }, "weight", [out, c, k1, k2]) => {
					shaped(*out, c * k1 * k2, values)?
				}
				_ => return Err(ExportError::SafeTensors(format!("{name} has shape {shape:?}"))),
			};
			params.push(m);
		}
	}
	// The shapes the model's step program gives its parameters.
	let program = program.map_err(|_| ExportError::Unsupported("an invalid model"))?;
	let expected = program.state_shapes.get(..params.len()).unwrap_or_default();
	if params.iter().map(|m| (m.rows, m.cols)).ne(expected.iter().copied()) {
		return Err(ExportError::SafeTensors("tensor shapes are not the model's".into()));
	}
	Ok(params)
}

impl Exported {
	/// The model the card describes.
	pub fn model(&self) -> Model {
		if let Some(model) = self.card.layers.as_ref().and_then(|g| decode_model(&g.scale)) {
			return model;
		}
		Model::Mlp {
			widths: trainet_primitives::task::LayerWidths::truncate_from(self.card.widths.clone()),
			activation: trainet_primitives::task::Activation::Relu,
		}
	}

	/// The figure of [`Self::evaluate`] (an accuracy, or a mean squared error).
	pub fn accuracy(&self, data: &Dataset) -> Result<f32, ExportError> {
		Ok(self.evaluate(data)?.value())
	}

	/// How this model does on `data` (the forward pass with RepOps, as in training): the
	/// share it classifies correctly, or its mean squared error on targets.
	pub fn evaluate(&self, data: &Dataset) -> Result<Evaluation, ExportError> {
		// The classes of the dataset it was trained on (0: a regression's targets).
		let (model, classes) =
			(self.card.widths.first().copied().unwrap_or(0), self.card.dataset.classes);
		if data.features != model || data.classes != classes {
			return Err(ExportError::Mismatch {
				model,
				classes,
				features: data.features,
				data_classes: data.classes,
			});
		}
		Ok(evaluate_of(&self.model(), &self.params, data)?)
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	/// Every preprocessing survives the card's JSON, with `serde_json`'s
	/// `arbitrary_precision` on (as in the workspace's build, where an internally tagged enum
	/// could not read its numbers back).
	#[test]
	fn every_preprocessing_reads_back_from_the_card() {
		for p in [
			PreprocessingCard::None,
			PreprocessingCard::Scale { factor: 0.0625 },
			PreprocessingCard::MinMax { min: vec![-1.5, 0.0], max: vec![2.25, 1.0] },
			PreprocessingCard::Image { width: 8, height: 8, grey: true },
		] {
			let text = serde_json::to_string_pretty(&Some(p.clone())).unwrap();
			let back: Option<PreprocessingCard> = serde_json::from_str(&text).unwrap();
			assert_eq!(back, Some(p), "{text}");
		}
	}
}
