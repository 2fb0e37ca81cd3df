//! The engine's matrix product: register-blocked and cache-blocked like a BLAS `sgemm`, but
//! with the RepOps rounding, so every output element has exactly the bits of the reference
//! `dot` (`acc = +0.0`, then `acc = fma(a_ik, b_kj, acc)` for `k` ascending).
//!
//! Why a hand-written kernel rather than a BLAS crate: a BLAS (and `matrixmultiply`, and
//! burn's NdArray backend through it) splits and reorders the sum over `k` as it sees fit
//! (several partial accumulators, a different split per CPU), which changes the low bits.
//! The blocking here never does: it only chooses *which* output elements are computed
//! together, and when.
//!
//! - A **micro-tile** of `MR x NR` outputs (6 x 16: twelve AVX2 registers) is accumulated in
//!   registers while `k` runs ascending: per `k`, one value of `A` per row is broadcast and
//!   multiplied into one row of `B` with one fused multiply-add per output element.
//! - **`k` in blocks of `KC`**: after a block the micro-tile is stored and the next block
//!   loads it and goes on. Storing and loading an `f32` changes no bit, so this is still one
//!   fma per `k` in ascending order; it keeps the `KC x NR` slice of `B` in L1.
//! - **Packing**: `A` is copied into blocks of `MR` rows (`k`-major) and `B` into panels of
//!   `NR` columns, so the kernel reads both contiguously whatever the product's layout (`A·B`,
//!   `Aᵀ·B`, `A·Bᵀ` are only different strides here; nothing is transposed first). The
//!   padding of the last block and panel is zero and its results are dropped. The buffers
//!   are kept per thread and reused.
//! - **AVX-512**: where the CPU has it, four micro-tiles side by side (`2·MR x 2·NR`, two
//!   row blocks of packed `A` and two panels of packed `B`) are one tile of 24 registers of
//!   16 lanes, each lane still one fused multiply-add per `k`, ascending: the same operation
//!   on twice the lanes, with twice the outputs per value of `A` loaded. Which instruction set
//!   runs changes no bit (tested against the reference on each this CPU has).
//! - **Threads**: the output is cut into tasks of whole micro-tiles; a task computes each of
//!   its elements entirely, so no thread count changes a bit.
//! - **NaN canonicalization** at the end, as the engine's module documentation explains.

use rayon::prelude::*;
use trainet_primitives::repops::{canon, CANONICAL_NAN_BITS};

/// Rows of a micro-tile.
const MR: usize = 6;
/// Columns of a micro-tile: two AVX2 vectors.
const NR: usize = 16;
/// Values of a micro-tile.
const TILE: usize = MR * NR;
/// `k` per pass over a micro-tile: the `KC x NR` slice of packed `B` (16 KiB) stays in L1.
const KC: usize = 256;
/// Micro-tile rows per task: the task's `MR·TASK_ROW_BLOCKS x KC` block of `A` (48 KiB)
/// stays in L2 while it meets each of the task's panels of `B`.
const TASK_ROW_BLOCKS: usize = 8;
/// Micro-tile columns per task.
const TASK_PANELS: usize = 4;
/// Values of `k` per piece of work when packing an operand whose rows are adjacent in memory
/// ([`pack_in_memory_order`]).
const PACK_ROWS: usize = 32;

std::thread_local! {
	/// Packed `A` and `B` of the last product computed on this thread, kept for their memory.
	static PACKED: std::cell::Cell<(Vec<f32>, Vec<f32>)> = const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

/// A read-only matrix: element `(r, c)` is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
	pub data: &'a [f32],
	pub rows: usize,
	pub cols: usize,
	/// Distance between rows.
	pub rs: usize,
	/// Distance between columns.
	pub cs: usize,
}

impl View<'_> {
	#[inline(always)]
	fn at(&self, r: usize, c: usize) -> f32 {
		self.data[r * self.rs + c * self.cs]
	}
}

impl View<'_> {
	/// The transpose: the same values, rows and columns swapped.
	fn t(self) -> Self {
		View { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
	}
}

/// Packs `x` (`r x k`) in blocks of `W` rows, `k`-major: value `(ib·W + lane, kk)` goes to
/// `out[(ib·k + kk)·W + lane]`; the lanes past the last row are zero. `A` is packed so with
/// `W = MR`, and `B` as `Bᵀ` with `W = NR` (its panels of `NR` columns). `out` is only ever
/// grown (and zeroed once, when it is): every value of its first `r.div_ceil(W)·k·W` is
/// written here, so a reused buffer needs no clearing.
fn pack<const W: usize>(x: View, parallel: bool, out: &mut Vec<f32>) {
	let (r, k) = (x.rows, x.cols);
	#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
	let avx2 = has_avx2_fma();
	let len = r.div_ceil(W) * k * W;
	if out.len() < len {
		out.resize(len, 0.0);
	}
	let out = &mut out[..len];
	if x.rs == 1 {
		pack_in_memory_order::<W>(x, parallel, out);
		return;
	}
	let pack = |(ib, block): (usize, &mut [f32])| {
		let lanes = W.min(r - ib * W);
		if lanes < W {
			// The last block's padding: zero (its results are dropped).
			for values in block.chunks_exact_mut(W) {
				values[lanes..].fill(0.0);
			}
		}
		if x.cs == 1 {
			// Each row is contiguous (`A` of `A·B`, `B` of `A·Bᵀ`): the block's rows side by
			// side, read in step, `W` values written together per `kk`.
			let rows: Vec<&[f32]> = (0..lanes)
				.map(|lane| {
					let from = (ib * W + lane) * x.rs;
					&x.data[from..from + k]
				})
				.collect();
			// The first `done` values of `k` by 8 x 8 transposes in AVX2 registers, the rest
			// one by one.
			let mut done = 0;
			#[cfg(target_arch = "x86_64")]
			if avx2 {
				// SAFETY: the CPU has AVX2 (checked by the caller); the rows and the block
				// have the lengths `transpose_pack` requires.
				done = unsafe { transpose_pack::<W>(&rows, block) };
			}
			for (kk, values) in block.chunks_exact_mut(W).enumerate().skip(done) {
				for (v, row) in values.iter_mut().zip(&rows) {
					*v = row[kk];
				}
			}
		} else {
			for lane in 0..lanes {
				for kk in 0..k {
					block[kk * W + lane] = x.at(ib * W + lane, kk);
				}
			}
		}
	};
	if parallel {
		out.par_chunks_mut(k * W).enumerate().for_each(pack);
	} else {
		out.chunks_mut(k * W).enumerate().for_each(pack);
	}
}

/// [`pack`] of an `x` whose rows are adjacent in memory (`x.rs == 1`: `B` of `A·B` and
/// `Aᵀ·B`, `A` of `Aᵀ·B`), reading `x`'s memory in order: for each `kk`, the `W` values of
/// every block in turn. Each block needs `W` values of each `kk`, and `kk` to `kk + 1` is a
/// whole row of memory apart (4 KiB on the large models): block by block, every read was on a
/// new page, where the hardware prefetchers stop, and this packing took twice as long as
/// [`transpose_pack`]'s. Work is split by ranges of `kk` (`PACK_ROWS` of them), each writing
/// its part of every block.
fn pack_in_memory_order<const W: usize>(x: View, parallel: bool, out: &mut [f32]) {
	let (r, k) = (x.rows, x.cols);
	// Range `p` of `kk` (`p·PACK_ROWS..`) of every block, block by block.
	let mut ranges: Vec<Vec<&mut [f32]>> =
		(0..k.div_ceil(PACK_ROWS)).map(|_| Vec::with_capacity(r.div_ceil(W))).collect();
	for block in out.chunks_mut(k * W) {
		for (range, part) in ranges.iter_mut().zip(block.chunks_mut(PACK_ROWS * W)) {
			range.push(part);
		}
	}
	let fill = |(p, mut parts): (usize, Vec<&mut [f32]>)| {
		let rows = PACK_ROWS.min(k - p * PACK_ROWS);
		for j in 0..rows {
			// Memory row `kk`: the values `(0..r, kk)`, `W` to each block.
			let from = (p * PACK_ROWS + j) * x.cs;
			let row = &x.data[from..from + r];
			for (part, src) in parts.iter_mut().zip(row.chunks(W)) {
				let values = &mut part[j * W..(j + 1) * W];
				if src.len() == W {
					// A length the compiler knows: inlined vector moves.
					values.copy_from_slice(&src[..W]);
				} else {
					// The last block's padding: zero (its results are dropped).
					values[..src.len()].copy_from_slice(src);
					values[src.len()..].fill(0.0);
				}
			}
		}
	};
	if parallel {
		ranges.into_par_iter().enumerate().for_each(fill);
	} else {
		ranges.into_iter().enumerate().for_each(fill);
	}
}

/// Packs the first `k - k % 8` values of `k` of up to `W` rows (`rows`, each of `k` values
/// in memory order; `W` at most 16) into `block` (`k x W`, `k`-major, as [`pack`] lays it
/// out), eight rows by eight values at a time through a transpose in registers; returns how
/// many values of `k` it packed. Lanes without a row get zeros.
///
/// Why: a row-contiguous operand (`A` of `A·B` and `A·Bᵀ`, `B` of `A·Bᵀ`) is packed across
/// its rows, and value-by-value reads from `W` rows a whole row apart (4 KiB on the large
/// models: every one in the same L1 set) made its packing cost as much as a fifth of the
/// product. Each row's cache line is used whole here before the next is read. Copying moves
/// values without arithmetic, so no bit can change.
///
/// # Safety
/// The CPU must have AVX2; every row holds `k` values and `block` at least `k·W`, with
/// `rows.len() <= W <= 16`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_pack<const W: usize>(rows: &[&[f32]], block: &mut [f32]) -> usize {
	use std::arch::x86_64::{
		_mm256_castps256_ps128, _mm256_extractf128_ps, _mm256_loadu_ps, _mm256_setzero_ps,
		_mm256_storeu_ps, _mm_castps_pd, _mm_store_sd, _mm_storeu_ps,
	};
	debug_assert!(rows.len() <= W && W <= 16);
	let k = block.len() / W;
	let whole = k - k % 8;
	let out = block.as_mut_ptr();
	for g0 in (0..W).step_by(8) {
		// This group's rows and lanes.
		let group = rows.get(g0..).unwrap_or(&[]);
		let width = (W - g0).min(8);
		for kk0 in (0..whole).step_by(8) {
			let mut vectors = [_mm256_setzero_ps(); 8];
			for (v, row) in vectors.iter_mut().zip(group) {
				debug_assert!(row.len() >= kk0 + 8);
				// SAFETY: values `kk0..kk0 + 8 <= k` of a row of `k` (the caller's contract).
				*v = unsafe { _mm256_loadu_ps(row.as_ptr().add(kk0)) };
			}
			for (j, v) in transpose8(vectors).into_iter().enumerate() {
				// SAFETY: lanes `g0..g0 + width <= W` of row `kk0 + j < k` of the block.
				let at = unsafe { out.add((kk0 + j) * W + g0) };
				if width == 8 {
					// SAFETY: as above, eight values.
					unsafe { _mm256_storeu_ps(at, v) };
				} else {
					debug_assert_eq!(width, 6, "W is MR or NR");
					// Six values: four, then two; the two lanes left are padding.
					// SAFETY: as above, six values.
					unsafe {
						_mm_storeu_ps(at, _mm256_castps256_ps128(v));
						_mm_store_sd(
							at.add(4).cast(),
							_mm_castps_pd(_mm256_extractf128_ps::<1>(v)),
						);
					}
				}
			}
		}
	}
	whole
}

/// The transpose of eight vectors of eight: vector `j` of the result holds value `j` of each
/// input vector, in order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn transpose8(r: [std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
	use std::arch::x86_64::{
		_mm256_permute2f128_ps, _mm256_shuffle_ps, _mm256_unpackhi_ps, _mm256_unpacklo_ps,
	};
	let [r0, r1, r2, r3, r4, r5, r6, r7] = r;
	// Pairs interleaved: (r0[0], r1[0], r0[1], r1[1] | r0[4], r1[4], r0[5], r1[5]), ...
	let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
	let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
	let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
	let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
	// Columns c | c + 4 of four rows: s0 holds columns 0 and 4 of rows 0-3, ...
	let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
	let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
	let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
	let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
	let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
	let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
	let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
	let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
	// The halves of rows 0-3 and rows 4-7 put together.
	[
		_mm256_permute2f128_ps::<0x20>(s0, s4),
		_mm256_permute2f128_ps::<0x20>(s1, s5),
		_mm256_permute2f128_ps::<0x20>(s2, s6),
		_mm256_permute2f128_ps::<0x20>(s3, s7),
		_mm256_permute2f128_ps::<0x31>(s0, s4),
		_mm256_permute2f128_ps::<0x31>(s1, s5),
		_mm256_permute2f128_ps::<0x31>(s2, s6),
		_mm256_permute2f128_ps::<0x31>(s3, s7),
	]
}

/// Where a kernel reads and writes its `MR x NR` micro-tile: row `r` is the `NR` values from
/// `ptr + r·ld` (the output matrix itself, `ld` its width, or a local tile, `ld = NR`).
#[derive(Clone, Copy)]
struct TileRef {
	ptr: *mut f32,
	ld: usize,
}

/// `tile += a · b` over the `k` of this pass (`a.len() / MR` of them), ascending, one fused
/// multiply-add per element per `k`; from `+0.0` instead of the tile when `first`.
#[inline(always)]
fn kernel_body(a: &[f32], b: &[f32], tile: &mut [f32; TILE], first: bool) {
	let mut acc = if first { [0.0f32; TILE] } else { *tile };
	for (ak, bk) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
		for (r, &ar) in ak.iter().enumerate() {
			for (c, &bc) in bk.iter().enumerate() {
				acc[r * NR + c] = ar.mul_add(bc, acc[r * NR + c]);
			}
		}
	}
	*tile = acc;
}

/// [`kernel_body`] for any CPU (`mul_add` may be a software fma: slow, the same bits), on the
/// micro-tile at `c`, stored with NaNs canonicalized (a NaN accumulator stays NaN through the
/// later passes over `k`, so canonicalizing it early changes no bit of the result).
///
/// # Safety
/// `c` is `MR` rows of `NR` values, valid for reads (when not `first`) and writes.
unsafe fn kernel_portable(a: &[f32], b: &[f32], c: TileRef, first: bool) {
	let mut tile = [0.0f32; TILE];
	for (r, row) in tile.chunks_exact_mut(NR).enumerate() {
		if !first {
			// SAFETY: the caller's contract.
			row.copy_from_slice(unsafe { std::slice::from_raw_parts(c.ptr.add(r * c.ld), NR) });
		}
	}
	kernel_body(a, b, &mut tile, first);
	for (r, row) in tile.chunks_exact(NR).enumerate() {
		// SAFETY: the caller's contract.
		let to = unsafe { std::slice::from_raw_parts_mut(c.ptr.add(r * c.ld), NR) };
		for (o, v) in to.iter_mut().zip(row) {
			*o = canon(*v);
		}
	}
}

/// [`kernel_portable`] with AVX2 registers: the twelve accumulators never leave them during a
/// pass, and are loaded from and stored to the micro-tile where it lies, NaNs canonicalized
/// by a compare and a blend. `vfmaddps` is IEEE fusedMultiplyAdd per lane, the same
/// operation as `mul_add`.
///
/// # Safety
/// The CPU must have AVX2 and FMA ([`has_avx2_fma`]); `c` as for [`kernel_portable`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma,avx2")]
unsafe fn kernel_avx2(a: &[f32], b: &[f32], c: TileRef, first: bool) {
	use std::arch::x86_64::{
		_mm256_blendv_ps, _mm256_broadcast_ss, _mm256_castsi256_ps, _mm256_cmp_ps, _mm256_fmadd_ps,
		_mm256_loadu_ps, _mm256_set1_epi32, _mm256_setzero_ps, _mm256_storeu_ps, _CMP_UNORD_Q,
	};
	// Vector `v` of the tile: row `v / 2`, its first or second half.
	// SAFETY (of each use): inside the tile (the caller's contract).
	let at = |v: usize| unsafe { c.ptr.add((v / 2) * c.ld + (v % 2) * 8) };
	let mut acc = [_mm256_setzero_ps(); TILE / 8];
	if !first {
		for (v, slot) in acc.iter_mut().enumerate() {
			// SAFETY: 8 values of the tile, readable (the caller's contract).
			*slot = unsafe { _mm256_loadu_ps(at(v)) };
		}
	}
	// Arrays of `MR` and `NR` (not slices): the loop over the rows has a length the compiler
	// knows.
	let (a, _) = a.as_chunks::<MR>();
	let (b, _) = b.as_chunks::<NR>();
	for (ak, bk) in a.iter().zip(b) {
		// SAFETY: `bk` holds `NR` = 16 values: two vectors.
		let (b0, b1) =
			unsafe { (_mm256_loadu_ps(bk.as_ptr()), _mm256_loadu_ps(bk.as_ptr().add(8))) };
		for (r, ar) in ak.iter().enumerate() {
			let ar = _mm256_broadcast_ss(ar);
			acc[2 * r] = _mm256_fmadd_ps(ar, b0, acc[2 * r]);
			acc[2 * r + 1] = _mm256_fmadd_ps(ar, b1, acc[2 * r + 1]);
		}
	}
	let nan = _mm256_castsi256_ps(_mm256_set1_epi32(CANONICAL_NAN_BITS as i32));
	for (v, value) in acc.into_iter().enumerate() {
		let canonical = _mm256_blendv_ps(value, nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(value, value));
		// SAFETY: 8 values of the tile, writable (the caller's contract).
		unsafe { _mm256_storeu_ps(at(v), canonical) };
	}
}

/// The instruction sets a product can run on, each a superset of the one before: every one
/// gives the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Isa {
	/// [`kernel_portable`] only.
	Portable,
	/// [`kernel_avx2`].
	Avx2,
	/// [`kernel_avx512`] on whole groups of four micro-tiles, [`kernel_avx2`] on the others.
	Avx512,
}

impl Isa {
	/// The fastest this CPU has, unless the environment variable `TRAINET_NO_AVX512` is set
	/// (to compare, or where AVX-512 lowers the clock more than it gains: older Xeons).
	pub(crate) fn best() -> Self {
		static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
		*BEST.get_or_init(|| {
			let avx512 = has_avx512() && std::env::var_os("TRAINET_NO_AVX512").is_none();
			Self::detect(avx512)
		})
	}

	/// The most this CPU can run (whatever the environment says).
	pub(crate) fn supported() -> Self {
		Self::detect(has_avx512())
	}

	/// AVX-512 when `avx512` (which the CPU must have), else the best of the others.
	fn detect(avx512: bool) -> Self {
		if avx512 {
			Isa::Avx512
		} else if has_avx2_fma() {
			Isa::Avx2
		} else {
			Isa::Portable
		}
	}

	/// Every instruction set this CPU has, the portable one first.
	#[cfg(test)]
	pub(crate) fn available() -> Vec<Self> {
		[Isa::Portable, Isa::Avx2, Isa::Avx512]
			.into_iter()
			.filter(|i| *i <= Isa::supported())
			.collect()
	}
}

/// Whether [`kernel_avx512`] can run here (AVX-512F, and the FMA and AVX2 of the rest).
fn has_avx512() -> bool {
	#[cfg(target_arch = "x86_64")]
	{
		std::is_x86_feature_detected!("avx512f") && has_avx2_fma()
	}
	#[cfg(not(target_arch = "x86_64"))]
	{
		false
	}
}

/// [`kernel_avx2`]'s pass over four micro-tiles at once: rows `0..MR` of the `2·MR x 2·NR`
/// tile at `c` from `a0` (a block of packed `A`), rows `MR..2·MR` from `a1`, columns `0..NR`
/// from `b0` (a panel of packed `B`), `NR..2·NR` from `b1`. Each of the 24 accumulators is a
/// row's half, 16 lanes: per `k`, every lane is `fma(a_ik, b_kj, acc)`, as in the other
/// kernels, from `+0.0` when `first`; NaNs canonicalized by a compare into a mask and a blend.
///
/// # Safety
/// The CPU must have AVX-512F ([`has_avx512`]); `a0` and `a1` hold `MR` values per `k` and
/// `b0` and `b1` `NR`, for the same `k`s; `c` is `2·MR` rows of `2·NR` values (row `r` from
/// `c.ptr + r·c.ld`), valid for reads (when not `first`) and writes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel_avx512(a0: &[f32], a1: &[f32], b0: &[f32], b1: &[f32], c: TileRef, first: bool) {
	use std::arch::x86_64::{
		_mm512_castsi512_ps, _mm512_cmp_ps_mask, _mm512_fmadd_ps, _mm512_loadu_ps,
		_mm512_mask_blend_ps, _mm512_set1_epi32, _mm512_set1_ps, _mm512_setzero_ps,
		_mm512_storeu_ps, _CMP_UNORD_Q,
	};
	const ROWS: usize = 2 * MR;
	debug_assert!(a0.len() == a1.len() && b0.len() == b1.len());
	debug_assert_eq!(a0.len() / MR, b0.len() / NR);
	// Vector `v` of the tile: row `v / 2`, its first or second panel's columns.
	// SAFETY (of each use): inside the tile (the caller's contract).
	let at = |v: usize| unsafe { c.ptr.add((v / 2) * c.ld + (v % 2) * NR) };
	let mut acc = [_mm512_setzero_ps(); 2 * ROWS];
	if !first {
		for (v, slot) in acc.iter_mut().enumerate() {
			// SAFETY: 16 values of the tile, readable (the caller's contract).
			*slot = unsafe { _mm512_loadu_ps(at(v)) };
		}
	}
	// Raw pointers and a counted loop: with slices or chunk iterators, bounds checks in the
	// loop made the compiler store half the accumulators to the stack on every `k`.
	let ks = a0.len() / MR;
	let (a0, a1, b0, b1) = (a0.as_ptr(), a1.as_ptr(), b0.as_ptr(), b1.as_ptr());
	for kk in 0..ks {
		// SAFETY: `kk < ks`: values `kk·NR..(kk + 1)·NR` of each panel and `kk·MR..(kk + 1)·MR`
		// of each block are inside them (the caller's contract).
		unsafe {
			let (v0, v1) = (_mm512_loadu_ps(b0.add(kk * NR)), _mm512_loadu_ps(b1.add(kk * NR)));
			for r in 0..MR {
				let ar = _mm512_set1_ps(*a0.add(kk * MR + r));
				acc[2 * r] = _mm512_fmadd_ps(ar, v0, acc[2 * r]);
				acc[2 * r + 1] = _mm512_fmadd_ps(ar, v1, acc[2 * r + 1]);
			}
			for r in 0..MR {
				let ar = _mm512_set1_ps(*a1.add(kk * MR + r));
				acc[2 * (MR + r)] = _mm512_fmadd_ps(ar, v0, acc[2 * (MR + r)]);
				acc[2 * (MR + r) + 1] = _mm512_fmadd_ps(ar, v1, acc[2 * (MR + r) + 1]);
			}
		}
	}
	let nan = _mm512_castsi512_ps(_mm512_set1_epi32(CANONICAL_NAN_BITS as i32));
	for (v, value) in acc.into_iter().enumerate() {
		let canonical =
			_mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(value, value), value, nan);
		// SAFETY: 16 values of the tile, writable (the caller's contract).
		unsafe { _mm512_storeu_ps(at(v), canonical) };
	}
}

/// Whether [`kernel_avx2`] (and the engine's other FMA and AVX2 kernels) can run here.
pub(super) fn has_avx2_fma() -> bool {
	#[cfg(target_arch = "x86_64")]
	{
		std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2")
	}
	#[cfg(not(target_arch = "x86_64"))]
	{
		false
	}
}

/// Where the tasks of one product write their micro-tiles: the output vector's memory, which
/// every task writes a rectangle of its own (the tasks' rectangles do not overlap).
#[derive(Clone, Copy)]
struct Output {
	data: *mut f32,
	/// Columns (the distance between rows).
	n: usize,
}

// SAFETY: the tasks sharing an `Output` write disjoint rectangles of it (see `gemm`), and the
// vector it points into outlives them and is not otherwise touched while they run.
unsafe impl Send for Output {}
// SAFETY: as for `Send`.
unsafe impl Sync for Output {}

impl Output {
	/// The micro-tile whose first value is `(i0, j0)`, where it lies.
	fn tile(self, i0: usize, j0: usize) -> TileRef {
		// `wrapping_add`: only an address; it is dereferenced under `gemm`'s contract.
		TileRef { ptr: self.data.wrapping_add(i0 * self.n + j0), ld: self.n }
	}

	/// Copies the `rows x w` values at `(i0, j0)` into the local tile `tile`, or back.
	///
	/// # Safety
	/// The rectangle lies inside the output and belongs to the calling task; when reading it,
	/// the task wrote it before.
	unsafe fn copy(
		self,
		tile: &mut [f32; TILE],
		i0: usize,
		j0: usize,
		rows: usize,
		w: usize,
		into_tile: bool,
	) {
		for (r, values) in tile.chunks_exact_mut(NR).take(rows).enumerate() {
			let at = self.data.wrapping_add((i0 + r) * self.n + j0);
			if into_tile {
				// SAFETY: inside the output, written before (the caller's contract).
				values[..w].copy_from_slice(unsafe { std::slice::from_raw_parts(at, w) });
			} else {
				// SAFETY: inside the output, and no other task reads or writes it.
				unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), at, w) };
			}
		}
	}
}

/// `A · B` (`m x k` times `k x n`) as a row-major `m x n` vector with the RepOps rounding;
/// on rayon's threads when `parallel` (the bits are the same either way).
pub(crate) fn gemm(a: View, b: View, parallel: bool) -> Vec<f32> {
	gemm_on(a, b, parallel, Isa::best())
}

/// [`gemm`] on the instruction set `isa`, which the CPU must have ([`Isa::supported`] or
/// below).
pub(crate) fn gemm_on(a: View, b: View, parallel: bool, isa: Isa) -> Vec<f32> {
	let (m, k, n) = (a.rows, a.cols, b.cols);
	debug_assert_eq!(k, b.rows);
	debug_assert!(isa <= Isa::supported());
	if m == 0 || n == 0 || k == 0 {
		// Every element is the empty sum, `+0.0`.
		return vec![0.0f32; m * n];
	}
	// The packing buffers of the last product on this thread, reused: a fresh allocation of
	// megabytes costs a page fault per 4 KiB on first write.
	let (mut ap, mut bp) = PACKED.with(|p| p.take());
	if parallel {
		rayon::join(|| pack::<MR>(a, true, &mut ap), || pack::<NR>(b.t(), true, &mut bp));
	} else {
		pack::<MR>(a, false, &mut ap);
		pack::<NR>(b.t(), false, &mut bp);
	}
	let row_blocks = m.div_ceil(MR);
	let panels = n.div_ceil(NR);
	let task_cols = panels.div_ceil(TASK_PANELS);
	let tasks = row_blocks.div_ceil(TASK_ROW_BLOCKS) * task_cols;
	// The output is written by the tasks, each its own rectangle, without being zeroed first
	// (that would be another pass over megabytes).
	let mut out: Vec<f32> = Vec::with_capacity(m * n);
	let output = Output { data: out.as_mut_ptr(), n };
	// Row block `ib` of packed `A` and panel `jb` of packed `B` over `k0..k1`.
	let a_slice = |ib: usize, k0: usize, k1: usize| &ap[(ib * k + k0) * MR..(ib * k + k1) * MR];
	let b_slice = |jb: usize, k0: usize, k1: usize| &bp[(jb * k + k0) * NR..(jb * k + k1) * NR];
	// Whether row block `ib` and panel `jb` are whole (not cut by the output's edge).
	let whole_rows = |ib: usize| (ib + 1) * MR <= m;
	let whole_cols = |jb: usize| (jb + 1) * NR <= n;
	// One micro-tile's pass over `k0..k1`.
	let single = |ib: usize, jb: usize, k0: usize, k1: usize, edge: &mut [f32; TILE]| {
		let (a_slice, b_slice) = (a_slice(ib, k0, k1), b_slice(jb, k0, k1));
		let (i0, rows) = (ib * MR, MR.min(m - ib * MR));
		let (j0, w) = (jb * NR, NR.min(n - jb * NR));
		let first = k0 == 0;
		let kernel = |c: TileRef| {
			#[cfg(target_arch = "x86_64")]
			if isa >= Isa::Avx2 {
				// SAFETY: the CPU has AVX2 and FMA (`isa` is at most `Isa::supported()`); `c` as
				// the caller of `kernel` says.
				unsafe { kernel_avx2(a_slice, b_slice, c, first) };
				return;
			}
			// SAFETY: as the caller of `kernel` says.
			unsafe { kernel_portable(a_slice, b_slice, c, first) };
		};
		if rows == MR && w == NR {
			// SAFETY (of `kernel`): this task's micro-tile, inside the output (rows
			// `i0..i0 + MR <= m`, columns `j0..j0 + NR <= n`), no other task's; written by
			// the pass before unless `first`.
			kernel(output.tile(i0, j0));
		} else {
			// A tile at the bottom or right edge: computed in `edge`, and only its values
			// inside the output copied.
			if !first {
				// SAFETY: as above, for the `rows x w` inside the output.
				unsafe { output.copy(edge, i0, j0, rows, w, true) };
			}
			kernel(TileRef { ptr: edge.as_mut_ptr(), ld: NR });
			// SAFETY: as above.
			unsafe { output.copy(edge, i0, j0, rows, w, false) };
		}
	};
	// Task `t`: the micro-tiles `[ib0, ib1) x [jb0, jb1)`, each computed whole by it.
	let run = |t: usize| {
		let ib0 = (t / task_cols) * TASK_ROW_BLOCKS;
		let jb0 = (t % task_cols) * TASK_PANELS;
		let (ib1, jb1) = ((ib0 + TASK_ROW_BLOCKS).min(row_blocks), (jb0 + TASK_PANELS).min(panels));
		let mut edge = [0.0f32; TILE];
		for k0 in (0..k).step_by(KC) {
			let k1 = (k0 + KC).min(k);
			let mut jb = jb0;
			while jb < jb1 {
				// Two whole panels side by side, for the AVX-512 kernel.
				let pair = isa == Isa::Avx512 && jb + 1 < jb1 && whole_cols(jb + 1);
				if !pair {
					for ib in ib0..ib1 {
						single(ib, jb, k0, k1, &mut edge);
					}
					jb += 1;
					continue;
				}
				let mut ib = ib0;
				while ib < ib1 {
					if ib + 1 < ib1 && whole_rows(ib + 1) {
						#[cfg(target_arch = "x86_64")]
						// SAFETY: the CPU has AVX-512F (`isa` is at most `Isa::supported()`); the
						// four micro-tiles `(ib..ib + 2) x (jb..jb + 2)` are whole, inside the
						// output, this task's, and written by the pass before unless it is
						// the first; the slices are over the same `k`s.
						unsafe {
							kernel_avx512(
								a_slice(ib, k0, k1),
								a_slice(ib + 1, k0, k1),
								b_slice(jb, k0, k1),
								b_slice(jb + 1, k0, k1),
								output.tile(ib * MR, jb * NR),
								k0 == 0,
							)
						};
						ib += 2;
					} else {
						single(ib, jb, k0, k1, &mut edge);
						single(ib, jb + 1, k0, k1, &mut edge);
						ib += 1;
					}
				}
				jb += 2;
			}
		}
	};
	if parallel {
		(0..tasks).into_par_iter().for_each(run);
	} else {
		(0..tasks).for_each(run);
	}
	// SAFETY: the tasks cover every micro-tile of the output once (rows `[0, m)` by row blocks
	// and columns `[0, n)` by panels), and each wrote all of its tiles' values in its first
	// pass over `k` (`k > 0`); `m · n` is the capacity reserved above.
	unsafe { out.set_len(m * n) };
	PACKED.with(|p| p.set((ap, bp)));
	out
}

#[cfg(test)]
mod tests {
	use super::*;

	/// The reference `dot`, element by element, on views.
	fn naive(a: View, b: View) -> Vec<u32> {
		let mut out = Vec::new();
		for i in 0..a.rows {
			for j in 0..b.cols {
				let mut acc = 0.0f32;
				for kk in 0..a.cols {
					acc = trainet_primitives::repops::fma(a.at(i, kk), b.at(kk, j), acc);
				}
				out.push(acc.to_bits());
			}
		}
		out
	}

	#[test]
	fn the_portable_kernel_gives_the_bits_of_the_avx2_one() {
		// Everything else is tested through `engine::matmul` against the reference; this pins
		// the fallback that CPUs without AVX2 run, which those tests do not reach here.
		let mut rng = trainet_primitives::repops::SplitMix64::new(9);
		let a: Vec<f32> = (0..MR * 300).map(|_| rng.next_unit() - 0.5).collect();
		let b: Vec<f32> = (0..NR * 300).map(|_| rng.next_unit() * 3.0).collect();
		let mut portable = [0.0f32; TILE];
		let tile = |t: &mut [f32; TILE]| TileRef { ptr: t.as_mut_ptr(), ld: NR };
		// SAFETY: the tiles are local arrays of `MR x NR` values.
		unsafe { kernel_portable(&a, &b, tile(&mut portable), true) };
		let view_a = View { data: &a, rows: MR, cols: 300, rs: 1, cs: MR };
		let view_b = View { data: &b, rows: 300, cols: NR, rs: NR, cs: 1 };
		let want = naive(view_a, view_b);
		assert_eq!(portable.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want);
		// In two passes, as with `k` blocking.
		let mut split = [0.0f32; TILE];
		// SAFETY: as above.
		unsafe {
			kernel_portable(&a[..MR * 100], &b[..NR * 100], tile(&mut split), true);
			kernel_portable(&a[MR * 100..], &b[NR * 100..], tile(&mut split), false);
		}
		assert_eq!(split.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want);
	}

	/// Each instruction set this CPU has gives the reference's bits on products whose tiles
	/// are whole and cut, in groups of four and alone, over one pass of `k` and several,
	/// with NaNs, infinities, subnormals and signed zeros in the operands, in every layout.
	#[test]
	fn every_instruction_set_gives_the_reference_bits() {
		let mut rng = trainet_primitives::repops::SplitMix64::new(17);
		let specials = [0.0f32, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e-40, -3e-39];
		let value = |rng: &mut trainet_primitives::repops::SplitMix64| {
			let r = rng.next_u64();
			if r.is_multiple_of(8) {
				specials[(r >> 8) as usize % specials.len()]
			} else {
				(rng.next_unit() - 0.5) * 4.0
			}
		};
		let isas = Isa::available();
		eprintln!("instruction sets here: {isas:?}");
		for (m, k, n) in [(12, 7, 32), (24, 300, 64), (13, 40, 33), (50, 513, 100), (97, 64, 200)] {
			let a: Vec<f32> = (0..m * k).map(|_| value(&mut rng)).collect();
			let b: Vec<f32> = (0..k * n).map(|_| value(&mut rng)).collect();
			// `A·B`, `Aᵀ·B` (A stored transposed) and `A·Bᵀ` (B stored transposed).
			let a_n = View { data: &a, rows: m, cols: k, rs: k, cs: 1 };
			let a_t = View { data: &a, rows: m, cols: k, rs: 1, cs: m };
			let b_n = View { data: &b, rows: k, cols: n, rs: n, cs: 1 };
			let b_t = View { data: &b, rows: k, cols: n, rs: 1, cs: k };
			for (va, vb) in [(a_n, b_n), (a_t, b_n), (a_n, b_t)] {
				let want = naive(va, vb);
				for &isa in &isas {
					for parallel in [false, true] {
						let got: Vec<u32> =
							gemm_on(va, vb, parallel, isa).iter().map(|v| v.to_bits()).collect();
						assert!(got == want, "{m}x{k}x{n} on {isa:?}, parallel {parallel}");
					}
				}
			}
		}
	}

	/// GFLOP/s of the reference transformer's products on each instruction set, in turns
	/// (`cargo test -p trainet-worker --lib gemm::tests::speed -- --ignored --nocapture`).
	#[test]
	#[ignore = "a measurement, not a check"]
	fn speed() {
		if !has_avx2_fma() {
			return;
		}
		// The kernels alone, on one core, operands in L1: the ceiling.
		let k = 64;
		let a: Vec<f32> = (0..2 * MR * k).map(|i| (i % 7) as f32 * 0.1).collect();
		let b: Vec<f32> = (0..2 * NR * k).map(|i| (i % 5) as f32 * 0.1).collect();
		let mut tile = vec![0.0f32; 4 * TILE];
		let reps = 200_000;
		let t = std::time::Instant::now();
		for _ in 0..reps {
			// SAFETY: a local tile of 2·MR x 2·NR; the CPU has AVX2 and FMA (checked above).
			unsafe {
				kernel_avx2(
					&a[..MR * k],
					&b[..NR * k],
					TileRef { ptr: tile.as_mut_ptr(), ld: 2 * NR },
					true,
				)
			};
		}
		let s = t.elapsed().as_secs_f64();
		eprintln!("avx2 kernel: {:.1} GFLOP/s", 2.0 * (TILE * k * reps) as f64 / s / 1e9);
		if has_avx512() {
			let t = std::time::Instant::now();
			for _ in 0..reps {
				// SAFETY: as above, AVX-512 checked.
				unsafe {
					kernel_avx512(
						&a[..MR * k],
						&a[MR * k..],
						&b[..NR * k],
						&b[NR * k..],
						TileRef { ptr: tile.as_mut_ptr(), ld: 2 * NR },
						true,
					)
				};
			}
			let s = t.elapsed().as_secs_f64();
			eprintln!("avx512 kernel: {:.1} GFLOP/s", 2.0 * (4 * TILE * k * reps) as f64 / s / 1e9);
		}
		for parallel in [false, true] {
			let (m, k, n) = (2048, 64, 192);
			let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
			let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
			let va = View { data: &a, rows: m, cols: k, rs: k, cs: 1 };
			let vb = View { data: &b, rows: k, cols: n, rs: n, cs: 1 };
			let mut ap = Vec::new();
			let t = std::time::Instant::now();
			for _ in 0..100 {
				pack::<MR>(va, parallel, &mut ap);
			}
			eprintln!(
				"pack A {m}x{k} parallel {parallel}: {:.3} ms",
				t.elapsed().as_secs_f64() * 10.0
			);
			let t = std::time::Instant::now();
			for _ in 0..100 {
				std::hint::black_box(gemm_on(va, vb, parallel, Isa::Avx2));
			}
			eprintln!(
				"gemm {m}x{k}x{n} parallel {parallel}: {:.3} ms",
				t.elapsed().as_secs_f64() * 10.0
			);
		}
		let shapes = [
			("x·W qkv", 2048, 64, 192, false, false),
			("x·W mlp", 2048, 64, 256, false, false),
			("h·W mlp", 2048, 256, 64, false, false),
			("xᵀ·dy", 64, 2048, 192, true, false),
			("dy·Wᵀ", 2048, 192, 64, false, true),
		];
		for (name, m, k, n, ta, tb) in shapes {
			let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
			let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
			let va = if ta {
				View { data: &a, rows: m, cols: k, rs: 1, cs: m }
			} else {
				View { data: &a, rows: m, cols: k, rs: k, cs: 1 }
			};
			let vb = if tb {
				View { data: &b, rows: k, cols: n, rs: 1, cs: k }
			} else {
				View { data: &b, rows: k, cols: n, rs: n, cs: 1 }
			};
			let mut best = vec![f64::MAX; Isa::available().len()];
			for _ in 0..20 {
				for (slot, isa) in best.iter_mut().zip(Isa::available()) {
					let t = std::time::Instant::now();
					for _ in 0..10 {
						std::hint::black_box(gemm_on(va, vb, true, isa));
					}
					*slot = slot.min(t.elapsed().as_secs_f64() / 10.0);
				}
			}
			let flops = 2.0 * (m * k * n) as f64;
			let rates: Vec<String> = Isa::available()
				.iter()
				.zip(&best)
				.map(|(isa, t)| format!("{isa:?} {:.3} ms {:.1} GFLOP/s", t * 1e3, flops / t / 1e9))
				.collect();
			eprintln!("{name} {m}x{k}x{n}: {}", rates.join(", "));
		}
	}
}
