//! Throughput of training steps: prints a table of ms per step and GFLOP/s per model size and
//! thread count for
//!
//! - `reference`: the step program with the reference operators (`trainet-primitives`);
//! - `engine`: the step program with the multi-threaded CPU engine;
//! - `burn + RepOps`: what the worker trains with, an `Mlp` on `Autodiff<NdArray>` whose every
//!   operation is a RepOps kernel (`train::burn_step`, the optimizer included);
//! - `burn f32 (not bit-exact)`: the same model trained the usual way in burn, its own float
//!   matmul, autodiff and a momentum-SGD update, for what determinism costs against it.
//!
//! With `--torch PYTHON SCRIPT` (scripts/bench passes its virtualenv's python and
//! `scripts/torch_bench.py`) it adds a head-to-head table: PyTorch's steps (the script in
//! `--serve` mode, one process kept running) and ours take turns, round after round, so that
//! each ratio compares steps run within seconds of each other. On a shared VM the speed drifts
//! by 20% or more over minutes, which made ratios of tables run minutes apart swing widely.
//!
//!     cargo run --release -p trainet-worker --bin engine-bench [-- --quick] [--torch PYTHON SCRIPT]
//!         [--head-to-head]   # only the head-to-head table

use std::{
	io::{BufRead, BufReader, Write},
	process::{Child, ChildStdin, ChildStdout, Command, Stdio},
	time::Instant,
};

use burn::{
	backend::{Autodiff, NdArray},
	tensor::{activation, loss::cross_entropy_with_logits, Int, Tensor, TensorData},
};
use trainet_primitives::{
	commit,
	program::{self, initial_state, step_program, OpKind},
	repops::{Matrix, SplitMix64},
	task::{Optimizer, TrainingSpec},
};
use trainet_worker::{engine, train};

type Float = Autodiff<NdArray<f32>>;

/// One step of the plain float burn baseline: forward, loss, backward, momentum SGD.
struct FloatRun {
	params: Vec<Tensor<Float, 2>>,
	velocity: Vec<Tensor<NdArray<f32>, 2>>,
	x: Tensor<Float, 2>,
	targets: Tensor<Float, 2>,
}

impl FloatRun {
	fn new(state: &[Matrix], layers: usize, x: &Matrix, labels: &[u32], classes: u32) -> Self {
		let device = Default::default();
		let tensor = |m: &Matrix| {
			Tensor::<Float, 2>::from_data(
				TensorData::new(m.data.clone(), [m.rows as usize, m.cols as usize]),
				&device,
			)
		};
		let params: Vec<_> =
			state.iter().take(2 * layers).map(|m| tensor(m).require_grad()).collect();
		let velocity = params.iter().map(|p| p.clone().inner().zeros_like()).collect();
		let labels = Tensor::<Float, 1, Int>::from_data(
			TensorData::new(
				labels.iter().map(|l| i64::from(*l)).collect::<Vec<_>>(),
				[labels.len()],
			),
			&device,
		);
		let targets = labels.one_hot(classes as usize).float();
		Self { params, velocity, x: tensor(x), targets }
	}

	fn step(&mut self) {
		let layers = self.params.len() / 2;
		let mut a = self.x.clone();
		for l in 0..layers {
			let z = a.matmul(self.params[2 * l].clone()) + self.params[2 * l + 1].clone();
			a = if l + 1 < layers { activation::relu(z) } else { z };
		}
		let grads = cross_entropy_with_logits(a, self.targets.clone()).backward();
		for (p, v) in self.params.iter_mut().zip(self.velocity.iter_mut()) {
			let g = p.grad(&grads).expect("a gradient");
			*v = v.clone().mul_scalar(0.9) + g;
			*p = Tensor::from_inner(p.clone().inner() - v.clone().mul_scalar(0.05)).require_grad();
		}
	}
}

/// One row of the training table: a step of `seconds`, on `batch` samples, of `flops`.
fn row(model: &str, implementation: &str, threads: &str, seconds: f64, batch: u32, flops: f64) {
	println!(
		"| {model} | {implementation} | {threads} | {:.2} | {:.1} | {:.0} | {:.2} |",
		seconds * 1e3,
		1.0 / seconds,
		f64::from(batch) / seconds,
		flops / seconds / 1e9
	);
}

/// PyTorch's side of the head-to-head: `torch_bench.py --serve`, kept running.
struct Torch {
	child: Child,
	requests: ChildStdin,
	answers: BufReader<ChildStdout>,
}

impl Torch {
	/// Starts `python script --serve --threads threads`.
	fn start(python: &str, script: &str, threads: usize) -> Self {
		let mut child = Command::new(python)
			.args([script, "--serve", "--threads", &threads.to_string()])
			.stdin(Stdio::piped())
			.stdout(Stdio::piped())
			.spawn()
			.unwrap_or_else(|e| panic!("cannot start {python} {script}: {e}"));
		let requests = child.stdin.take().expect("piped");
		let answers = BufReader::new(child.stdout.take().expect("piped"));
		Self { child, requests, answers }
	}

	/// Seconds per step of `steps` PyTorch steps of the MLP `widths` on a batch of `batch`,
	/// with `torch.use_deterministic_algorithms(deterministic)`.
	fn step_seconds(&mut self, widths: &[u32], batch: u32, steps: u32, deterministic: bool) -> f64 {
		let widths: Vec<String> = widths.iter().map(u32::to_string).collect();
		self.model_seconds(&widths.join(","), batch, steps, deterministic)
	}

	/// [`Self::step_seconds`] of the model `torch_bench.py` names `model` (an MLP's widths,
	/// comma-separated, or a CNN's name).
	fn model_seconds(&mut self, model: &str, batch: u32, steps: u32, deterministic: bool) -> f64 {
		writeln!(self.requests, "{model} {batch} {steps} {}", u8::from(deterministic))
			.and_then(|()| self.requests.flush())
			.expect("PyTorch's process takes requests");
		let mut answer = String::new();
		self.answers.read_line(&mut answer).expect("PyTorch's process answers");
		answer.trim().parse().unwrap_or_else(|_| {
			panic!("PyTorch's process answered {answer:?} (see its errors above)")
		})
	}
}

impl Drop for Torch {
	fn drop(&mut self) {
		let _ = self.child.kill();
		let _ = self.child.wait();
	}
}

/// Each round's ratio of PyTorch deterministic's seconds (`torch`) over ours: the median and
/// the lowest and highest round's, as the head-to-head table prints them.
fn ratio(torch: &[f64], ours: &[f64]) -> String {
	let r: Vec<f64> = torch.iter().zip(ours).map(|(t, o)| t / o).collect();
	let (lo, hi) = r.iter().fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
	format!("{:.2}x ({lo:.2}-{hi:.2})", median(&r))
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &[f64]) -> f64 {
	let mut sorted = values.to_vec();
	sorted.sort_by(f64::total_cmp);
	let n = sorted.len();
	if n == 0 {
		f64::NAN
	} else if n % 2 == 1 {
		sorted[n / 2]
	} else {
		(sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
	}
}

/// One of our turns in the head-to-head: one untimed `step` (after the other side's turn and
/// the pause, caches and threads are cold), then the seconds per step of `steps` more;
/// PyTorch's turns (`torch_bench.py --serve`) do the same.
fn turn(steps: u32, mut step: impl FnMut()) -> f64 {
	step();
	let start = Instant::now();
	for _ in 0..steps {
		step();
	}
	start.elapsed().as_secs_f64() / f64::from(steps)
}

/// The head-to-head table: per model, `ROUNDS` rounds of PyTorch (defaults, then
/// deterministic), the engine and burn + RepOps, each about half a second of steps; each
/// round's ratio is PyTorch deterministic's ms per step over ours (above 1: faster than
/// PyTorch). Prints the medians over the rounds and the lowest and highest round's ratio.
fn head_to_head(torch: &mut Torch, sizes: &[(&str, &[u32], u32)], threads: usize) {
	const ROUNDS: usize = 9;
	println!(
		"\nHead to head with PyTorch on CPU ({threads} threads): {ROUNDS} rounds per model, each round"
	);
	println!(
		"running about half a second of steps (after one untimed step) of PyTorch's defaults, PyTorch"
	);
	println!(
		"deterministic, the engine and burn + RepOps in turn; ms per step are the medians over the"
	);
	println!(
		"rounds; a ratio is PyTorch deterministic's ms over ours in the same round (above 1: faster"
	);
	println!("than PyTorch), its median and the lowest and highest round's:\n");
	println!(
		"| model | PyTorch ms | PyTorch deterministic ms | engine ms | burn + RepOps ms | engine ratio (min-max) | burn ratio (min-max) |"
	);
	println!("|---|---|---|---|---|---|---|");
	let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
	for (name, widths, batch) in sizes {
		let Bench { spec, program: p, state, x, labels } = Bench::new(widths, *batch);
		// Steps per turn: about half a second of the engine's (at least 3).
		let start = Instant::now();
		pool.install(|| engine::step(&spec, &p, &state, &x, &labels, 0).expect("step"));
		let steps = (0.5 / start.elapsed().as_secs_f64().max(1e-6)).clamp(3.0, 200.0) as u32;
		let mut current = Some(state.clone());
		let mut burn = |steps: u32| {
			pool.install(|| {
				turn(steps, || {
					let state = current.take().expect("the state");
					let (_, next) =
						train::burn_step(&spec, state, x.clone(), labels.clone(), 0).expect("step");
					current = Some(next);
				})
			})
		};
		let engine = |steps: u32| {
			pool.install(|| {
				turn(steps, || {
					engine::step(&spec, &p, &state, &x, &labels, 0).expect("step");
				})
			})
		};
		// A warm-up turn of each, untimed.
		torch.step_seconds(widths, *batch, 1, false);
		torch.step_seconds(widths, *batch, 1, true);
		engine(1);
		burn(1);
		let mut rounds: [Vec<f64>; 4] = Default::default();
		// Between turns a pause, so that neither side's idle threads (OpenMP's and rayon's
		// spin a little before sleeping) run during the other's turn.
		let pause = || std::thread::sleep(std::time::Duration::from_millis(100));
		for _ in 0..ROUNDS {
			rounds[0].push(torch.step_seconds(widths, *batch, steps, false));
			pause();
			rounds[1].push(torch.step_seconds(widths, *batch, steps, true));
			pause();
			rounds[2].push(engine(steps));
			pause();
			rounds[3].push(burn(steps));
			pause();
		}
		let ratios = |ours: &[f64]| ratio(&rounds[1], ours);
		println!(
			"| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
			median(&rounds[0]) * 1e3,
			median(&rounds[1]) * 1e3,
			median(&rounds[2]) * 1e3,
			median(&rounds[3]) * 1e3,
			ratios(&rounds[2]),
			ratios(&rounds[3]),
		);
	}
	// The graph models (CNNs, the transformer): the engine's step program, and the burn module
	// (`GraphNet`) on the same kernels.
	for (model, name, spec) in cnns() {
		let Bench { spec, program: p, state, x, labels } = Bench::of(spec);
		let batch = spec.batch_size;
		let start = Instant::now();
		pool.install(|| engine::step(&spec, &p, &state, &x, &labels, 0).expect("step"));
		let steps = (0.5 / start.elapsed().as_secs_f64().max(1e-6)).clamp(3.0, 200.0) as u32;
		let engine = |steps: u32| {
			pool.install(|| {
				turn(steps, || {
					engine::step(&spec, &p, &state, &x, &labels, 0).expect("step");
				})
			})
		};
		let mut current = Some(state.clone());
		let mut burn = |steps: u32| {
			pool.install(|| {
				turn(steps, || {
					let state = current.take().expect("the state");
					let (_, next) =
						train::burn_step(&spec, state, x.clone(), labels.clone(), 0).expect("step");
					current = Some(next);
				})
			})
		};
		torch.model_seconds(model, batch, 1, false);
		torch.model_seconds(model, batch, 1, true);
		engine(1);
		burn(1);
		let mut rounds: [Vec<f64>; 4] = Default::default();
		let pause = || std::thread::sleep(std::time::Duration::from_millis(100));
		for _ in 0..ROUNDS {
			rounds[0].push(torch.model_seconds(model, batch, steps, false));
			pause();
			rounds[1].push(torch.model_seconds(model, batch, steps, true));
			pause();
			rounds[2].push(engine(steps));
			pause();
			rounds[3].push(burn(steps));
			pause();
		}
		println!(
			"| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
			median(&rounds[0]) * 1e3,
			median(&rounds[1]) * 1e3,
			median(&rounds[2]) * 1e3,
			median(&rounds[3]) * 1e3,
			ratio(&rounds[1], &rounds[2]),
			ratio(&rounds[1], &rounds[3]),
		);
	}
}

/// The graph models of the head-to-head (CNNs, a transformer): their names in `torch_bench.py`, what the table calls them,
/// and their specs (momentum SGD, as the MLPs).
fn cnns() -> Vec<(&'static str, &'static str, TrainingSpec)> {
	use trainet_primitives::{
		repops::image::ImageShape,
		task::{Layer, Layers, Loss, Model},
	};
	let sgd = Optimizer::sgd(0.05, 0.9);
	let mut lenet8 = TrainingSpec::example_cnn(Default::default());
	(lenet8.optimizer, lenet8.batch_size) = (sgd, 64);
	let conv = |out_channels| Layer::Conv2d { out_channels, kernel: 5, stride: 1, padding: 0 };
	let pool = Layer::MaxPool2d { kernel: 2, stride: 2 };
	let lenet5 = Model::Graph {
		input: ImageShape { channels: 1, height: 28, width: 28 },
		layers: Layers::truncate_from(vec![
			conv(6),
			Layer::Relu,
			pool,
			conv(16),
			Layer::Relu,
			pool,
			Layer::Flatten,
			Layer::Linear { out: 120 },
			Layer::Relu,
			Layer::Linear { out: 84 },
			Layer::Relu,
			Layer::Linear { out: 10 },
		]),
	};
	let lenet28 = TrainingSpec::example_graph(lenet5, Loss::SoftmaxCrossEntropy, sgd, 64);
	// The reference transformer on 86 characters, context 64 (its batch of 32 sequences is
	// 2048 token rows).
	let mut gpt = TrainingSpec::example_transformer(Default::default(), 86, 64);
	gpt.optimizer = sgd;
	vec![
		("lenet8", "CNN: LeNet-style on 8x8 (example_cnn), batch 64", lenet8),
		("lenet28", "CNN: LeNet-5 on 28x28, batch 64", lenet28),
		("gpt", "transformer: 2 blocks, 4 heads, context 64 (example_transformer), batch 32", gpt),
	]
}

/// A model's step to time: the spec (momentum SGD), its step program, the initial state, a
/// random batch and labels.
struct Bench {
	spec: TrainingSpec,
	program: program::StepProgram,
	state: Vec<Matrix>,
	x: Matrix,
	labels: Vec<u32>,
}

impl Bench {
	fn new(widths: &[u32], batch: u32) -> Self {
		let sgd = Optimizer::sgd(0.05, 0.9);
		Self::of(TrainingSpec::example_mlp(widths, sgd, batch))
	}

	fn of(spec: TrainingSpec) -> Self {
		let program = step_program(&spec).expect("valid spec");
		let state = initial_state(&spec, &program).expect("state");
		let mut rng = SplitMix64::new(1);
		let (batch, features) = (spec.batch_size, spec.dataset.features);
		// Features, or a sequence model's token ids.
		let value = |rng: &mut SplitMix64| match spec.model.context() {
			Some(_) => rng.next_below(spec.dataset.classes) as f32,
			None => rng.next_unit(),
		};
		let x =
			Matrix::new(batch, features, (0..batch * features).map(|_| value(&mut rng)).collect())
				.expect("batch");
		let labels: Vec<u32> = (0..batch).map(|_| rng.next_below(spec.dataset.classes)).collect();
		Self { spec, program, state, x, labels }
	}
}

fn main() {
	// As the worker does (trainet-worker's `main`).
	engine::keep_freed_memory();
	let args: Vec<String> = std::env::args().collect();
	let quick = args.iter().any(|a| a == "--quick");
	let torch = args.iter().position(|a| a == "--torch").map(|i| {
		let python = args.get(i + 1).expect("--torch PYTHON SCRIPT");
		let script = args.get(i + 2).expect("--torch PYTHON SCRIPT");
		(python.clone(), script.clone())
	});
	let sizes: &[(&str, &[u32], u32)] = if quick {
		&[
			("digits 64-32-10, batch 32", &[64, 32, 10], 32),
			("256-256-10, batch 64", &[256, 256, 10], 64),
		]
	} else {
		&[
			("digits 64-32-10, batch 32", &[64, 32, 10], 32),
			("256-256-10, batch 64", &[256, 256, 10], 64),
			("784-512-512-10, batch 128", &[784, 512, 512, 10], 128),
			("1024-1024-1024-10, batch 256", &[1024, 1024, 1024, 10], 256),
		]
	};
	let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
	if args.iter().any(|a| a == "--cnn-breakdown") {
		// Where a CNN step goes: each operation kind's share of the engine's step.
		for (_, name, spec) in cnns() {
			let Bench { spec, program: p, state, x, labels } = Bench::of(spec);
			let mut by_kind: Vec<(String, f64)> = Vec::new();
			for _ in 0..20 {
				program::run_ops_with(&p, &state, &x, |op, inputs| {
					let start = Instant::now();
					let out = engine::execute(&spec, op, inputs, &labels, 0);
					let t = start.elapsed().as_secs_f64();
					let kind = format!("{:?}", op.kind);
					let kind = kind.split('(').next().unwrap_or("").to_string();
					match by_kind.iter_mut().find(|(k, _)| *k == kind) {
						Some((_, total)) => *total += t,
						None => by_kind.push((kind, t)),
					}
					out
				})
				.expect("step");
			}
			by_kind.sort_by(|a, b| b.1.total_cmp(&a.1));
			println!("{name}:");
			for (kind, t) in by_kind {
				println!("  {kind:24} {:.3} ms", t * 1e3 / 20.0);
			}
		}
		return;
	}
	if args.iter().any(|a| a == "--head-to-head") {
		// Only that table.
		let (python, script) = torch.expect("--head-to-head needs --torch PYTHON SCRIPT");
		head_to_head(&mut Torch::start(&python, &script, cpus), sizes, cpus);
		return;
	}
	let mut threads: Vec<usize> =
		vec![1, 2, 4, 8, 16].into_iter().filter(|t| *t <= cpus.max(1)).collect();
	if threads.is_empty() {
		threads.push(1);
	}
	let mut proving = Vec::new();
	let mut runs = Vec::new();
	let mut breakdown = Vec::new();
	println!("| model | implementation | threads | ms/step | steps/s | samples/s | GFLOP/s |");
	println!("|---|---|---|---|---|---|---|");
	for (name, widths, batch) in sizes {
		let Bench { spec: s, program: p, state, x, labels } = Bench::new(widths, *batch);
		let flops = engine::step_flops(&s) as f64;
		// The mean of at least 3 runs and of about a second's worth (at most 50) after a
		// warm-up run: single runs of a few milliseconds vary by 2x on a shared VM.
		let time = |f: &dyn Fn()| {
			let start = Instant::now();
			f();
			let once = start.elapsed().as_secs_f64();
			let reps = (1.0 / once.max(1e-6)).clamp(3.0, 50.0) as u32;
			let start = Instant::now();
			for _ in 0..reps {
				f();
			}
			start.elapsed().as_secs_f64() / f64::from(reps)
		};
		let t = time(&|| {
			program::run_step(&s, &p, &state, &x, &labels, 0).expect("step");
		});
		row(name, "reference", "1", t, *batch, flops);
		for n in &threads {
			let pool = rayon::ThreadPoolBuilder::new().num_threads(*n).build().expect("pool");
			let t = time(&|| {
				pool.install(|| engine::step(&s, &p, &state, &x, &labels, 0).expect("step"));
			});
			row(name, "engine", &n.to_string(), t, *batch, flops);
		}
		for n in &threads {
			let pool = rayon::ThreadPoolBuilder::new().num_threads(*n).build().expect("pool");
			// Step after step, each taking the state the one before gave, as the worker does
			// (the state moves into the step; a copy per step would be timed too).
			let current = std::sync::Mutex::new(state.clone());
			let t = time(&|| {
				pool.install(|| {
					let mut current = current.lock().expect("one user");
					let state = std::mem::take(&mut *current);
					let (_, next) =
						train::burn_step(&s, state, x.clone(), labels.clone(), 0).expect("step");
					*current = next;
				});
			});
			row(name, "burn + RepOps", &n.to_string(), t, *batch, flops);
		}
		// The cost of proving: hashing the state after every step (`h_t`, what the trace
		// commits to; the journal append and the one commitment per task are negligible).
		let step = time(&|| {
			engine::step(&s, &p, &state, &x, &labels, 0).expect("step");
		});
		let definition = time(&|| {
			std::hint::black_box(commit::state_hash(&state));
		});
		let hash = time(&|| {
			std::hint::black_box(trainet_worker::commit::state_hash(&state));
		});
		proving.push((name.to_string(), definition * 1e3, hash * 1e3, step * 1e3));
		// And as a solver runs it: 64 steps of `Training` (burn, the worker's default),
		// hashing after each step the states the trace commits to (every one with C = 1,
		// every 32nd with C = 32), or none; `h_0` is left out, as it is once per task.
		const STEPS: u32 = 64;
		let data = trainet_worker::dataset::Dataset::synthetic(
			3,
			batch * 4,
			widths[0],
			*widths.last().unwrap_or(&2),
		);
		let mut spec = s.clone().with_dataset(data.commitment());
		spec.steps = STEPS;
		let timed = |interval: Option<u32>| {
			let mut spec = spec.clone();
			spec.checkpoint_interval = interval.unwrap_or(1);
			let mut run = train::Training::new(spec, data.clone()).expect("run");
			let start = Instant::now();
			while run.steps_done() < STEPS {
				run.step().expect("step");
				if interval.is_some() && run.at_trace_point() {
					std::hint::black_box(run.state_hash());
				}
			}
			start.elapsed().as_secs_f64()
		};
		// The fastest of three rounds, each round running the three in turn (single runs on
		// this kind of VM vary by more than the differences measured).
		let (mut plain, mut every, mut sparse) = (f64::MAX, f64::MAX, f64::MAX);
		for _ in 0..3 {
			plain = plain.min(timed(None));
			every = every.min(timed(Some(1)));
			sparse = sparse.min(timed(Some(32)));
		}
		runs.push((
			name.to_string(),
			plain * 1e3 / f64::from(STEPS),
			every / plain - 1.0,
			sparse / plain - 1.0,
		));
		// Where the engine's step goes: its matrix products against everything else.
		let (mut products, mut others) = (0.0f64, 0.0f64);
		let reps = 3;
		for _ in 0..reps {
			program::run_ops_with(&p, &state, &x, |op, inputs| {
				let start = Instant::now();
				let out = engine::execute(&s, op, inputs, &labels, 0);
				let t = start.elapsed().as_secs_f64() * 1e3 / f64::from(reps);
				match op.kind {
					OpKind::MatMul | OpKind::MatMulTn | OpKind::MatMulNt => products += t,
					_ => others += t,
				}
				out
			})
			.expect("step");
		}
		breakdown.push((name.to_string(), products, others, flops));
		let classes = *widths.last().unwrap_or(&2);
		let mut float = FloatRun::new(&state, widths.len() - 1, &x, &labels, classes);
		float.step();
		let reps = 3;
		let start = Instant::now();
		for _ in 0..reps {
			float.step();
		}
		let t = start.elapsed().as_secs_f64() / reps as f64;
		row(name, "burn f32 (not bit-exact)", "burn's", t, *batch, flops);
	}
	println!(
		"\nThe cost of proving: hashing every step's state (BLAKE2-256 over each tensor's rows and"
	);
	println!(
		"columns, then Merkle roots) against the engine's step, both on all threads; the chain's"
	);
	println!(
		"definition (one thread, leaf by leaf) for comparison, the same hash. With a checkpoint"
	);
	println!(
		"interval C in the spec, a solver hashes every C-th state only: the overhead per step is"
	);
	println!("the hash over C steps (C = 1 commits every step):\n");
	println!(
		"| model | definition's hash ms | worker's hash ms | step ms | overhead C = 1 | C = 8 | C = 32 |"
	);
	println!("|---|---|---|---|---|---|---|");
	for (name, definition, hash, step) in proving {
		let overhead = |c: f64| 100.0 * hash / (c * step);
		println!(
			"| {name} | {definition:.3} | {hash:.3} | {step:.2} | {:.1}% | {:.1}% | {:.1}% |",
			overhead(1.0),
			overhead(8.0),
			overhead(32.0)
		);
	}
	println!(
		"\nMeasured as a solver runs: 64 training steps (burn) without hashing, then the same 64"
	);
	println!("steps hashing the states the trace commits to with C = 1 and C = 32, each run timed");
	println!("whole (the fastest of 3 rounds; h_0, hashed once per task, left out):\n");
	println!("| model | ms/step, no hashing | overhead C = 1 | overhead C = 32 |");
	println!("|---|---|---|---|");
	for (name, step, every, sparse) in runs {
		println!("| {name} | {step:.2} | {:.1}% | {:.1}% |", 100.0 * every, 100.0 * sparse);
	}
	println!(
		"\nWhere the engine's step goes (all threads): the matrix products, and the other operations"
	);
	println!("(bias, ReLU, softmax, column sums, the optimizer's update), each timed alone:\n");
	println!("| model | products ms | products GFLOP/s | other operations ms | other share |");
	println!("|---|---|---|---|---|");
	for (name, products, others, flops) in breakdown {
		println!(
			"| {name} | {products:.2} | {:.1} | {others:.2} | {:.1}% |",
			flops / products / 1e6,
			100.0 * others / (products + others)
		);
	}
	if let Some((python, script)) = torch {
		let mut torch = Torch::start(&python, &script, cpus);
		head_to_head(&mut torch, sizes, cpus);
	}
}
