//! The trained model as a burn `Module`: an MLP of burn `Linear` layers built from a RepOps
//! training state, saved as a burn record (`NamedMpkFileRecorder`, full precision) that any
//! burn user loads into the same module on any backend, and read back into the RepOps form.
//!
//! Training runs this module on `Autodiff<NdArray>` with every operation a RepOps kernel
//! ([`Mlp::forward_repops`], [`crate::backend`], the loop in [`crate::train`]); the weights a
//! burn user gets are bit for bit the parameters whose hash the chain holds (`model_hash`).

use std::{
	path::{Path, PathBuf},
	sync::Arc,
};

use burn::{
	module::{Module, Param},
	nn::{Linear, LinearConfig},
	record::{FullPrecisionSettings, NamedMpkFileRecorder},
	tensor::{activation, backend::Backend, Tensor, TensorData, TensorPrimitive},
};
use thiserror::Error;
use trainet_primitives::repops::Matrix;

use crate::backend::{RepOpsBackend, StepContext};

/// Why a model could not be built, saved or loaded.
#[derive(Debug, Error)]
pub enum ModelError {
	/// The state does not hold an MLP of these widths.
	#[error("the state does not fit a {widths:?} MLP: {reason}")]
	Shape {
		/// The widths.
		widths: Vec<u32>,
		/// Why.
		reason: String,
	},
	/// The state does not fit the graph model.
	#[error("the state does not fit the model: {reason}")]
	Graph {
		/// Why.
		reason: String,
	},
	/// burn could not save or load the record.
	#[error("{path}: {reason}")]
	Record {
		/// The file.
		path: PathBuf,
		/// burn's reason.
		reason: String,
	},
}

/// A multi-layer perceptron: `Linear` layers with ReLU between them, the model of
/// `trainet_primitives::task::Model::Mlp`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
	/// The layers, input first.
	pub layers: Vec<Linear<B>>,
}

/// The recorder models are saved with (`.mpk`, full `f32` precision: no bit is lost).
pub type Recorder = NamedMpkFileRecorder<FullPrecisionSettings>;

impl<B: Backend> Mlp<B> {
	/// An MLP of these widths with burn's default initialization (load a record into it).
	pub fn new(widths: &[u32], device: &B::Device) -> Self {
		let layers = widths
			.windows(2)
			.map(|w| LinearConfig::new(w[0] as usize, w[1] as usize).init(device))
			.collect();
		Self { layers }
	}

	/// The MLP whose parameters are the first `2 x layers` tensors of a RepOps training state
	/// (`W_l` as `[in, out]`, `b_l` as `[1, out]`, layer by layer).
	pub fn from_state(
		widths: &[u32],
		state: &[Matrix],
		device: &B::Device,
	) -> Result<Self, ModelError> {
		let params = widths.len().saturating_sub(1).saturating_mul(2);
		Self::from_owned_state(widths, state.iter().take(params).cloned().collect(), device)
	}

	/// [`Self::from_state`] taking the parameters' values instead of copying them: `params`
	/// holds the `2 x layers` parameter tensors (in state order).
	pub fn from_owned_state(
		widths: &[u32],
		params: Vec<Matrix>,
		device: &B::Device,
	) -> Result<Self, ModelError> {
		let bad = |reason: String| ModelError::Shape { widths: widths.to_vec(), reason };
		let mut params = params.into_iter();
		let mut layers = Vec::new();
		for (l, w) in widths.windows(2).enumerate() {
			let (Some(weight), Some(bias)) = (params.next(), params.next()) else {
				return Err(bad(format!("no parameters for layer {l}")));
			};
			if (weight.rows, weight.cols, bias.rows, bias.cols) != (w[0], w[1], 1, w[1]) {
				return Err(bad(format!(
					"layer {l}: weights {}x{}, bias {}x{}",
					weight.rows, weight.cols, bias.rows, bias.cols
				)));
			}
			let (i, o) = (w[0] as usize, w[1] as usize);
			let weight = Tensor::from_data(TensorData::new(weight.data, [i, o]), device);
			let bias = Tensor::from_data(TensorData::new(bias.data, [o]), device);
			layers.push(Linear {
				weight: Param::from_tensor(weight),
				bias: Some(Param::from_tensor(bias)),
			});
		}
		Ok(Self { layers })
	}

	/// The parameters back in RepOps form, in state order.
	pub fn to_state(&self) -> Vec<Matrix> {
		let mut state = Vec::new();
		for layer in &self.layers {
			let [i, o] = layer.weight.val().dims();
			let weight: Vec<f32> = layer.weight.val().into_data().to_vec().unwrap_or_default();
			state.extend(Matrix::new(i as u32, o as u32, weight).ok());
			if let Some(b) = &layer.bias {
				let bias: Vec<f32> = b.val().into_data().to_vec().unwrap_or_default();
				state.extend(Matrix::new(1, o as u32, bias).ok());
			}
		}
		state
	}

	/// Logits for a batch of inputs `[n, widths[0]]`.
	pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
		let last = self.layers.len().saturating_sub(1);
		self.layers.iter().enumerate().fold(x, |a, (l, layer)| {
			let z = layer.forward(a);
			if l < last {
				activation::relu(z)
			} else {
				z
			}
		})
	}

	/// Saves the model as a burn record at `path` (burn adds `.mpk`); returns the file.
	pub fn save(self, path: &Path) -> Result<PathBuf, ModelError> {
		let file = path.with_extension("mpk");
		self.save_file(path.to_path_buf(), &Recorder::new())
			.map_err(|e| ModelError::Record { path: file.clone(), reason: e.to_string() })?;
		Ok(file)
	}

	/// Loads a record saved by [`Self::save`] into an MLP of `widths`.
	pub fn load(widths: &[u32], path: &Path, device: &B::Device) -> Result<Self, ModelError> {
		Self::new(widths, device)
			.load_file(path.to_path_buf(), &Recorder::new(), device)
			.map_err(|e| ModelError::Record { path: path.into(), reason: e.to_string() })
	}
}

impl<B: RepOpsBackend> Mlp<B> {
	/// Logits for a batch `[n, widths[0]]`, every operation a RepOps kernel (see
	/// [`crate::backend`]): on `Autodiff<B>`, `backward()` on the loss then gives the step
	/// program's gradients bit for bit.
	pub fn forward_repops(&self, x: Tensor<B, 2>, ctx: &Arc<StepContext>) -> Tensor<B, 2> {
		let last = self.layers.len().saturating_sub(1);
		let mut a = x.into_primitive().tensor();
		for (l, layer) in self.layers.iter().enumerate() {
			let mut z = B::repops_matmul(a, layer.weight.val().into_primitive().tensor(), ctx);
			if let Some(b) = &layer.bias {
				z = B::repops_bias_add(z, b.val().into_primitive().tensor(), ctx);
			}
			a = if l < last { B::repops_relu(z, ctx) } else { z };
		}
		Tensor::from_primitive(TensorPrimitive::Float(a))
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use burn::backend::NdArray;

	#[test]
	fn a_state_survives_the_module_and_its_record_bit_for_bit() {
		let state = vec![
			Matrix::new(3, 2, vec![0.1, -0.2, 1e-30, -0.0, 7.5, f32::MIN_POSITIVE]).unwrap(),
			Matrix::new(1, 2, vec![0.25, -1.0]).unwrap(),
			Matrix::new(2, 1, vec![3.0, -3.0]).unwrap(),
			Matrix::new(1, 1, vec![0.5]).unwrap(),
		];
		let device = Default::default();
		let m = Mlp::<NdArray>::from_state(&[3, 2, 1], &state, &device).unwrap();
		let bits = |s: &[Matrix]| -> Vec<u32> {
			s.iter().flat_map(|m| m.data.iter().map(|v| v.to_bits())).collect()
		};
		assert_eq!(bits(&m.to_state()), bits(&state));
		let dir = tempfile::tempdir().unwrap();
		let file = m.save(&dir.path().join("model")).unwrap();
		assert!(file.ends_with("model.mpk") && file.is_file());
		let back = Mlp::<NdArray>::load(&[3, 2, 1], &file, &device).unwrap();
		assert_eq!(bits(&back.to_state()), bits(&state));
		// ReLU between the layers: x = (1, 0, 0) -> relu(0.1 + 0.25, -0.2 - 1) = (0.35, 0)
		// -> 0.35 * 3 + 0.5.
		let x = Tensor::<NdArray, 2>::from_data(
			TensorData::new(vec![1.0f32, 0.0, 0.0], [1, 3]),
			&device,
		);
		let y: Vec<f32> = back.forward(x).into_data().to_vec().unwrap();
		assert!((y[0] - (0.35 * 3.0 + 0.5)).abs() < 1e-6, "{y:?}");

		let err = Mlp::<NdArray>::from_state(&[3, 4, 1], &state, &device).unwrap_err();
		assert!(err.to_string().contains("layer 0: weights 3x2"), "{err}");
		assert!(Mlp::<NdArray>::load(&[3, 2, 1], &dir.path().join("none.mpk"), &device).is_err());
	}
}
