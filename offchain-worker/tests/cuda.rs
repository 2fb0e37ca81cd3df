//! CUDA = CPU, bit for bit (feature `cuda`): every RepOps operation on random inputs with
//! special values, and a training run's state hash after every step. Needs an NVIDIA GPU;
//! where there is no CUDA driver the test says so on stderr and checks nothing else (CI has
//! no GPU: there this proves the feature builds and links).

use trainet_worker::cuda::{check, CudaDevice};

#[test]
fn cuda_kernels_and_training_give_the_cpu_bits() {
	if !trainet_worker::cuda::driver_present() {
		eprintln!(
			"SKIPPED cuda_kernels_and_training_give_the_cpu_bits: no CUDA driver (libcuda.so.1) \
			 on this machine; run `cuda-check` on a GPU machine (docs/cuda.md)"
		);
		return;
	}
	let device = CudaDevice::default();
	let differing: Vec<_> =
		check::conformance(&device).into_iter().filter(|c| c.mismatches != 0).collect();
	assert!(differing.is_empty(), "GPU bits differ from the reference: {differing:#?}");
	for widths in [&[64, 32, 10][..], &[64, 32, 1]] {
		let (spec, data) = check::run_spec(widths, check::sgd(), 32, 20);
		let run = check::training_run(&format!("{widths:?}"), spec, data).expect("both runs");
		assert_eq!(run.mismatches, 0, "{run:?}");
		assert_eq!(run.gpu_final, run.cpu_final);
	}
}
