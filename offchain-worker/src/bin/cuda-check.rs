//! CUDA against the CPU reference, on a GPU machine (feature `cuda`):
//!
//! 1. every RepOps operation on random inputs with special values: GPU bits = reference bits;
//! 2. whole training runs (SGD and Adam, four model sizes): the state hash after every step on
//!    the GPU (`Engine::Cuda`) = on the CPU (`Engine::Burn`);
//! 3. the deterministic matrix products' speed against burn-cuda's own (non-deterministic)
//!    `matmul` on the same shapes, and GPU training steps per second.
//!
//! Prints markdown tables (the operations' rows only where bits differ, unless `--list`);
//! exits with status 1 if any bit differs. `--quick`: one small training run, no speed table.
//!
//!     cargo build --release -p trainet-worker --features cuda --bin cuda-check
//!     target/release/cuda-check [--list] [--quick]

use std::time::Instant;

use burn::tensor::ops::FloatTensorOps;
use trainet_primitives::{
	program::OpKind,
	repops::{Matrix, SplitMix64},
	task::TrainingSpec,
};
use trainet_worker::{
	backend::{from_matrix, Kernel, RepOpsBackend, StepContext},
	cuda::{check, Cuda, CudaDevice},
};

fn main() {
	let quick = std::env::args().any(|a| a == "--quick");
	let list = std::env::args().any(|a| a == "--list");
	if !trainet_worker::cuda::driver_present() {
		eprintln!("cuda-check: no CUDA driver (libcuda.so.1) on this machine: nothing to check");
		std::process::exit(2);
	}
	let device = CudaDevice::default();
	let mut failed = false;

	println!("## RepOps operations: GPU bits against the CPU reference\n");
	println!("| operation and input shapes | values | differing |");
	println!("|---|---|---|");
	let checks = check::conformance(&device);
	let (mut values, mut cases) = (0usize, 0usize);
	for c in &checks {
		cases += 1;
		values += c.values;
		if c.mismatches != 0 {
			failed = true;
			let first = c
				.first
				.map(|(i, g, r)| format!(" (first at {i}: GPU {g:#010x}, reference {r:#010x})"))
				.or_else(|| c.error.as_ref().map(|e| format!(" ({e})")))
				.unwrap_or_default();
			println!("| {} | {} | **{}**{first} |", c.case, c.values, c.mismatches);
		} else if list {
			println!("| {} | {} | 0 |", c.case, c.values);
		}
	}
	println!("\n{cases} cases, {values} values compared, {} cases differing.\n", {
		checks.iter().filter(|c| c.mismatches != 0).count()
	});

	println!("## Training runs: the state hash after every step, GPU against CPU\n");
	println!("| model | optimizer | steps | steps differing | final h_N (GPU) | final h_N (CPU) | GPU ms/step | CPU ms/step |");
	println!("|---|---|---|---|---|---|---|---|");
	let (sgd, adam) = (check::sgd(), check::adam());
	let runs: &[(&str, &[u32], u32, u32)] = if quick {
		&[("64-32-10", &[64, 32, 10], 32, 20), ("64-32-1 (regression)", &[64, 32, 1], 32, 20)]
	} else {
		&[
			("64-32-10", &[64, 32, 10], 32, 100),
			("64-32-1 (regression)", &[64, 32, 1], 32, 100),
			("256-256-10", &[256, 256, 10], 64, 50),
			("784-512-512-10", &[784, 512, 512, 10], 128, 20),
			("1024-1024-1024-10", &[1024, 1024, 1024, 10], 256, 10),
		]
	};
	for (name, widths, batch, steps) in runs {
		for (opt_name, opt) in [("SGD", sgd), ("Adam", adam)] {
			let (spec, data) = check::run_spec(widths, opt, *batch, *steps);
			match check::training_run(name, spec, data) {
				Ok(r) => {
					failed |= r.mismatches != 0;
					println!(
						"| {} | {opt_name} | {} | {}{} | {:?} | {:?} | {:.2} | {:.2} |",
						r.model,
						r.steps,
						r.mismatches,
						r.first.map(|t| format!(" (first: step {t})")).unwrap_or_default(),
						r.gpu_final,
						r.cpu_final,
						r.seconds.0 * 1e3,
						r.seconds.1 * 1e3
					);
				}
				Err(e) => {
					failed = true;
					println!("| {name} | {opt_name} | - | **failed: {e}** | | | | |");
				}
			}
		}
	}

	if quick {
		finish(failed);
	}
	println!("\n## Where a GPU training step goes (SGD; ms, mean of 10 steps)\n");
	println!("| model | batch | whole step (state to GPU, kernels, state back) | state to GPU | state back | state hash on the CPU |");
	println!("|---|---|---|---|---|---|");
	for (name, widths, batch, _) in runs {
		let (spec, data) = check::run_spec(widths, sgd, *batch, 1);
		match check::step_breakdown(&device, &spec, &data, 10) {
			Ok(b) => println!(
				"| {name} | {batch} | {:.2} | {:.2} | {:.2} | {:.2} |",
				b.step * 1e3,
				b.upload * 1e3,
				b.read * 1e3,
				b.hash * 1e3
			),
			Err(e) => println!("| {name} | {batch} | failed: {e} | | | |"),
		}
	}
	println!("\n## Matrix products: RepOps kernels against burn-cuda's matmul (same shapes)\n");
	println!("| product | shape (M x K . K x N) | RepOps ms | RepOps GFLOP/s | burn-cuda ms | burn-cuda GFLOP/s |");
	println!("|---|---|---|---|---|---|");
	let spec = TrainingSpec::example_mlp(&[4, 2], sgd, 1);
	let ctx = StepContext::new(spec, Vec::new(), 0);
	let mut rng = SplitMix64::new(11);
	let mut random = |r: u32, c: u32| {
		Matrix::new(r, c, (0..r * c).map(|_| rng.next_unit() - 0.5).collect()).expect("shape")
	};
	// The products of a 1024-1024-1024-10 step at batch 256, and a large square one.
	for (m, k, n) in [(256, 1024, 1024), (1024, 256, 1024), (256, 1024, 10), (4096, 4096, 4096)] {
		let a = from_matrix::<Cuda>(random(m, k), &device);
		let b = from_matrix::<Cuda>(random(k, n), &device);
		let flops = 2.0 * f64::from(m) * f64::from(k) * f64::from(n);
		let time = |f: &dyn Fn()| {
			f();
			check::sync(&device);
			let reps = 20;
			let start = Instant::now();
			for _ in 0..reps {
				f();
			}
			check::sync(&device);
			start.elapsed().as_secs_f64() / f64::from(reps)
		};
		let ours = time(&|| {
			std::hint::black_box(Cuda::repops(
				Kernel::new(OpKind::MatMul, &ctx),
				vec![a.clone(), b.clone()],
			));
		});
		let theirs = time(&|| {
			std::hint::black_box(Cuda::float_matmul(a.clone(), b.clone()));
		});
		println!(
			"| A . B | {m} x {k} . {k} x {n} | {:.3} | {:.0} | {:.3} | {:.0} |",
			ours * 1e3,
			flops / ours / 1e9,
			theirs * 1e3,
			flops / theirs / 1e9
		);
	}
	finish(failed);
}

/// The verdict, and the exit status.
fn finish(failed: bool) -> ! {
	if failed {
		println!("\nFAILED: some GPU bits differ from the CPU's.");
		std::process::exit(1);
	}
	println!("\nAll GPU bits equal the CPU reference's.");
	std::process::exit(0);
}
