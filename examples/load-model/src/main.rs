//! Loads a model that Trainet trained (`trainet-worker model fetch`, `train --save`) in a plain
//! burn program, and classifies inputs with it (or, for a regression, predicts their target).
//!
//! ```sh
//! cargo run --manifest-path examples/load-model/Cargo.toml -- model inputs.csv
//! ```
//!
//! `model` is the export folder: `model.mpk` is a burn record of the module below (burn
//! `Linear` layers, ReLU between them), `model-card.json` gives its widths, the class names and
//! how to prepare a raw input. `inputs.csv` holds one raw input a line (comma-separated
//! numbers, no header). For each, the program prints the predicted class and the logits, or a
//! regression's target name and predicted value.

use std::{error::Error, path::Path};

use burn::{
	backend::NdArray,
	module::Module,
	nn::{Linear, LinearConfig},
	record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder},
	tensor::{activation::relu, backend::Backend, Tensor, TensorData},
};
use serde_json::Value;

/// The model: `Linear` layers with ReLU between them. Its field names are the record's.
#[derive(Module, Debug)]
struct Mlp<B: Backend> {
	layers: Vec<Linear<B>>,
}

impl<B: Backend> Mlp<B> {
	fn new(widths: &[usize], device: &B::Device) -> Self {
		let layers =
			widths.windows(2).map(|w| LinearConfig::new(w[0], w[1]).init(device)).collect();
		Self { layers }
	}

	fn forward(&self, mut x: Tensor<B, 2>) -> Tensor<B, 2> {
		let last = self.layers.len() - 1;
		for (i, layer) in self.layers.iter().enumerate() {
			x = layer.forward(x);
			if i < last {
				x = relu(x);
			}
		}
		x
	}
}

/// An input prepared as the model card says (the preprocessing the dataset was imported with).
fn prepare(card: &Value, raw: Vec<f32>) -> Result<Vec<f32>, Box<dyn Error>> {
	let p = &card["dataset"]["preprocessing"];
	if p.is_null() || p == "none" {
		return Ok(raw);
	}
	if let Some(factor) = p["scale"]["factor"].as_f64() {
		return Ok(raw.into_iter().map(|v| v * factor as f32).collect());
	}
	if let Some(min_max) = p.get("min_max") {
		let read = |k: &str| -> Vec<f32> {
			min_max[k]
				.as_array()
				.into_iter()
				.flatten()
				.filter_map(|v| v.as_f64())
				.map(|v| v as f32)
				.collect()
		};
		let (min, max) = (read("min"), read("max"));
		return Ok(raw
			.iter()
			.zip(min.iter().zip(&max))
			.map(|(v, (lo, hi))| if hi > lo { (v - lo) / (hi - lo) } else { 0.0 })
			.collect());
	}
	Err(format!("this example does not prepare {p} inputs").into())
}

fn main() -> Result<(), Box<dyn Error>> {
	let args: Vec<String> = std::env::args().collect();
	let [_, dir, inputs] = &args[..] else {
		return Err("usage: load-model MODEL_DIR INPUTS.csv".into());
	};
	let dir = Path::new(dir);
	let card: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("model-card.json"))?)?;
	let widths: Vec<usize> = card["widths"]
		.as_array()
		.ok_or("no widths in the model card")?
		.iter()
		.map(|w| w.as_u64().map(|w| w as usize).ok_or("a width is not a number"))
		.collect::<Result<_, _>>()?;
	let classes: Vec<String> = card["dataset"]["class_names"]
		.as_array()
		.into_iter()
		.flatten()
		.filter_map(|c| c.as_str().map(String::from))
		.collect();

	type B = NdArray<f32>;
	let device = Default::default();
	let record = NamedMpkFileRecorder::<FullPrecisionSettings>::new()
		.load(dir.join("model.mpk"), &device)?;
	let model = Mlp::<B>::new(&widths, &device).load_record(record);

	for (n, line) in std::fs::read_to_string(inputs)?.lines().enumerate() {
		let raw = line
			.split(',')
			.map(|v| v.trim().parse::<f32>())
			.collect::<Result<Vec<_>, _>>()
			.map_err(|e| format!("{inputs}, line {}: {e}", n + 1))?;
		if raw.len() != widths[0] {
			return Err(format!(
				"{inputs}, line {}: {} values, the model takes {}",
				n + 1,
				raw.len(),
				widths[0]
			)
			.into());
		}
		let x = prepare(&card, raw)?;
		let input = Tensor::<B, 2>::from_data(TensorData::new(x, [1, widths[0]]), &device);
		let logits: Vec<f32> =
			model.forward(input).into_data().to_vec().map_err(|e| format!("{e:?}"))?;
		// A regression (0 classes): the one output is the predicted target.
		if card["dataset"]["classes"].as_u64() == Some(0) {
			let target = card["dataset"]["target"].as_str().filter(|t| !t.is_empty());
			println!("{} {}", target.unwrap_or("target"), logits[0]);
			continue;
		}
		let best = logits
			.iter()
			.enumerate()
			.fold(0, |best, (i, v)| if *v > logits[best] { i } else { best });
		let name = classes.get(best).cloned().unwrap_or_else(|| best.to_string());
		println!("{name} {logits:?}");
	}
	Ok(())
}
