//! RepOps on NVIDIA GPUs: burn-cuda's backend with the RepOps kernels written for it, giving
//! the CPU reference's bits (feature `cuda`).
//!
//! [`Cuda`] is burn-cuda's `CubeBackend` over CubeCL's CUDA runtime, built without burn-cuda's
//! `fusion` and `autotune` features (either can change which kernel runs). It implements
//! [`RepOpsBackend`] with the kernels of `kernels.cu`, launched through CubeCL's compute client
//! on the tensors' own memory and stream, so `Autodiff<Cuda>` ([`CudaTrain`]) trains a burn
//! [`crate::model::Mlp`] on the GPU exactly as `Autodiff<NdArray>` does on the CPU
//! ([`crate::train::burn_step_on`]).
//!
//! Why hand-written CUDA C++ rather than CubeCL's `#[cube]` kernels: CubeCL compiles its
//! generated C++ with NVRTC's default options, under which `a * b + c` may become one fused
//! multiply-add (one rounding where the reference has two), and it has no way to ask for a
//! separately rounded product. The kernels here spell every rounding with CUDA's `_rn`
//! intrinsics, which no compiler setting contracts. They are handed to CubeCL as a
//! [`CubeTask`] whose compiled source is `kernels.cu` (the launch, caching, memory and streams
//! stay CubeCL's); the kernel representation CubeCL wants beside the source is that of an empty
//! kernel (no shared memory declared through CubeCL: the kernels' shared memory is static).
//! Scalars travel as CubeCL's "info" argument, the kernels' last parameter.
//!
//! Nothing here needs a GPU to build: CubeCL loads the CUDA driver and NVRTC when a device is
//! first used.

use std::{
	hash::{Hash, Hasher},
	sync::OnceLock,
};

use burn::{
	backend::Autodiff,
	tensor::{
		ops::{TransactionOps, TransactionPrimitive},
		try_read_sync, DType, Shape, TensorMetadata,
	},
};
use burn_cubecl::{
	kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor,
};
use cubecl::{
	client::ComputeClient,
	cuda::{CudaCompiler, CudaRuntime},
	prelude::{
		AddressType, CompiledKernel, CubeCount, CubeDim, ExecutionMode, KernelBuilder, KernelId,
		KernelMetadata, KernelSettings, StorageType,
	},
	server::{Binding, KernelArguments, MetadataBindingInfo},
	CompilationError, Compiler, CubeTask,
};
use trainet_primitives::{
	program::{OpKind, Pointwise},
	repops::{self, Matrix, ShapeError},
};

use crate::backend::{from_matrix, matrix_shape, Kernel, RepOpsBackend};

pub mod check;

/// burn-cuda's backend for `f32`, without fusion or autotuning.
pub type Cuda = burn_cuda::Cuda<f32, i32>;
/// What GPU training runs on: burn's autodiff over [`Cuda`].
pub type CudaTrain = Autodiff<Cuda>;
/// A CUDA device (`CudaDevice::new(0)` is the first GPU; `Default` is it too).
pub use burn_cuda::CudaDevice;

type Tensor = CubeTensor<CudaRuntime>;

/// Whether this machine has a CUDA driver (`libcuda.so.1`) to load. Whether it has a GPU is
/// known only by using it.
pub fn driver_present() -> bool {
	let name = c"libcuda.so.1";
	// SAFETY: `dlopen` of a library by name, closed again at once; no symbol is used.
	unsafe {
		let handle = libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
		if handle.is_null() {
			return false;
		}
		libc::dlclose(handle);
	}
	true
}

/// The kernels' source: `kernels.cu` after the reference's constants.
pub fn source() -> &'static str {
	static SOURCE: OnceLock<String> = OnceLock::new();
	SOURCE.get_or_init(|| {
		let float = |name: &str, v: f32| {
			format!("#define {name} __uint_as_float({:#010x}u)\n", v.to_bits())
		};
		let mut prelude = String::from("// Constants of primitives/src/repops, as bits.\n");
		prelude.push_str(&format!(
			"#define CANONICAL_NAN __uint_as_float({:#010x}u)\n",
			repops::CANONICAL_NAN_BITS
		));
		for (name, v) in [
			("ROUND_MAGIC", repops::ROUND_MAGIC),
			("LOG2_E", repops::LOG2_E),
			("LN2_HI", repops::LN2_HI),
			("LN2_LO", repops::LN2_LO),
			("EXP_MAX", repops::EXP_MAX),
			("EXP_MIN", repops::EXP_MIN),
			("SQRT_2", core::f32::consts::SQRT_2),
		] {
			prelude.push_str(&float(name, v));
		}
		for (i, c) in repops::EXP_COEFFS.iter().enumerate() {
			prelude.push_str(&float(&format!("EXP_C{i}"), *c));
		}
		for (i, c) in repops::LN_COEFFS.iter().enumerate() {
			prelude.push_str(&float(&format!("LN_C{i}"), *c));
		}
		prelude + include_str!("kernels.cu")
	})
}

/// A hash of [`source`], part of every kernel's CubeCL id so a cached compilation of an older
/// source is never reused.
fn source_hash() -> u64 {
	static HASH: OnceLock<u64> = OnceLock::new();
	*HASH.get_or_init(|| {
		let mut h = std::collections::hash_map::DefaultHasher::new();
		source().hash(&mut h);
		h.finish()
	})
}

/// One kernel of `kernels.cu`, as CubeCL launches it.
#[derive(Clone, Copy, Debug)]
struct RepOpsKernel {
	/// Its `extern "C"` name.
	name: &'static str,
	/// Threads per block.
	threads: u32,
}

impl KernelMetadata for RepOpsKernel {
	fn name(&self) -> &'static str {
		self.name
	}

	fn id(&self) -> KernelId {
		KernelId::new::<Self>()
			.info((self.name, source_hash()))
			.cube_dim(CubeDim::new_1d(self.threads))
	}

	fn address_type(&self) -> StorageType {
		AddressType::U32.unsigned_type()
	}
}

impl CubeTask<CudaCompiler> for RepOpsKernel {
	fn compile(
		&self,
		compiler: &mut CudaCompiler,
		options: &<CudaCompiler as Compiler>::CompilationOptions,
		mode: ExecutionMode,
		address_type: StorageType,
	) -> Result<CompiledKernel<CudaCompiler>, CompilationError> {
		let cube_dim = CubeDim::new_1d(self.threads);
		// CubeCL's representation of an empty kernel of this block size: what the runtime
		// reads beside the source (its dynamic shared memory: none).
		let empty = KernelBuilder::new().build(KernelSettings { cube_dim, ..Default::default() });
		let repr = compiler.compile(empty, options, mode, address_type)?;
		// How CubeCL passes the "info" argument (the kernels' scalars) on this GPU.
		let by_value = u8::from(options.supports_features.grid_constants);
		Ok(CompiledKernel {
			entrypoint_name: self.name.to_string(),
			debug_name: Some(self.name),
			source: format!("#define PARAMS_BY_VALUE {by_value}\n{}", source()),
			repr: Some(repr),
			cube_dim,
			debug_info: None,
		})
	}
}

/// A buffer of `u32`s on the device (the labels).
fn words(client: &ComputeClient<CudaRuntime>, values: &[u32]) -> Binding {
	let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
	client.create_from_slice(&bytes).binding()
}

/// The kernels' `Params`: 16 words.
const PARAM_WORDS: usize = 16;

/// Launches `name` on `buffers` (in the kernel's parameter order) with `scalars` (at most
/// [`PARAM_WORDS`]) as its last parameter: CubeCL's "info" argument, which it passes by value
/// (or, on GPUs without grid constants, in a buffer it makes), with no allocation of ours.
fn launch(
	client: &ComputeClient<CudaRuntime>,
	name: &'static str,
	threads: u32,
	blocks: (u32, u32),
	buffers: Vec<Binding>,
	scalars: &[u32],
) -> Result<(), ShapeError> {
	if scalars.len() > PARAM_WORDS {
		return Err(ShapeError::Mismatch);
	}
	let mut words = [0u32; PARAM_WORDS];
	words.iter_mut().zip(scalars).for_each(|(w, s)| *w = *s);
	// Little-endian pairs: the struct's words in order.
	let info: Vec<u64> = words
		.chunks_exact(2)
		.map(|pair| match pair {
			[lo, hi] => u64::from(*lo) | (u64::from(*hi) << 32),
			_ => 0,
		})
		.collect();
	let kernel = RepOpsKernel { name, threads };
	let static_len = info.len();
	let args = KernelArguments {
		buffers,
		// All of it static (no dynamic metadata, which CubeCL would copy to a buffer).
		info: MetadataBindingInfo::new(info, static_len),
		tensor_maps: Vec::new(),
	};
	client.launch(Box::new(kernel), CubeCount::Static(blocks.0, blocks.1, 1), args);
	Ok(())
}

/// Blocks of `threads` covering `n` threads.
fn blocks(n: usize, threads: u32) -> Result<u32, ShapeError> {
	u32::try_from(n.div_ceil(threads as usize)).map_err(|_| ShapeError::Overflow)
}

/// The `(rows, cols)` of a rank-1 (`1 x n`) or rank-2 tensor.
fn dims(t: &Tensor) -> Result<(u32, u32), ShapeError> {
	matrix_shape(t.shape().as_slice())
}

/// The number of values of a `rows x cols` matrix.
fn count((rows, cols): (u32, u32)) -> Result<usize, ShapeError> {
	(rows as usize).checked_mul(cols as usize).ok_or(ShapeError::Overflow)
}

/// Runs `kernel` on the GPU: checks the shapes as the reference does, allocates the output and
/// launches the kernel (asynchronously, on the inputs' stream).
fn run(kernel: &Kernel, inputs: Vec<Tensor>) -> Result<Tensor, ShapeError> {
	let arity = match kernel.kind {
		OpKind::Relu
		| OpKind::SoftmaxXent
		| OpKind::SoftmaxXentBackward
		| OpKind::SquaredError
		| OpKind::SquaredErrorBackward
		| OpKind::Mean
		| OpKind::ColSum => 1,
		OpKind::AdamStep => 3,
		_ => 2,
	};
	if inputs.len() != arity || inputs.iter().any(|t| t.dtype != DType::F32) {
		return Err(ShapeError::Mismatch);
	}
	let inputs: Vec<Tensor> = inputs.into_iter().map(into_contiguous).collect();
	if !inputs.iter().all(Tensor::is_contiguous) {
		return Err(ShapeError::Mismatch);
	}
	let shapes = inputs.iter().map(dims).collect::<Result<Vec<_>, _>>()?;
	let shape = |i: usize| shapes.get(i).copied().ok_or(ShapeError::Mismatch);
	let (client, device) = match inputs.first() {
		Some(t) => (t.client.clone(), t.device.clone()),
		None => return Err(ShapeError::Mismatch),
	};
	let ctx = &kernel.ctx;
	let labels = |rows: u32, cols: u32| -> Result<Binding, ShapeError> {
		if ctx.labels.len() != rows as usize {
			return Err(ShapeError::Mismatch);
		}
		if ctx.labels.iter().any(|y| *y >= cols) {
			return Err(ShapeError::BadLabel);
		}
		Ok(words(&client, &ctx.labels))
	};

	// The output's shape, the kernel, its blocks, a buffer between the inputs and the output
	// (labels), and the scalars.
	let (a, b) = (shape(0)?, shape(1).unwrap_or((0, 0)));
	let (out, name, threads, grid, extra, scalars): (
		_,
		_,
		u32,
		(u32, u32),
		Option<Binding>,
		Vec<u32>,
	) = match kernel.kind {
		OpKind::MatMul | OpKind::MatMulTn | OpKind::MatMulNt => {
			let ((m, k), (k2, n), name) = match kernel.kind {
				OpKind::MatMul => (a, b, "repops_matmul"),
				OpKind::MatMulTn => ((a.1, a.0), b, "repops_matmul_tn"),
				_ => (a, (b.1, b.0), "repops_matmul_nt"),
			};
			if k != k2 {
				return Err(ShapeError::Mismatch);
			}
			let grid = (blocks(n as usize, 64)?, blocks(m as usize, 64)?);
			((m, n), name, 256, grid, None, vec![m, n, k])
		}
		OpKind::BiasAdd => {
			if b != (1, a.1) {
				return Err(ShapeError::Mismatch);
			}
			(a, "repops_bias_add", 256, (blocks(count(a)?, 256)?, 1), None, vec![len(a)?, a.1])
		}
		OpKind::Relu => (a, "repops_relu", 256, (blocks(count(a)?, 256)?, 1), None, vec![len(a)?]),
		OpKind::ReluBackward => {
			if a != b {
				return Err(ShapeError::Mismatch);
			}
			let grid = (blocks(count(a)?, 256)?, 1);
			(a, "repops_relu_backward", 256, grid, None, vec![len(a)?])
		}
		OpKind::SoftmaxXent | OpKind::SoftmaxXentBackward => {
			let (rows, cols) = a;
			let labels = labels(rows, cols)?;
			let (out, name) = if kernel.kind == OpKind::SoftmaxXent {
				((rows, 1), "repops_softmax_xent")
			} else {
				(a, "repops_softmax_xent_backward")
			};
			(out, name, 64, (blocks(rows as usize, 64)?, 1), Some(labels), vec![rows, cols])
		}
		OpKind::SquaredError | OpKind::SquaredErrorBackward => {
			let (rows, cols) = a;
			// One output per row, one target (any bits) per row.
			if cols != 1 || ctx.labels.len() != rows as usize {
				return Err(ShapeError::Mismatch);
			}
			let targets = words(&client, &ctx.labels);
			let name = if kernel.kind == OpKind::SquaredError {
				"repops_squared_error"
			} else {
				"repops_squared_error_backward"
			};
			(a, name, 64, (blocks(rows as usize, 64)?, 1), Some(targets), vec![rows])
		}
		OpKind::Mean => ((1, 1), "repops_mean", 1, (1, 1), None, vec![len(a)?]),
		OpKind::ColSum => {
			let grid = (blocks(a.1 as usize, 256)?, 1);
			((1, a.1), "repops_col_sum", 256, grid, None, vec![a.0, a.1])
		}
		OpKind::Momentum | OpKind::SgdStep | OpKind::AdamM | OpKind::AdamV | OpKind::AdamStep => {
			if shapes.iter().any(|s| *s != a) {
				return Err(ShapeError::Mismatch);
			}
			let constants = Pointwise::new(&ctx.spec, kernel.kind, ctx.step)?.constants();
			let mut scalars = vec![len(a)?];
			scalars.extend(constants.iter().map(|c| c.to_bits()));
			let name = match kernel.kind {
				OpKind::Momentum => "repops_momentum",
				OpKind::SgdStep => "repops_sgd_step",
				OpKind::AdamM => "repops_adam_m",
				OpKind::AdamV => "repops_adam_v",
				_ => "repops_adam_step",
			};
			(a, name, 256, (blocks(count(a)?, 256)?, 1), None, scalars)
		}
		// No CUDA kernels for graph models' operators or AdamW's step yet: the trainer refuses
		// such specs on the GPU before any step, so this is not reached from training.
		OpKind::Conv2d(_)
		| OpKind::Conv2dInputGrad(_)
		| OpKind::Conv2dWeightGrad(_)
		| OpKind::ConvBiasGrad(_)
		| OpKind::MaxPool2d(_)
		| OpKind::MaxPool2dGrad(_)
		| OpKind::AvgPool2d(_)
		| OpKind::AvgPool2dGrad(_)
		| OpKind::Add
		| OpKind::Gelu
		| OpKind::GeluBackward
		| OpKind::LayerNorm
		| OpKind::LayerNormInputGrad
		| OpKind::LayerNormGammaGrad
		| OpKind::Dropout(_)
		| OpKind::DropoutGrad(_)
		| OpKind::AdamWStep
		| OpKind::Embed(_)
		| OpKind::EmbedGrad(_)
		| OpKind::PositionGrad(_)
		| OpKind::TokenXent(_)
		| OpKind::TokenXentBackward(_)
		| OpKind::Attention(_)
		| OpKind::AttentionGrad(_)
		| OpKind::SumSquares
		| OpKind::ClipCoefficient(_)
		| OpKind::ClipScale => return Err(ShapeError::Mismatch),
	};
	let values = count(out)?;
	if values == 0 || grid.0 == 0 || grid.1 == 0 {
		// Nothing to compute (and CUDA launches no empty grid).
		return Ok(zeros(out, &device));
	}
	let output = empty_device_contiguous_dtype(
		client.clone(),
		device,
		Shape::new([out.0 as usize, out.1 as usize]),
		DType::F32,
	);
	let mut buffers: Vec<Binding> = inputs.iter().map(|t| t.handle.clone().binding()).collect();
	buffers.extend(extra);
	buffers.push(output.handle.clone().binding());
	launch(&client, name, threads, grid, buffers, &scalars)?;
	Ok(output)
}

/// The number of values of a matrix as the kernels' `u32` count.
fn len(shape: (u32, u32)) -> Result<u32, ShapeError> {
	u32::try_from(count(shape)?).map_err(|_| ShapeError::Overflow)
}

/// A `rows x cols` tensor of zeros (for the empty outputs no kernel computes).
fn zeros((rows, cols): (u32, u32), device: &CudaDevice) -> Tensor {
	from_matrix::<Cuda>(
		Matrix { rows, cols, data: vec![0.0; rows as usize * cols as usize] },
		device,
	)
}

impl RepOpsBackend for Cuda {
	fn repops(kernel: Kernel, inputs: Vec<Tensor>) -> Tensor {
		let device = inputs.first().map(|t| t.device.clone()).unwrap_or_default();
		run(&kernel, inputs).unwrap_or_else(|e| {
			kernel.ctx.fail(e);
			zeros((0, 0), &device)
		})
	}

	/// One transaction for all of them (burn-cubecl batches the copies and waits once).
	fn repops_take_all(tensors: Vec<Tensor>) -> Result<Vec<Matrix>, ShapeError> {
		let shapes = tensors.iter().map(dims).collect::<Result<Vec<_>, _>>()?;
		let transaction = TransactionPrimitive::new(tensors, Vec::new(), Vec::new(), Vec::new());
		let data = try_read_sync(Cuda::tr_execute(transaction))
			.and_then(Result::ok)
			.ok_or(ShapeError::Mismatch)?;
		if data.read_floats.len() != shapes.len() {
			return Err(ShapeError::Mismatch);
		}
		data.read_floats
			.into_iter()
			.zip(shapes)
			.map(|(d, (rows, cols))| {
				let values = d.into_vec::<f32>().map_err(|_| ShapeError::Mismatch)?;
				Matrix::new(rows, cols, values)
			})
			.collect()
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	/// The kernel names `run` launches.
	const NAMES: [&str; 17] = [
		"repops_matmul",
		"repops_matmul_tn",
		"repops_matmul_nt",
		"repops_bias_add",
		"repops_relu",
		"repops_relu_backward",
		"repops_softmax_xent",
		"repops_softmax_xent_backward",
		"repops_squared_error",
		"repops_squared_error_backward",
		"repops_mean",
		"repops_col_sum",
		"repops_momentum",
		"repops_sgd_step",
		"repops_adam_m",
		"repops_adam_v",
		"repops_adam_step",
	];

	/// CubeCL takes every kernel as a task whose source is `kernels.cu` with the reference's
	/// constants, without a GPU.
	#[test]
	fn kernels_are_cubecl_tasks_over_the_cuda_source() {
		for name in NAMES {
			let kernel = RepOpsKernel { name, threads: 256 };
			let compiled = kernel
				.compile(
					&mut CudaCompiler::default(),
					&Default::default(),
					ExecutionMode::Checked,
					kernel.address_type(),
				)
				.expect("compiles");
			assert_eq!(compiled.entrypoint_name, name);
			assert!(
				compiled.source.contains(&format!("extern \"C\" __global__ void {name}("))
					|| compiled.source.contains(&format!("\n{name}(")),
				"{name} is not in the source"
			);
			assert_eq!(compiled.repr.expect("a representation").shared_memory_size(), 0);
			assert_eq!(compiled.cube_dim, CubeDim::new_1d(256));
		}
		let default = RepOpsKernel { name: NAMES[0], threads: 256 }
			.compile(
				&mut CudaCompiler::default(),
				&Default::default(),
				ExecutionMode::Checked,
				AddressType::U32.unsigned_type(),
			)
			.expect("compiles");
		assert!(default.source.starts_with("#define PARAMS_BY_VALUE 0\n"));
		let source = source();
		assert!(source.contains(&format!(
			"#define LOG2_E __uint_as_float({:#010x}u)",
			repops::LOG2_E.to_bits()
		)));
		assert!(source.contains("#define EXP_C7 __uint_as_float(0x39500d01u)"));
		assert_ne!(
			RepOpsKernel { name: NAMES[0], threads: 256 }.id(),
			RepOpsKernel { name: NAMES[1], threads: 256 }.id()
		);
	}
}
