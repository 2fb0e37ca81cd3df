//! Throughput of the CPU engine on the step program: prints a table of GFLOP/s per model size
//! and thread count, and the reference implementation's for comparison.
//!
//!     cargo run --release -p trainet-worker --bin engine-bench [-- --quick]

use std::time::Instant;

use trainet_primitives::{
	program::{self, initial_state, step_program},
	repops::{Matrix, SplitMix64},
	task::{F32Bits, Optimizer, TrainingSpec},
};
use trainet_worker::engine;

fn main() {
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
	println!("| model | implementation | threads | ms/step | GFLOP/s |");
	println!("|---|---|---|---|---|");
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
		let time = |f: &dyn Fn()| {
			f();
			let reps = 3;
			let start = Instant::now();
			for _ in 0..reps {
				f();
			}
			start.elapsed().as_secs_f64() / reps as f64
		};
		let t = time(&|| {
			program::run_step(&s, &p, &state, &x, &labels, 0).expect("step");
		});
		println!("| {name} | reference | 1 | {:.2} | {:.2} |", t * 1e3, flops / t / 1e9);
		for n in &threads {
			let pool = rayon::ThreadPoolBuilder::new().num_threads(*n).build().expect("pool");
			let t = time(&|| {
				pool.install(|| engine::run_step(&s, &p, &state, &x, &labels, 0).expect("step"));
			});
			println!("| {name} | engine | {n} | {:.2} | {:.2} |", t * 1e3, flops / t / 1e9);
		}
	}
}
