//! Direct convolution kernels: the forward convolution and its input gradient computed where
//! they lie, without building patch matrices.
//!
//! Each output value of RepOps' convolution (`trainet_primitives::repops::image`) is one chain
//! of fused multiply-adds from `+0.0`, its terms in a fixed order with the padding's zero terms
//! included. Here [`LANES`] neighbouring values of one output row are computed side by side,
//! each its own chain in that order (lane `l` only ever meets lane `l`'s terms), and up to
//! four filters (or input channels) at once, which share the loads: the bits are the
//! reference's, and no order depends on the threads (a sample is computed whole where it
//! runs). The zero terms come from a zero-filled copy of the input (padded, and for the
//! gradient dilated by the stride), so `0 · w` is there as in the reference (a NaN where `w`
//! is infinite). A NaN met in a chain stays one to its end, so it is made canonical once, at
//! the end.
//!
//! On a CPU with FMA the lanes are the vector instruction's; elsewhere the same code runs on
//! the correctly rounded software `fma`, slowly and with the same bits.

use trainet_primitives::repops::{self, image::Conv};

/// Output values of one row computed side by side: two AVX2 vectors.
const LANES: usize = 16;

/// A zero-filled buffer of `planes` planes of `height x width`, with plane `p`'s source row
/// `y` (of `src_width` values, `src_rows` rows a plane) placed at row `top + y·step` and
/// columns `left + x·step`.
struct Placed {
	data: Vec<f32>,
	height: usize,
	width: usize,
}

impl Placed {
	#[allow(clippy::too_many_arguments)]
	fn new(
		src: &[f32],
		planes: usize,
		(src_rows, src_width): (usize, usize),
		(height, width): (usize, usize),
		(top, left): (usize, usize),
		step: usize,
	) -> Self {
		let mut data = vec![0.0f32; planes * height * width];
		for p in 0..planes {
			for y in 0..src_rows {
				let from = &src[(p * src_rows + y) * src_width..][..src_width];
				let row = &mut data[(p * height + top + y * step) * width..][..width];
				for (x, v) in from.iter().enumerate() {
					row[left + x * step] = *v;
				}
			}
		}
		Self { data, height, width }
	}

	/// Plane `p`'s row `y`, from column `x` on.
	#[inline(always)]
	fn row(&self, p: usize, y: usize, x: usize) -> &[f32] {
		&self.data[(p * self.height + y) * self.width + x..]
	}
}

/// `LANES` values of `row`, `stride` apart.
#[inline(always)]
fn lanes(row: &[f32], stride: usize) -> [f32; LANES] {
	match stride {
		1 => row[..LANES].try_into().unwrap_or([0.0; LANES]),
		_ => std::array::from_fn(|l| row[l * stride]),
	}
}

/// `acc[i][l] = fma(xs[l], ws[i], acc[i][l])` for every filter `i` and lane `l`.
#[inline(always)]
fn fma_rows<const B: usize>(acc: &mut [[f32; LANES]; B], xs: &[f32; LANES], ws: &[f32; B]) {
	for (row, w) in acc.iter_mut().zip(ws) {
		for (a, x) in row.iter_mut().zip(xs) {
			*a = x.mul_add(*w, *a);
		}
	}
}

/// The sizes of one forward convolution.
struct Shape {
	c: usize,
	o: usize,
	k: usize,
	s: usize,
	p: usize,
	h: usize,
	w: usize,
	oh: usize,
	ow: usize,
}

impl Shape {
	fn of(g: &Conv) -> Self {
		let out = g.output();
		Self {
			c: g.input.channels as usize,
			o: g.out_channels as usize,
			k: g.kernel as usize,
			s: g.stride as usize,
			p: g.padding as usize,
			h: g.input.height as usize,
			w: g.input.width as usize,
			oh: out.height as usize,
			ow: out.width as usize,
		}
	}

	/// The output row's width rounded up to whole lanes.
	fn ow_lanes(&self) -> usize {
		self.ow.div_ceil(LANES) * LANES
	}

	/// The input row's width rounded up to whole lanes.
	fn w_lanes(&self) -> usize {
		self.w.div_ceil(LANES) * LANES
	}
}

/// Whether the CPU has the FMA and AVX2 instructions (and, in tests, the vector path is not
/// turned off).
fn fast() -> bool {
	#[cfg(test)]
	if PORTABLE.with(|p| p.get()) {
		return false;
	}
	super::gemm::has_avx2_fma()
}

#[cfg(test)]
std::thread_local! {
	/// Run the portable path on this thread (a test's).
	static PORTABLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `$name(args)` is `$body(args)` compiled for FMA and AVX2 (to be called only on a CPU that
/// has them).
macro_rules! fast_twin {
	($name:ident, $body:ident, ($($arg:ident: $ty:ty),*)) => {
		#[cfg(target_arch = "x86_64")]
		#[target_feature(enable = "fma,avx2")]
		unsafe fn $name($($arg: $ty),*) {
			$body($($arg),*)
		}
		#[cfg(not(target_arch = "x86_64"))]
		unsafe fn $name($($arg: $ty),*) {
			$body($($arg),*)
		}
	};
}

fast_twin!(forward_fast, forward_all, (z: &Shape, xp: &Placed, filters: &[f32], bias: &[f32], out: &mut [f32]));
fast_twin!(input_grad_fast, input_grad_all, (z: &Shape, dyp: &Placed, filters: &[f32], out: &mut [f32]));
fast_twin!(weight_grad_fast, weight_grad_tile, (w: &WeightGrad, o0: usize, t0: usize, out: &mut [[f32; 8]; 8]));

/// One sample's forward convolution (`x`: `C x H x W`; `filters`: `O x C·k·k`; `bias`: `O`)
/// into `out` (`O x OH x OW`).
pub(crate) fn forward(g: &Conv, x: &[f32], filters: &[f32], bias: &[f32], out: &mut [f32]) {
	let z = Shape::of(g);
	if z.oh == 0 || z.ow == 0 || z.k == 0 {
		return;
	}
	// Row `oy·s + ky`, column `ox·s + kx` of the padded copy is tap (ky, kx) of output
	// (oy, ox); wide enough for the last lanes' columns past the row.
	let height = ((z.oh - 1) * z.s + z.k).max(z.h + 2 * z.p);
	let width = ((z.ow_lanes() - 1) * z.s + z.k).max(z.w + 2 * z.p);
	let xp = Placed::new(x, z.c, (z.h, z.w), (height, width), (z.p, z.p), 1);
	match fast() {
		// SAFETY: the CPU has FMA and AVX2.
		true => unsafe { forward_fast(&z, &xp, filters, bias, out) },
		false => forward_all(&z, &xp, filters, bias, out),
	}
}

/// How many filters (or input channels) of `n` left to do the next block takes.
fn block(n: usize) -> usize {
	match n {
		0 | 1 => 1,
		2 | 3 => 2,
		_ => 4,
	}
}

/// Every filter of [`forward`], four at a time.
#[inline(always)]
fn forward_all(z: &Shape, xp: &Placed, filters: &[f32], bias: &[f32], out: &mut [f32]) {
	let mut o0 = 0;
	while o0 < z.o {
		match block(z.o - o0) {
			1 => forward_block::<1>(z, xp, filters, bias, o0, out),
			2 => forward_block::<2>(z, xp, filters, bias, o0, out),
			_ => forward_block::<4>(z, xp, filters, bias, o0, out),
		}
		o0 += block(z.o - o0);
	}
}

/// Filters `o0 .. o0 + B` of [`forward`].
#[inline(always)]
fn forward_block<const B: usize>(
	z: &Shape,
	xp: &Placed,
	filters: &[f32],
	bias: &[f32],
	o0: usize,
	out: &mut [f32],
) {
	let patch = z.c * z.k * z.k;
	for oy in 0..z.oh {
		for ox0 in (0..z.ow).step_by(LANES) {
			let mut acc = [[0.0f32; LANES]; B];
			for c in 0..z.c {
				for ky in 0..z.k {
					let row = xp.row(c, oy * z.s + ky, ox0 * z.s);
					for kx in 0..z.k {
						let tap = (c * z.k + ky) * z.k + kx;
						let ws: [f32; B] = std::array::from_fn(|i| filters[(o0 + i) * patch + tap]);
						fma_rows(&mut acc, &lanes(&row[kx..], z.s), &ws);
					}
				}
			}
			let n = LANES.min(z.ow - ox0);
			for (i, lane) in acc.iter().enumerate() {
				let at = ((o0 + i) * z.oh + oy) * z.ow + ox0;
				for (o, v) in out[at..at + n].iter_mut().zip(lane) {
					*o = repops::add(repops::canon(*v), bias[o0 + i]);
				}
			}
		}
	}
}

/// One sample's input gradient (`dy`: `O x OH x OW`; `filters`: `O x C·k·k`) into `out`
/// (`C x H x W`): value `(c, iy, ix)` is the chain over `(o, ky, kx)` ascending of
/// `dy(o, oy, ox) · w(o, c, ky, kx)`, `(oy, ox)` the output whose tap `(ky, kx)` reads
/// `(iy, ix)` (a zero term where none does).
pub(crate) fn input_grad(g: &Conv, dy: &[f32], filters: &[f32], out: &mut [f32]) {
	let z = Shape::of(g);
	if z.h == 0 || z.w == 0 || z.k == 0 {
		return;
	}
	// dy(o, oy, ox) placed at row `oy·s + k - 1`, column `ox·s + k - 1`: tap (ky, kx) of input
	// (iy, ix) reads row `iy + p + k - 1 - ky` (an output only where `iy + p - ky` is a
	// multiple of s, in range; a zero of the copy elsewhere).
	let height = z.h + 2 * z.p + z.k;
	let width = z.w_lanes() + 2 * z.p + z.k;
	let dyp = Placed::new(dy, z.o, (z.oh, z.ow), (height, width), (z.k - 1, z.k - 1), z.s);
	match fast() {
		// SAFETY: the CPU has FMA and AVX2.
		true => unsafe { input_grad_fast(&z, &dyp, filters, out) },
		false => input_grad_all(&z, &dyp, filters, out),
	}
}

/// Every input channel of [`input_grad`], four at a time.
#[inline(always)]
fn input_grad_all(z: &Shape, dyp: &Placed, filters: &[f32], out: &mut [f32]) {
	let mut c0 = 0;
	while c0 < z.c {
		match block(z.c - c0) {
			1 => input_grad_block::<1>(z, dyp, filters, c0, out),
			2 => input_grad_block::<2>(z, dyp, filters, c0, out),
			_ => input_grad_block::<4>(z, dyp, filters, c0, out),
		}
		c0 += block(z.c - c0);
	}
}

/// Input channels `c0 .. c0 + B` of [`input_grad`].
#[inline(always)]
fn input_grad_block<const B: usize>(
	z: &Shape,
	dyp: &Placed,
	filters: &[f32],
	c0: usize,
	out: &mut [f32],
) {
	let patch = z.c * z.k * z.k;
	for iy in 0..z.h {
		for ix0 in (0..z.w).step_by(LANES) {
			let mut acc = [[0.0f32; LANES]; B];
			for o in 0..z.o {
				for ky in 0..z.k {
					// Column `ix + p + k - 1 - kx`.
					let row = dyp.row(o, iy + z.p + z.k - 1 - ky, ix0 + z.p);
					for kx in 0..z.k {
						let ws: [f32; B] = std::array::from_fn(|i| {
							filters[o * patch + ((c0 + i) * z.k + ky) * z.k + kx]
						});
						fma_rows(&mut acc, &lanes(&row[z.k - 1 - kx..], 1), &ws);
					}
				}
			}
			let n = LANES.min(z.w - ix0);
			for (i, lane) in acc.iter().enumerate() {
				let at = ((c0 + i) * z.h + iy) * z.w + ix0;
				for (o, v) in out[at..at + n].iter_mut().zip(lane) {
					*o = repops::canon(*v);
				}
			}
		}
	}
}

/// The whole batch's filter gradient, prepared: every sample's input zero-padded, the output
/// gradient with the filters innermost (padded to whole vectors of 8), and where each tap
/// reads.
pub(crate) struct WeightGrad {
	z: Shape,
	/// Every sample's padded input, one after the other.
	xp: Vec<f32>,
	/// Values of one sample's padded input, and of one of its rows.
	sample: usize,
	row: usize,
	/// `dy` as `(b, oy, ox, o)`, `o` padded to `filters` (a multiple of 8) with zeros.
	dyt: Vec<f32>,
	filters: usize,
	/// Where tap `(c, ky, kx)` of output `(0, 0)` reads in a sample's padded input.
	taps: Vec<usize>,
}

impl WeightGrad {
	/// Prepares the gradient of `g`'s filters from the batch's inputs `x` and output gradients
	/// `dy` (`rows` samples).
	pub(crate) fn new(g: &Conv, x: &[f32], dy: &[f32], rows: usize) -> Self {
		let z = Shape::of(g);
		let (height, width) =
			((z.h + 2 * z.p).max(z.oh * z.s + z.k), (z.w + 2 * z.p).max(z.ow * z.s + z.k));
		let (n_in, plane) = (z.c * z.h * z.w, z.oh * z.ow);
		let sample = z.c * height * width;
		let mut xp = Vec::with_capacity(rows * sample);
		for b in 0..rows {
			let one = &x[b * n_in..][..n_in];
			xp.extend(Placed::new(one, z.c, (z.h, z.w), (height, width), (z.p, z.p), 1).data);
		}
		let filters = z.o.div_ceil(8) * 8;
		let mut dyt = vec![0.0f32; rows * plane * filters];
		for b in 0..rows {
			for o in 0..z.o {
				let from = &dy[(b * z.o + o) * plane..][..plane];
				for (at, v) in from.iter().enumerate() {
					dyt[(b * plane + at) * filters + o] = *v;
				}
			}
		}
		let taps = (0..z.c * z.k * z.k)
			.map(|t| {
				let (c, ky, kx) = (t / (z.k * z.k), t / z.k % z.k, t % z.k);
				(c * height + ky) * width + kx
			})
			.collect();
		Self { z, xp, sample, row: width, dyt, filters, taps }
	}

	/// The gradient (`O x C·k·k`), tiles of 8 filters by 8 taps at a time, each whole.
	pub(crate) fn run(&self, parallel: bool) -> Vec<f32> {
		use rayon::prelude::*;
		let patch = self.taps.len();
		let tiles: Vec<(usize, usize)> = (0..self.z.o)
			.step_by(8)
			.flat_map(|o0| (0..patch).step_by(8).map(move |t0| (o0, t0)))
			.collect();
		let tile = |&(o0, t0): &(usize, usize)| {
			let mut acc = [[0.0f32; 8]; 8];
			match fast() {
				// SAFETY: the CPU has FMA and AVX2.
				true => unsafe { weight_grad_fast(self, o0, t0, &mut acc) },
				false => weight_grad_tile(self, o0, t0, &mut acc),
			}
			(o0, t0, acc)
		};
		let done: Vec<_> = match parallel {
			true => tiles.par_iter().map(tile).collect(),
			false => tiles.iter().map(tile).collect(),
		};
		let mut out = vec![0.0f32; self.z.o * patch];
		for (o0, t0, acc) in done {
			for (t, lanes) in acc.iter().enumerate().filter(|(t, _)| t0 + t < patch) {
				for (i, v) in lanes.iter().enumerate().filter(|(i, _)| o0 + i < self.z.o) {
					out[(o0 + i) * patch + t0 + t] = repops::canon(*v);
				}
			}
		}
		out
	}
}

/// Taps `t0 .. t0 + 8` of filters `o0 .. o0 + 8` of [`WeightGrad`]: `acc[t][i]` is the chain
/// over `(b, oy, ox)` ascending of `x · dy` (a tap or filter past the last reads zeros or
/// tap 0, and is dropped).
#[inline(always)]
fn weight_grad_tile(w: &WeightGrad, o0: usize, t0: usize, acc: &mut [[f32; 8]; 8]) {
	let z = &w.z;
	let taps: [usize; 8] = std::array::from_fn(|t| w.taps.get(t0 + t).copied().unwrap_or(0));
	let plane = z.oh * z.ow;
	// A local copy: the caller's tile, behind a reference, had to be in memory at every
	// bounds check that may panic, so each fma loaded and stored it (ten times slower).
	let mut tile = *acc;
	for b in 0..w.xp.len() / w.sample.max(1) {
		let xp = &w.xp[b * w.sample..][..w.sample];
		for oy in 0..z.oh {
			for ox in 0..z.ow {
				let base = oy * z.s * w.row + ox * z.s;
				let at = (b * plane + oy * z.ow + ox) * w.filters + o0;
				let dys: &[f32; 8] = w.dyt[at..at + 8].try_into().unwrap_or(&[0.0; 8]);
				for (row, tap) in tile.iter_mut().zip(&taps) {
					let x = xp[base + tap];
					for (a, d) in row.iter_mut().zip(dys) {
						*a = x.mul_add(*d, *a);
					}
				}
			}
		}
	}
	*acc = tile;
}

#[cfg(test)]
mod tests {
	use trainet_primitives::repops::image::{self, Conv, ImageShape};

	use super::*;

	/// The portable path (software `fma`, no vector instructions) gives the vector path's bits,
	/// which the engine's tests check against the reference: strides, padding, filters and
	/// channels not a multiple of the blocks, rows not a multiple of the lanes, NaNs and
	/// infinities among the values.
	#[test]
	fn the_portable_path_gives_the_bits_of_the_vector_one() {
		let mut seed = 7u64;
		let mut next = move || {
			seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
			let v = ((seed >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0;
			match seed >> 59 {
				0 => f32::INFINITY,
				1 => f32::NAN,
				_ => v,
			}
		};
		for (c, o, side, k, s, p) in [(3, 5, 19, 3, 1, 1), (2, 9, 11, 5, 2, 2), (1, 6, 28, 5, 1, 2)]
		{
			let g = Conv {
				input: ImageShape { channels: c, height: side, width: side + 3 },
				out_channels: o,
				kernel: k,
				stride: s,
				padding: p,
			};
			assert!(g.is_valid());
			let rows = 3;
			let x: Vec<f32> = (0..rows * g.input.values()).map(|_| next()).collect();
			let dy: Vec<f32> = (0..rows * g.output().values()).map(|_| next()).collect();
			let w: Vec<f32> = (0..o * g.patch()).map(|_| next()).collect();
			let bias: Vec<f32> = (0..o).map(|_| next()).collect();
			let run = |portable: bool| {
				PORTABLE.with(|f| f.set(portable));
				let (n_in, n_out) = (g.input.values() as usize, g.output().values() as usize);
				let mut fwd = vec![0.0f32; n_out];
				forward(&g, &x[..n_in], &w, &bias, &mut fwd);
				let mut back = vec![0.0f32; n_in];
				input_grad(&g, &dy[..n_out], &w, &mut back);
				let grad = WeightGrad::new(&g, &x, &dy, rows as usize).run(false);
				PORTABLE.with(|f| f.set(false));
				[fwd, back, grad].map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>())
			};
			assert_eq!(run(true), run(false), "{g:?}");
			// And the forward is the reference's.
			let want = image::conv2d_at(
				&g,
				&x[..g.input.values() as usize],
				&w[..g.patch() as usize],
				bias[0],
				(1, 2),
			);
			let got = run(true)[0][(g.output().width + 2) as usize];
			assert_eq!(got, want.to_bits());
		}
	}
}
