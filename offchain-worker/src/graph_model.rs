//! A graph model (a convolutional net, a transformer, any [`Model::Graph`]) as a burn
//! `Module` made of burn's own layers: `Linear`, `Conv2d`, `LayerNorm` and `Embedding` (with a
//! learned table of positions beside it), holding the parameters of the layers that have
//! them, in the spec's order. The architecture (which layers without parameters sit between
//! them, residual blocks, the context) is the spec's [`Model`], which every method takes.
//!
//! - Training ([`crate::train::burn_step_on`]) runs this module on `Autodiff<B>` with every
//!   operation a RepOps kernel: the step program's forward operations in its order, each
//!   through [`RepOpsBackend::repops_op`], whose backward pass runs the program's gradient
//!   kernels; so burn's autodiff gives the program's bits.
//! - [`GraphNet::forward`] is plain burn (burn's `conv2d`, pools, `LayerNorm`, `matmul`,
//!   `softmax`, ...) on any backend: what a burn user runs on the saved record. Its rounding is
//!   the backend's, so its outputs are close to, not the bits of, the RepOps forward pass.
//! - [`GraphNet::save`] / [`GraphNet::load`]: a burn record (`NamedMpkFileRecorder`, full
//!   precision); the parameters survive it bit for bit.

use std::path::{Path, PathBuf};

use burn::{
	module::{Module, Param},
	nn::{conv::Conv2d, Embedding, LayerNorm, LayerNormConfig, Linear, PaddingConfig2d},
	tensor::{activation, backend::Backend, module, Bool, Int, Tensor, TensorData},
};
use trainet_primitives::{
	program::step_program,
	repops::{image::ImageShape, Matrix},
	task::{Layer, Loss, Model, Optimizer, TrainingSpec},
};

use crate::model::{ModelError, Recorder};

/// A sequence model's first layer: the token table (burn's `Embedding`, `[vocab, dim]`) and
/// the learned positions (`[context, dim]`).
#[derive(Module, Debug)]
pub struct TokenEmbedding<B: Backend> {
	/// The token table.
	pub tokens: Embedding<B>,
	/// The position table.
	pub positions: Param<Tensor<B, 2>>,
}

/// One layer with parameters.
#[derive(Module, Debug)]
pub enum GraphLayer<B: Backend> {
	/// A dense layer (weights `[in, out]`, as the state holds them).
	Linear(Linear<B>),
	/// A convolution (filters `[out, in, k, k]`).
	Conv2d(Conv2d<B>),
	/// A layer normalization (scale and shift `[width]`).
	LayerNorm(LayerNorm<B>),
	/// A sequence model's embedding.
	Embedding(TokenEmbedding<B>),
}

/// The layers with parameters of a graph model, in the spec's order.
#[derive(Module, Debug)]
pub struct GraphNet<B: Backend> {
	/// The layers with parameters.
	pub layers: Vec<GraphLayer<B>>,
}

fn bad(reason: impl Into<String>) -> ModelError {
	ModelError::Graph { reason: reason.into() }
}

/// A `[rows, cols]` tensor of a matrix's values.
fn tensor2<B: Backend>(m: Matrix, device: &B::Device) -> Tensor<B, 2> {
	let shape = [m.rows as usize, m.cols as usize];
	Tensor::from_data(TensorData::new(m.data, shape), device)
}

/// A `[n]` tensor of a `1 x n` row's values.
fn tensor1<B: Backend>(m: Matrix, device: &B::Device) -> Tensor<B, 1> {
	let n = m.data.len();
	Tensor::from_data(TensorData::new(m.data, [n]), device)
}

/// A tensor's values as a `rows x cols` matrix.
fn matrix<B: Backend, const D: usize>(t: Tensor<B, D>, rows: usize, cols: usize) -> Matrix {
	let data: Vec<f32> = t.into_data().to_vec().unwrap_or_default();
	Matrix { rows: rows as u32, cols: cols as u32, data }
}

impl<B: Backend> GraphNet<B> {
	/// The module whose parameters are `params`, the parameter tensors of a RepOps training
	/// state of `model` (in state order, each in the shape the step program gives it).
	pub fn from_owned_state(
		model: &Model,
		params: Vec<Matrix>,
		device: &B::Device,
	) -> Result<Self, ModelError> {
		let (_, layers) = model.graph();
		let mut params = params.into_iter();
		let mut out = Vec::new();
		for (i, layer) in layers.iter().enumerate() {
			if !layer.has_params() {
				continue;
			}
			let (Some(w), Some(b)) = (params.next(), params.next()) else {
				return Err(bad(format!("no parameters for layer {i}")));
			};
			let (rows, cols) = (w.rows as usize, w.cols as usize);
			if b.rows as usize * b.cols as usize == 0 || rows * cols == 0 {
				return Err(bad(format!("layer {i} has empty parameters")));
			}
			out.push(match *layer {
				Layer::Linear { .. } => GraphLayer::Linear(Linear {
					weight: Param::from_tensor(tensor2(w, device)),
					bias: Some(Param::from_tensor(tensor1(b, device))),
				}),
				Layer::Conv2d { kernel, stride, padding, .. } => {
					let (k, s, p) = (kernel as usize, stride as usize, padding as usize);
					let channels = cols / (k * k).max(1);
					if channels * k * k != cols {
						return Err(bad(format!("layer {i}: filters of {cols} values")));
					}
					let weight = tensor2::<B>(w, device).reshape([rows, channels, k, k]);
					GraphLayer::Conv2d(Conv2d {
						weight: Param::from_tensor(weight),
						bias: Some(Param::from_tensor(tensor1(b, device))),
						stride: [s, s],
						kernel_size: [k, k],
						dilation: [1, 1],
						groups: 1,
						padding: PaddingConfig2d::Explicit(p, p, p, p),
					})
				}
				Layer::LayerNorm => {
					let mut norm = LayerNormConfig::new(cols).init(device);
					norm.gamma = Param::from_tensor(tensor1(w, device));
					norm.beta = Some(Param::from_tensor(tensor1(b, device)));
					GraphLayer::LayerNorm(norm)
				}
				Layer::Embedding { .. } => GraphLayer::Embedding(TokenEmbedding {
					tokens: Embedding { weight: Param::from_tensor(tensor2(w, device)) },
					positions: Param::from_tensor(tensor2(b, device)),
				}),
				_ => return Err(bad(format!("layer {i} has no parameters"))),
			});
		}
		if params.next().is_some() {
			return Err(bad("more parameter tensors than the model's layers take"));
		}
		Ok(Self { layers: out })
	}

	/// The module of `model` with every parameter zero (to load a record into).
	pub fn new(model: &Model, device: &B::Device) -> Result<Self, ModelError> {
		let spec = TrainingSpec::example_graph(
			model.clone(),
			Loss::SoftmaxCrossEntropy,
			Optimizer::sgd(0.1, 0.0),
			1,
		);
		let program = step_program(&spec).map_err(|e| bad(format!("an invalid model: {e}")))?;
		let zeros = program
			.state_shapes
			.iter()
			.take(program.params as usize)
			.map(|(r, c)| Matrix::zeros(*r, *c).map_err(|e| bad(format!("{e:?}"))))
			.collect::<Result<Vec<_>, _>>()?;
		Self::from_owned_state(model, zeros, device)
	}

	/// The parameters as the step program holds them (2-D, in state order), each a view of
	/// the module's own (gradients flow through to it).
	pub fn params_2d(&self) -> Vec<Tensor<B, 2>> {
		let row = |t: Tensor<B, 1>| {
			let n = t.dims()[0];
			t.reshape([1, n])
		};
		let mut out = Vec::with_capacity(self.layers.len() * 2);
		for layer in &self.layers {
			match layer {
				GraphLayer::Linear(l) => {
					out.push(l.weight.val());
					out.extend(l.bias.as_ref().map(|b| row(b.val())));
				}
				GraphLayer::Conv2d(c) => {
					let [o, ch, k1, k2] = c.weight.dims();
					out.push(c.weight.val().reshape([o, ch * k1 * k2]));
					out.extend(c.bias.as_ref().map(|b| row(b.val())));
				}
				GraphLayer::LayerNorm(n) => {
					out.push(row(n.gamma.val()));
					out.extend(n.beta.as_ref().map(|b| row(b.val())));
				}
				GraphLayer::Embedding(e) => {
					out.push(e.tokens.weight.val());
					out.push(e.positions.val());
				}
			}
		}
		out
	}

	/// The parameters back in RepOps form, in state order.
	pub fn to_state(&self) -> Vec<Matrix> {
		self.params_2d()
			.into_iter()
			.map(|t| {
				let [r, c] = t.dims();
				matrix(t, r, c)
			})
			.collect()
	}

	/// The logits of a batch `[n, inputs]` (images as channel-major rows; a sequence model's
	/// rows its `context + 1` token ids, of which the first `context` are read), one row per
	/// sample (per token for a sequence model), in plain burn. Dropout is off (inference).
	pub fn forward(&self, model: &Model, x: Tensor<B, 2>) -> Result<Tensor<B, 2>, ModelError> {
		let (input, layers) = model.graph();
		let device = x.device();
		let [n, _] = x.dims();
		let context = model.context().map(|t| t as usize);
		let mut params = self.layers.iter();
		let mut shape = input;
		let mut h = x;
		// Open residual blocks: their last layer and their input.
		let mut open: Vec<(usize, Tensor<B, 2>)> = Vec::new();
		for (i, layer) in layers.iter().enumerate() {
			let mut next = || params.next().ok_or_else(|| bad(format!("no module for layer {i}")));
			let image = |h: Tensor<B, 2>, s: ImageShape| {
				let (c, hh, w) = (s.channels as usize, s.height as usize, s.width as usize);
				let [rows, _] = h.dims();
				h.reshape([rows, c, hh, w])
			};
			let flat = |h: Tensor<B, 4>| {
				let [rows, c, hh, w] = h.dims();
				(
					h.reshape([rows, c * hh * w]),
					ImageShape { channels: c as u32, height: hh as u32, width: w as u32 },
				)
			};
			(h, shape) = match (*layer, next_if(layer, &mut next)?) {
				(Layer::Linear { out }, Some(GraphLayer::Linear(l))) => {
					(l.forward(h), ImageShape::flat(out))
				}
				(Layer::Conv2d { .. }, Some(GraphLayer::Conv2d(c))) => {
					flat(c.forward(image(h, shape)))
				}
				(Layer::MaxPool2d { kernel, stride }, None) => {
					let (k, s) = (kernel as usize, stride as usize);
					flat(module::max_pool2d(image(h, shape), [k, k], [s, s], [0, 0], [1, 1], false))
				}
				(Layer::AvgPool2d { kernel, stride }, None) => {
					let (k, s) = (kernel as usize, stride as usize);
					flat(module::avg_pool2d(image(h, shape), [k, k], [s, s], [0, 0], false, false))
				}
				(Layer::Relu, None) => (activation::relu(h), shape),
				(Layer::Gelu, None) => (gelu_tanh(h), shape),
				(Layer::Dropout { .. }, None) => (h, shape),
				(Layer::Flatten, None) => (h, ImageShape::flat(shape.values())),
				(Layer::LayerNorm, Some(GraphLayer::LayerNorm(norm))) => (norm.forward(h), shape),
				(Layer::Residual { layers: k }, None) => {
					open.push((i + k as usize, h.clone()));
					(h, shape)
				}
				(Layer::Embedding { dim, .. }, Some(GraphLayer::Embedding(e))) => {
					let t =
						context.ok_or_else(|| bad("an embedding in a model without context"))?;
					let ids: Tensor<B, 2, Int> = h.slice([0..n, 0..t]).int();
					let tokens = e.tokens.forward(ids); // [n, t, dim]
					let pos = e.positions.val().reshape([1, t, dim as usize]);
					((tokens + pos).reshape([n * t, dim as usize]), ImageShape::flat(dim))
				}
				(Layer::Attention { heads }, None) => {
					let t = context.ok_or_else(|| bad("attention in a model without context"))?;
					let d = shape.values() as usize / 3;
					(attention(h, n, t, d, heads as usize, &device), ImageShape::flat(d as u32))
				}
				(l, _) => return Err(bad(format!("layer {i} ({l:?}) does not match the module"))),
			};
			while let Some((end, skip)) = open.last() {
				if *end != i {
					break;
				}
				h = h + skip.clone();
				open.pop();
			}
		}
		Ok(h)
	}

	/// Saves the model as a burn record at `path` (burn adds `.mpk`); returns the file.
	pub fn save(self, path: &Path) -> Result<PathBuf, ModelError> {
		let file = path.with_extension("mpk");
		self.save_file(path.to_path_buf(), &Recorder::new())
			.map_err(|e| ModelError::Record { path: file.clone(), reason: e.to_string() })?;
		Ok(file)
	}

	/// Loads a record saved by [`Self::save`] into the module of `model`.
	pub fn load(model: &Model, path: &Path, device: &B::Device) -> Result<Self, ModelError> {
		Self::new(model, device)?
			.load_file(path.to_path_buf(), &Recorder::new(), device)
			.map_err(|e| ModelError::Record { path: path.into(), reason: e.to_string() })
	}
}

/// The module of `layer` if it has parameters (`next` gives it), `None` if not.
fn next_if<'a, B: Backend>(
	layer: &Layer,
	next: &mut impl FnMut() -> Result<&'a GraphLayer<B>, ModelError>,
) -> Result<Option<&'a GraphLayer<B>>, ModelError> {
	if layer.has_params() {
		next().map(Some)
	} else {
		Ok(None)
	}
}

/// GELU, tanh form (the spec's; burn's `gelu` is the erf form).
fn gelu_tanh<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
	use trainet_primitives::repops::layers::{GELU_A, GELU_C};
	let inner = (x.clone() + x.clone().powf_scalar(3.0).mul_scalar(GELU_A)).mul_scalar(GELU_C);
	x.clone().mul_scalar(0.5) * (inner.tanh() + 1.0)
}

/// Causal multi-head self-attention of `n` sequences of `t` tokens on rows `q | k | v` of
/// width `3d`, `heads` heads: `[n t, d]`.
fn attention<B: Backend>(
	qkv: Tensor<B, 2>,
	n: usize,
	t: usize,
	d: usize,
	heads: usize,
	device: &B::Device,
) -> Tensor<B, 2> {
	let dh = d / heads.max(1);
	let split = |part: usize| {
		qkv.clone()
			.slice([0..n * t, part * d..(part + 1) * d])
			.reshape([n, t, heads, dh])
			.swap_dims(1, 2)
	};
	let (q, k, v) = (split(0), split(1), split(2));
	let scores = q.matmul(k.transpose()).mul_scalar(1.0 / (dh as f32).sqrt());
	let future: Tensor<B, 2, Bool> = Tensor::<B, 2, Int>::ones([t, t], device).triu(1).bool();
	let scores =
		scores.mask_fill(future.reshape([1, 1, t, t]).expand([n, heads, t, t]), f32::NEG_INFINITY);
	let a = activation::softmax(scores, 3).matmul(v);
	a.swap_dims(1, 2).reshape([n * t, d])
}

#[cfg(test)]
mod tests {
	use super::*;
	use burn::backend::NdArray;
	use trainet_primitives::{
		program::initial_state,
		repops::SplitMix64,
		task::{F32Bits, Layers},
	};

	/// Every layer kind the plain-burn forward pass has (GELU's tanh form, average pools,
	/// strided padded convolutions, residual blocks with layer norms, dropout off) gives the
	/// RepOps forward pass's outputs to within float rounding; the state survives the module
	/// bit for bit.
	#[test]
	fn plain_burn_gives_the_repops_forward_pass() {
		let layers = vec![
			Layer::Conv2d { out_channels: 3, kernel: 3, stride: 2, padding: 1 },
			Layer::Gelu,
			Layer::AvgPool2d { kernel: 2, stride: 1 },
			Layer::MaxPool2d { kernel: 2, stride: 1 },
			Layer::Flatten,
			Layer::Linear { out: 8 },
			Layer::Residual { layers: 3 },
			Layer::LayerNorm,
			Layer::Dropout { p: F32Bits::from_f32(0.5) },
			Layer::Linear { out: 8 },
			Layer::Relu,
			Layer::Linear { out: 4 },
		];
		let model = Model::Graph {
			input: ImageShape { channels: 2, height: 9, width: 7 },
			layers: Layers::truncate_from(layers),
		};
		let mut spec = TrainingSpec::example_graph(
			model.clone(),
			Loss::SoftmaxCrossEntropy,
			Optimizer::adam(0.01),
			5,
		);
		spec.dataset.features = 126;
		spec.dataset.classes = 4;
		let program = step_program(&spec).unwrap();
		let mut params = initial_state(&spec, &program).unwrap();
		params.truncate(program.params as usize);
		// Layer norms and biases away from 1 and 0.
		let mut rng = SplitMix64::new(3);
		for m in params.iter_mut() {
			for v in m.data.iter_mut() {
				*v += rng.next_unit() * 0.2 - 0.1;
			}
		}
		let device = Default::default();
		let net = GraphNet::<NdArray>::from_owned_state(&model, params.clone(), &device).unwrap();
		assert_eq!(net.to_state(), params);
		let x: Vec<f32> = (0..5 * 126).map(|_| rng.next_unit() * 2.0 - 1.0).collect();
		let xm = Matrix::new(5, 126, x.clone()).unwrap();
		let ours = crate::train::forward(&model, &params, &xm).unwrap();
		let input = Tensor::<NdArray, 2>::from_data(TensorData::new(x, [5, 126]), &device);
		let theirs: Vec<f32> = net.forward(&model, input).unwrap().into_data().to_vec().unwrap();
		assert_eq!(theirs.len(), ours.data.len());
		for (a, b) in ours.data.iter().zip(&theirs) {
			assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
		}
		// A state of another model is refused.
		let err = GraphNet::<NdArray>::from_owned_state(&model, params[..3].to_vec(), &device);
		assert!(err.is_err());
	}
}
