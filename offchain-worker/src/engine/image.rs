//! The convolutions as matrix products on the engine's bit-exact GEMM ([`gemm`]).
//!
//! RepOps defines every convolution sum over one fixed order with the zero terms of the
//! padding (or of input positions a stride skips) included (`trainet_primitives::repops::image`),
//! so each is exactly a product over zero-filled patch matrices, the contraction walked in
//! ascending order from `+0.0` with one fused multiply-add per term, as [`gemm`] does:
//!
//! - forward, per sample: `W (O x C·k·k) · P_bᵀ`, `P_b` the sample's im2col (`OH·OW x C·k·k`,
//!   each patch in `(c, ky, kx)` order), then the bias added to each value;
//! - input gradient, per sample: `W' (C x O·k·k) · D_b`, `W'` the filters regrouped by input
//!   channel in `(o, ky, kx)` order and `D_b` (`O·k·k x H·W`) the output gradient each tap
//!   reads (zero where none does);
//! - weight gradient: `G (O x B·OH·OW) · P (B·OH·OW x C·k·k)`, `G` the output gradient by
//!   filter and `P` every sample's im2col, in `(b, oy, ox)` order.
//!
//! Samples are independent and each output is computed whole wherever it runs, so the thread
//! count changes no bit. Pools and the bias gradient are cheap and run through the reference.

use rayon::prelude::*;
use trainet_primitives::repops::{
	self,
	image::{im2col, max_pick, Conv, Pool},
	Matrix, ShapeError,
};

use super::{
	gemm::{gemm, View},
	MatRef, SEQUENTIAL_BELOW,
};

/// Checks that the geometry is `valid` and that `m` has `cols` values a row (and `rows` rows,
/// if given).
fn expect(valid: bool, m: &MatRef, rows: Option<u32>, cols: u32) -> Result<(), ShapeError> {
	m.check()?;
	if !valid || m.cols != cols || rows.is_some_and(|r| r != m.rows) {
		return Err(ShapeError::Mismatch);
	}
	Ok(())
}

/// Runs `f(b)` for every sample `b < rows`, each giving `per` values, in order: in parallel
/// when the work (`work` multiply-adds a sample) is large.
fn per_sample(
	rows: u32,
	per: usize,
	work: usize,
	f: impl Fn(usize) -> Vec<f32> + Sync,
) -> Vec<f32> {
	let rows = rows as usize;
	let mut out = vec![0.0f32; rows * per];
	let run = |(b, o): (usize, &mut [f32])| o.copy_from_slice(&f(b));
	if rows.saturating_mul(work) >= SEQUENTIAL_BELOW && per > 0 {
		out.par_chunks_mut(per).enumerate().for_each(run);
	} else if per > 0 {
		out.chunks_mut(per).enumerate().for_each(run);
	}
	out
}

/// Every sample's im2col, one after the other (`B·OH·OW x C·k·k`), built in parallel.
fn patches(g: &Conv, x: &MatRef) -> Vec<f32> {
	let n = g.input.values() as usize;
	(0..x.rows as usize)
		.into_par_iter()
		.flat_map_iter(|b| im2col(g, &x.data[b * n..(b + 1) * n]))
		.collect()
}

/// A `channels x (B·plane)` product laid out by channel, moved to `B x (channels·plane)`
/// (each sample's channels one after the other), with `f(channel, value)` applied.
fn by_sample(
	product: &[f32],
	rows: usize,
	channels: usize,
	plane: usize,
	f: impl Fn(usize, f32) -> f32 + Sync,
) -> Vec<f32> {
	let per = channels * plane;
	per_sample(rows as u32, per, per * 4, |b| {
		let mut out = Vec::with_capacity(per);
		for c in 0..channels {
			let from = &product[(c * rows + b) * plane..][..plane];
			out.extend(from.iter().map(|v| f(c, *v)));
		}
		out
	})
}

/// [`repops::image::conv2d`]: one product for the whole batch, `W · Pᵀ`.
pub fn conv2d(g: &Conv, x: MatRef, w: MatRef, bias: MatRef) -> Result<Matrix, ShapeError> {
	expect(g.is_valid(), &x, None, g.input.values())?;
	expect(g.is_valid(), &w, Some(g.out_channels), g.patch())?;
	expect(g.is_valid(), &bias, Some(1), g.out_channels)?;
	let (patch, plane) = (g.patch() as usize, (g.output().height * g.output().width) as usize);
	let (out_channels, rows) = (g.out_channels as usize, x.rows as usize);
	let filters = View { data: w.data, rows: out_channels, cols: patch, rs: patch, cs: 1 };
	let cols = patches(g, &x);
	let all = View { data: &cols, rows: patch, cols: rows * plane, rs: 1, cs: patch };
	let parallel = out_channels * patch * rows * plane >= SEQUENTIAL_BELOW;
	let product = gemm(filters, all, parallel);
	let data = by_sample(&product, rows, out_channels, plane, |o, v| repops::add(v, bias.data[o]));
	Matrix::new(x.rows, g.output().values(), data)
}

/// [`repops::image::conv2d_input_grad`]: one product for the whole batch, `W' · D`.
pub fn conv2d_input_grad(g: &Conv, dy: MatRef, w: MatRef) -> Result<Matrix, ShapeError> {
	expect(g.is_valid(), &dy, None, g.output().values())?;
	expect(g.is_valid(), &w, Some(g.out_channels), g.patch())?;
	let (k, s, p) = (g.kernel as usize, g.stride as usize, g.padding as usize);
	let (o_n, c_n) = (g.out_channels as usize, g.input.channels as usize);
	let (h, wd) = (g.input.height as usize, g.input.width as usize);
	let out = g.output();
	let (oh, ow) = (out.height as usize, out.width as usize);
	let (taps, rows, hw) = (o_n * k * k, dy.rows as usize, h * wd);
	// W' (C x O·k·k): the filters regrouped by input channel, (o, ky, kx) order.
	let mut regrouped = vec![0.0f32; c_n * taps];
	for c in 0..c_n {
		for o in 0..o_n {
			for t in 0..k * k {
				regrouped[c * taps + o * k * k + t] = w.data[o * c_n * k * k + c * k * k + t];
			}
		}
	}
	// The output position tap `kk` of side `i` reads, if any.
	let reader = |i: usize, kk: usize, side: usize| -> Option<usize> {
		let t = (i + p).checked_sub(kk)?;
		(t % s == 0 && t / s < side).then_some(t / s)
	};
	// D (O·k·k x B·H·W): the output gradient each tap reads, zero where none does; a row per
	// tap, filled in parallel.
	let n_out = out.values() as usize;
	let mut d = vec![0.0f32; taps * rows * hw];
	d.par_chunks_mut((rows * hw).max(1)).enumerate().for_each(|(tap, row)| {
		let (o, ky, kx) = (tap / (k * k), tap / k % k, tap % k);
		for iy in 0..h {
			let Some(oy) = reader(iy, ky, oh) else { continue };
			for ix in 0..wd {
				let Some(ox) = reader(ix, kx, ow) else { continue };
				for b in 0..rows {
					row[b * hw + iy * wd + ix] = dy.data[b * n_out + (o * oh + oy) * ow + ox];
				}
			}
		}
	});
	let filters = View { data: &regrouped, rows: c_n, cols: taps, rs: taps, cs: 1 };
	let grads = View { data: &d, rows: taps, cols: rows * hw, rs: rows * hw, cs: 1 };
	let parallel = c_n * taps * rows * hw >= SEQUENTIAL_BELOW;
	let product = gemm(filters, grads, parallel);
	Matrix::new(dy.rows, g.input.values(), by_sample(&product, rows, c_n, hw, |_, v| v))
}

/// [`repops::image::conv2d_weight_grad`].
pub fn conv2d_weight_grad(g: &Conv, x: MatRef, dy: MatRef) -> Result<Matrix, ShapeError> {
	expect(g.is_valid(), &x, None, g.input.values())?;
	expect(g.is_valid(), &dy, Some(x.rows), g.output().values())?;
	let (patch, plane) = (g.patch() as usize, (g.output().height * g.output().width) as usize);
	let (o_n, rows) = (g.out_channels as usize, x.rows as usize);
	// G (O x B·OH·OW) and P (B·OH·OW x C·k·k), both in (b, oy, ox) order.
	let mut grads = vec![0.0f32; o_n * rows * plane];
	for o in 0..o_n {
		for b in 0..rows {
			let from = &dy.data[(b * o_n + o) * plane..][..plane];
			grads[(o * rows + b) * plane..][..plane].copy_from_slice(from);
		}
	}
	let patches = patches(g, &x);
	let terms = rows * plane;
	let a = View { data: &grads, rows: o_n, cols: terms, rs: terms, cs: 1 };
	let bv = View { data: &patches, rows: terms, cols: patch, rs: patch, cs: 1 };
	let parallel = o_n.saturating_mul(terms).saturating_mul(patch) >= SEQUENTIAL_BELOW;
	Matrix::new(g.out_channels, g.patch(), gemm(a, bv, parallel))
}

/// The window positions of pool `g`'s output `(oy, ox)` in `(ky, kx)` order, as columns of one
/// channel's plane.
fn window(g: &Pool, (oy, ox): (usize, usize)) -> impl Iterator<Item = usize> + '_ {
	let (k, s, w) = (g.kernel as usize, g.stride as usize, g.input.width as usize);
	(0..k).flat_map(move |ky| (0..k).map(move |kx| (oy * s + ky) * w + ox * s + kx))
}

/// The position a max pool picks in a window of `plane`, by the reference's rule
/// ([`max_pick`]).
fn pick(plane: &[f32], window: impl Iterator<Item = usize>) -> usize {
	max_pick(window.map(|i| (i, plane[i]))).unwrap_or(0)
}

/// [`repops::image::max_pool`] and [`repops::image::avg_pool`]: each output from its window.
pub fn pool(g: &Pool, x: MatRef, max: bool) -> Result<Matrix, ShapeError> {
	expect(g.is_valid(), &x, None, g.input.values())?;
	let (out, n) = (g.output(), g.input.values() as usize);
	let (oh, ow) = (out.height as usize, out.width as usize);
	let (plane, channels) = ((g.input.height * g.input.width) as usize, g.input.channels as usize);
	let area = (g.kernel * g.kernel) as f32;
	let data = per_sample(x.rows, out.values() as usize, n, |b| {
		let sample = &x.data[b * n..(b + 1) * n];
		let mut y = Vec::with_capacity(channels * oh * ow);
		for c in 0..channels {
			let p = &sample[c * plane..(c + 1) * plane];
			for oy in 0..oh {
				for ox in 0..ow {
					y.push(if max {
						p[pick(p, window(g, (oy, ox)))]
					} else {
						repops::div(
							window(g, (oy, ox)).fold(0.0f32, |a, i| repops::add(a, p[i])),
							area,
						)
					});
				}
			}
		}
		y
	});
	Matrix::new(x.rows, out.values(), data)
}

/// [`repops::image::max_pool_grad`] (`x` given) and [`repops::image::avg_pool_grad`]: each
/// window's gradient added to its pick (or, divided by the window's size, to each of its
/// positions), windows in `(oy, ox)` order from `+0.0`: per position, the reference's sum in
/// its order.
pub fn pool_grad(g: &Pool, x: Option<MatRef>, dy: MatRef) -> Result<Matrix, ShapeError> {
	expect(g.is_valid(), &dy, x.map(|x| x.rows), g.output().values())?;
	if let Some(x) = &x {
		expect(g.is_valid(), x, None, g.input.values())?;
	}
	let (out, n) = (g.output(), g.input.values() as usize);
	let (oh, ow, n_out) = (out.height as usize, out.width as usize, out.values() as usize);
	let (plane, channels) = ((g.input.height * g.input.width) as usize, g.input.channels as usize);
	let area = (g.kernel * g.kernel) as f32;
	let data = per_sample(dy.rows, n, n_out, |b| {
		let d = &dy.data[b * n_out..(b + 1) * n_out];
		let mut dx = vec![0.0f32; n];
		for c in 0..channels {
			let target = &mut dx[c * plane..(c + 1) * plane];
			for oy in 0..oh {
				for ox in 0..ow {
					let v = d[(c * oh + oy) * ow + ox];
					match &x {
						Some(x) => {
							let p = &x.data[b * n + c * plane..b * n + (c + 1) * plane];
							let i = pick(p, window(g, (oy, ox)));
							target[i] = repops::add(target[i], v);
						}
						None => {
							let share = repops::div(v, area);
							for i in window(g, (oy, ox)) {
								target[i] = repops::add(target[i], share);
							}
						}
					}
				}
			}
		}
		dx
	});
	Matrix::new(dy.rows, g.input.values(), data)
}

/// [`repops::image::conv_bias_grad`]: per filter, the sum over samples and positions in order.
pub fn conv_bias_grad(g: &Conv, dy: MatRef) -> Result<Matrix, ShapeError> {
	expect(g.is_valid(), &dy, None, g.output().values())?;
	let (o_n, plane) = (g.out_channels as usize, (g.output().height * g.output().width) as usize);
	let n_out = o_n * plane;
	let sums = (0..o_n)
		.map(|o| {
			(0..dy.rows as usize)
				.flat_map(|b| dy.data[b * n_out + o * plane..][..plane].iter())
				.fold(0.0f32, |a, v| repops::add(a, *v))
		})
		.collect();
	Matrix::new(1, g.out_channels, sums)
}
