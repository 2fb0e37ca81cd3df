//! The RepOps contract: agreement with the platform's correctly rounded operations where
//! those exist, accuracy of `exp`/`ln`, NaN and signed-zero rules, and golden vectors that pin
//! every operator's bits.

#![allow(
	clippy::unwrap_used,
	clippy::expect_used,
	clippy::arithmetic_side_effects,
	clippy::indexing_slicing
)]

use super::*;
use sp_runtime::traits::{BlakeTwo256, Hash};

/// Bit patterns that exercise the corners: signed zeros, subnormals, the extremes, infinities
/// and NaNs with odd payloads and signs.
const SPECIAL: [u32; 16] = [
	0x0000_0000, // +0
	0x8000_0000, // -0
	0x0000_0001, // smallest subnormal
	0x807f_ffff, // largest negative subnormal
	0x0080_0000, // smallest normal
	0x7f7f_ffff, // largest finite
	0xff7f_ffff, // most negative finite
	0x7f80_0000, // +inf
	0xff80_0000, // -inf
	0x7fc0_0000, // canonical NaN
	0x7fc0_0001, // NaN with a payload
	0xffc0_0000, // negative NaN
	0x7f80_0001, // signalling NaN
	0x3f80_0000, // 1
	0xbf80_0000, // -1
	0x3eaa_aaab, // 1/3
];

/// Deterministic test values: mostly ordinary magnitudes, some specials.
fn values(seed: u64, n: usize) -> Vec<f32> {
	let mut rng = SplitMix64::new(seed);
	(0..n)
		.map(|_| {
			let r = rng.next_u64();
			match r % 16 {
				0 => f32::from_bits(SPECIAL[(r >> 8) as usize % SPECIAL.len()]),
				1 => f32::from_bits((r >> 32) as u32), // any bit pattern at all
				_ => (rng.next_unit() - 0.5) * 8.0,
			}
		})
		.collect()
}

fn bits(v: &[f32]) -> Vec<u8> {
	v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect()
}

fn digest(v: &[f32]) -> String {
	BlakeTwo256::hash(&bits(v)).0.iter().map(|b| format!("{b:02x}")).collect()
}

fn matrix(seed: u64, rows: u32, cols: u32) -> Matrix {
	Matrix::new(rows, cols, values(seed, (rows * cols) as usize)).unwrap()
}

#[test]
fn fma_and_sqrt_agree_with_the_platforms_correctly_rounded_ones() {
	let v = values(1, 30_000);
	for w in v.chunks(3) {
		let (a, b, c) = (w[0], w[1], w[2]);
		assert_eq!(
			fma(a, b, c).to_bits(),
			canon(a.mul_add(b, c)).to_bits(),
			"fma({a:e}, {b:e}, {c:e})"
		);
		assert_eq!(sqrt(a).to_bits(), canon(a.sqrt()).to_bits(), "sqrt({a:e})");
	}
	// Cases where a separate multiply and add would round differently.
	// (1 + 2^-12)^2 - 1 = 2^-11 + 2^-24 exactly; `a * a` alone rounds the 2^-24 away.
	let a = 1.0 + f32::from_bits(0x3980_0000);
	assert_eq!(fma(a, a, -1.0), f32::from_bits(0x3a00_0000) + f32::from_bits(0x3380_0000));
	assert_ne!(fma(a, a, -1.0), a * a - 1.0);
}

/// The native reference takes the CPU's FMA instruction where it has one, the runtime's wasm
/// `libm`'s software one: both are IEEE fusedMultiplyAdd, the same bits once NaNs are made
/// canonical, on random values, specials, and products that overflow or land in the subnormals.
#[test]
fn the_software_and_the_hardware_fma_give_the_same_bits() {
	let mut v = values(9, 300_000);
	let mut rng = SplitMix64::new(10);
	for _ in 0..100_000 {
		// Exponents near the edges of the range.
		let e = |rng: &mut SplitMix64| {
			f32::from_bits(
				rng.next_u64() as u32 & 0x80ff_ffff
					| ((rng.next_below(40) + if rng.next_below(2) == 0 { 0 } else { 214 }) << 23),
			)
		};
		v.extend([e(&mut rng), e(&mut rng), e(&mut rng)]);
	}
	for w in v.chunks_exact(3) {
		let (a, b, c) = (w[0], w[1], w[2]);
		assert_eq!(
			fma(a, b, c).to_bits(),
			canon(libm::fmaf(a, b, c)).to_bits(),
			"fma({a:e}, {b:e}, {c:e})"
		);
	}
}

fn ulps(a: f32, b: f64) -> f64 {
	let b32 = b as f32;
	if a == b32 {
		return 0.0;
	}
	let ulp = (b32.abs().max(f32::MIN_POSITIVE) * f32::EPSILON) as f64;
	(a as f64 - b).abs() / ulp
}

#[test]
fn exp_and_ln_are_accurate_everywhere() {
	let mut worst_exp: f64 = 0.0;
	let mut worst_ln: f64 = 0.0;
	let mut rng = SplitMix64::new(7);
	for _ in 0..200_000 {
		let x = (rng.next_unit() - 0.5) * 200.0;
		let e = exp(x);
		let truth = (x as f64).exp();
		if truth < f32::MAX as f64 && truth > f32::MIN_POSITIVE as f64 {
			worst_exp = worst_exp.max(ulps(e, truth));
		}
		// ln over many binades, subnormals included.
		let y = f32::from_bits(rng.next_below(0x7f80_0000));
		if y > 0.0 {
			worst_ln = worst_ln.max(ulps(ln(y), (y as f64).ln()));
		}
	}
	assert!(worst_exp <= 2.0, "exp off by {worst_exp} ulp");
	assert!(worst_ln <= 2.0, "ln off by {worst_ln} ulp");
}

#[test]
fn exp_and_ln_special_values() {
	let nan = CANONICAL_NAN_BITS;
	assert_eq!(exp(0.0).to_bits(), 1.0f32.to_bits());
	assert_eq!(exp(-0.0).to_bits(), 1.0f32.to_bits());
	assert_eq!(exp(f32::INFINITY), f32::INFINITY);
	assert_eq!(exp(f32::NEG_INFINITY).to_bits(), 0);
	assert_eq!(exp(89.0), f32::INFINITY);
	assert_eq!(exp(-104.0).to_bits(), 0);
	assert!(exp(-100.0) > 0.0 && exp(-100.0) < f32::MIN_POSITIVE, "subnormal results");
	assert_eq!(exp(f32::from_bits(0xffc0_1234)).to_bits(), nan);
	assert_eq!(ln(1.0).to_bits(), 0);
	assert_eq!(ln(0.0), f32::NEG_INFINITY);
	assert_eq!(ln(-0.0), f32::NEG_INFINITY);
	assert_eq!(ln(-1.0).to_bits(), nan);
	assert_eq!(ln(f32::INFINITY), f32::INFINITY);
	assert_eq!(ln(f32::from_bits(0x7f80_0001)).to_bits(), nan);
	assert!((ln(f32::from_bits(1)) - (-103.278_93)).abs() < 1e-4);
}

#[test]
fn every_nan_comes_out_canonical() {
	for payload in [0x7fc0_0001u32, 0xffc0_0000, 0x7f80_0001, 0xffff_ffff] {
		let nan = f32::from_bits(payload);
		let a = Matrix::new(2, 2, vec![nan, 1.0, 2.0, 3.0]).unwrap();
		let b = Matrix::new(2, 2, vec![1.0, nan, 0.5, 0.25]).unwrap();
		for out in [
			matmul(&a, &b).unwrap(),
			matmul_tn(&a, &b).unwrap(),
			matmul_nt(&a, &b).unwrap(),
			add_matrix(&a, &b).unwrap(),
			relu_matrix(&a).unwrap(),
			col_sum(&a).unwrap(),
			transpose(&a).unwrap(),
			softmax_xent_backward(&a, &[0, 1]).unwrap(),
		] {
			for v in &out.data {
				if v.is_nan() {
					assert_eq!(v.to_bits(), CANONICAL_NAN_BITS);
				}
			}
			assert!(out.data.iter().any(|v| v.is_nan()));
		}
		assert_eq!(relu(nan).to_bits(), CANONICAL_NAN_BITS);
		assert_eq!(relu_backward(1.0, nan).to_bits(), CANONICAL_NAN_BITS);
	}
}

#[test]
fn signed_zeros_follow_the_rules() {
	assert_eq!(relu(-0.0).to_bits(), 0);
	assert_eq!(relu_backward(-0.0, 5.0).to_bits(), 0);
	assert_eq!(relu_backward(-1.0, -3.0).to_bits(), 0);
	assert_eq!(dot(Vec::new(), Vec::new()).to_bits(), 0);
	assert_eq!(sum([-0.0f32]).to_bits(), 0, "+0 + -0 is +0");
	assert_eq!(dot([-0.0f32], [1.0f32]).to_bits(), 0, "fma(-0, 1, +0) is +0");
}

#[test]
fn transposed_products_equal_products_of_transposes() {
	for (m, k, n) in [(1, 1, 1), (3, 5, 2), (7, 16, 9), (4, 33, 1)] {
		let a = matrix(m as u64 * 100 + k as u64, m, k);
		let b = matrix(n as u64 * 7 + 1, k, n);
		let c = matmul(&a, &b).unwrap();
		let at = transpose(&a).unwrap();
		let bt = transpose(&b).unwrap();
		assert_eq!(bits(&matmul_tn(&at, &b).unwrap().data), bits(&c.data));
		assert_eq!(bits(&matmul_nt(&a, &bt).unwrap().data), bits(&c.data));
	}
}

#[test]
fn shape_errors_are_named() {
	let a = matrix(1, 2, 3);
	assert_eq!(matmul(&a, &a), Err(ShapeError::Mismatch));
	assert_eq!(Matrix::new(2, 2, vec![0.0; 3]), Err(ShapeError::BadLength));
	let broken = Matrix { rows: 2, cols: 2, data: vec![0.0; 3] };
	assert_eq!(relu_matrix(&broken), Err(ShapeError::BadLength));
	assert_eq!(bias_add(&a, &a), Err(ShapeError::Mismatch));
	assert_eq!(softmax_xent(&a, &[0, 3]), Err(ShapeError::BadLabel));
	assert_eq!(softmax_xent(&a, &[0]), Err(ShapeError::Mismatch));
}

#[test]
fn softmax_gradients_sum_to_zero_per_row_and_match_f64() {
	let logits = Matrix::new(
		4,
		5,
		values(11, 20)
			.into_iter()
			.map(|v| if v.is_finite() { v.clamp(-20.0, 20.0) } else { 0.5 })
			.collect(),
	)
	.unwrap();
	let labels = [0, 4, 2, 2];
	let g = softmax_xent_backward(&logits, &labels).unwrap();
	let losses = softmax_xent(&logits, &labels).unwrap();
	for i in 0..4u32 {
		let row: Vec<f64> = logits.row(i).unwrap().iter().map(|v| *v as f64).collect();
		let m = row.iter().cloned().fold(f64::MIN, f64::max);
		let s: f64 = row.iter().map(|z| (z - m).exp()).sum();
		let y = labels[i as usize];
		let loss = s.ln() - (row[y as usize] - m);
		assert!((losses.data[i as usize] as f64 - loss).abs() < 1e-5, "loss row {i}");
		for (j, z) in row.iter().enumerate() {
			let p = (z - m).exp() / s - if j as u32 == y { 1.0 } else { 0.0 };
			let got = g.row(i).unwrap()[j] as f64;
			assert!((got - p / 4.0).abs() < 1e-6, "grad ({i}, {j}): {got} vs {}", p / 4.0);
		}
		let row_sum: f32 = g.row(i).unwrap().iter().sum();
		assert!(row_sum.abs() < 1e-6);
	}
}

#[test]
fn splitmix64_matches_the_published_stream() {
	// SplitMix64 from seed 0 (Vigna's reference splitmix64.c).
	let mut r = SplitMix64::new(0);
	assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
	assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
	assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
}

#[test]
fn each_initial_weight_is_computed_alone_with_the_same_bits() {
	for (seed, layer, fan_in, fan_out) in [(7, 0, 64, 32), (42, 3, 17, 9), (u64::MAX, 8, 1, 4096)] {
		let w = init_weights(seed, layer, fan_in, fan_out).unwrap();
		for r in 0..fan_in {
			for c in 0..fan_out {
				let one = init_weight(seed, layer, fan_in, fan_out, r, c);
				assert_eq!(one.to_bits(), w.row(r).unwrap()[c as usize].to_bits(), "({r}, {c})");
			}
		}
	}
}

#[test]
fn initialization_and_batches_are_functions_of_the_seed() {
	let w = init_weights(7, 0, 64, 32).unwrap();
	assert_eq!(w, init_weights(7, 0, 64, 32).unwrap());
	assert_ne!(w, init_weights(8, 0, 64, 32).unwrap());
	assert_ne!(w, init_weights(7, 1, 64, 32).unwrap());
	let a = sqrt(6.0 / 64.0);
	assert!(w.data.iter().all(|v| *v >= -a && *v < a));
	let b = batch_indices(7, 5, 32, 1797);
	assert_eq!(b, batch_indices(7, 5, 32, 1797));
	assert_ne!(b, batch_indices(7, 6, 32, 1797));
	assert!(b.iter().all(|i| *i < 1797));
}

#[test]
fn optimizers_follow_their_formulas() {
	let (w, v) = sgd_momentum(1.0, 0.5, 0.25, 0.1, 0.9);
	assert_eq!(v, add(mul(0.9, 0.5), 0.25));
	assert_eq!(w, sub(1.0, mul(0.1, v)));
	let c = adam_corrections(0.9, 0.999, 1);
	assert_eq!(c, (sub(1.0, 0.9), sub(1.0, 0.999)));
	let c10 = adam_corrections(0.9, 0.999, 10);
	assert!((c10.0 as f64 - (1.0 - 0.9f64.powi(10))).abs() < 1e-6);
	let (w2, m2, v2) = adam(1.0, 0.0, 0.0, 0.5, 0.001, 0.9, 0.999, 1e-8, c);
	assert!((m2 - 0.05).abs() < 1e-7 && (v2 - 0.00025).abs() < 1e-7);
	// The first Adam step moves a parameter by about lr.
	assert!(((1.0 - w2) as f64 - 0.001).abs() < 1e-6);
}

/// Gradient clipping's factor is PyTorch's: `max / (norm + 1e-6)` below 1, else 1; a NaN
/// or an infinity anywhere gives NaN or 0 (so the gradients become NaN or zeros), as PyTorch's
/// `clip_grad_norm_` does with `error_if_nonfinite=False`.
#[test]
fn the_clipping_factor_is_pytorchs() {
	use super::clip::*;
	let norm = |sums: &[f32]| sqrt(sum(sums.iter().copied()));
	// Squares 1, 4, 4 (rows of one tensor) and 16 (another): norm 5.
	let g = Matrix::new(3, 2, vec![1.0, 0.0, 2.0, 0.0, -0.0, -2.0]).unwrap();
	let h = Matrix::new(1, 1, vec![4.0]).unwrap();
	let (s, t) = (sum_squares_matrix(&g).unwrap(), sum_squares_matrix(&h).unwrap());
	assert_eq!((s.rows, s.cols, s.data.clone()), (3, 1, vec![1.0, 4.0, 4.0]));
	assert_eq!(norm(&[s.data.clone(), t.data.clone()].concat()), 5.0);
	let c = clip_coefficient_matrix(&[&s, &t], 2.5).unwrap();
	assert_eq!(c.data, vec![div(2.5, add(5.0, 1e-6))]);
	assert!((c.data[0] - 0.5).abs() < 1e-6 && c.data[0] < 0.5);
	// A norm under the largest: the factor is 1 and the gradient keeps its bits.
	// (A norm equal to the largest is clipped by a hair, 5 / (5 + 1e-6), as in PyTorch.)
	assert!(clip_coefficient_matrix(&[&s, &t], 5.0).unwrap().data[0] < 1.0);
	let one = clip_coefficient_matrix(&[&s, &t], 5.1).unwrap();
	assert_eq!(one.data, vec![1.0]);
	let kept = clip_scale_matrix(&g, &one).unwrap();
	assert_eq!(
		kept.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
		g.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
	);
	// Specials.
	assert_eq!(clip_coefficient([1.0, f32::NAN], 1.0).to_bits(), CANONICAL_NAN_BITS);
	assert_eq!(clip_coefficient([1.0, f32::INFINITY], 1.0), 0.0);
	assert_eq!(clip_coefficient([], 1.0), 1.0);
	assert_eq!(sum_squares(&[f32::NEG_INFINITY]), f32::INFINITY);
	// Shapes: the parts are columns, the factor one value.
	assert_eq!(clip_coefficient_matrix(&[&g], 1.0), Err(ShapeError::Mismatch));
	assert_eq!(clip_scale_matrix(&g, &s), Err(ShapeError::Mismatch));
}

/// The golden vectors: every operator on fixed inputs (specials included), digested. These
/// digests were produced by this reference implementation and pin the specification; if one
/// changes, the change altered RepOps bits and every conforming implementation with it.
#[test]
fn golden_vectors() {
	let a = matrix(101, 7, 13);
	let b = matrix(102, 13, 5);
	let bt = matrix(103, 5, 13);
	let at = matrix(104, 7, 5);
	let x = matrix(105, 7, 5);
	let bias = matrix(106, 1, 5);
	let labels = [0u32, 4, 1, 3, 2, 2, 4];
	let scalars = values(107, 4096);
	let mut outputs: Vec<(&str, Vec<f32>)> = vec![
		("matmul", matmul(&a, &b).unwrap().data),
		("matmul_tn", matmul_tn(&at, &x).unwrap().data),
		("matmul_nt", matmul_nt(&a, &bt).unwrap().data),
		("add", add_matrix(&x, &at).unwrap().data),
		("bias_add", bias_add(&x, &bias).unwrap().data),
		("relu", relu_matrix(&x).unwrap().data),
		("relu_backward", relu_backward_matrix(&x, &at).unwrap().data),
		("col_sum", col_sum(&x).unwrap().data),
		("transpose", transpose(&a).unwrap().data),
		("softmax_xent", softmax_xent(&x, &labels).unwrap().data),
		("softmax_xent_backward", softmax_xent_backward(&x, &labels).unwrap().data),
		("exp", scalars.iter().map(|v| exp(*v)).collect()),
		("exp_wide", scalars.iter().map(|v| exp(*v * 16.0)).collect()),
		("ln", scalars.iter().map(|v| ln(v.abs())).collect()),
		("sqrt", scalars.iter().map(|v| sqrt(*v)).collect()),
		("init", init_weights(42, 3, 17, 9).unwrap().data),
		("batch", batch_indices(42, 9, 64, 1797).iter().map(|i| f32::from_bits(*i)).collect()),
	];
	// The image operators on 3 samples of 2 x 6 x 5, with stride, padding and overlapping
	// windows.
	use super::image::*;
	let conv = Conv {
		input: ImageShape { channels: 2, height: 6, width: 5 },
		out_channels: 3,
		kernel: 3,
		stride: 2,
		padding: 1,
	};
	let pool =
		Pool { input: ImageShape { channels: 2, height: 6, width: 5 }, kernel: 3, stride: 2 };
	let images = matrix(108, 3, 60);
	let filters = matrix(109, 3, 18);
	let conv_bias = matrix(110, 1, 3);
	let conv_dy = matrix(111, 3, conv.output().values());
	let pool_dy = matrix(112, 3, pool.output().values());
	outputs.extend([
		("conv2d", conv2d(&conv, &images, &filters, &conv_bias).unwrap().data),
		("conv2d_input_grad", conv2d_input_grad(&conv, &conv_dy, &filters).unwrap().data),
		("conv2d_weight_grad", conv2d_weight_grad(&conv, &images, &conv_dy).unwrap().data),
		("conv_bias_grad", conv_bias_grad(&conv, &conv_dy).unwrap().data),
		("max_pool", max_pool(&pool, &images).unwrap().data),
		("max_pool_grad", max_pool_grad(&pool, &images, &pool_dy).unwrap().data),
		("avg_pool", avg_pool(&pool, &images).unwrap().data),
		("avg_pool_grad", avg_pool_grad(&pool, &pool_dy).unwrap().data),
	]);
	// GELU, layer normalization (rows of 13), dropout.
	use super::layers::*;
	// Three rows of ordinary values (a NaN or infinity anywhere in a row makes all of it NaN),
	// then one of [`values`].
	let ordinary = |seed: u64, rows: u32| {
		let mut rng = SplitMix64::new(seed);
		let mut v: Vec<f32> = (0..(rows - 1) * 13).map(|_| (rng.next_unit() - 0.5) * 8.0).collect();
		v.extend(values(seed, 13));
		Matrix::new(rows, 13, v).unwrap()
	};
	let rows = ordinary(113, 4);
	let gamma = ordinary(114, 2);
	let gamma = Matrix::new(1, 13, gamma.data[..13].to_vec()).unwrap();
	let beta = matrix(115, 1, 13);
	let rows_dy = ordinary(116, 4);
	outputs.extend([
		("gelu", scalars.iter().map(|v| gelu(*v)).collect()),
		("gelu_backward", scalars.chunks_exact(2).map(|w| gelu_backward(w[0], w[1])).collect()),
		("layer_norm", layer_norm(&rows, &gamma, &beta).unwrap().data),
		("layer_norm_input_grad", layer_norm_input_grad(&rows, &gamma, &rows_dy).unwrap().data),
		("layer_norm_gamma_grad", layer_norm_gamma_grad(&rows, &rows_dy).unwrap().data),
		("dropout", dropout(&rows, 42, 7, 3, 0.3).unwrap().data),
	]);
	// The sequence operators: 3 samples of context 4 over 6 tokens (one feature not a token
	// id), width 6, attention of two heads on rows with specials in the last sequence.
	use super::sequence::*;
	let tokens = Tokens { vocab: 6, context: 4, dim: 6 };
	let mut ids: Vec<f32> = (0..15).map(|i| ((i * 7 + 3) % 6) as f32).collect();
	ids[6] = 2.5;
	let x = Matrix::new(3, 5, ids).unwrap();
	let tok = matrix(117, 6, 6);
	let pos = matrix(118, 4, 6);
	// Ordinary values, then one row of [`values`] (the last sequence's last position).
	let rows_of = |seed: u64, rows: u32, cols: u32| {
		let mut rng = SplitMix64::new(seed);
		let mut v: Vec<f32> =
			(0..(rows - 1) * cols).map(|_| (rng.next_unit() - 0.5) * 4.0).collect();
		v.extend(values(seed, cols as usize));
		Matrix::new(rows, cols, v).unwrap()
	};
	let seq_dy = rows_of(119, 12, 6);
	let att = Attention { heads: 2, context: 4, dim: 6 };
	let qkv = rows_of(120, 12, 18);
	let logits = matrix(121, 12, 6);
	outputs.extend([
		("embed", embed(&tokens, &x, &tok, &pos).unwrap().data),
		("embed_grad", embed_grad(&tokens, &x, &seq_dy).unwrap().data),
		("position_grad", position_grad(&tokens, &seq_dy).unwrap().data),
		("token_xent", token_xent(&tokens, &logits, &x).unwrap().data),
		("token_xent_backward", token_xent_backward(&tokens, &logits, &x).unwrap().data),
		("attention", attention(&att, &qkv).unwrap().data),
		("attention_grad", attention_grad(&att, &qkv, &seq_dy).unwrap().data),
	]);
	// Gradient clipping: row sums of squares (specials in the last row), the factor of
	// ordinary sums (clipping), of small ones (1), of specials (NaN, infinity: NaN, 0), and
	// scaling by each.
	use super::clip::*;
	let sums = sum_squares_matrix(&rows).unwrap();
	let parts = [&sums, &sum_squares_matrix(&seq_dy).unwrap()];
	let factors = [
		clip_coefficient_matrix(&parts[..1], 0.5).unwrap().data[0],
		clip_coefficient(rows.data[..13].iter().map(|v| v * v), 0.5),
		clip_coefficient([1e-12, 0.0], 1.0),
		clip_coefficient([1.0, f32::INFINITY], 1.0),
		clip_coefficient([-1.0], 1.0),
		clip_coefficient([f32::from_bits(1), 1e-30], 3e-38),
	];
	let scaled = factors.iter().flat_map(|c| scalars[..64].iter().map(|g| clip_scale(*g, *c)));
	outputs.extend([
		("sum_squares", sums.data.clone()),
		("clip_coefficient", factors.to_vec()),
		("clip_scale", scaled.collect()),
	]);
	let mut sgd = Vec::new();
	let mut adam_out = Vec::new();
	let c = adam_corrections(0.9, 0.999, 3);
	for w in scalars.chunks_exact(3) {
		let (p, v) = sgd_momentum(w[0], w[1], w[2], 0.05, 0.9);
		sgd.extend([p, v]);
		let (p, m, v) = adam(w[0], w[1], w[2].abs(), w[0], 0.001, 0.9, 0.999, 1e-8, c);
		adam_out.extend([p, m, v]);
	}
	outputs.push(("sgd_momentum", sgd));
	outputs.push(("adam", adam_out));

	let got: Vec<String> =
		outputs.iter().map(|(name, v)| format!("{name} {}", digest(v))).collect();
	let expected: Vec<&str> = GOLDEN.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
	if std::env::var_os("REPOPS_PRINT_GOLDEN").is_some() {
		println!("{}", got.join("\n"));
	}
	assert_eq!(
		got, expected,
		"RepOps bits changed; run with REPOPS_PRINT_GOLDEN=1 to see the new digests"
	);
}

const GOLDEN: &str = include_str!("golden.txt");
