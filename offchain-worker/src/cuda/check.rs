//! Conformance of the CUDA kernels to the CPU reference, bit for bit: every operation on random
//! inputs (with NaNs, infinities, signed zeros and subnormals among them) and whole training
//! runs, step hash by step hash. `cuda-check` prints these on a GPU machine; the `cuda` test
//! runs them where a GPU is found and says so where none is.

use std::time::Instant;

use burn::tensor::{backend::Backend, ops::FloatTensorOps, try_read_sync, TensorMetadata};
use sp_core::H256;
use trainet_primitives::{
	program::{self, Op, OpKind, Source},
	repops::{Matrix, SplitMix64},
	task::{F32Bits, Optimizer, TrainingSpec},
};

use super::{Cuda, CudaDevice};
use crate::{
	backend::{from_matrix, output_shape, Kernel, RepOpsBackend, StepContext},
	dataset::Dataset,
	engine::MatRef,
	train::{Engine, Training},
};

/// The outcome of one operation's comparison.
#[derive(Debug)]
pub struct OpCheck {
	/// The operation and its input shapes, e.g. `MatMul 67x33 . 33x70`.
	pub case: String,
	/// Output values compared.
	pub values: usize,
	/// Values whose bits differ (or `usize::MAX` when the shapes or the run differ).
	pub mismatches: usize,
	/// The first difference: index, GPU bits, reference bits.
	pub first: Option<(usize, u32, u32)>,
	/// Why the GPU gave no comparable output, if it did not.
	pub error: Option<String>,
}

/// A random `rows x cols` matrix from `rng`: values of mixed magnitude, and, with `special`,
/// one in about 16 a NaN, an infinity, a signed zero, a subnormal or a huge value.
fn random(rng: &mut SplitMix64, rows: u32, cols: u32, special: bool) -> Matrix {
	let data = (0..rows * cols)
		.map(|_| {
			let u = rng.next_unit();
			let v = (u - 0.5) * 4.0;
			if !special || rng.next_below(16) != 0 {
				return v;
			}
			match rng.next_below(9) {
				0 => f32::from_bits(0x7fa0_0001), // a signalling NaN with a payload
				1 => f32::from_bits(0xffc0_0000),
				2 => f32::INFINITY,
				3 => f32::NEG_INFINITY,
				4 => -0.0,
				5 => 0.0,
				6 => f32::from_bits(0x0000_0123) * if u < 0.5 { -1.0 } else { 1.0 },
				7 => 1e-30 * v,
				_ => 3e38 * v,
			}
		})
		.collect();
	Matrix { rows, cols, data }
}

/// Runs `kind` on `inputs` on the GPU and with the reference, and compares the bits.
fn compare(
	device: &CudaDevice,
	spec: &TrainingSpec,
	kind: OpKind,
	inputs: &[Matrix],
	labels: &[u32],
	step: u32,
) -> OpCheck {
	let shapes: Vec<String> = inputs.iter().map(|m| format!("{}x{}", m.rows, m.cols)).collect();
	let case = format!("{kind:?} {}", shapes.join(" "));
	let ctx = StepContext::new(spec.clone(), labels.to_vec(), step);
	let tensors = inputs.iter().map(|m| from_matrix::<Cuda>(m.clone(), device)).collect();
	let out = Cuda::repops(Kernel::new(kind, &ctx), tensors);
	let shape = out.shape();
	// Read here (not with `repops_read`) to keep the runtime's error: a kernel that failed to
	// compile or launch shows up at the first read.
	let gpu = match try_read_sync(Cuda::float_into_data(out)) {
		Some(Ok(data)) => match (data.into_vec::<f32>(), shape.as_slice()) {
			(Ok(values), [rows, cols]) => {
				Ok(Matrix { rows: *rows as u32, cols: *cols as u32, data: values })
			}
			(values, dims) => Err(format!("output {dims:?}: {:?}", values.err())),
		},
		Some(Err(e)) => Err(format!("{e:?}")),
		None => Err("the read did not complete".into()),
	};
	let refs: Vec<&Matrix> = inputs.iter().collect();
	let op = Op { kind, inputs: vec![Source::Batch; inputs.len()], rows: 0, cols: 0 };
	// The reference's output shape: run it unchecked by shape, then compare.
	let reference = reference(spec, &op, &refs, labels, step);
	match (gpu, reference, ctx.failure()) {
		(Ok(g), Some(r), None) if (g.rows, g.cols) == (r.rows, r.cols) => {
			let mut mismatches = 0;
			let mut first = None;
			for (i, (a, b)) in g.data.iter().zip(&r.data).enumerate() {
				if a.to_bits() != b.to_bits() {
					mismatches += 1;
					first.get_or_insert((i, a.to_bits(), b.to_bits()));
				}
			}
			OpCheck { case, values: r.data.len(), mismatches, first, error: None }
		}
		(gpu, reference, failure) => {
			let error = match (gpu, reference, failure) {
				(_, _, Some(f)) => format!("the kernel refused its inputs: {f:?}"),
				(Err(e), _, _) => e,
				(_, None, _) => "the reference refused the inputs".into(),
				(Ok(g), Some(r), _) => {
					format!(
						"shape {}x{} against the reference's {}x{}",
						g.rows, g.cols, r.rows, r.cols
					)
				}
			};
			OpCheck { case, values: 0, mismatches: usize::MAX, first: None, error: Some(error) }
		}
	}
}

/// The reference's output of `op` on `inputs` (its shape the step program's for them).
fn reference(
	spec: &TrainingSpec,
	op: &Op,
	inputs: &[&Matrix],
	labels: &[u32],
	step: u32,
) -> Option<Matrix> {
	let refs: Vec<MatRef> = inputs.iter().map(|m| MatRef::from(*m)).collect();
	let (rows, cols) = output_shape(op.kind, &refs).ok()?;
	let op = Op { rows, cols, ..op.clone() };
	program::execute(spec, &op, inputs, labels, step).ok()
}

/// The SGD the checks train with: learning rate 0.05, momentum 0.9.
pub fn sgd() -> Optimizer {
	Optimizer::sgd(0.05, 0.9)
}

/// The Adam the checks train with: learning rate 0.001, betas 0.9 and 0.999, epsilon 1e-8.
pub fn adam() -> Optimizer {
	Optimizer::Adam {
		learning_rate: F32Bits::from_f32(0.001),
		beta1: F32Bits::from_f32(0.9),
		beta2: F32Bits::from_f32(0.999),
		epsilon: F32Bits::from_f32(1e-8),
	}
}

/// Every operation of the RepOps set on random inputs of awkward shapes (not multiples of the
/// kernels' tiles), with special values among them.
pub fn conformance(device: &CudaDevice) -> Vec<OpCheck> {
	let sgd_spec = TrainingSpec::example_mlp(&[8, 4, 3], sgd(), 4);
	let adam_spec = TrainingSpec::example_mlp(&[8, 4, 3], adam(), 4);
	let mut rng = SplitMix64::new(7);
	let mut out = Vec::new();
	for special in [false, true] {
		// Products: (M, K, N), K not a multiple of the 16-deep slices, M and N not multiples
		// of the 64-wide tiles, and a large one. (No empty matrices: burn-cuda cannot make a
		// tensor with no values, "the provided strides are not supported"; a spec's layers
		// are never empty.)
		for (m, k, n) in [(1, 1, 1), (3, 2, 5), (67, 33, 70), (128, 17, 129), (256, 1024, 1024)] {
			let a = random(&mut rng, m, k, special);
			let b = random(&mut rng, k, n, special);
			out.push(compare(device, &sgd_spec, OpKind::MatMul, &[a.clone(), b.clone()], &[], 0));
			let at = random(&mut rng, k, m, special);
			out.push(compare(device, &sgd_spec, OpKind::MatMulTn, &[at, b], &[], 0));
			let bt = random(&mut rng, n, k, special);
			out.push(compare(device, &sgd_spec, OpKind::MatMulNt, &[a, bt], &[], 0));
		}
		// Products whose sums underflow to -0.0 on the way (the last slice's padding must not
		// enter the chain).
		let tiny = |rng: &mut SplitMix64, r, c| {
			let mut t = random(rng, r, c, false);
			t.data.iter_mut().for_each(|v| *v *= 1e-25);
			t
		};
		let (a, b) = (tiny(&mut rng, 65, 19), tiny(&mut rng, 19, 66));
		out.push(compare(device, &sgd_spec, OpKind::MatMul, &[a, b], &[], 0));
		for (rows, cols) in [(1, 1), (7, 10), (300, 257)] {
			let x = random(&mut rng, rows, cols, special);
			let y = random(&mut rng, rows, cols, special);
			let bias = random(&mut rng, 1, cols, special);
			out.push(compare(device, &sgd_spec, OpKind::BiasAdd, &[x.clone(), bias], &[], 0));
			out.push(compare(device, &sgd_spec, OpKind::Relu, std::slice::from_ref(&x), &[], 0));
			out.push(compare(
				device,
				&sgd_spec,
				OpKind::ReluBackward,
				&[x.clone(), y.clone()],
				&[],
				0,
			));
			out.push(compare(device, &sgd_spec, OpKind::ColSum, std::slice::from_ref(&x), &[], 0));
			out.push(compare(device, &sgd_spec, OpKind::Mean, std::slice::from_ref(&x), &[], 0));
			let labels: Vec<u32> = (0..rows).map(|_| rng.next_below(cols)).collect();
			// Logits of a wide range, so exp over- and underflows and ln sees subnormals.
			let mut logits = random(&mut rng, rows, cols, special);
			logits.data.iter_mut().enumerate().for_each(|(i, v)| *v *= [1.0, 30.0, 0.01][i % 3]);
			out.push(compare(
				device,
				&sgd_spec,
				OpKind::SoftmaxXent,
				&[logits.clone()],
				&labels,
				0,
			));
			out.push(compare(
				device,
				&sgd_spec,
				OpKind::SoftmaxXentBackward,
				&[logits],
				&labels,
				0,
			));
			// A regression's output column against targets of any bits.
			let column = random(&mut rng, rows, 1, special);
			let targets: Vec<u32> =
				random(&mut rng, rows, 1, special).data.iter().map(|t| t.to_bits()).collect();
			for kind in [OpKind::SquaredError, OpKind::SquaredErrorBackward] {
				let inputs = std::slice::from_ref(&column);
				out.push(compare(device, &sgd_spec, kind, inputs, &targets, 0));
			}
			out.push(compare(device, &sgd_spec, OpKind::Momentum, &[x.clone(), y.clone()], &[], 0));
			out.push(compare(device, &sgd_spec, OpKind::SgdStep, &[x.clone(), y.clone()], &[], 0));
			let mut v = random(&mut rng, rows, cols, special);
			v.data.iter_mut().for_each(|e| *e = e.abs());
			for step in [0, 9] {
				out.push(compare(
					device,
					&adam_spec,
					OpKind::AdamM,
					&[x.clone(), y.clone()],
					&[],
					step,
				));
				out.push(compare(
					device,
					&adam_spec,
					OpKind::AdamV,
					&[v.clone(), y.clone()],
					&[],
					step,
				));
				out.push(compare(
					device,
					&adam_spec,
					OpKind::AdamStep,
					&[x.clone(), y.clone(), v.clone()],
					&[],
					step,
				));
			}
		}
	}
	out
}

/// A training run of `spec` on `data`: the step hashes on the GPU and on the CPU, and the time
/// each took.
#[derive(Debug)]
pub struct RunCheck {
	/// The model.
	pub model: String,
	/// Steps run.
	pub steps: u32,
	/// Steps whose state hash differs.
	pub mismatches: u32,
	/// The first step whose hash differs.
	pub first: Option<u32>,
	/// The final state hash on the GPU.
	pub gpu_final: H256,
	/// The final state hash on the CPU.
	pub cpu_final: H256,
	/// Seconds per step on the GPU (state to and from host memory each step, as the worker
	/// does) and on the CPU.
	pub seconds: (f64, f64),
}

/// Trains `spec` on `data` with [`Engine::Cuda`] and [`Engine::Burn`], comparing the state
/// hash after every step.
pub fn training_run(model: &str, spec: TrainingSpec, data: Dataset) -> Result<RunCheck, String> {
	// Every state an entry of the trace, so `Training::trace` hashes them all: h_0 .. h_N.
	let mut spec = spec;
	spec.checkpoint_interval = 1;
	let trace = |engine: Engine| -> Result<(Vec<H256>, f64), String> {
		let mut run = Training::new(spec.clone(), data.clone())
			.map_err(|e| e.to_string())?
			.with_engine(engine);
		let start = Instant::now();
		let hashes = run.trace(|_| {}).map_err(|e| e.to_string())?;
		Ok((hashes, start.elapsed().as_secs_f64() / f64::from(spec.steps.max(1))))
	};
	let (gpu, gpu_time) = trace(Engine::Cuda)?;
	let (cpu, cpu_time) = trace(Engine::Burn)?;
	let differ: Vec<u32> =
		(0..spec.steps).filter(|t| gpu.get(*t as usize + 1) != cpu.get(*t as usize + 1)).collect();
	Ok(RunCheck {
		model: model.into(),
		steps: spec.steps,
		mismatches: differ.len() as u32,
		first: differ.first().copied(),
		gpu_final: gpu.last().copied().unwrap_or_default(),
		cpu_final: cpu.last().copied().unwrap_or_default(),
		seconds: (gpu_time, cpu_time),
	})
}

/// A training spec of `widths` with `optimizer`, on a synthetic dataset, for `steps` steps: a
/// classification, or with one output a regression (mean squared error on real targets).
pub fn run_spec(
	widths: &[u32],
	optimizer: Optimizer,
	batch: u32,
	steps: u32,
) -> (TrainingSpec, Dataset) {
	let classes = widths.last().copied().unwrap_or(2);
	let features = widths.first().copied().unwrap_or(1);
	let (data, mut spec) = match classes {
		1 => (
			Dataset::synthetic_regression(5, batch * 4, features),
			TrainingSpec::example_regression(widths, optimizer, batch),
		),
		_ => (
			Dataset::synthetic(5, batch * 4, features, classes),
			TrainingSpec::example_mlp(widths, optimizer, batch),
		),
	};
	spec = spec.with_dataset(data.commitment());
	spec.steps = steps;
	(spec, data)
}

/// Where the time of one GPU training step goes, in seconds (the mean of `reps` steps after a
/// warm-up): the whole step as the worker runs it (`burn_step_on::<Cuda>`: the state to the
/// GPU, the kernels, the state back), and, timed apart, moving the state to the GPU and reading
/// it back, and hashing it on the CPU (which the worker does after the step, as on the CPU).
#[derive(Debug)]
pub struct StepBreakdown {
	/// The whole step.
	pub step: f64,
	/// The state (parameters and optimizer moments) to the GPU.
	pub upload: f64,
	/// The state back to host memory, in one transaction.
	pub read: f64,
	/// The state hash on the CPU.
	pub hash: f64,
}

/// Measures [`StepBreakdown`] for `spec` (one batch of `data`).
pub fn step_breakdown(
	device: &CudaDevice,
	spec: &TrainingSpec,
	data: &Dataset,
	reps: u32,
) -> Result<StepBreakdown, String> {
	let program = program::step_program(spec).map_err(|e| format!("{e:?}"))?;
	let state = program::initial_state(spec, &program).map_err(|e| format!("{e:?}"))?;
	let features = data.features as usize;
	let batch: Vec<f32> = data
		.samples
		.iter()
		.take(spec.batch_size as usize)
		.flat_map(|(x, _)| x.iter().copied())
		.collect();
	let labels: Vec<u32> =
		data.samples.iter().take(spec.batch_size as usize).map(|s| s.1).collect();
	let batch =
		Matrix::new(labels.len() as u32, features as u32, batch).map_err(|e| format!("{e:?}"))?;
	let mean = |f: &mut dyn FnMut() -> Result<(), String>| -> Result<f64, String> {
		f()?;
		let start = Instant::now();
		for _ in 0..reps.max(1) {
			f()?;
		}
		Ok(start.elapsed().as_secs_f64() / f64::from(reps.max(1)))
	};
	let step = mean(&mut || {
		crate::train::burn_step_on::<Cuda>(
			device,
			spec,
			state.clone(),
			batch.clone(),
			labels.clone(),
			0,
		)
		.map(|_| ())
		.map_err(|e| e.to_string())
	})?;
	let upload = mean(&mut || {
		let tensors: Vec<_> =
			state.iter().map(|m| from_matrix::<Cuda>(m.clone(), device)).collect();
		sync(device);
		std::hint::black_box(tensors);
		Ok(())
	})?;
	let tensors: Vec<_> = state.iter().map(|m| from_matrix::<Cuda>(m.clone(), device)).collect();
	let read = mean(&mut || {
		Cuda::repops_take_all(tensors.clone()).map(|_| ()).map_err(|e| format!("{e:?}"))
	})?;
	let hash = mean(&mut || {
		std::hint::black_box(crate::commit::state_hash(&state));
		Ok(())
	})?;
	Ok(StepBreakdown { step, upload, read, hash })
}

/// Waits for the device's queued work (for timing).
pub fn sync(device: &CudaDevice) {
	Cuda::sync(device).ok();
}
