//! The engine against the reference: identical bits for every operator and whole training
//! steps, with 1, 2 and 8 threads.

use super::*;
use trainet_primitives::{
	program::{initial_state, step_program},
	repops::{self, SplitMix64},
	task::{F32Bits, Optimizer},
};

const SPECIAL: [u32; 12] = [
	0x0000_0000,
	0x8000_0000,
	0x0000_0001,
	0x807f_ffff,
	0x7f7f_ffff,
	0x7f80_0000,
	0xff80_0000,
	0x7fc0_0001,
	0xffc0_0000,
	0x7f80_0001,
	0x3f80_0000,
	0x0080_0000,
];

fn matrix(rng: &mut SplitMix64, rows: u32, cols: u32, specials: bool) -> Matrix {
	let data = (0..rows * cols)
		.map(|_| {
			let r = rng.next_u64();
			if specials && r.is_multiple_of(10) {
				f32::from_bits(SPECIAL[(r >> 8) as usize % SPECIAL.len()])
			} else {
				(rng.next_unit() - 0.5) * 4.0
			}
		})
		.collect();
	Matrix::new(rows, cols, data).unwrap()
}

fn bits(m: &Matrix) -> Vec<u32> {
	m.data.iter().map(|v| v.to_bits()).collect()
}

fn pool(threads: usize) -> rayon::ThreadPool {
	rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

#[test]
fn products_match_the_reference_with_any_thread_count() {
	let mut rng = SplitMix64::new(5);
	// Random small shapes, then shapes that cross the engine's blocks: `k` past one pass of
	// the micro-kernel (256), rows past one task (48), columns past one task (64).
	let mut shapes: Vec<(u32, u32, u32)> = (0..40)
		.map(|_| (1 + rng.next_below(70), rng.next_below(90), 1 + rng.next_below(70)))
		.collect();
	shapes.extend([(100, 600, 90), (7, 513, 200), (130, 257, 33), (49, 256, 65)]);
	for (m, k, n) in shapes {
		let specials = rng.next_below(2) == 0;
		let a = matrix(&mut rng, m, k, specials);
		let b = matrix(&mut rng, k, n, specials);
		let at = repops::transpose(&a).unwrap();
		let bt = repops::transpose(&b).unwrap();
		let reference = [
			repops::matmul(&a, &b).unwrap(),
			repops::matmul_tn(&at, &b).unwrap(),
			repops::matmul_nt(&a, &bt).unwrap(),
		];
		for threads in [1, 2, 8] {
			let got = pool(threads).install(|| {
				[
					matmul(&a, &b, Product::Nn).unwrap(),
					matmul(&at, &b, Product::Tn).unwrap(),
					matmul(&a, &bt, Product::Nt).unwrap(),
				]
			});
			for (g, r) in got.iter().zip(&reference) {
				assert_eq!(bits(g), bits(r), "{m}x{k}x{n}, {threads} threads");
			}
		}
	}
}

#[test]
fn training_steps_match_the_reference_bit_for_bit_with_any_thread_count() {
	let optimizers = [
		Optimizer::sgd(0.05, 0.9),
		Optimizer::Adam {
			learning_rate: F32Bits::from_f32(0.001),
			beta1: F32Bits::from_f32(0.9),
			beta2: F32Bits::from_f32(0.999),
			epsilon: F32Bits::from_f32(1e-8),
		},
	];
	let specs = optimizers.iter().flat_map(|opt| {
		// An MLP, and the reference CNN (convolutions through the GEMM, pools through the
		// reference).
		let mut cnn = TrainingSpec::example_cnn(Default::default());
		(cnn.optimizer, cnn.batch_size) = (*opt, 24);
		// And a transformer on sequences of 63 tokens (embeddings and the per-token loss
		// through the reference, attention and layer norms in parallel).
		let mut transformer = TrainingSpec::example_transformer(Default::default(), 10, 63);
		(transformer.optimizer, transformer.batch_size) = (*opt, 24);
		[TrainingSpec::example_mlp(&[64, 48, 32, 10], *opt, 24), cnn, transformer]
	});
	for s in specs {
		let p = step_program(&s).unwrap();
		let start = initial_state(&s, &p).unwrap();
		let mut reference = start.clone();
		let mut engines: Vec<Vec<Matrix>> = vec![start.clone(); 3];
		for step in 0..4u32 {
			let mut rng = SplitMix64::new(100 + u64::from(step));
			let x = match s.model.context() {
				// Token ids below the vocabulary.
				Some(_) => {
					Matrix::new(24, 64, (0..24 * 64).map(|_| rng.next_below(10) as f32).collect())
						.unwrap()
				}
				None => matrix(&mut rng, 24, 64, false),
			};
			let labels: Vec<u32> = (0..24).map(|_| rng.next_below(10)).collect();
			let (ref_outs, ref_next) =
				program::run_step(&s, &p, &reference, &x, &labels, step).unwrap();
			for (e, threads) in engines.iter_mut().zip([1, 2, 8]) {
				let (outs, next) =
					pool(threads).install(|| run_step(&s, &p, e, &x, &labels, step)).unwrap();
				for (j, (o, r)) in outs.iter().zip(&ref_outs).enumerate() {
					assert_eq!(bits(o), bits(r), "step {step} op {j} with {threads} threads");
				}
				// The trainer's step (the next state moved out of the outputs) ends in this
				// state.
				let kept =
					pool(threads).install(|| super::step(&s, &p, e, &x, &labels, step)).unwrap();
				assert_eq!(
					kept.iter().map(bits).collect::<Vec<_>>(),
					next.iter().map(bits).collect::<Vec<_>>()
				);
				*e = next;
			}
			reference = ref_next;
		}
		for e in &engines {
			assert_eq!(
				e.iter().map(bits).collect::<Vec<_>>(),
				reference.iter().map(bits).collect::<Vec<_>>()
			);
		}
	}
}

#[test]
fn flops_count_the_products() {
	let s = TrainingSpec::example_mlp(&[64, 32, 10], Optimizer::sgd(0.1, 0.0), 32);
	// Layer 1: forward + weight gradient; layer 2: forward + weight + input gradient.
	assert_eq!(step_flops(&s), 2 * 32 * (64 * 32 * 2 + 32 * 10 * 3));
}

#[test]
fn elementwise_and_column_operations_match_the_reference_on_special_values() {
	use trainet_primitives::program::{Op, OpKind, Source};
	let mut rng = SplitMix64::new(11);
	let f = F32Bits::from_f32;
	let optimizers = [
		Optimizer::Sgd { learning_rate: f(0.05), momentum: f(0.9) },
		Optimizer::Sgd { learning_rate: f(3.0e38), momentum: f(-2.5) },
		Optimizer::Adam {
			learning_rate: f(0.001),
			beta1: f(0.9),
			beta2: f(0.999),
			epsilon: f(1e-8),
		},
		Optimizer::Adam { learning_rate: f(7.0), beta1: f(0.5), beta2: f(1.5), epsilon: f(0.0) },
		Optimizer::AdamW {
			learning_rate: f(0.001),
			beta1: f(0.9),
			beta2: f(0.999),
			epsilon: f(1e-8),
			weight_decay: f(0.1),
		},
	];
	// Above and below the size at which the engine goes parallel.
	for (rows, cols) in [(3, 7), (150, 300)] {
		let x = [
			matrix(&mut rng, rows, cols, true),
			matrix(&mut rng, rows, cols, true),
			matrix(&mut rng, rows, cols, true),
		];
		let bias = matrix(&mut rng, 1, cols, true);
		let op = |kind, inputs: usize| Op {
			kind,
			inputs: (0..inputs).map(|_| Source::Batch).collect(),
			rows,
			cols,
		};
		let mut cases: Vec<(TrainingSpec, Op, Vec<&Matrix>)> = Vec::new();
		for opt in optimizers {
			let s = TrainingSpec::example_mlp(&[4, 2], opt, 8);
			let kinds: &[(OpKind, usize)] = match opt {
				Optimizer::Sgd { .. } => &[(OpKind::Momentum, 2), (OpKind::SgdStep, 2)],
				Optimizer::Adam { .. } => {
					&[(OpKind::AdamM, 2), (OpKind::AdamV, 2), (OpKind::AdamStep, 3)]
				}
				Optimizer::AdamW { .. } => {
					&[(OpKind::AdamM, 2), (OpKind::AdamV, 2), (OpKind::AdamWStep, 3)]
				}
			};
			for &(kind, n) in kinds {
				cases.push((s.clone(), op(kind, n), x.iter().take(n).collect()));
			}
			cases.push((s.clone(), op(OpKind::Relu, 1), vec![&x[0]]));
			cases.push((s.clone(), Op { rows: 1, ..op(OpKind::ColSum, 1) }, vec![&x[0]]));
			cases.push((s.clone(), op(OpKind::ReluBackward, 2), vec![&x[0], &x[1]]));
			cases.push((s, op(OpKind::BiasAdd, 2), vec![&x[0], &bias]));
		}
		for (s, op, inputs) in cases {
			for step in [0, 1, 999] {
				let want = program::execute(&s, &op, &inputs, &[], step).unwrap();
				for threads in [1, 3] {
					let got =
						pool(threads).install(|| execute(&s, &op, &inputs, &[], step)).unwrap();
					assert_eq!(bits(&got), bits(&want), "{:?} step {step}", op.kind);
				}
			}
		}
	}
}

#[test]
fn the_merged_momentum_sgd_update_gives_the_bits_of_its_two_operations() {
	use trainet_primitives::program::{Op, OpKind, Source};
	let mut rng = SplitMix64::new(12);
	let f = F32Bits::from_f32;
	for opt in [
		Optimizer::Sgd { learning_rate: f(0.05), momentum: f(0.9) },
		Optimizer::Sgd { learning_rate: f(3.0e38), momentum: f(-2.5) },
	] {
		let s = TrainingSpec::example_mlp(&[4, 2], opt, 8);
		// Above and below the size at which the engine goes parallel.
		for (rows, cols) in [(3, 7), (150, 300)] {
			let [v, g, w] = [0, 1, 2].map(|_| matrix(&mut rng, rows, cols, true));
			let op = |kind| Op { kind, inputs: vec![Source::Batch; 2], rows, cols };
			let v_next = program::execute(&s, &op(OpKind::Momentum), &[&v, &g], &[], 0).unwrap();
			let w_next =
				program::execute(&s, &op(OpKind::SgdStep), &[&w, &v_next], &[], 0).unwrap();
			for threads in [1, 3] {
				let (v_got, w_got) = pool(threads)
					.install(|| momentum_sgd(&s, (&v).into(), (&g).into(), (&w).into()))
					.unwrap();
				assert_eq!(bits(&v_got), bits(&v_next), "velocity, {rows}x{cols}");
				assert_eq!(bits(&w_got), bits(&w_next), "weights, {rows}x{cols}");
			}
		}
	}
	// Not momentum SGD, or operands of different shapes: an error.
	let adam = TrainingSpec::example_mlp(
		&[4, 2],
		Optimizer::Adam { learning_rate: f(0.1), beta1: f(0.9), beta2: f(0.99), epsilon: f(1e-8) },
		8,
	);
	let m = matrix(&mut rng, 2, 3, false);
	assert!(momentum_sgd(&adam, (&m).into(), (&m).into(), (&m).into()).is_err());
	let sgd = TrainingSpec::example_mlp(
		&[4, 2],
		Optimizer::Sgd { learning_rate: f(0.05), momentum: f(0.9) },
		8,
	);
	let other = matrix(&mut rng, 3, 2, false);
	assert!(momentum_sgd(&sgd, (&m).into(), (&other).into(), (&m).into()).is_err());
}

/// The image operators (the convolutions as products on the engine's GEMM, the pools and the
/// bias gradient as loops) give the reference's bits, for random geometries (strides,
/// padding, one-pixel images, kernels as large as the padded image, overlapping windows) and
/// values with NaNs, infinities, subnormals and signed zeros, on 1 and 3 threads; and for a
/// batch large enough to go parallel.
#[test]
fn image_operators_match_the_reference_on_special_values() {
	use trainet_primitives::{
		program::{Op, OpKind, Source},
		repops::image::{Conv, ImageShape, Pool},
	};
	let mut rng = SplitMix64::new(21);
	let s = TrainingSpec::example_mlp(&[4, 2], Optimizer::sgd(0.1, 0.9), 8);
	let mut geometries = vec![];
	while geometries.len() < 40 {
		let kernel = 1 + rng.next_below(4);
		let g = Conv {
			input: ImageShape {
				channels: 1 + rng.next_below(3),
				height: 1 + rng.next_below(7),
				width: 1 + rng.next_below(7),
			},
			out_channels: 1 + rng.next_below(4),
			kernel,
			stride: 1 + rng.next_below(3),
			padding: rng.next_below(kernel),
		};
		if g.is_valid() {
			geometries.push((g, 1 + rng.next_below(5)));
		}
	}
	// LeNet's second convolution on a batch of 64: the parallel paths.
	let lenet = Conv {
		input: ImageShape { channels: 8, height: 4, width: 4 },
		out_channels: 16,
		kernel: 3,
		stride: 1,
		padding: 1,
	};
	geometries.push((lenet, 64));
	for (g, rows) in geometries {
		let x = matrix(&mut rng, rows, g.input.values(), true);
		let w = matrix(&mut rng, g.out_channels, g.patch(), true);
		let b = matrix(&mut rng, 1, g.out_channels, true);
		let dy = matrix(&mut rng, rows, g.output().values(), true);
		let op =
			|kind, n: usize, rows, cols| Op { kind, inputs: vec![Source::Batch; n], rows, cols };
		// A pool on the same images: a window up to the image's side, strides up to 3.
		let side = g.input.height.min(g.input.width);
		let pooling = Pool {
			input: g.input,
			kernel: 1 + rng.next_below(side),
			stride: 1 + rng.next_below(3),
		};
		let pool_dy = matrix(&mut rng, rows, pooling.output().values(), true);
		let (pooled, image) = (pooling.output().values(), g.input.values());
		let cases: Vec<(Op, Vec<&Matrix>)> = vec![
			(op(OpKind::Conv2d(g), 3, rows, g.output().values()), vec![&x, &w, &b]),
			(op(OpKind::Conv2dInputGrad(g), 2, rows, g.input.values()), vec![&dy, &w]),
			(op(OpKind::Conv2dWeightGrad(g), 2, g.out_channels, g.patch()), vec![&x, &dy]),
			(op(OpKind::ConvBiasGrad(g), 1, 1, g.out_channels), vec![&dy]),
			(op(OpKind::MaxPool2d(pooling), 1, rows, pooled), vec![&x]),
			(op(OpKind::AvgPool2d(pooling), 1, rows, pooled), vec![&x]),
			(op(OpKind::MaxPool2dGrad(pooling), 2, rows, image), vec![&x, &pool_dy]),
			(op(OpKind::AvgPool2dGrad(pooling), 1, rows, image), vec![&pool_dy]),
		];
		for (op, inputs) in cases {
			let want = program::execute(&s, &op, &inputs, &[], 0).unwrap();
			for threads in [1, 3] {
				let got = pool(threads).install(|| execute(&s, &op, &inputs, &[], 0)).unwrap();
				assert_eq!(bits(&got), bits(&want), "{:?} on {rows} rows", op.kind);
			}
		}
	}
}

/// The engine's attention (sequences in parallel), layer normalization (rows in parallel),
/// GELU and sums give the reference's bits on values with NaNs, infinities, subnormals and
/// signed zeros, on 1 and 3 threads, small and large enough to go parallel.
#[test]
fn sequence_and_layer_operators_match_the_reference_on_special_values() {
	use trainet_primitives::{
		program::{Op, OpKind, Source},
		repops::sequence::{Attention, Tokens},
	};
	let mut rng = SplitMix64::new(22);
	let s = TrainingSpec::example_mlp(&[4, 2], Optimizer::sgd(0.1, 0.9), 8);
	let mut shapes: Vec<(Attention, u32)> = (0..12)
		.map(|_| {
			let heads = 1 + rng.next_below(3);
			let g = Attention {
				heads,
				context: 1 + rng.next_below(9),
				dim: heads * (1 + rng.next_below(5)),
			};
			(g, 1 + rng.next_below(4))
		})
		.collect();
	// The reference task's shape on a batch of 8: the parallel paths.
	shapes.push((Attention { heads: 4, context: 64, dim: 64 }, 8));
	// Heads of 8, 32 and 64 values: the engine's other register paths.
	for (heads, dim) in [(2, 16), (2, 64), (1, 64)] {
		shapes.push((Attention { heads, context: 11, dim }, 2));
	}
	for (g, sequences) in shapes {
		let rows = sequences * g.context;
		let qkv = matrix(&mut rng, rows, 3 * g.dim, true);
		let dy = matrix(&mut rng, rows, g.dim, true);
		let x = matrix(&mut rng, rows, g.dim, true);
		let x2 = matrix(&mut rng, rows, g.dim, true);
		let gamma = matrix(&mut rng, 1, g.dim, true);
		let beta = matrix(&mut rng, 1, g.dim, true);
		// The per-token loss: logits with specials, and samples of token ids (some past the
		// vocabulary, negative or NaN: the reference's clamping).
		let tokens = Tokens { vocab: 1 + rng.next_below(90), context: g.context, dim: g.dim };
		let logits = matrix(&mut rng, rows, tokens.vocab, true);
		let ids: Vec<f32> = (0..sequences * (g.context + 1))
			.map(|_| match rng.next_below(12) {
				0 => f32::NAN,
				1 => -3.0,
				2 => (tokens.vocab + 5) as f32,
				_ => rng.next_below(tokens.vocab) as f32,
			})
			.collect();
		let ids = Matrix::new(sequences, g.context + 1, ids).unwrap();
		let op = |kind, n: usize, cols| Op { kind, inputs: vec![Source::Batch; n], rows, cols };
		let cases: Vec<(Op, Vec<&Matrix>)> = vec![
			(op(OpKind::Attention(g), 1, g.dim), vec![&qkv]),
			(op(OpKind::AttentionGrad(g), 2, 3 * g.dim), vec![&qkv, &dy]),
			(op(OpKind::LayerNorm, 3, g.dim), vec![&x, &gamma, &beta]),
			(op(OpKind::LayerNormInputGrad, 3, g.dim), vec![&x, &gamma, &dy]),
			(Op { rows: 1, ..op(OpKind::LayerNormGammaGrad, 2, g.dim) }, vec![&x, &dy]),
			(op(OpKind::Gelu, 1, g.dim), vec![&x]),
			(op(OpKind::GeluBackward, 2, g.dim), vec![&x, &dy]),
			(op(OpKind::Add, 2, g.dim), vec![&x, &x2]),
			(op(OpKind::TokenXent(tokens), 2, 1), vec![&logits, &ids]),
			(op(OpKind::TokenXentBackward(tokens), 2, tokens.vocab), vec![&logits, &ids]),
		];
		for (op, inputs) in cases {
			let want = program::execute(&s, &op, &inputs, &[], 0).unwrap();
			for threads in [1, 3] {
				let got = pool(threads).install(|| execute(&s, &op, &inputs, &[], 0)).unwrap();
				assert_eq!(bits(&got), bits(&want), "{:?} on {rows} rows", op.kind);
			}
		}
	}
}

/// Layer normalization eight rows side by side (where the CPU has AVX2 and FMA) gives the
/// reference's bits: rows of ordinary values of several widths and counts (not multiples of
/// eight: the reference's row functions take the rest), rows with a special value (a NaN, an
/// infinity, a subnormal, a signed zero), constant rows (variance 0), huge and tiny rows.
#[test]
fn layer_norm_rows_side_by_side_match_the_reference() {
	use trainet_primitives::program::{Op, OpKind, Source};
	let mut rng = SplitMix64::new(31);
	let s = TrainingSpec::example_mlp(&[4, 2], Optimizer::sgd(0.1, 0.9), 8);
	for (rows, n) in [(8u32, 1u32), (9, 3), (17, 7), (64, 64), (40, 100), (203, 48)] {
		let mut x = matrix(&mut rng, rows, n, false);
		let dy = matrix(&mut rng, rows, n, false);
		let gamma = matrix(&mut rng, 1, n, false);
		let beta = matrix(&mut rng, 1, n, false);
		for (r, v) in x.data.chunks_mut(n as usize).enumerate() {
			match r % 11 {
				0 => v[v.len() / 2] = f32::from_bits(SPECIAL[r / 11 % SPECIAL.len()]),
				3 => v.iter_mut().for_each(|a| *a = 1.5),
				5 => v.iter_mut().for_each(|a| *a *= 1e30),
				7 => v.iter_mut().for_each(|a| *a *= 1e-40),
				_ => {}
			}
		}
		let op = |kind, k: usize| Op { kind, inputs: vec![Source::Batch; k], rows, cols: n };
		let cases: Vec<(Op, Vec<&Matrix>)> = vec![
			(op(OpKind::LayerNorm, 3), vec![&x, &gamma, &beta]),
			(op(OpKind::LayerNormInputGrad, 3), vec![&x, &gamma, &dy]),
			(Op { rows: 1, ..op(OpKind::LayerNormGammaGrad, 2) }, vec![&x, &dy]),
		];
		for (op, inputs) in cases {
			let want = program::execute(&s, &op, &inputs, &[], 0).unwrap();
			for threads in [1, 3] {
				let got = pool(threads).install(|| execute(&s, &op, &inputs, &[], 0)).unwrap();
				assert_eq!(bits(&got), bits(&want), "{:?} on {rows} x {n}", op.kind);
			}
		}
	}
}
