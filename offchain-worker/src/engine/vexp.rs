//! RepOps `exp`, GELU and GELU's gradient eight values at a time (AVX2): the very operations of
//! `repops::exp` and `repops::layers::{gelu, gelu_backward}`, each an IEEE single-precision
//! operation rounded on its own (no fusing: every product and sum is a separate instruction,
//! as in the reference), in the same order per lane. The reference makes every NaN canonical
//! after each operation; a NaN stays a NaN through every later operation here (multiplications,
//! additions, divisions), so making it canonical once at the end gives the same bits. The
//! reference's range checks (`exp` of a NaN, above `EXP_MAX`, below `EXP_MIN`) become blends
//! after the main path has run on every lane.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use trainet_primitives::repops::{self, layers};

/// Whether the CPU runs these kernels (AVX2 and FMA, as the GEMM's).
pub fn available() -> bool {
	#[cfg(target_arch = "x86_64")]
	{
		std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
	}
	#[cfg(not(target_arch = "x86_64"))]
	{
		false
	}
}

#[cfg(target_arch = "x86_64")]
mod avx {
	use super::*;

	#[inline(always)]
	unsafe fn splat(v: f32) -> __m256 {
		_mm256_set1_ps(v)
	}

	/// Canonical NaNs where a lane is a NaN.
	#[inline(always)]
	unsafe fn canon(v: __m256) -> __m256 {
		let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v);
		_mm256_blendv_ps(v, splat(f32::from_bits(repops::CANONICAL_NAN_BITS)), nan)
	}

	/// `2^k` for each lane's `k` (in `[-126, 127]` on the lanes kept).
	#[inline(always)]
	unsafe fn pow2(k: __m256i) -> __m256 {
		let biased = _mm256_add_epi32(k, _mm256_set1_epi32(127));
		let biased = _mm256_min_epi32(
			_mm256_max_epi32(biased, _mm256_set1_epi32(1)),
			_mm256_set1_epi32(254),
		);
		_mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased))
	}

	/// `repops::exp` of eight values.
	#[inline(always)]
	pub unsafe fn exp(x: __m256) -> __m256 {
		let (add, sub, mul) = (_mm256_add_ps, _mm256_sub_ps, _mm256_mul_ps);
		let magic = splat(repops::ROUND_MAGIC);
		let kf = sub(add(mul(x, splat(repops::LOG2_E)), magic), magic);
		let r = sub(sub(x, mul(kf, splat(repops::LN2_HI))), mul(kf, splat(repops::LN2_LO)));
		let [c @ .., c7] = repops::EXP_COEFFS;
		let mut p = splat(c7);
		for c in c.iter().rev() {
			p = add(mul(p, r), splat(*c));
		}
		// `kf as i32`: `kf` is a whole number on the lanes kept.
		let k = _mm256_cvttps_epi32(kf);
		// `k / 2` rounded toward zero, as Rust's division: add 1 to odd negatives first.
		let sign = _mm256_srli_epi32::<31>(k);
		let k1 = _mm256_srai_epi32::<1>(_mm256_add_epi32(k, sign));
		let k2 = _mm256_sub_epi32(k, k1);
		let y = mul(mul(p, pow2(k1)), pow2(k2));
		// The range checks, in the reference's order: NaN, then above the top, then below.
		let below = _mm256_cmp_ps::<_CMP_LT_OQ>(x, splat(repops::EXP_MIN));
		let y = _mm256_blendv_ps(y, _mm256_setzero_ps(), below);
		let above = _mm256_cmp_ps::<_CMP_GT_OQ>(x, splat(repops::EXP_MAX));
		let y = _mm256_blendv_ps(y, splat(f32::INFINITY), above);
		let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
		_mm256_blendv_ps(y, splat(f32::from_bits(repops::CANONICAL_NAN_BITS)), nan)
	}

	/// `tanh(u) = 1 - 2 / (exp(2u) + 1)`.
	#[inline(always)]
	unsafe fn tanh(u: __m256) -> __m256 {
		let e = exp(_mm256_mul_ps(splat(2.0), u));
		_mm256_sub_ps(splat(1.0), _mm256_div_ps(splat(2.0), _mm256_add_ps(e, splat(1.0))))
	}

	/// `layers::gelu` of eight values.
	#[inline(always)]
	pub unsafe fn gelu(x: __m256) -> __m256 {
		let (add, mul) = (_mm256_add_ps, _mm256_mul_ps);
		let cube = mul(x, mul(x, x));
		let u = mul(splat(layers::GELU_C), add(x, mul(splat(layers::GELU_A), cube)));
		canon(mul(mul(splat(0.5), x), add(splat(1.0), tanh(u))))
	}

	/// `layers::gelu_backward` of eight values.
	#[inline(always)]
	pub unsafe fn gelu_backward(x: __m256, dy: __m256) -> __m256 {
		let (add, sub, mul) = (_mm256_add_ps, _mm256_sub_ps, _mm256_mul_ps);
		let x2 = mul(x, x);
		let t = tanh(mul(splat(layers::GELU_C), add(x, mul(splat(layers::GELU_A), mul(x, x2)))));
		let du = mul(
			splat(layers::GELU_C),
			add(splat(1.0), mul(mul(splat(3.0), splat(layers::GELU_A)), x2)),
		);
		let half = mul(splat(0.5), add(splat(1.0), t));
		let d = add(half, mul(mul(mul(splat(0.5), x), sub(splat(1.0), mul(t, t))), du));
		canon(mul(dy, d))
	}
}

/// `out[i] = repops::exp(x[i])` on any CPU: eight at a time where [`available`], else the
/// reference's own `repops::exp_each` (the same bits either way).
pub fn exps(x: &[f32], out: &mut [f32]) {
	#[cfg(target_arch = "x86_64")]
	if available() {
		// SAFETY: the CPU has AVX2 and FMA (checked just above).
		unsafe { exp(x, out) };
		return;
	}
	repops::exp_each(x, out);
}

/// `out[i] = repops::exp(x[i])`.
///
/// # Safety
/// The CPU must have AVX2 and FMA ([`available`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn exp(x: &[f32], out: &mut [f32]) {
	let n = x.len().min(out.len()) / 8 * 8;
	for (xs, os) in x[..n].chunks_exact(8).zip(out[..n].chunks_exact_mut(8)) {
		_mm256_storeu_ps(os.as_mut_ptr(), avx::exp(_mm256_loadu_ps(xs.as_ptr())));
	}
	// The last values (fewer than eight) through the vector too, in a padded copy: the
	// scalar `repops::exp` costs more than a vector's worth (attention's rows are short).
	let end = x.len().min(out.len());
	if n < end {
		let mut lanes = [0.0f32; 8];
		lanes[..end - n].copy_from_slice(&x[n..end]);
		_mm256_storeu_ps(lanes.as_mut_ptr(), avx::exp(_mm256_loadu_ps(lanes.as_ptr())));
		out[n..end].copy_from_slice(&lanes[..end - n]);
	}
}

/// `out[i] = layers::gelu(x[i])`, or with `dy`, `layers::gelu_backward(x[i], dy[i])`.
///
/// # Safety
/// The CPU must have AVX2 and FMA ([`available`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gelu(x: &[f32], dy: Option<&[f32]>, out: &mut [f32]) {
	let n = x.len().min(out.len()) / 8 * 8;
	for (i, os) in out[..n].chunks_exact_mut(8).enumerate() {
		let xs = _mm256_loadu_ps(x[i * 8..].as_ptr());
		let v = match dy {
			Some(dy) => avx::gelu_backward(xs, _mm256_loadu_ps(dy[i * 8..i * 8 + 8].as_ptr())),
			None => avx::gelu(xs),
		};
		_mm256_storeu_ps(os.as_mut_ptr(), v);
	}
	for i in n..x.len().min(out.len()) {
		out[i] = match dy {
			Some(dy) => layers::gelu_backward(x[i], dy[i]),
			None => layers::gelu(x[i]),
		};
	}
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
	use super::*;
	use trainet_primitives::repops::SplitMix64;

	/// Every exponent and sign, random mantissas, the specials and the range's edges: eight at a
	/// time gives the reference's bits for `exp`, GELU and GELU's gradient.
	#[test]
	fn eight_at_a_time_gives_the_references_bits() {
		if !available() {
			eprintln!("SKIPPED: no AVX2 and FMA");
			return;
		}
		let mut rng = SplitMix64::new(5);
		let mut x: Vec<f32> = (0..400_000).map(|_| f32::from_bits(rng.next_u64() as u32)).collect();
		x.extend((0..200_000).map(|_| (rng.next_unit() - 0.5) * 240.0));
		x.extend((0..100_000).map(|_| (rng.next_unit() - 0.5) * 12.0));
		for edge in [repops::EXP_MAX, repops::EXP_MIN, 0.0, -0.0, 88.72283, -103.97207] {
			x.extend([
				edge,
				f32::from_bits(edge.to_bits() + 1),
				f32::from_bits(edge.to_bits().saturating_sub(1)),
			]);
		}
		x.extend([f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE, 1e-45]);
		let dy: Vec<f32> = x.iter().rev().copied().collect();
		let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
		let mut out = vec![0.0f32; x.len()];
		// SAFETY: checked above.
		unsafe { exp(&x, &mut out) };
		assert_eq!(bits(&out), bits(&x.iter().map(|v| repops::exp(*v)).collect::<Vec<_>>()));
		unsafe { gelu(&x, None, &mut out) };
		assert_eq!(bits(&out), bits(&x.iter().map(|v| layers::gelu(*v)).collect::<Vec<_>>()));
		unsafe { gelu(&x, Some(&dy), &mut out) };
		let want: Vec<f32> =
			x.iter().zip(&dy).map(|(v, d)| layers::gelu_backward(*v, *d)).collect();
		assert_eq!(bits(&out), bits(&want));
		// Lengths that are not multiples of eight (the last values padded into a vector),
		// from the end of `x`, where the specials and edges are.
		for len in 1..=17 {
			let part = &x[x.len() - len..];
			let mut out = vec![0.0f32; len];
			// SAFETY: checked above.
			unsafe { exp(part, &mut out) };
			assert_eq!(bits(&out), bits(&part.iter().map(|v| repops::exp(*v)).collect::<Vec<_>>()));
		}
	}
}
