//! The image operators: 2-D convolution and pooling, forward and backward, on batches of
//! images held one sample per row, channel-major (`C x H x W` flattened: value `(c, y, x)`
//! of a sample is at column `(c * H + y) * W + x`, PyTorch's `NCHW` order), so that
//! flattening an image for a dense layer moves no value.
//!
//! Each operator is written per output element (`*_at`), and the whole-tensor operator is
//! those elements in order: the chain's check of one disputed element runs the very function
//! the whole operation runs. Every sum has one fixed order, given below; terms outside the
//! image (zero padding, or an input position no output reads at a stride) are *included*, as
//! `fma(0, w, acc)`, so a fast engine may compute a convolution as one matrix product over the
//! zero-padded patches (im2col) with the same bits.
//!
//! - [`conv2d_at`]: `y[o, oy, ox] = dot(patch(oy, ox), w[o]) + b[o]`, the patch walked in
//!   `(c, ky, kx)` order (the filter's own layout), then one addition of the bias;
//! - [`conv2d_input_grad_at`]: `dx[c, iy, ix] = dot over (o, ky, kx)` of `dy[o, oy, ox] *
//!   w[o, c, ky, kx]` where `(oy, ox) = ((iy + p - ky) / s, (ix + p - kx) / s)`, a zero term
//!   where that is not a whole output position;
//! - [`conv2d_weight_grad_at`]: `dw[o, c, ky, kx] = dot over (b, oy, ox)` of
//!   `x_b[c, oy*s + ky - p, ox*s + kx - p] * dy_b[o, oy, ox]` (zero outside the image);
//! - [`conv_bias_grad_at`]: `db[o] = sum over (b, oy, ox)` of `dy_b[o, oy, ox]`;
//! - [`max_pool_at`]: the largest value of the window in `(ky, kx)` order, the first of equal
//!   ones, a NaN winning over any number; [`max_pool_grad_at`]: the sum, over the windows
//!   containing the position in `(oy, ox)` order, of `dy` where the position is the window's
//!   pick;
//! - [`avg_pool_at`]: the window's sum in `(ky, kx)` order divided by `k * k`;
//!   [`avg_pool_grad_at`]: the sum, over the windows containing the position in `(oy, ox)`
//!   order, of `dy / (k * k)`.
//!
//! Pools have no padding.

use super::{add, div, fma, sum, Matrix, ShapeError};
use alloc::vec::Vec;
use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;

/// The largest image side, channel count or kernel an operator accepts (a row of a batch of
/// images is bounded separately, by the spec).
pub const MAX_IMAGE_DIM: u32 = 4096;

/// The shape of one sample's image: channels, height, width.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	Debug,
	Default,
)]
pub struct ImageShape {
	/// Channels.
	pub channels: u32,
	/// Height.
	pub height: u32,
	/// Width.
	pub width: u32,
}

impl ImageShape {
	/// A flat vector of `n` values (`n x 1 x 1`).
	pub fn flat(n: u32) -> Self {
		Self { channels: n, height: 1, width: 1 }
	}

	/// Values per sample, `channels * height * width` (saturating).
	pub fn values(&self) -> u32 {
		self.channels.saturating_mul(self.height).saturating_mul(self.width)
	}

	/// Whether this is a flat vector (height and width 1).
	pub fn is_flat(&self) -> bool {
		self.height == 1 && self.width == 1
	}

	/// The column of value `(c, y, x)`.
	pub fn at(&self, c: u32, y: u32, x: u32) -> usize {
		let plane = (c as usize).saturating_mul(self.height as usize).saturating_add(y as usize);
		plane.saturating_mul(self.width as usize).saturating_add(x as usize)
	}

	/// `(c, y, x)` of column `i`.
	pub fn position(&self, i: u32) -> (u32, u32, u32) {
		let w = self.width.max(1);
		let h = self.height.max(1);
		let x = i.checked_rem(w).unwrap_or(0);
		let rest = i.checked_div(w).unwrap_or(0);
		(rest.checked_div(h).unwrap_or(0), rest.checked_rem(h).unwrap_or(0), x)
	}
}

/// Output side of a window of `kernel` moved by `stride` over `side + 2 * padding` values, or
/// `None` if the window does not fit once.
fn out_side(side: u32, kernel: u32, stride: u32, padding: u32) -> Option<u32> {
	let padded = side.checked_add(padding.checked_mul(2)?)?;
	let room = padded.checked_sub(kernel)?;
	room.checked_div(stride)?.checked_add(1)
}

/// A convolution's geometry: its input image, filters, stride and zero padding.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	Debug,
)]
pub struct Conv {
	/// The input image.
	pub input: ImageShape,
	/// Output channels (filters).
	pub out_channels: u32,
	/// The filters' side.
	pub kernel: u32,
	/// The step between windows.
	pub stride: u32,
	/// Zeros added on every side of the image.
	pub padding: u32,
}

impl Conv {
	/// Whether the geometry is sound: every size positive and at most [`MAX_IMAGE_DIM`], the
	/// padding below the kernel, and the window fitting the padded image once.
	pub fn is_valid(&self) -> bool {
		let i = &self.input;
		let sizes = [i.channels, i.height, i.width, self.out_channels, self.kernel, self.stride];
		sizes.iter().all(|s| *s >= 1 && *s <= MAX_IMAGE_DIM)
			&& self.padding < self.kernel
			&& out_side(i.height, self.kernel, self.stride, self.padding).is_some()
			&& out_side(i.width, self.kernel, self.stride, self.padding).is_some()
	}

	/// The output image.
	pub fn output(&self) -> ImageShape {
		let side = |s| out_side(s, self.kernel, self.stride, self.padding).unwrap_or(0);
		ImageShape {
			channels: self.out_channels,
			height: side(self.input.height),
			width: side(self.input.width),
		}
	}

	/// Values of one filter: `channels * kernel * kernel`.
	pub fn patch(&self) -> u32 {
		self.input.channels.saturating_mul(self.kernel).saturating_mul(self.kernel)
	}

	/// The input position a filter tap `(ky, kx)` of output `(oy, ox)` reads, `None` in the
	/// padding.
	fn tap(&self, (oy, ox): (u32, u32), (ky, kx): (u32, u32)) -> Option<(u32, u32)> {
		let y = oy.checked_mul(self.stride)?.checked_add(ky)?.checked_sub(self.padding)?;
		let x = ox.checked_mul(self.stride)?.checked_add(kx)?.checked_sub(self.padding)?;
		(y < self.input.height && x < self.input.width).then_some((y, x))
	}

	/// The output position whose tap `(ky, kx)` reads input `(iy, ix)`, if any.
	fn reader(&self, (iy, ix): (u32, u32), (ky, kx): (u32, u32)) -> Option<(u32, u32)> {
		let out = self.output();
		let along = |i: u32, k: u32, side: u32| -> Option<u32> {
			let t = i.checked_add(self.padding)?.checked_sub(k)?;
			if t.checked_rem(self.stride)? != 0 {
				return None;
			}
			let o = t.checked_div(self.stride)?;
			(o < side).then_some(o)
		};
		Some((along(iy, ky, out.height)?, along(ix, kx, out.width)?))
	}
}

/// A pool's geometry: its input image, window and stride (no padding).
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	Debug,
)]
pub struct Pool {
	/// The input image.
	pub input: ImageShape,
	/// The window's side.
	pub kernel: u32,
	/// The step between windows.
	pub stride: u32,
}

impl Pool {
	/// Whether the geometry is sound: sizes positive and at most [`MAX_IMAGE_DIM`], the window
	/// fitting the image once.
	pub fn is_valid(&self) -> bool {
		let i = &self.input;
		let sizes = [i.channels, i.height, i.width, self.kernel, self.stride];
		sizes.iter().all(|s| *s >= 1 && *s <= MAX_IMAGE_DIM)
			&& out_side(i.height, self.kernel, self.stride, 0).is_some()
			&& out_side(i.width, self.kernel, self.stride, 0).is_some()
	}

	/// The output image.
	pub fn output(&self) -> ImageShape {
		let side = |s| out_side(s, self.kernel, self.stride, 0).unwrap_or(0);
		ImageShape {
			channels: self.input.channels,
			height: side(self.input.height),
			width: side(self.input.width),
		}
	}

	/// The window's values, `kernel * kernel`, as a float divisor.
	fn area(&self) -> f32 {
		self.kernel.saturating_mul(self.kernel) as f32
	}

	/// The windows (output positions) that contain input position `(iy, ix)`, in `(oy, ox)`
	/// order.
	fn windows(&self, (iy, ix): (u32, u32)) -> impl Iterator<Item = (u32, u32)> {
		let out = self.output();
		let (k, s) = (self.kernel, self.stride.max(1));
		// Window `o` covers `o*s .. o*s + k`.
		let range = move |i: u32, side: u32| {
			let first = i.saturating_add(1).saturating_sub(k).div_ceil(s);
			let last = i.checked_div(s).unwrap_or(0).min(side.saturating_sub(1));
			first..=last
		};
		let (ys, xs) = (range(iy, out.height), range(ix, out.width));
		let (oh, ow) = (out.height, out.width);
		ys.flat_map(move |oy| xs.clone().map(move |ox| (oy, ox)))
			.filter(move |(oy, ox)| *oy < oh && *ox < ow)
	}

	/// The input positions of window `(oy, ox)`, in `(ky, kx)` order.
	fn window(&self, (oy, ox): (u32, u32)) -> impl Iterator<Item = (u32, u32)> {
		let (k, s) = (self.kernel, self.stride);
		let (y0, x0) = (oy.saturating_mul(s), ox.saturating_mul(s));
		(0..k).flat_map(move |ky| {
			(0..k).map(move |kx| (y0.saturating_add(ky), x0.saturating_add(kx)))
		})
	}

	/// The position [`max_pool_at`] picks in window `(oy, ox)` of channel `c` of `row`.
	fn pick(&self, row: &[f32], c: u32, window: (u32, u32)) -> (u32, u32) {
		let values = self.window(window).map(|(y, x)| ((y, x), value(row, self.input.at(c, y, x))));
		max_pick(values).unwrap_or((0, 0))
	}
}

/// A max pool's pick among `(position, value)` in window order: the first of the largest, a
/// NaN winning over any number (and the first NaN over later ones). The one rule every
/// implementation of the pool and its gradient uses.
pub fn max_pick<P>(values: impl Iterator<Item = (P, f32)>) -> Option<P> {
	let mut best: Option<(P, f32)> = None;
	for (p, v) in values {
		let better = match &best {
			None => true,
			Some((_, b)) => !b.is_nan() && (v.is_nan() || v > *b),
		};
		if better {
			best = Some((p, v));
		}
	}
	best.map(|(p, _)| p)
}

/// `values[i]`, or 0 past the end (callers check the lengths first).
fn value(values: &[f32], i: usize) -> f32 {
	values.get(i).copied().unwrap_or(0.0)
}

/// One output of a convolution: position `(o, oy, ox)` from one sample's input `x` (`C x H x
/// W`), filter `o` (`w_o`, `C x k x k`) and its bias.
pub fn conv2d_at(g: &Conv, x: &[f32], w_o: &[f32], bias: f32, (oy, ox): (u32, u32)) -> f32 {
	let k = g.kernel;
	let patch = (0..g.input.channels).flat_map(|c| {
		(0..k).flat_map(move |ky| {
			(0..k).map(move |kx| match g.tap((oy, ox), (ky, kx)) {
				Some((y, x_)) => value(x, g.input.at(c, y, x_)),
				None => 0.0,
			})
		})
	});
	add(patch.zip(w_o.iter().copied()).fold(0.0f32, |acc, (a, b)| fma(a, b, acc)), bias)
}

/// One value of a convolution's input gradient: position `(c, iy, ix)` of one sample, from
/// that sample's output gradient `dy` (`O x OH x OW`) and every filter `w` (`O x C x k x k`,
/// filter after filter).
pub fn conv2d_input_grad_at(g: &Conv, dy: &[f32], w: &[f32], (c, iy, ix): (u32, u32, u32)) -> f32 {
	let (k, out) = (g.kernel, g.output());
	let patch = g.patch() as usize;
	let tap = |ky: u32, kx: u32| {
		(c as usize)
			.saturating_mul((k as usize).saturating_mul(k as usize))
			.saturating_add((ky as usize).saturating_mul(k as usize))
			.saturating_add(kx as usize)
	};
	let mut acc = 0.0f32;
	for o in 0..g.out_channels {
		let filter = (o as usize).saturating_mul(patch);
		for ky in 0..k {
			for kx in 0..k {
				let d = match g.reader((iy, ix), (ky, kx)) {
					Some((oy, ox)) => value(dy, out.at(o, oy, ox)),
					None => 0.0,
				};
				acc = fma(d, value(w, filter.saturating_add(tap(ky, kx))), acc);
			}
		}
	}
	acc
}

/// One value of a convolution's weight gradient: tap `i` (`(c, ky, kx)` flattened) of filter
/// `o`, from the whole batch's inputs `x` and output gradients `dy` (sample after sample).
pub fn conv2d_weight_grad_at(g: &Conv, x: &[f32], dy: &[f32], batch: u32, o: u32, i: u32) -> f32 {
	let k = g.kernel.max(1);
	let c = i.checked_div(k.saturating_mul(k)).unwrap_or(0);
	let (ky, kx) =
		(i.checked_div(k).unwrap_or(0).checked_rem(k).unwrap_or(0), i.checked_rem(k).unwrap_or(0));
	let (out, n_in, n_out) = (g.output(), g.input.values() as usize, g.output().values() as usize);
	let mut acc = 0.0f32;
	for b in 0..batch as usize {
		let (x_b, dy_b) = (b.saturating_mul(n_in), b.saturating_mul(n_out));
		for oy in 0..out.height {
			for ox in 0..out.width {
				let a = match g.tap((oy, ox), (ky, kx)) {
					Some((y, x_)) => value(x, x_b.saturating_add(g.input.at(c, y, x_))),
					None => 0.0,
				};
				acc = fma(a, value(dy, dy_b.saturating_add(out.at(o, oy, ox))), acc);
			}
		}
	}
	acc
}

/// One value of a convolution's bias gradient: filter `o`'s, from the whole batch's output
/// gradients `dy` (sample after sample).
pub fn conv_bias_grad_at(g: &Conv, dy: &[f32], batch: u32, o: u32) -> f32 {
	let out = g.output();
	let n_out = out.values() as usize;
	let plane = out.height.saturating_mul(out.width) as usize;
	sum((0..batch as usize).flat_map(|b| {
		let first = b.saturating_mul(n_out).saturating_add(out.at(o, 0, 0));
		(0..plane).map(move |p| value(dy, first.saturating_add(p)))
	}))
}

/// One output of a max pool: position `(c, oy, ox)` of one sample's input `x`.
pub fn max_pool_at(g: &Pool, x: &[f32], (c, oy, ox): (u32, u32, u32)) -> f32 {
	let (y, x_) = g.pick(x, c, (oy, ox));
	value(x, g.input.at(c, y, x_))
}

/// One value of a max pool's input gradient: position `(c, iy, ix)` of one sample, from its
/// input `x` and output gradient `dy`.
pub fn max_pool_grad_at(g: &Pool, x: &[f32], dy: &[f32], (c, iy, ix): (u32, u32, u32)) -> f32 {
	let out = g.output();
	sum(g
		.windows((iy, ix))
		.filter(|w| g.pick(x, c, *w) == (iy, ix))
		.map(|(oy, ox)| value(dy, out.at(c, oy, ox))))
}

/// One output of an average pool: position `(c, oy, ox)` of one sample's input `x`.
pub fn avg_pool_at(g: &Pool, x: &[f32], (c, oy, ox): (u32, u32, u32)) -> f32 {
	div(sum(g.window((oy, ox)).map(|(y, x_)| value(x, g.input.at(c, y, x_)))), g.area())
}

/// One value of an average pool's input gradient: position `(c, iy, ix)` of one sample, from
/// its output gradient `dy`.
pub fn avg_pool_grad_at(g: &Pool, dy: &[f32], (c, iy, ix): (u32, u32, u32)) -> f32 {
	let out = g.output();
	sum(g.windows((iy, ix)).map(|(oy, ox)| div(value(dy, out.at(c, oy, ox)), g.area())))
}

/// Checks that `m` holds `cols` values per row (and `rows` rows, if given).
fn expect(m: &Matrix, rows: Option<u32>, cols: u32) -> Result<(), ShapeError> {
	m.check()?;
	if m.cols != cols || rows.is_some_and(|r| r != m.rows) {
		return Err(ShapeError::Mismatch);
	}
	Ok(())
}

/// A `rows x shape.values()` matrix from `f(row, (c, y, x))`.
fn per_position(
	rows: u32,
	shape: ImageShape,
	mut f: impl FnMut(u32, (u32, u32, u32)) -> f32,
) -> Result<Matrix, ShapeError> {
	Matrix::from_fn(rows, shape.values(), |r, i| f(r, shape.position(i)))
}

/// The convolution `g` of a batch `x` (`B x C*H*W`) with filters `w` (`O x C*k*k`) and biases
/// `b` (`1 x O`): `B x O*OH*OW`.
pub fn conv2d(g: &Conv, x: &Matrix, w: &Matrix, b: &Matrix) -> Result<Matrix, ShapeError> {
	if !g.is_valid() {
		return Err(ShapeError::Mismatch);
	}
	expect(x, None, g.input.values())?;
	expect(w, Some(g.out_channels), g.patch())?;
	expect(b, Some(1), g.out_channels)?;
	per_position(x.rows, g.output(), |r, (o, oy, ox)| {
		let x_r = x.row(r).unwrap_or_default();
		let w_o = w.row(o).unwrap_or_default();
		conv2d_at(g, x_r, w_o, value(&b.data, o as usize), (oy, ox))
	})
}

/// The input gradient of convolution `g` from the output gradient `dy` (`B x O*OH*OW`) and
/// the filters `w` (`O x C*k*k`): `B x C*H*W`.
pub fn conv2d_input_grad(g: &Conv, dy: &Matrix, w: &Matrix) -> Result<Matrix, ShapeError> {
	if !g.is_valid() {
		return Err(ShapeError::Mismatch);
	}
	expect(dy, None, g.output().values())?;
	expect(w, Some(g.out_channels), g.patch())?;
	per_position(dy.rows, g.input, |r, at| {
		conv2d_input_grad_at(g, dy.row(r).unwrap_or_default(), &w.data, at)
	})
}

/// The weight gradient of convolution `g` from the batch's inputs `x` (`B x C*H*W`) and
/// output gradients `dy` (`B x O*OH*OW`): `O x C*k*k`.
pub fn conv2d_weight_grad(g: &Conv, x: &Matrix, dy: &Matrix) -> Result<Matrix, ShapeError> {
	if !g.is_valid() {
		return Err(ShapeError::Mismatch);
	}
	expect(x, None, g.input.values())?;
	expect(dy, Some(x.rows), g.output().values())?;
	Matrix::from_fn(g.out_channels, g.patch(), |o, i| {
		conv2d_weight_grad_at(g, &x.data, &dy.data, x.rows, o, i)
	})
}

/// The bias gradient of convolution `g` from the output gradients `dy` (`B x O*OH*OW`):
/// `1 x O`.
pub fn conv_bias_grad(g: &Conv, dy: &Matrix) -> Result<Matrix, ShapeError> {
	if !g.is_valid() {
		return Err(ShapeError::Mismatch);
	}
	expect(dy, None, g.output().values())?;
	Matrix::from_fn(1, g.out_channels, |_, o| conv_bias_grad_at(g, &dy.data, dy.rows, o))
}

/// Max pool `g` of a batch `x` (`B x C*H*W`): `B x C*OH*OW`.
pub fn max_pool(g: &Pool, x: &Matrix) -> Result<Matrix, ShapeError> {
	if !g.is_valid() {
		return Err(ShapeError::Mismatch);
	}
	expect(x, None, g.input.values())?;
	per_position(x.rows, g.output(), |r, at| max_pool_at(g, x.row(r).unwrap_or_default(), at))
}

/// The input gradient of max pool `g` from its input `x` and output gradient `dy`.
pub fn max_pool_grad(g: &Pool, x: &Matrix, dy: &Matrix) -> Result<Matrix, ShapeError> {
	if !g.is_valid() {
		return Err(ShapeError::Mismatch);
	}
	expect(x, None, g.input.values())?;
	expect(dy, Some(x.rows), g.output().values())?;
	per_position(x.rows, g.input, |r, at| {
		max_pool_grad_at(g, x.row(r).unwrap_or_default(), dy.row(r).unwrap_or_default(), at)
	})
}

/// Average pool `g` of a batch `x` (`B x C*H*W`): `B x C*OH*OW`.
pub fn avg_pool(g: &Pool, x: &Matrix) -> Result<Matrix, ShapeError> {
	if !g.is_valid() {
		return Err(ShapeError::Mismatch);
	}
	expect(x, None, g.input.values())?;
	per_position(x.rows, g.output(), |r, at| avg_pool_at(g, x.row(r).unwrap_or_default(), at))
}

/// The input gradient of average pool `g` from its output gradient `dy`.
pub fn avg_pool_grad(g: &Pool, dy: &Matrix) -> Result<Matrix, ShapeError> {
	if !g.is_valid() {
		return Err(ShapeError::Mismatch);
	}
	expect(dy, None, g.output().values())?;
	per_position(dy.rows, g.input, |r, at| avg_pool_grad_at(g, dy.row(r).unwrap_or_default(), at))
}

/// The im2col matrix of convolution `g` on one sample's image `x`: one row per output
/// position `(oy, ox)`, its zero-padded patch in `(c, ky, kx)` order (what [`conv2d_at`]
/// multiplies filter by filter), for engines that compute a convolution as a product.
pub fn im2col(g: &Conv, x: &[f32]) -> Vec<f32> {
	let (out, k) = (g.output(), g.kernel);
	let mut cols = Vec::with_capacity(
		(out.height as usize).saturating_mul(out.width as usize).saturating_mul(g.patch() as usize),
	);
	for oy in 0..out.height {
		for ox in 0..out.width {
			for c in 0..g.input.channels {
				for ky in 0..k {
					for kx in 0..k {
						cols.push(match g.tap((oy, ox), (ky, kx)) {
							Some((y, x_)) => value(x, g.input.at(c, y, x_)),
							None => 0.0,
						});
					}
				}
			}
		}
	}
	cols
}
