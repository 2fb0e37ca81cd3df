//! What a dataset's samples mean: the manifest a task's spec commits to beside the samples.
//!
//! The chain proves samples against `dataset.root` and never reads the manifest; it is for
//! people and programs on either side of the market: which file and columns the samples came
//! from, what the classes are called, and how raw values were turned into features, so a
//! verifier or the buyer can rebuild the same samples from the same file, and apply the same
//! preprocessing to new inputs before running the trained model. Its hash is in the spec
//! ([`crate::task::DatasetCommitment::manifest`]) and in every sample leaf
//! ([`crate::commit::sample_leaf`]), so the root names the samples, their shape and their
//! meaning together.

use crate::task::F32Bits;
use alloc::{string::String, vec::Vec};
use codec::{Decode, Encode};
use scale_info::TypeInfo;
use sp_core::H256;
use sp_runtime::traits::{BlakeTwo256, Hash};

/// A dataset's manifest.
#[derive(Clone, PartialEq, Eq, Encode, Decode, TypeInfo, Debug, Default)]
pub struct Manifest {
	/// Where the samples came from: `csv`, `npy`, `digits`, `synthetic`; empty for samples
	/// made by a program.
	pub source: String,
	/// The source's element type before conversion to `f32` (`f32`, `f64`, `u8`, `i64`,
	/// `text`, ...); empty when the samples were made as `f32`.
	pub dtype: String,
	/// The features' names, in order (from a CSV header); empty when unnamed.
	pub feature_names: Vec<String>,
	/// What the labels are.
	pub labels: Labels,
	/// How the source's values were turned into features.
	pub preprocessing: Preprocessing,
}

/// What a dataset's labels are.
#[derive(Clone, PartialEq, Eq, Encode, Decode, TypeInfo, Debug)]
pub enum Labels {
	/// Class ids `0 .. classes`, with the class names in id order (empty: the ids are the
	/// names).
	Classes(Vec<String>),
	/// A real-valued target (a regression), with its name (a CSV column's; may be empty). A
	/// sample's label holds the target's `f32` bits.
	Target(String),
}

impl Default for Labels {
	fn default() -> Self {
		Labels::Classes(Vec::new())
	}
}

/// How a source's raw values `x` were turned into features, in `f32` arithmetic (so every
/// machine computes the same bits).
#[derive(Clone, PartialEq, Eq, Encode, Decode, TypeInfo, Debug, Default)]
pub enum Preprocessing {
	/// The values as they are.
	#[default]
	None,
	/// `x * factor`.
	Scale(F32Bits),
	/// Per feature, `(x - min) / (max - min)` (`0` where `max == min`): the training values
	/// mapped onto `[0, 1]` with the training set's own bounds, recorded here to apply to new
	/// inputs.
	MinMax {
		/// Each feature's smallest training value.
		min: Vec<F32Bits>,
		/// Each feature's largest training value.
		max: Vec<F32Bits>,
	},
	/// An image file decoded, converted to 8-bit grey or RGB, resized to `width x height`
	/// with a triangle (bilinear) filter, and read channel-major (every red value row by row,
	/// then every green, then every blue: a convolution's `C x H x W` order), each pixel value
	/// `p` becoming `p * (1 / 255)`: `apply` does the last part, on the pixel values.
	Image {
		/// Pixels a row.
		width: u32,
		/// Rows.
		height: u32,
		/// One grey channel, or three (RGB).
		grey: bool,
	},
}

/// `1 / 255` as `f32`: what an image's 8-bit pixel values are multiplied by.
pub const PIXEL_SCALE: f32 = 1.0 / 255.0;

impl Preprocessing {
	/// Applies the transform to one sample's raw values (feature `i` of `x`; a feature
	/// without recorded bounds is left as it is).
	pub fn apply(&self, x: &mut [f32]) {
		match self {
			Preprocessing::None => {}
			Preprocessing::Scale(f) => x.iter_mut().for_each(|v| *v *= f.to_f32()),
			Preprocessing::Image { .. } => x.iter_mut().for_each(|v| *v *= PIXEL_SCALE),
			Preprocessing::MinMax { min, max } => {
				for (v, (lo, hi)) in x.iter_mut().zip(min.iter().zip(max)) {
					let (lo, hi) = (lo.to_f32(), hi.to_f32());
					*v = if hi > lo { (*v - lo) / (hi - lo) } else { 0.0 };
				}
			}
		}
	}
}

impl Manifest {
	/// The manifest's hash, as a spec commits to it: blake2b-256 of its SCALE encoding.
	pub fn hash(&self) -> H256 {
		BlakeTwo256::hash(&self.encode())
	}

	/// The class names in id order, or `None` when the ids are the names.
	pub fn class_names(&self) -> Option<&[String]> {
		match &self.labels {
			Labels::Classes(names) => (!names.is_empty()).then_some(names.as_slice()),
			Labels::Target(_) => None,
		}
	}
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::arithmetic_side_effects, clippy::indexing_slicing)]
mod tests {
	use super::*;

	#[test]
	fn min_max_maps_the_training_bounds_onto_the_unit_interval() {
		let f = F32Bits::from_f32;
		let p = Preprocessing::MinMax {
			min: alloc::vec![f(2.0), f(5.0)],
			max: alloc::vec![f(6.0), f(5.0)],
		};
		let mut x = [4.0, 7.0];
		p.apply(&mut x);
		assert_eq!(x, [0.5, 0.0]);
		let mut y = [8.0, 1.0];
		Preprocessing::Scale(f(0.25)).apply(&mut y);
		assert_eq!(y, [2.0, 0.25]);
	}

	#[test]
	fn the_hash_binds_every_field() {
		let m = Manifest::default();
		let named = Manifest { labels: Labels::Classes(alloc::vec!["cat".into()]), ..m.clone() };
		let scaled =
			Manifest { preprocessing: Preprocessing::Scale(F32Bits::from_f32(2.0)), ..m.clone() };
		let source = Manifest { source: "csv".into(), ..m.clone() };
		for other in [named, scaled, source] {
			assert_ne!(other.hash(), m.hash());
		}
	}
}
