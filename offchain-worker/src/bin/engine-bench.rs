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
//!     cargo run --release -p trainet-worker --bin engine-bench [-- --quick]

use std::time::Instant;

use burn::{
	backend::{Autodiff, NdArray},
	tensor::{activation, loss::cross_entropy_with_logits, Int, Tensor, TensorData},
};
use trainet_primitives::{
	commit,
	program::{self, initial_state, step_program, OpKind},
	repops::{Matrix, SplitMix64},
	task::{F32Bits, Optimizer, TrainingSpec},
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

fn main() {
	// As the worker does (trainet-worker's `main`).
	engine::keep_freed_memory();
	let quick = std::env::args().any(|a| a == "--quick");
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
		let sgd = Optimizer::Sgd {
			learning_rate: F32Bits::from_f32(0.05),
			momentum: F32Bits::from_f32(0.9),
		};
		let s = TrainingSpec::example_mlp(widths, sgd, *batch);
		let p = step_program(&s).expect("valid spec");
		let state = initial_state(&s, &p).expect("state");
		let mut rng = SplitMix64::new(1);
		let x = Matrix::new(
			*batch,
			widths[0],
			(0..batch * widths[0]).map(|_| rng.next_unit()).collect(),
		)
		.expect("batch");
		let labels: Vec<u32> =
			(0..*batch).map(|_| rng.next_below(*widths.last().unwrap_or(&2))).collect();
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
		let mut spec = s.clone().on_dataset(&data.samples);
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
}
