//! Real training on the shipped 8x8 digits.
//!
//! - The RepOps run of a 64-32-10 MLP reaches the stated held-out accuracy, and a plain float
//!   burn run of the same model (same initial weights, same batches, same SGD with momentum,
//!   burn's autodiff and float arithmetic) reaches it too: the bit-exact training is real
//!   training.
//! - The trained model, saved as a burn record, loads into a burn `Mlp` with the same bits
//!   and classifies as the RepOps forward pass does.
//! - Two `trainet-worker train` processes with different thread counts write the same state
//!   hash for every step.
//! - Bad input gets a clear message and a failing exit code.

use std::{path::Path, process::Command};

use burn::{
	backend::{Autodiff, NdArray},
	tensor::{activation, Tensor, TensorData},
};
use trainet_primitives::{
	program::{initial_state, step_program},
	repops::{batch_indices, Matrix},
	task::{Optimizer, TrainingSpec},
};
use trainet_worker::{dataset::Dataset, model::Mlp, train::Training};

/// The accuracy both runs must reach on the held-out fifth of the digits.
const TARGET: f32 = 0.90;
const STEPS: u32 = 300;
const LR: f32 = 0.05;
const MOMENTUM: f32 = 0.9;

fn spec(train: &Dataset) -> TrainingSpec {
	let sgd = Optimizer::sgd(LR, MOMENTUM);
	let mut spec =
		TrainingSpec::example_mlp(&[64, 32, 10], sgd, 32).with_dataset(train.commitment());
	spec.steps = STEPS;
	spec
}

type B = Autodiff<NdArray<f32>>;

fn tensor(m: &Matrix) -> Tensor<B, 2> {
	Tensor::from_data(
		TensorData::new(m.data.clone(), [m.rows as usize, m.cols as usize]),
		&Default::default(),
	)
}

/// The same training in plain float burn: returns held-out accuracy.
fn burn_run(spec: &TrainingSpec, train: &Dataset, held: &Dataset) -> f32 {
	let program = step_program(spec).unwrap();
	let state = initial_state(spec, &program).unwrap();
	let mut params: Vec<Tensor<B, 2>> = state[..4].iter().map(tensor).collect();
	let mut velocity: Vec<Tensor<B, 2>> = params.iter().map(|p| p.zeros_like()).collect();
	let forward = |params: &[Tensor<B, 2>], x: Tensor<B, 2>| {
		let h = activation::relu(x.matmul(params[0].clone()) + params[1].clone());
		h.matmul(params[2].clone()) + params[3].clone()
	};
	for t in 0..spec.steps {
		let idx = batch_indices(spec.seed, t, spec.batch_size, spec.dataset.samples);
		let x: Vec<f32> = idx.iter().flat_map(|i| train.samples[*i as usize].0.clone()).collect();
		let mut y = vec![0.0f32; idx.len() * 10];
		for (r, i) in idx.iter().enumerate() {
			y[r * 10 + train.samples[*i as usize].1 as usize] = 1.0;
		}
		let x = Tensor::<B, 2>::from_data(TensorData::new(x, [idx.len(), 64]), &Default::default());
		let y = Tensor::<B, 2>::from_data(TensorData::new(y, [idx.len(), 10]), &Default::default());
		let tracked: Vec<Tensor<B, 2>> = params.iter().map(|p| p.clone().require_grad()).collect();
		let loss = (activation::log_softmax(forward(&tracked, x), 1) * y).sum_dim(1).mean().neg();
		let grads = loss.backward();
		for (i, p) in tracked.iter().enumerate() {
			let g = Tensor::<B, 2>::from_inner(p.grad(&grads).unwrap());
			velocity[i] = velocity[i].clone().mul_scalar(MOMENTUM) + g;
			params[i] = params[i].clone().detach() - velocity[i].clone().mul_scalar(LR);
		}
	}
	let x: Vec<f32> = held.samples.iter().flat_map(|(x, _)| x.clone()).collect();
	let x = Tensor::<B, 2>::from_data(
		TensorData::new(x, [held.samples.len(), 64]),
		&Default::default(),
	);
	let predicted: Vec<i64> = forward(&params, x).argmax(1).into_data().to_vec::<i64>().unwrap();
	let correct =
		predicted.iter().zip(&held.samples).filter(|(p, (_, y))| **p == i64::from(*y)).count();
	correct as f32 / held.samples.len() as f32
}

#[test]
fn repops_training_learns_the_digits_as_plain_float_training_does() {
	let (train, held) = Dataset::digits().unwrap().split(5);
	let spec = spec(&train);
	let mut run = Training::new(spec.clone(), train.clone()).unwrap();
	let before = run.accuracy(&held).unwrap();
	let mut first_loss = None;
	let mut last_loss = 0.0;
	while run.steps_done() < STEPS {
		let r = run.step().unwrap();
		first_loss.get_or_insert(r.loss);
		last_loss = r.loss;
	}
	let ours = run.accuracy(&held).unwrap();
	let theirs = burn_run(&spec, &train, &held);
	eprintln!(
		"held-out accuracy: before {before:.3}, RepOps {ours:.3}, plain float burn {theirs:.3}; \
		 loss {:.3} -> {last_loss:.3}",
		first_loss.unwrap()
	);
	assert!(before < 0.3, "an untrained model should guess: {before}");
	assert!(ours >= TARGET, "RepOps run: {ours}");
	assert!(theirs >= TARGET, "burn run: {theirs}");
	assert!((ours - theirs).abs() < 0.03, "RepOps {ours} vs burn {theirs}");

	// The trained model, saved as a burn record and loaded by a burn user, is the same model:
	// bit-identical parameters, and burn's own forward pass classifies as RepOps does.
	let dir = tempfile::tempdir().unwrap();
	let device = Default::default();
	let file = Mlp::<NdArray>::from_state(&[64, 32, 10], run.state(), &device)
		.unwrap()
		.save(&dir.path().join("digits"))
		.unwrap();
	let loaded = Mlp::<NdArray>::load(&[64, 32, 10], &file, &device).unwrap();
	let bits = |s: &[Matrix]| -> Vec<u32> {
		s.iter().flat_map(|m| m.data.iter().map(|v| v.to_bits())).collect()
	};
	assert_eq!(bits(&loaded.to_state()), bits(&run.state()[..4]));
	let x: Vec<f32> = held.samples.iter().flat_map(|(x, _)| x.clone()).collect();
	let x = Tensor::<NdArray, 2>::from_data(TensorData::new(x, [held.samples.len(), 64]), &device);
	let predicted: Vec<i64> = loaded.forward(x).argmax(1).into_data().to_vec().unwrap();
	let correct =
		predicted.iter().zip(&held.samples).filter(|(p, (_, y))| **p == i64::from(*y)).count();
	let loaded_accuracy = correct as f32 / held.samples.len() as f32;
	assert!((loaded_accuracy - ours).abs() < 0.01, "burn {loaded_accuracy} vs RepOps {ours}");
}

fn worker(data: &Path, args: &[&str]) -> std::process::Output {
	Command::new(env!("CARGO_BIN_EXE_trainet-worker"))
		.arg("--data-dir")
		.arg(data)
		.args(args)
		.output()
		.unwrap()
}

#[test]
fn processes_with_different_thread_counts_and_engines_write_the_same_hashes() {
	let dir = tempfile::tempdir().unwrap();
	let data = dir.path().join("data");
	let out = worker(&data, &["dataset", "digits", "--held-out", "5"]);
	assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
	let stdout = String::from_utf8(out.stdout).unwrap();
	let root = stdout.split_whitespace().nth(1).unwrap().to_string();
	let held = stdout
		.lines()
		.find_map(|l| l.strip_prefix("held-out "))
		.and_then(|l| l.split_whitespace().next())
		.unwrap()
		.to_string();
	let spec = dir.path().join("task.toml");
	std::fs::write(
		&spec,
		format!(
			"[model]\nwidths = [64, 32, 10]\n\n[optimizer]\nkind = \"adam\"\nlearning_rate = \
			 0.01\nbeta1 = 0.9\nbeta2 = 0.999\nepsilon = 1e-7\n\n[training]\nbatch_size = \
			 32\nsteps = 120\nseed = 3\n\n[dataset]\nroot = \"{root}\"\n"
		),
	)
	.unwrap();
	// Two processes through burn (the default engine) with 1 and 2 threads, and a third
	// through the step program with 4.
	let traces: Vec<String> = [("1", "burn"), ("2", "burn"), ("4", "program")]
		.iter()
		.map(|(threads, engine)| {
			let trace = dir.path().join(format!("trace-{threads}.txt"));
			let out = worker(
				&data,
				&[
					"train",
					spec.to_str().unwrap(),
					"--threads",
					threads,
					"--trace",
					trace.to_str().unwrap(),
					"--evaluate",
					&held,
					"--engine",
					engine,
				],
			);
			assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
			let stdout = String::from_utf8(out.stdout).unwrap();
			assert!(stdout.contains("held-out accuracy"), "{stdout}");
			assert!(stdout.contains(&format!("engine: {}", engine.replace("program", "RepOps"))));
			std::fs::read_to_string(trace).unwrap()
		})
		.collect();
	assert_eq!(traces[0].lines().count(), 121);
	assert_eq!(traces[0], traces[1]);
	assert_eq!(traces[0], traces[2]);
}

#[test]
fn bad_input_gets_a_clear_error_and_a_failing_exit_code() {
	let dir = tempfile::tempdir().unwrap();
	let data = dir.path().join("data");
	let spec = dir.path().join("task.toml");
	std::fs::write(&spec, "[model]\nwidths = \"wide\"\n").unwrap();
	let out = worker(&data, &["train", spec.to_str().unwrap()]);
	assert_eq!(out.status.code(), Some(1));
	let err = String::from_utf8_lossy(&out.stderr);
	assert!(err.contains("task.toml") && err.contains("invalid type"), "{err}");

	let root = format!("{:?}", sp_core::H256::repeat_byte(7));
	std::fs::write(
		&spec,
		format!(
			"[model]\nwidths = [4, 3]\n[optimizer]\nkind = \"sgd\"\nlearning_rate = 0.1\nmomentum \
			 = 0.9\n[training]\nbatch_size = 4\nsteps = 2\nseed = 1\n[dataset]\nroot = \"{root}\"\n"
		),
	)
	.unwrap();
	let out = worker(&data, &["train", spec.to_str().unwrap()]);
	assert_eq!(out.status.code(), Some(1));
	let err = String::from_utf8_lossy(&out.stderr);
	assert!(err.contains("is not in the store"), "{err}");

	let out = worker(&data, &["train", dir.path().join("missing.toml").to_str().unwrap()]);
	assert_eq!(out.status.code(), Some(1));
	assert!(String::from_utf8_lossy(&out.stderr).contains("reading the spec file"));

	let out = worker(
		&data,
		&["dataset", "synthetic", "--samples", "10", "--features", "2", "--classes", "5"],
	);
	assert_eq!(out.status.code(), Some(1));

	// A stored dataset whose bytes were replaced by another's: refused, never trained on.
	let store = trainet_worker::dataset::DatasetStore::open(&data).unwrap();
	let real = Dataset::synthetic(1, 12, 4, 3);
	let root = store.put(&real).unwrap();
	let other = store.put(&Dataset::synthetic(2, 12, 4, 3)).unwrap();
	std::fs::copy(store.path(&other), store.path(&root)).unwrap();
	std::fs::write(
		&spec,
		format!(
			"[model]\nwidths = [4, 3]\n[optimizer]\nkind = \"sgd\"\nlearning_rate = 0.1\nmomentum \
			 = 0.9\n[training]\nbatch_size = 4\nsteps = 2\nseed = 1\n[dataset]\nroot = \"{root:?}\"\n"
		),
	)
	.unwrap();
	let out = worker(&data, &["train", spec.to_str().unwrap()]);
	assert_eq!(out.status.code(), Some(1));
	let err = String::from_utf8_lossy(&out.stderr);
	assert!(
		err.contains(&format!("should hold dataset {root:?} but its contents hash to")),
		"{err}"
	);
}

#[test]
fn an_unreachable_node_and_a_bad_config_get_clear_errors() {
	let dir = tempfile::tempdir().unwrap();
	let data = dir.path().join("data");
	// Nobody listens on port 1.
	let out = worker(&data, &["status", "--node", "ws://127.0.0.1:1", "--wait-for-node", "1"]);
	assert_eq!(out.status.code(), Some(1));
	let err = String::from_utf8_lossy(&out.stderr);
	assert!(err.starts_with("error: cannot reach a Trainet node at ws://127.0.0.1:1"), "{err}");
	assert!(!err.contains("panicked"), "{err}");

	let config = dir.path().join("worker.toml");
	std::fs::write(&config, "node = \"ws://127.0.0.1:1\"\n[p2p]\nlisten = 7\n").unwrap();
	let out = worker(&data, &["status", "--config", config.to_str().unwrap()]);
	assert_eq!(out.status.code(), Some(1));
	let err = String::from_utf8_lossy(&out.stderr);
	assert!(err.contains("in the config file") && err.contains("listen"), "{err}");

	// The file's node is used (and a flag overrides it).
	std::fs::write(&config, "node = \"ws://127.0.0.1:1\"\n").unwrap();
	let args = ["status", "--wait-for-node", "1", "--config", config.to_str().unwrap()];
	let out = worker(&data, &args);
	assert!(String::from_utf8_lossy(&out.stderr).contains("ws://127.0.0.1:1"));
	let out = worker(&data, &[&args[..], &["--node", "ws://127.0.0.1:2"]].concat());
	assert!(String::from_utf8_lossy(&out.stderr).contains("ws://127.0.0.1:2"));
}

/// No account is assumed: every command that signs (or names the account) refuses at once,
/// naming the flags, before it tries to reach a node; with a secret it goes on to the node.
#[test]
fn a_worker_without_a_secret_refuses_to_sign() {
	let dir = tempfile::tempdir().unwrap();
	let data = dir.path().join("data");
	// A node address where nothing listens, and no wait: only the secret check can pass.
	let unreachable = ["--node", "ws://127.0.0.1:9", "--wait-for-node", "0"];
	for command in [
		&["solve", "--once"][..],
		&["verify", "--once"],
		&["submit", "task.toml", "--reward", "1"],
		&["balance"],
		&["model", "demand", "0"],
	] {
		let out = Command::new(env!("CARGO_BIN_EXE_trainet-worker"))
			.env_remove("TRAINET_SURI")
			.env_remove("TRAINET_CONFIG")
			.arg("--data-dir")
			.arg(&data)
			.args(unreachable)
			.args(command)
			.output()
			.unwrap();
		assert!(!out.status.success(), "{command:?} ran without a secret");
		let stderr = String::from_utf8_lossy(&out.stderr);
		assert!(
			stderr.contains("no account secret: give --suri (or the TRAINET_SURI"),
			"{command:?}: {stderr}"
		);
	}
	// With one, the same command gets as far as the node.
	let out = worker(&data, &[&unreachable[..], &["--suri", "//Alice", "balance"]].concat());
	assert!(!out.status.success());
	let stderr = String::from_utf8_lossy(&out.stderr);
	assert!(!stderr.contains("no account secret"), "{stderr}");
}
