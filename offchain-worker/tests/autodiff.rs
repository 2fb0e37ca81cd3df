//! The step program's explicit backward pass computes the right gradients: for MLPs of several
//! depths and widths, the gradients it produces (the `MatMulTn` and `ColSum` outputs that feed
//! the optimizer) match burn's autodiff of the same forward pass and loss, on the same
//! weights and batch, within a stated float tolerance. The bits are ours (RepOps); this checks
//! the math.

use burn::{
	backend::{Autodiff, NdArray},
	tensor::{activation, Tensor, TensorData},
};
use trainet_primitives::{
	program::{initial_state, step_program, OpKind, Source},
	referee::{verified_batch, StepRun},
	repops::Matrix,
	task::{synthetic_dataset, Optimizer, TrainingSpec},
};

type B = Autodiff<NdArray<f32>>;

/// The largest difference allowed, relative to the largest magnitude of the gradient (and of
/// the loss). The two sides round differently (fused vs separate multiply-add, summation
/// order, polynomial vs platform `exp`/`ln`); measured here: at most 1.5e-7.
const TOLERANCE: f32 = 1e-5;

fn tensor(m: &Matrix) -> Tensor<B, 2> {
	Tensor::from_data(
		TensorData::new(m.data.clone(), [m.rows as usize, m.cols as usize]),
		&Default::default(),
	)
}

fn values(t: Tensor<NdArray<f32>, 2>) -> Vec<f32> {
	t.into_data().to_vec::<f32>().expect("f32 data")
}

fn check(widths: &[u32], batch: u32) {
	let classes = *widths.last().unwrap();
	let data = synthetic_dataset(11, 200, widths[0], classes);
	let sgd = Optimizer::sgd(0.1, 0.9);
	let spec = TrainingSpec::example_mlp(widths, sgd, batch).on_dataset(&data);
	let program = step_program(&spec).unwrap();
	let state = initial_state(&spec, &program).unwrap();
	let run = StepRun::new(&spec, 0, state.clone(), &data).unwrap();
	let (x, labels) = verified_batch(&spec, 0, &run.samples).unwrap();

	// Our gradient of parameter `i` is the second input of its momentum update.
	let ours: Vec<&Matrix> = program
		.ops
		.iter()
		.filter(|op| op.kind == OpKind::Momentum)
		.map(|op| match op.inputs[1] {
			Source::Op(g) => &run.outputs[g as usize],
			s => panic!("a gradient from {s:?}"),
		})
		.collect();
	let layers = widths.len() - 1;
	assert_eq!(ours.len(), 2 * layers);

	// The same forward pass and loss in burn, differentiated by autodiff.
	let params: Vec<Tensor<B, 2>> =
		state[..2 * layers].iter().map(|m| tensor(m).require_grad()).collect();
	let mut a = tensor(&x);
	for l in 0..layers {
		let z = a.matmul(params[2 * l].clone()) + params[2 * l + 1].clone();
		a = if l + 1 < layers { activation::relu(z) } else { z };
	}
	let mut one_hot = vec![0.0f32; (batch * classes) as usize];
	for (r, y) in labels.iter().enumerate() {
		one_hot[r * classes as usize + *y as usize] = 1.0;
	}
	let y = Tensor::<B, 2>::from_data(
		TensorData::new(one_hot, [batch as usize, classes as usize]),
		&Default::default(),
	);
	let loss = (activation::log_softmax(a, 1) * y).sum_dim(1).mean().neg();
	let grads = loss.backward();

	// The reported loss agrees too.
	let loss_ours = program.ops.iter().position(|op| op.kind == OpKind::Mean).unwrap();
	let loss_burn = loss.into_data().to_vec::<f32>().unwrap()[0];
	let loss_ours = run.outputs[loss_ours].data[0];
	assert!(
		(loss_ours - loss_burn).abs() <= TOLERANCE * loss_burn.abs(),
		"{widths:?}: loss {loss_ours} vs burn {loss_burn}"
	);

	for (i, (p, ours)) in params.iter().zip(&ours).enumerate() {
		let theirs = values(p.grad(&grads).expect("a gradient"));
		assert_eq!(theirs.len(), ours.data.len(), "{widths:?} parameter {i}");
		let scale = theirs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
		let worst = ours.data.iter().zip(&theirs).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
		assert!(scale > 0.0, "{widths:?} parameter {i}: an all-zero gradient proves nothing");
		assert!(
			worst <= TOLERANCE * scale,
			"{widths:?} parameter {i}: differs by {worst} at a scale of {scale}"
		);
	}
}

#[test]
fn backward_programs_match_burn_autodiff() {
	check(&[6, 5, 3], 8);
	check(&[6, 5, 4, 3], 16);
	check(&[64, 32, 10], 32);
	check(&[20, 50, 50, 50, 7], 24);
}
