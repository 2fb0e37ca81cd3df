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
	image::{im2col, Conv},
	Matrix, ShapeError,
};

use super::{
	gemm::{gemm, View},
	MatRef, SEQUENTIAL_BELOW,
};

/// Checks the geometry and that `m` has `cols` values a row (and `rows` rows, if given).
fn expect(g: &Conv, m: &MatRef, rows: Option<u32>, cols: u32) -> Result<(), ShapeError> {
	m.check()?;
	if !g.is_valid() || m.cols != cols || rows.is_some_and(|r| r != m.rows) {
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

/// [`repops::image::conv2d`].
pub fn conv2d(g: &Conv, x: MatRef, w: MatRef, bias: MatRef) -> Result<Matrix, ShapeError> {
	expect(g, &x, None, g.input.values())?;
	expect(g, &w, Some(g.out_channels), g.patch())?;
	expect(g, &bias, Some(1), g.out_channels)?;
	let (patch, plane) = (g.patch() as usize, (g.output().height * g.output().width) as usize);
	let out_channels = g.out_channels as usize;
	let filters = View { data: w.data, rows: out_channels, cols: patch, rs: patch, cs: 1 };
	let data = per_sample(x.rows, out_channels * plane, out_channels * plane * patch, |b| {
		let n = g.input.values() as usize;
		let cols = im2col(g, &x.data[b * n..(b + 1) * n]);
		let patches = View { data: &cols, rows: patch, cols: plane, rs: 1, cs: patch };
		let mut y = gemm(filters, patches, false);
		for (o, values) in y.chunks_mut(plane.max(1)).enumerate() {
			let b = bias.data[o];
			values.iter_mut().for_each(|v| *v = repops::add(*v, b));
		}
		y
	});
	Matrix::new(x.rows, g.output().values(), data)
}

/// [`repops::image::conv2d_input_grad`].
pub fn conv2d_input_grad(g: &Conv, dy: MatRef, w: MatRef) -> Result<Matrix, ShapeError> {
	expect(g, &dy, None, g.output().values())?;
	expect(g, &w, Some(g.out_channels), g.patch())?;
	let (k, s, p) = (g.kernel as usize, g.stride as usize, g.padding as usize);
	let (o_n, c_n) = (g.out_channels as usize, g.input.channels as usize);
	let (h, wd) = (g.input.height as usize, g.input.width as usize);
	let out = g.output();
	let (oh, ow) = (out.height as usize, out.width as usize);
	let taps = o_n * k * k;
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
	let filters = View { data: &regrouped, rows: c_n, cols: taps, rs: taps, cs: 1 };
	let n_out = out.values() as usize;
	let data = per_sample(dy.rows, c_n * h * wd, c_n * h * wd * taps, |b| {
		let dy_b = &dy.data[b * n_out..(b + 1) * n_out];
		let mut d = vec![0.0f32; taps * h * wd];
		for o in 0..o_n {
			for ky in 0..k {
				for kx in 0..k {
					let row = &mut d[((o * k + ky) * k + kx) * h * wd..][..h * wd];
					for iy in 0..h {
						let Some(oy) = reader(iy, ky, oh) else { continue };
						for ix in 0..wd {
							if let Some(ox) = reader(ix, kx, ow) {
								row[iy * wd + ix] = dy_b[(o * oh + oy) * ow + ox];
							}
						}
					}
				}
			}
		}
		let grads = View { data: &d, rows: taps, cols: h * wd, rs: h * wd, cs: 1 };
		gemm(filters, grads, false)
	});
	Matrix::new(dy.rows, g.input.values(), data)
}

/// [`repops::image::conv2d_weight_grad`].
pub fn conv2d_weight_grad(g: &Conv, x: MatRef, dy: MatRef) -> Result<Matrix, ShapeError> {
	expect(g, &x, None, g.input.values())?;
	expect(g, &dy, Some(x.rows), g.output().values())?;
	let (patch, plane) = (g.patch() as usize, (g.output().height * g.output().width) as usize);
	let (o_n, rows, n) = (g.out_channels as usize, x.rows as usize, g.input.values() as usize);
	// G (O x B·OH·OW) and P (B·OH·OW x C·k·k), both in (b, oy, ox) order.
	let mut grads = vec![0.0f32; o_n * rows * plane];
	for o in 0..o_n {
		for b in 0..rows {
			let from = &dy.data[(b * o_n + o) * plane..][..plane];
			grads[(o * rows + b) * plane..][..plane].copy_from_slice(from);
		}
	}
	let patches: Vec<f32> = (0..rows)
		.into_par_iter()
		.flat_map_iter(|b| im2col(g, &x.data[b * n..(b + 1) * n]))
		.collect();
	let terms = rows * plane;
	let a = View { data: &grads, rows: o_n, cols: terms, rs: terms, cs: 1 };
	let bv = View { data: &patches, rows: terms, cols: patch, rs: patch, cs: 1 };
	let parallel = o_n.saturating_mul(terms).saturating_mul(patch) >= SEQUENTIAL_BELOW;
	Matrix::new(g.out_channels, g.patch(), gemm(a, bv, parallel))
}
