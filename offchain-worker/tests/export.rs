//! The trained model, handed over: an export folder holds the burn record, SafeTensors in
//! PyTorch's layout and a model card, all of the very parameters the final state fixes; read
//! back, it classifies exactly as the trained run does.

use trainet_primitives::{
	commit::state_hash,
	task::{Optimizer, TrainingSpec},
};
use trainet_worker::{
	dataset::Dataset,
	export::{self, PreprocessingCard},
	import::{self, LabelKind, Scaling},
	train::{Evaluation, Training},
};

#[test]
fn an_exported_model_is_the_trained_parameters_bit_for_bit() {
	let dir = tempfile::tempdir().unwrap();
	// A CSV dataset with named classes and min-max scaling, so the card has a manifest.
	let mut csv = String::from("a,b,c,d,kind\n");
	let data = Dataset::synthetic(5, 120, 4, 3);
	for (x, y) in &data.samples {
		let names = ["ant", "bee", "cat"];
		csv += &format!("{},{},{},{},{}\n", x[0], x[1], x[2], x[3], names[*y as usize]);
	}
	let path = dir.path().join("data.csv");
	std::fs::write(&path, csv).unwrap();
	let data = import::csv(&path, None, Scaling::MinMax).unwrap();
	let (train, held) = data.split(4);
	let adam = Optimizer::adam(0.01);
	let mut spec = TrainingSpec::example_mlp(&[4, 8, 3], adam, 16).with_dataset(train.commitment());
	spec.steps = 40;
	let mut run = Training::new(spec.clone(), train.clone()).unwrap();
	run.trace(|_| {}).unwrap();
	let state = run.state().to_vec();

	let out = dir.path().join("model");
	let card = export::export(&spec, &state, Some(&train.manifest), Some(7), &out).unwrap();
	assert_eq!(card.final_state, format!("{:?}", state_hash(&state)));
	assert_eq!(card.model_hash, format!("{:?}", state_hash(&state[..4])));
	assert_eq!(card.task, Some(7));
	assert_eq!(card.dataset.class_names, ["ant", "bee", "cat"]);
	assert_eq!(card.dataset.feature_names, ["a", "b", "c", "d"]);
	assert!(matches!(card.dataset.preprocessing, Some(PreprocessingCard::MinMax { .. })));

	// Read back: the card, and the parameters bit for bit (Adam's moments are not in it).
	let model = export::load(&out).unwrap();
	assert_eq!(model.card, card);
	let bits = |m: &[trainet_primitives::repops::Matrix]| -> Vec<u32> {
		m.iter().flat_map(|t| t.data.iter().map(|v| v.to_bits())).collect()
	};
	assert_eq!(bits(&model.params), bits(&state[..4]));
	assert_eq!(model.accuracy(&held).unwrap(), run.accuracy(&held).unwrap());

	// SafeTensors: PyTorch's nn.Linear layout, weights [out, in].
	let bytes = std::fs::read(out.join(export::SAFETENSORS)).unwrap();
	let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
	let w0 = st.tensor("layers.0.weight").unwrap();
	assert_eq!(w0.shape(), [8, 4]);
	let value = |d: &[u8], i: usize| f32::from_le_bytes(d[4 * i..4 * i + 4].try_into().unwrap());
	for o in 0..8 {
		for i in 0..4 {
			// burn's and RepOps' [in, out] at (i, o) is PyTorch's [out, in] at (o, i).
			let repops = state[0].data[i * 8 + o];
			assert_eq!(value(w0.data(), o * 4 + i).to_bits(), repops.to_bits());
		}
	}
	assert_eq!(st.tensor("layers.1.bias").unwrap().shape(), [3]);
	assert_eq!(st.names().len(), 4);

	// A dataset of another shape is refused by name.
	let other = Dataset::synthetic(1, 10, 5, 3);
	let e = model.accuracy(&other).unwrap_err().to_string();
	assert!(e.contains("the model takes 4 features"), "{e}");
}

/// The exported model in a plain burn program that knows nothing of Trainet
/// (`examples/load-model`, its own crate on burn alone): it reads the card, loads the burn
/// record into its own `Mlp`, prepares raw CSV rows as the card says (min-max here) and
/// classifies them exactly as the worker's evaluation does.
#[test]
fn a_plain_burn_program_loads_the_exported_model() {
	let dir = tempfile::tempdir().unwrap();
	let names = ["ant", "bee", "cat"];
	// Raw rows far from [0, 1], so that the card's preprocessing matters.
	let synthetic = Dataset::synthetic(9, 150, 4, 3);
	let raw: Vec<(Vec<f32>, u32)> = synthetic
		.samples
		.iter()
		.map(|(x, y)| (x.iter().map(|v| v * 40.0 - 7.0).collect(), *y))
		.collect();
	let row = |x: &[f32]| x.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",");
	let mut csv = String::new();
	let mut inputs = String::new();
	for (x, y) in &raw {
		csv += &format!("{},{}\n", row(x), names[*y as usize]);
		inputs += &format!("{}\n", row(x));
	}
	let path = dir.path().join("data.csv");
	std::fs::write(&path, csv).unwrap();
	let data = import::csv(&path, None, Scaling::MinMax).unwrap();
	let adam = Optimizer::adam(0.02);
	let mut spec = TrainingSpec::example_mlp(&[4, 8, 3], adam, 16).with_dataset(data.commitment());
	spec.steps = 60;
	let mut run = Training::new(spec.clone(), data.clone()).unwrap();
	run.trace(|_| {}).unwrap();
	let out = dir.path().join("model");
	export::export(&spec, run.state(), Some(&data.manifest), None, &out).unwrap();
	let input_path = dir.path().join("inputs.csv");
	std::fs::write(&input_path, inputs).unwrap();

	let stdout = load_model(&out, &input_path);
	let predicted: Vec<&str> =
		stdout.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
	assert_eq!(predicted.len(), raw.len());
	let right = predicted.iter().zip(&raw).filter(|(p, (_, y))| **p == names[*y as usize]).count();
	let accuracy = right as f32 / raw.len() as f32;
	let worker = export::load(&out).unwrap().accuracy(&data).unwrap();
	assert_eq!(accuracy, worker, "the plain burn program: {stdout}");
	assert!(worker > 0.6, "the model learned little: {worker}");
}

/// The same plain burn program on a regression's model: it reads the card's target and
/// preprocessing, and its predictions give the squared error the worker's evaluation reports
/// (to rounding: burn's own matmul sums in another order than RepOps).
#[test]
fn a_plain_burn_program_predicts_with_an_exported_regression() {
	let dir = tempfile::tempdir().unwrap();
	let synthetic = Dataset::synthetic_regression(9, 150, 4);
	let row = |x: &[f32]| x.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",");
	let (mut csv, mut inputs) = (String::from("a,b,c,d,height\n"), String::new());
	let mut targets = Vec::new();
	for (x, t) in &synthetic.samples {
		let raw: Vec<f32> = x.iter().map(|v| v * 40.0 - 7.0).collect();
		csv += &format!("{},{}\n", row(&raw), f32::from_bits(*t));
		inputs += &format!("{}\n", row(&raw));
		targets.push(f32::from_bits(*t));
	}
	let path = dir.path().join("data.csv");
	std::fs::write(&path, csv).unwrap();
	let data = import::csv_as(&path, None, LabelKind::Targets, Scaling::MinMax).unwrap();
	let adam = Optimizer::adam(0.02);
	let mut spec =
		TrainingSpec::example_regression(&[4, 16, 1], adam, 16).with_dataset(data.commitment());
	spec.steps = 200;
	let mut run = Training::new(spec.clone(), data.clone()).unwrap();
	run.trace(|_| {}).unwrap();
	let out = dir.path().join("model");
	let card = export::export(&spec, run.state(), Some(&data.manifest), None, &out).unwrap();
	assert_eq!(
		(card.training.loss.as_str(), card.dataset.classes, card.dataset.target.as_deref()),
		("mean squared error", 0, Some("height"))
	);
	let input_path = dir.path().join("inputs.csv");
	std::fs::write(&input_path, inputs).unwrap();

	let stdout = load_model(&out, &input_path);
	let predicted: Vec<f32> = stdout
		.lines()
		.map(|l| {
			let (name, value) = l.split_once(' ').unwrap();
			assert_eq!(name, "height", "{l}");
			value.parse().unwrap()
		})
		.collect();
	assert_eq!(predicted.len(), targets.len());
	let mse = predicted.iter().zip(&targets).map(|(p, t)| (p - t) * (p - t)).sum::<f32>()
		/ targets.len() as f32;
	let worker = export::load(&out).unwrap().accuracy(&data).unwrap();
	assert!((mse - worker).abs() <= 1e-4 * worker.max(1.0), "burn {mse}, worker {worker}");
	// It learned: well below the error of predicting the mean target.
	let mean = targets.iter().sum::<f32>() / targets.len() as f32;
	let spread =
		targets.iter().map(|t| (t - mean) * (t - mean)).sum::<f32>() / targets.len() as f32;
	assert!(worker < spread * 0.2, "mse {worker}, variance {spread}");
}

/// Runs `examples/load-model` (its own crate, outside the workspace) on the export folder
/// `model` and the raw inputs file `inputs`; returns what it printed.
fn load_model(model: &std::path::Path, inputs: &std::path::Path) -> String {
	let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/load-model/Cargo.toml");
	let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
	let ran = std::process::Command::new(cargo)
		.args(["run", "--quiet", "--offline", "--locked", "--manifest-path", manifest, "--"])
		.arg(model)
		.arg(inputs)
		.output()
		.unwrap();
	let stdout = String::from_utf8_lossy(&ran.stdout).into_owned();
	assert!(ran.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&ran.stderr));
	stdout
}

/// A CNN's export: SafeTensors named and shaped as PyTorch's `nn.Sequential` of the same
/// layers holds them (filters `[out, channels, k, k]`, dense weights `[out, in]`), a card that
/// says the layers, a burn record of burn's own layers; read back, the very parameters,
/// evaluated as the run evaluates them, and run in plain burn.
#[test]
fn an_exported_cnn_is_its_trained_parameters_in_pytorchs_layout() {
	use trainet_primitives::{
		repops::image::ImageShape,
		task::{Layer, Layers, Loss, Model},
	};
	let dir = tempfile::tempdir().unwrap();
	let data = Dataset::synthetic(5, 120, 18, 3);
	let (train, held) = data.split(4);
	let layers = vec![
		Layer::Conv2d { out_channels: 4, kernel: 2, stride: 1, padding: 1 },
		Layer::Relu,
		Layer::MaxPool2d { kernel: 2, stride: 2 },
		Layer::Flatten,
		Layer::Linear { out: 3 },
	];
	let model = Model::Graph {
		input: ImageShape { channels: 2, height: 3, width: 3 },
		layers: Layers::truncate_from(layers),
	};
	let adam = Optimizer::adam(0.01);
	let spec = TrainingSpec::example_graph(model, Loss::SoftmaxCrossEntropy, adam, 16);
	let mut spec = spec.with_dataset(train.commitment());
	spec.steps = 30;
	let mut run = Training::new(spec.clone(), train.clone()).unwrap();
	run.trace(|_| {}).unwrap();
	let state = run.state().to_vec();

	let out = dir.path().join("model");
	let card = export::export(&spec, &state, Some(&train.manifest), None, &out).unwrap();
	assert_eq!(card.architecture, "graph");
	assert_eq!(card.files.burn_record.as_deref(), Some(export::RECORD));
	let graph = card.layers.clone().unwrap();
	assert_eq!(graph.input, [2, 3, 3]);
	assert_eq!(graph.layers[0], "Conv2d { out_channels: 4, kernel: 2, stride: 1, padding: 1 }");
	assert_eq!(card.model_hash, format!("{:?}", state_hash(&state[..4])));

	let bytes = std::fs::read(out.join(export::SAFETENSORS)).unwrap();
	let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
	let mut names = st.names();
	names.sort();
	assert_eq!(names, ["0.bias", "0.weight", "4.bias", "4.weight"]);
	assert_eq!(st.tensor("0.weight").unwrap().shape(), [4, 2, 2, 2]);
	// The filters are stored as they are trained: out_channels x (channels * k * k).
	let f32s = |d: &[u8]| -> Vec<u32> {
		d.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect()
	};
	let bits = |m: &trainet_primitives::repops::Matrix| -> Vec<u32> {
		m.data.iter().map(|v| v.to_bits()).collect()
	};
	assert_eq!(f32s(st.tensor("0.weight").unwrap().data()), bits(&state[0]));
	// 4 channels of 2 x 2 after the pool: the dense layer is [3, 16].
	assert_eq!(st.tensor("4.weight").unwrap().shape(), [3, 16]);

	let model = export::load(&out).unwrap();
	assert_eq!(model.card, card);
	for (a, b) in model.params.iter().zip(&state[..4]) {
		assert_eq!((a.rows, a.cols, bits(a)), (b.rows, b.cols, bits(b)));
	}
	assert_eq!(model.params.len(), 4);
	assert_eq!(model.accuracy(&held).unwrap(), run.accuracy(&held).unwrap());
	plain_burn_runs_the_record(&spec.model, &out, &state[..4], &held);
}

/// The export's burn record loaded into [`GraphNet`] (burn's own layers) holds the trained
/// parameters bit for bit, and its plain-burn forward pass (burn's convolution, pools,
/// layer norm, attention: the backend's rounding) gives the outputs of the RepOps forward
/// pass to within float rounding, and the same predictions.
fn plain_burn_runs_the_record(
	model: &trainet_primitives::task::Model,
	out: &std::path::Path,
	params: &[trainet_primitives::repops::Matrix],
	held: &Dataset,
) {
	use burn::{
		backend::NdArray,
		tensor::{Tensor, TensorData},
	};
	use trainet_worker::graph_model::GraphNet;
	let device = Default::default();
	let net = GraphNet::<NdArray>::load(model, &out.join(export::RECORD), &device).unwrap();
	let bits = |m: &trainet_primitives::repops::Matrix| -> Vec<u32> {
		m.data.iter().map(|v| v.to_bits()).collect()
	};
	let back = net.to_state();
	assert_eq!(back.len(), params.len());
	for (a, b) in back.iter().zip(params) {
		assert_eq!((a.rows, a.cols, bits(a)), (b.rows, b.cols, bits(b)));
	}
	let n = held.samples.len();
	let x: Vec<f32> = held.samples.iter().flat_map(|(x, _)| x.clone()).collect();
	let xm = trainet_primitives::repops::Matrix::new(n as u32, held.features, x.clone()).unwrap();
	let ours = trainet_worker::train::forward(model, params, &xm).unwrap();
	let input =
		Tensor::<NdArray, 2>::from_data(TensorData::new(x, [n, held.features as usize]), &device);
	let theirs: Vec<f32> = net.forward(model, input).unwrap().into_data().to_vec().unwrap();
	assert_eq!(theirs.len(), ours.data.len());
	let scale = ours.data.iter().fold(1f32, |m, v| m.max(v.abs()));
	let worst = ours.data.iter().zip(&theirs).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
	assert!(worst <= 1e-4 * scale, "plain burn differs by {worst} (outputs up to {scale})");
	let argmax = |row: &[f32]| {
		row.iter().enumerate().fold(0, |best, (i, v)| if *v > row[best] { i } else { best })
	};
	let cols = ours.cols as usize;
	let same = ours
		.data
		.chunks(cols)
		.zip(theirs.chunks(cols))
		.filter(|(a, b)| argmax(a) == argmax(b))
		.count();
	assert!(same * 100 >= ours.rows as usize * 99, "{same} of {} predictions agree", ours.rows);
}

/// A transformer trained on a text corpus: its token and position tables are exported as
/// `{i}.weight` (`[vocab, dim]`, `nn.Embedding`'s layout) and `{i}.position`; read back, the
/// very parameters, whose per-token cross-entropy on held-out text is the run's own.
#[test]
fn an_exported_transformer_is_its_trained_parameters() {
	use trainet_primitives::{
		repops::image::ImageShape,
		task::{Layer, Layers, Loss, Model},
	};
	let dir = tempfile::tempdir().unwrap();
	let text = "the cat sat on the mat. the rat ate the hat. ".repeat(20);
	let path = dir.path().join("corpus.txt");
	std::fs::write(&path, &text).unwrap();
	let data = import::text_sequences(&path, 8, 3).unwrap();
	let vocab = data.classes;
	let (train, held) = data.split(5);
	let layers = vec![
		Layer::Embedding { vocab, dim: 8 },
		Layer::Residual { layers: 4 },
		Layer::LayerNorm,
		Layer::Linear { out: 24 },
		Layer::Attention { heads: 2 },
		Layer::Linear { out: 8 },
		Layer::LayerNorm,
		Layer::Linear { out: vocab },
	];
	let model = Model::Graph { input: ImageShape::flat(9), layers: Layers::truncate_from(layers) };
	let adam = Optimizer::adam(0.01);
	let spec = TrainingSpec::example_graph(model, Loss::SoftmaxCrossEntropy, adam, 16);
	let mut spec = spec.with_dataset(train.commitment());
	spec.steps = 60;
	let before = Training::new(spec.clone(), train.clone()).unwrap().evaluate(&held).unwrap();
	let mut run = Training::new(spec.clone(), train.clone()).unwrap();
	run.trace(|_| {}).unwrap();
	let after = run.evaluate(&held).unwrap();
	let (Evaluation::TokenCrossEntropy(b), Evaluation::TokenCrossEntropy(a)) = (before, after)
	else {
		panic!("{before:?} {after:?}")
	};
	assert!(a < b * 0.7, "held-out per-token cross-entropy {b} -> {a}");
	let state = run.state().to_vec();

	let out = dir.path().join("model");
	let card = export::export(&spec, &state, Some(&train.manifest), None, &out).unwrap();
	assert_eq!(
		card.layers.as_ref().unwrap().layers[0],
		format!("Embedding {{ vocab: {vocab}, dim: 8 }}")
	);
	let bytes = std::fs::read(out.join(export::SAFETENSORS)).unwrap();
	let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
	assert_eq!(st.tensor("0.weight").unwrap().shape(), [vocab as usize, 8]);
	assert_eq!(st.tensor("0.position").unwrap().shape(), [8, 8]);
	assert_eq!(st.tensor("3.weight").unwrap().shape(), [24, 8]);
	let model = export::load(&out).unwrap();
	let bits = |m: &trainet_primitives::repops::Matrix| -> Vec<u32> {
		m.data.iter().map(|v| v.to_bits()).collect()
	};
	assert_eq!(model.params.len(), 12);
	for (a, b) in model.params.iter().zip(&state[..12]) {
		assert_eq!((a.rows, a.cols, bits(a)), (b.rows, b.cols, bits(b)));
	}
	assert_eq!(model.evaluate(&held).unwrap(), after);
	plain_burn_runs_the_record(&spec.model, &out, &state[..12], &held);
}
