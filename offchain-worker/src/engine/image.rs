//! The image operators: the convolutions on the direct kernels of `conv`, the pools and
//! the bias gradient as loops.
//!
//! RepOps defines every convolution sum over one fixed order with the zero terms of the
//! padding (or of input positions a stride skips) included (`trainet_primitives::repops::image`);
//! `conv` computes each such chain whole, several side by side. Samples are independent and
//! each output is computed whole wherever it runs, so the thread count changes no bit.

use rayon::prelude::*;
use trainet_primitives::repops::{
	self,
	image::{Conv, Pool},
	Matrix, ShapeError,
};

use super::{conv, MatRef, SEQUENTIAL_BELOW};

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

/// [`repops::image::conv2d`]: the direct kernel (`conv::forward`), sample by sample.
pub fn conv2d(g: &Conv, x: MatRef, w: MatRef, bias: MatRef) -> Result<Matrix, ShapeError> {
	expect(g.is_valid(), &x, None, g.input.values())?;
	expect(g.is_valid(), &w, Some(g.out_channels), g.patch())?;
	expect(g.is_valid(), &bias, Some(1), g.out_channels)?;
	let (n_in, n_out) = (g.input.values() as usize, g.output().values() as usize);
	let data = per_sample(x.rows, n_out, n_out * g.patch() as usize, |b| {
		let mut out = vec![0.0f32; n_out];
		conv::forward(g, &x.data[b * n_in..][..n_in], w.data, bias.data, &mut out);
		out
	});
	Matrix::new(x.rows, g.output().values(), data)
}

/// [`repops::image::conv2d_input_grad`]: the direct kernel (`conv::input_grad`), sample by
/// sample.
pub fn conv2d_input_grad(g: &Conv, dy: MatRef, w: MatRef) -> Result<Matrix, ShapeError> {
	expect(g.is_valid(), &dy, None, g.output().values())?;
	expect(g.is_valid(), &w, Some(g.out_channels), g.patch())?;
	let (n_in, n_out) = (g.input.values() as usize, g.output().values() as usize);
	let work = n_in * (g.out_channels * g.kernel * g.kernel) as usize;
	let data = per_sample(dy.rows, n_in, work, |b| {
		let mut out = vec![0.0f32; n_in];
		conv::input_grad(g, &dy.data[b * n_out..][..n_out], w.data, &mut out);
		out
	});
	Matrix::new(dy.rows, g.input.values(), data)
}

/// [`repops::image::conv2d_weight_grad`]: the direct kernel (`conv::WeightGrad`), tiles of
/// filters and taps in parallel.
pub fn conv2d_weight_grad(g: &Conv, x: MatRef, dy: MatRef) -> Result<Matrix, ShapeError> {
	expect(g.is_valid(), &x, None, g.input.values())?;
	expect(g.is_valid(), &dy, Some(x.rows), g.output().values())?;
	let rows = x.rows as usize;
	let work = rows * (g.output().values() * g.patch()) as usize;
	let grad = conv::WeightGrad::new(g, x.data, dy.data, rows);
	Matrix::new(g.out_channels, g.patch(), grad.run(work >= SEQUENTIAL_BELOW))
}

/// The window positions of pool `g`'s output `(oy, ox)` in `(ky, kx)` order, as columns of one
/// channel's plane.
fn window(g: &Pool, (oy, ox): (usize, usize)) -> impl Iterator<Item = usize> + '_ {
	let (k, s, w) = (g.kernel as usize, g.stride as usize, g.input.width as usize);
	(0..k).flat_map(move |ky| (0..k).map(move |kx| (oy * s + ky) * w + ox * s + kx))
}

/// The position a max pool picks in window `(oy, ox)` of `plane`, by the reference's rule
/// ([`repops::image::max_pick`]: the first of the largest, the first NaN over anything),
/// written again as plain loops: `max_pick` over the window's values, even read as row slices,
/// took about 1.5x the time of these loops on LeNet-5's pools.
#[inline]
fn pick(g: &Pool, plane: &[f32], (oy, ox): (usize, usize)) -> usize {
	let (k, s, w) = (g.kernel as usize, g.stride as usize, g.input.width as usize);
	let first = oy * s * w + ox * s;
	let (mut at, mut best) = (first, plane[first]);
	for ky in 0..k {
		let row = first + ky * w;
		for (kx, v) in plane[row..row + k].iter().enumerate() {
			if !best.is_nan() && (v.is_nan() || *v > best) {
				(at, best) = (row + kx, *v);
			}
		}
	}
	at
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
						p[pick(g, p, (oy, ox))]
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
							let i = pick(g, p, (oy, ox));
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
