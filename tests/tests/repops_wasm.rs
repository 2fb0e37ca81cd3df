//! Native versus wasm: the runtime's RepOps (compiled to wasm and run by the node's executor
//! through the `TrainetApi_execute_op` runtime API) give the same bits as the native reference
//! for every operator of the step program, on random shapes and values with subnormals,
//! infinities, NaNs of any payload and signed zeros (the image operators on random
//! geometries too), and for every operation of real MLP and CNN training steps and of a net
//! with a residual block, layer normalization, GELU and dropout, and of a transformer
//! (embeddings, causal attention, the per-token loss), with SGD, Adam and AdamW, classifying
//! and regressing.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use codec::{Decode, Encode};
use serde_json::json;
use trainet_e2e::{Node, NodeConfig};
use trainet_primitives::{
	program::{self, execute_bits, DropoutMask, Op, OpKind, Source},
	repops::{
		image::{Conv, ImageShape, Pool},
		sequence::{Attention, Tokens},
		Matrix, ShapeError, SplitMix64, TensorBits,
	},
	task::{F32Bits, Layer, Layers, Loss, Model, Optimizer, TrainingSpec},
};

/// Bit patterns at the corners of binary32.
const SPECIAL: [u32; 14] = [
	0x0000_0000,
	0x8000_0000,
	0x0000_0001,
	0x807f_ffff,
	0x0080_0000,
	0x7f7f_ffff,
	0xff7f_ffff,
	0x7f80_0000,
	0xff80_0000,
	0x7fc0_0000,
	0x7fc0_0001,
	0xffc0_0000,
	0x7f80_0001,
	0x3f80_0000,
];

fn values(rng: &mut SplitMix64, n: u32) -> Vec<u32> {
	(0..n)
		.map(|_| {
			let r = rng.next_u64();
			match r % 12 {
				0 => SPECIAL[(r >> 8) as usize % SPECIAL.len()],
				1 => (r >> 32) as u32,
				_ => ((rng.next_unit() - 0.5) * 6.0).to_bits(),
			}
		})
		.collect()
}

fn tensor(rng: &mut SplitMix64, rows: u32, cols: u32) -> TensorBits {
	TensorBits { rows, cols, bits: values(rng, rows * cols) }
}

fn sgd() -> Optimizer {
	Optimizer::sgd(0.05, 0.9)
}

fn adam() -> Optimizer {
	Optimizer::Adam {
		learning_rate: F32Bits::from_f32(0.001),
		beta1: F32Bits::from_f32(0.9),
		beta2: F32Bits::from_f32(0.999),
		epsilon: F32Bits::from_f32(1e-8),
	}
}

async fn on_chain(
	node: &Node,
	spec: &TrainingSpec,
	op: &Op,
	inputs: &[TensorBits],
	labels: &[u32],
	step: u32,
) -> Result<Result<TensorBits, ShapeError>> {
	let args = (spec, op, inputs, labels, step).encode();
	let hex: String = node
		.rpc(
			"state_call",
			vec![json!("TrainetApi_execute_op"), json!(sp_core::bytes::to_hex(&args, false))],
		)
		.await?;
	let bytes = sp_core::bytes::from_hex(&hex).map_err(|e| anyhow::anyhow!("{e}"))?;
	Ok(Result::<TensorBits, ShapeError>::decode(&mut &bytes[..])?)
}

/// A random sound convolution on images of sides up to `max` (and at most 9).
fn random_conv(rng: &mut SplitMix64, max: u32) -> Conv {
	loop {
		let side = max.min(9);
		let kernel = 1 + rng.next_below(3);
		let g = Conv {
			input: ImageShape {
				channels: 1 + rng.next_below(3),
				height: 1 + rng.next_below(side),
				width: 1 + rng.next_below(side),
			},
			out_channels: 1 + rng.next_below(3),
			kernel,
			stride: 1 + rng.next_below(2),
			padding: rng.next_below(kernel),
		};
		if g.is_valid() {
			return g;
		}
	}
}

/// A random sound pool (overlapping windows or not) on images of sides up to `max`.
fn random_pool(rng: &mut SplitMix64, max: u32) -> Pool {
	let g = random_conv(rng, max);
	loop {
		let p =
			Pool { input: g.input, kernel: 1 + rng.next_below(3), stride: 1 + rng.next_below(3) };
		if p.is_valid() {
			return p;
		}
	}
}

/// Random token shapes: a vocabulary, a context up to 8, a width up to `max`.
fn random_tokens(rng: &mut SplitMix64, max: u32) -> Tokens {
	Tokens {
		vocab: 2 + rng.next_below(max),
		context: 1 + rng.next_below(8),
		dim: 1 + rng.next_below(max),
	}
}

/// A random attention: up to three heads of up to `max / 2` values, a context up to 8.
fn random_attention(rng: &mut SplitMix64, max: u32) -> Attention {
	let heads = 1 + rng.next_below(3);
	let dh = 1 + rng.next_below(max / 2);
	Attention { heads, context: 1 + rng.next_below(8), dim: heads * dh }
}

/// A batch of `rows` samples of `context + 1` values: mostly token ids below `vocab`, the rest
/// any bits (which read as token 0).
fn token_batch(rng: &mut SplitMix64, rows: u32, g: &Tokens) -> TensorBits {
	let n = rows * (g.context + 1);
	let noise = values(rng, n);
	let bits = noise
		.into_iter()
		.map(|b| if rng.next_below(4) > 0 { (rng.next_below(g.vocab) as f32).to_bits() } else { b })
		.collect();
	TensorBits { rows, cols: g.context + 1, bits }
}

/// `kind` with a random geometry, if it is an image or sequence operator.
fn with_geometry(rng: &mut SplitMix64, kind: OpKind, max: u32) -> OpKind {
	match kind {
		OpKind::Embed(_) => OpKind::Embed(random_tokens(rng, max)),
		OpKind::EmbedGrad(_) => OpKind::EmbedGrad(random_tokens(rng, max)),
		OpKind::PositionGrad(_) => OpKind::PositionGrad(random_tokens(rng, max)),
		OpKind::TokenXent(_) | OpKind::TokenXentBackward(_) => {
			let mut g = random_tokens(rng, max);
			g.dim = g.vocab;
			if matches!(kind, OpKind::TokenXent(_)) {
				OpKind::TokenXent(g)
			} else {
				OpKind::TokenXentBackward(g)
			}
		}
		OpKind::Attention(_) => OpKind::Attention(random_attention(rng, max)),
		OpKind::AttentionGrad(_) => OpKind::AttentionGrad(random_attention(rng, max)),
		OpKind::Conv2d(_) => OpKind::Conv2d(random_conv(rng, max)),
		OpKind::Conv2dInputGrad(_) => OpKind::Conv2dInputGrad(random_conv(rng, max)),
		OpKind::Conv2dWeightGrad(_) => OpKind::Conv2dWeightGrad(random_conv(rng, max)),
		OpKind::ConvBiasGrad(_) => OpKind::ConvBiasGrad(random_conv(rng, max)),
		OpKind::MaxPool2d(_) => OpKind::MaxPool2d(random_pool(rng, max)),
		OpKind::MaxPool2dGrad(_) => OpKind::MaxPool2dGrad(random_pool(rng, max)),
		OpKind::AvgPool2d(_) => OpKind::AvgPool2d(random_pool(rng, max)),
		OpKind::AvgPool2dGrad(_) => OpKind::AvgPool2dGrad(random_pool(rng, max)),
		other => other,
	}
}

/// One random instance of `kind` with shapes up to `max`.
fn instance(rng: &mut SplitMix64, kind: OpKind, max: u32) -> (Op, Vec<TensorBits>, Vec<u32>) {
	let kind = with_geometry(rng, kind, max);
	let mut d = || 1 + rng.next_below(max);
	let (m, k, n) = (d(), d(), d());
	let mut rng2 = SplitMix64::new(rng.next_u64());
	let mut rng3 = SplitMix64::new(rng.next_u64());
	let mut tokens = |g: &Tokens| token_batch(&mut rng3, m, g);
	let mut t = |r, c| tensor(&mut rng2, r, c);
	let src = [Source::Batch; 8];
	let (inputs, rows, cols): (Vec<TensorBits>, u32, u32) = match kind {
		OpKind::MatMul => (vec![t(m, k), t(k, n)], m, n),
		OpKind::MatMulTn => (vec![t(k, m), t(k, n)], m, n),
		OpKind::MatMulNt => (vec![t(m, k), t(n, k)], m, n),
		OpKind::BiasAdd => (vec![t(m, n), t(1, n)], m, n),
		OpKind::Relu => (vec![t(m, n)], m, n),
		OpKind::ReluBackward
		| OpKind::Momentum
		| OpKind::SgdStep
		| OpKind::AdamM
		| OpKind::AdamV
		| OpKind::Add
		| OpKind::GeluBackward => (vec![t(m, n), t(m, n)], m, n),
		OpKind::AdamStep | OpKind::AdamWStep => (vec![t(m, n), t(m, n), t(m, n)], m, n),
		OpKind::Gelu | OpKind::Dropout(_) | OpKind::DropoutGrad(_) => (vec![t(m, n)], m, n),
		OpKind::LayerNorm => (vec![t(m, n), t(1, n), t(1, n)], m, n),
		OpKind::LayerNormInputGrad => (vec![t(m, n), t(1, n), t(m, n)], m, n),
		OpKind::LayerNormGammaGrad => (vec![t(m, n), t(m, n)], 1, n),
		OpKind::SoftmaxXent => (vec![t(m, n.max(2))], m, 1),
		OpKind::SoftmaxXentBackward => (vec![t(m, n.max(2))], m, n.max(2)),
		OpKind::SquaredError | OpKind::SquaredErrorBackward => (vec![t(m, 1)], m, 1),
		OpKind::Mean => (vec![t(m, 1)], 1, 1),
		OpKind::ColSum => (vec![t(m, n)], 1, n),
		OpKind::Conv2d(g) => {
			let out = g.output().values();
			(
				vec![t(m, g.input.values()), t(g.out_channels, g.patch()), t(1, g.out_channels)],
				m,
				out,
			)
		}
		OpKind::Conv2dInputGrad(g) => {
			(vec![t(m, g.output().values()), t(g.out_channels, g.patch())], m, g.input.values())
		}
		OpKind::Conv2dWeightGrad(g) => {
			(vec![t(m, g.input.values()), t(m, g.output().values())], g.out_channels, g.patch())
		}
		OpKind::ConvBiasGrad(g) => (vec![t(m, g.output().values())], 1, g.out_channels),
		OpKind::MaxPool2d(g) | OpKind::AvgPool2d(g) => {
			(vec![t(m, g.input.values())], m, g.output().values())
		}
		OpKind::MaxPool2dGrad(g) => {
			(vec![t(m, g.input.values()), t(m, g.output().values())], m, g.input.values())
		}
		OpKind::AvgPool2dGrad(g) => (vec![t(m, g.output().values())], m, g.input.values()),
		OpKind::Embed(g) => {
			let x = tokens(&g);
			(vec![x, t(g.vocab, g.dim), t(g.context, g.dim)], m * g.context, g.dim)
		}
		OpKind::EmbedGrad(g) => (vec![tokens(&g), t(m * g.context, g.dim)], g.vocab, g.dim),
		OpKind::PositionGrad(g) => (vec![t(m * g.context, g.dim)], g.context, g.dim),
		OpKind::TokenXent(g) => (vec![t(m * g.context, g.vocab), tokens(&g)], m * g.context, 1),
		OpKind::TokenXentBackward(g) => {
			(vec![t(m * g.context, g.vocab), tokens(&g)], m * g.context, g.vocab)
		}
		OpKind::Attention(g) => (vec![t(m * g.context, 3 * g.dim)], m * g.context, g.dim),
		OpKind::AttentionGrad(g) => {
			(vec![t(m * g.context, 3 * g.dim), t(m * g.context, g.dim)], m * g.context, 3 * g.dim)
		}
		OpKind::SumSquares => (vec![t(m, n)], m, 1),
		// One to eight gradients' row sums.
		OpKind::ClipCoefficient(_) => {
			((0..1 + k % 8).map(|i| t(1 + (m * i + n) % 9, 1)).collect(), 1, 1)
		}
		OpKind::ClipScale => (vec![t(m, n), t(1, 1)], m, n),
	};
	// Class ids, or any target's bits (a regression's).
	let labels = match kind {
		OpKind::SquaredError | OpKind::SquaredErrorBackward => values(rng, m),
		_ => (0..m).map(|_| rng.next_below(inputs[0].cols)).collect(),
	};
	let op = Op { kind, inputs: src[..inputs.len()].to_vec(), rows, cols };
	(op, inputs, labels)
}

/// A small CNN on 12 features read as a 1 x 4 x 3 image: every image operator, with padding
/// and overlapping pools.
fn small_cnn(loss: Loss, optimizer: Optimizer) -> TrainingSpec {
	let layers = vec![
		Layer::Conv2d { out_channels: 2, kernel: 2, stride: 1, padding: 1 },
		Layer::Relu,
		Layer::MaxPool2d { kernel: 2, stride: 1 },
		Layer::Conv2d { out_channels: 3, kernel: 2, stride: 1, padding: 0 },
		Layer::AvgPool2d { kernel: 2, stride: 1 },
		Layer::Flatten,
		Layer::Linear { out: if loss == Loss::MeanSquaredError { 1 } else { 3 } },
	];
	let model = Model::Graph {
		input: ImageShape { channels: 1, height: 4, width: 3 },
		layers: Layers::truncate_from(layers),
	};
	TrainingSpec::example_graph(model, loss, optimizer, 10)
}

/// A net on 12 features with a residual block of layer normalization, a dense layer and GELU,
/// then dropout: the other layers' operators.
fn small_mixed(loss: Loss, optimizer: Optimizer) -> TrainingSpec {
	let layers = vec![
		Layer::Linear { out: 8 },
		Layer::Residual { layers: 3 },
		Layer::LayerNorm,
		Layer::Linear { out: 8 },
		Layer::Gelu,
		Layer::Dropout { p: F32Bits::from_f32(0.25) },
		Layer::Linear { out: if loss == Loss::MeanSquaredError { 1 } else { 3 } },
	];
	let model = Model::Graph { input: ImageShape::flat(12), layers: Layers::truncate_from(layers) };
	TrainingSpec::example_graph(model, loss, optimizer, 10)
}

/// A one-block transformer on token sequences of context 6 over 7 tokens: embeddings,
/// attention of two heads, GELU, layer norms, residual sums, the per-token loss.
fn small_transformer(optimizer: Optimizer) -> TrainingSpec {
	let layers = vec![
		Layer::Embedding { vocab: 7, dim: 8 },
		Layer::Residual { layers: 4 },
		Layer::LayerNorm,
		Layer::Linear { out: 24 },
		Layer::Attention { heads: 2 },
		Layer::Linear { out: 8 },
		Layer::Residual { layers: 3 },
		Layer::Linear { out: 16 },
		Layer::Gelu,
		Layer::Linear { out: 8 },
		Layer::LayerNorm,
		Layer::Linear { out: 7 },
	];
	let model = Model::Graph { input: ImageShape::flat(7), layers: Layers::truncate_from(layers) };
	TrainingSpec::example_graph(model, Loss::SoftmaxCrossEntropy, optimizer, 10)
}

#[tokio::test]
async fn the_runtime_computes_the_same_bits_as_the_native_reference() -> Result<()> {
	let dir = tempfile::tempdir()?;
	let node = Node::start(NodeConfig::dev(dir.path())).await?;
	node.wait_for_finalized(1, Duration::from_secs(90)).await?;

	// Every operator on random shapes and values (the image operators' geometries drawn per
	// instance too).
	let mut rng = SplitMix64::new(2026);
	let conv = random_conv(&mut rng, 4);
	let pool = random_pool(&mut rng, 4);
	let kinds = [
		OpKind::MatMul,
		OpKind::MatMulTn,
		OpKind::MatMulNt,
		OpKind::BiasAdd,
		OpKind::Relu,
		OpKind::ReluBackward,
		OpKind::SoftmaxXent,
		OpKind::SoftmaxXentBackward,
		OpKind::SquaredError,
		OpKind::SquaredErrorBackward,
		OpKind::Mean,
		OpKind::ColSum,
		OpKind::Momentum,
		OpKind::SgdStep,
		OpKind::AdamM,
		OpKind::AdamV,
		OpKind::AdamStep,
		OpKind::Conv2d(conv),
		OpKind::Conv2dInputGrad(conv),
		OpKind::Conv2dWeightGrad(conv),
		OpKind::ConvBiasGrad(conv),
		OpKind::MaxPool2d(pool),
		OpKind::MaxPool2dGrad(pool),
		OpKind::AvgPool2d(pool),
		OpKind::AvgPool2dGrad(pool),
		OpKind::Add,
		OpKind::Gelu,
		OpKind::GeluBackward,
		OpKind::LayerNorm,
		OpKind::LayerNormInputGrad,
		OpKind::LayerNormGammaGrad,
		OpKind::Dropout(DropoutMask { p: F32Bits::from_f32(0.3), layer: 2 }),
		OpKind::DropoutGrad(DropoutMask { p: F32Bits::from_f32(0.5), layer: 7 }),
		OpKind::AdamWStep,
		OpKind::Embed(random_tokens(&mut rng, 4)),
		OpKind::EmbedGrad(random_tokens(&mut rng, 4)),
		OpKind::PositionGrad(random_tokens(&mut rng, 4)),
		OpKind::TokenXent(random_tokens(&mut rng, 4)),
		OpKind::TokenXentBackward(random_tokens(&mut rng, 4)),
		OpKind::Attention(random_attention(&mut rng, 4)),
		OpKind::AttentionGrad(random_attention(&mut rng, 4)),
		OpKind::SumSquares,
		OpKind::ClipCoefficient(F32Bits::from_f32(0.75)),
		OpKind::ClipScale,
	];
	let (sgd_spec, adam_spec, adamw_spec) = (
		TrainingSpec::example_mlp(&[4, 2], sgd(), 4),
		TrainingSpec::example_mlp(&[4, 2], adam(), 4),
		TrainingSpec::example_mlp(&[4, 2], Optimizer::adamw(0.01, 0.1), 4),
	);
	let mut compared = 0usize;
	for round in 0..12 {
		for kind in kinds {
			let s = match kind {
				OpKind::AdamM | OpKind::AdamV | OpKind::AdamStep => &adam_spec,
				OpKind::AdamWStep => &adamw_spec,
				_ => &sgd_spec,
			};
			let (op, inputs, labels) = instance(&mut rng, kind, if round < 6 { 6 } else { 40 });
			let native = execute_bits(s, &op, &inputs, &labels, round);
			let wasm = on_chain(&node, s, &op, &inputs, &labels, round).await?;
			ensure!(native == wasm, "{kind:?} round {round}: native and wasm differ");
			compared += native.map(|t| t.bits.len()).unwrap_or(0);
		}
	}

	// Every operation of real training steps, from initialization, with both optimizers, of a
	// classification and of a regression.
	let specs = [
		TrainingSpec::example_mlp(&[12, 16, 8, 3], sgd(), 10),
		TrainingSpec::example_mlp(&[12, 16, 8, 3], adam(), 10),
		TrainingSpec::example_regression(&[12, 16, 8, 1], sgd(), 10),
		TrainingSpec::example_regression(&[12, 16, 8, 1], adam(), 10),
		small_cnn(Loss::SoftmaxCrossEntropy, adam()),
		small_cnn(Loss::MeanSquaredError, sgd()),
		small_mixed(Loss::SoftmaxCrossEntropy, Optimizer::adamw(0.01, 0.1)),
		small_mixed(Loss::MeanSquaredError, sgd()),
		small_transformer(Optimizer::adamw(0.01, 0.1)),
		small_transformer(sgd()),
	];
	// And with gradient clipping (a norm that clips).
	let clipped = |mut s: TrainingSpec| {
		s.max_grad_norm = Some(F32Bits::from_f32(0.05));
		s
	};
	let specs = specs.into_iter().chain([
		clipped(TrainingSpec::example_mlp(&[12, 16, 8, 3], adam(), 10)),
		clipped(small_cnn(Loss::SoftmaxCrossEntropy, sgd())),
		clipped(small_transformer(Optimizer::adamw(0.01, 0.1))),
	]);
	for s in specs {
		let p = program::step_program(&s).map_err(|e| anyhow::anyhow!("{e:?}"))?;
		let mut state = program::initial_state(&s, &p).map_err(|e| anyhow::anyhow!("{e:?}"))?;
		for step in 0..2u32 {
			let mut data_rng = SplitMix64::new(u64::from(step) + 77);
			// Features, or (a transformer's) token ids.
			let features = s.dataset.features;
			let x = Matrix::new(
				10,
				features,
				(0..10 * features)
					.map(|_| match s.model.context() {
						Some(_) => data_rng.next_below(s.dataset.classes) as f32,
						None => data_rng.next_unit() * 2.0 - 1.0,
					})
					.collect(),
			)
			.map_err(|e| anyhow::anyhow!("{e:?}"))?;
			let labels: Vec<u32> = match s.loss {
				Loss::SoftmaxCrossEntropy => (0..10).map(|_| data_rng.next_below(3)).collect(),
				Loss::MeanSquaredError => {
					(0..10).map(|_| (data_rng.next_unit() * 4.0 - 2.0).to_bits()).collect()
				}
			};
			let (outs, next) = program::run_step(&s, &p, &state, &x, &labels, step)
				.map_err(|e| anyhow::anyhow!("{e:?}"))?;
			for (j, op) in p.ops.iter().enumerate() {
				let inputs: Vec<TensorBits> = op
					.inputs
					.iter()
					.map(|src| match src {
						Source::State(i) => TensorBits::from(&state[*i as usize]),
						Source::Batch => TensorBits::from(&x),
						Source::Op(i) => TensorBits::from(&outs[*i as usize]),
					})
					.collect();
				let wasm = on_chain(&node, &s, op, &inputs, &labels, step).await?;
				let expected = TensorBits::from(&outs[j]);
				ensure!(
					wasm.as_ref() == Ok(&expected),
					"step {step} op {j} ({:?}) differs in wasm",
					op.kind
				);
				compared += expected.bits.len();
			}
			state = next;
		}
	}
	ensure!(compared > 10_000, "compared only {compared} values");

	// Inputs over the size limit are refused, not run.
	let big = TensorBits { rows: 1024, cols: 1025, bits: vec![0; 1024 * 1025] };
	let op = Op { kind: OpKind::Relu, inputs: vec![Source::Batch], rows: 1024, cols: 1025 };
	let refused =
		on_chain(&node, &sgd_spec, &op, &[big], &[], 0).await.context("oversized call")?;
	ensure!(refused == Err(ShapeError::TooLarge), "oversized input: {refused:?}");
	Ok(())
}
