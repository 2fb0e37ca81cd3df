#![allow(
	clippy::unwrap_used,
	clippy::expect_used,
	clippy::arithmetic_side_effects,
	clippy::indexing_slicing
)]

use super::*;
use crate::{
	commit::tensor_hash,
	program::initial_state,
	referee::StepRun,
	repops::SplitMix64,
	task::{synthetic_dataset, Optimizer},
};

fn matrix(rows: u32, cols: u32, seed: u64) -> Matrix {
	let mut rng = SplitMix64::new(seed);
	Matrix::new(rows, cols, (0..rows * cols).map(|_| rng.next_unit()).collect()).unwrap()
}

/// Plays a descent between `a` and `b` along `axis` as the chain does.
fn descend(a: &Matrix, b: &Matrix, axis: Axis) -> u32 {
	let (ta, tb) = (LineTree::new(a, axis), LineTree::new(b, axis));
	let leaves = TensorOpening::of(a).lines(axis).0;
	let mut c = Cursor::root(leaves);
	let (mut na, mut nb) = (ta.root(), tb.root());
	while !c.is_leaf() {
		let (al, ar) = ta.children(c).unwrap();
		let (bl, br) = tb.children(c).unwrap();
		assert_eq!(inner_node(&al, &ar), na);
		assert_eq!(inner_node(&bl, &br), nb);
		let right = al == bl;
		c = c.child(right, leaves);
		(na, nb) = (ta.node(c).unwrap(), tb.node(c).unwrap());
	}
	assert_ne!(na, nb);
	assert_eq!(na, BlakeTwo256::hash(&line_leaf(axis, c.index, &line(a, axis, c.index))));
	c.index
}

#[test]
fn line_trees_are_the_commitment_trees_and_descents_find_the_first_difference() {
	for rows in 1..=13u32 {
		for cols in [1u32, 2, 3, 7] {
			let a = matrix(rows, cols, u64::from(rows * 100 + cols));
			let o = TensorOpening::of(&a);
			assert_eq!(o.hash(), tensor_hash(&a));
			assert_eq!(LineTree::new(&a, Axis::Rows).root(), o.row_root);
			assert_eq!(LineTree::new(&a, Axis::Columns).root(), o.col_root);
			for bad in 0..rows {
				let mut b = a.clone();
				// This row and every later one differ: the descent names the first.
				for r in bad..rows {
					b.data[(r * cols) as usize] += 1.0;
				}
				assert_eq!(descend(&a, &b, Axis::Rows), bad, "{rows}x{cols} row {bad}");
			}
			for bad in 0..cols {
				let mut b = a.clone();
				b.data[((rows - 1) * cols + bad) as usize] += 1.0;
				assert_eq!(descend(&a, &b, Axis::Columns), bad, "{rows}x{cols} col {bad}");
			}
		}
	}
}

fn run(optimizer: Optimizer) -> (TrainingSpec, StepRun) {
	let data = synthetic_dataset(3, 30, 5, 3);
	let spec = TrainingSpec::example_mlp(&[5, 4, 3], optimizer, 6).on_dataset(&data);
	run_on(spec, &data)
}

/// A regression (mean squared error on real-valued targets) after one step.
fn regression(optimizer: Optimizer) -> (TrainingSpec, StepRun) {
	let data = crate::task::synthetic_regression(3, 30, 5);
	let spec = TrainingSpec::example_regression(&[5, 4, 1], optimizer, 6).on_dataset(&data);
	run_on(spec, &data)
}

/// The small CNN of the program's tests (every image operation) after one step.
fn cnn(loss: crate::task::Loss, optimizer: Optimizer) -> (TrainingSpec, StepRun) {
	let spec = program::tests::small_cnn(loss, optimizer, 4);
	let data = match loss {
		crate::task::Loss::SoftmaxCrossEntropy => synthetic_dataset(3, 30, 50, 3),
		crate::task::Loss::MeanSquaredError => crate::task::synthetic_regression(3, 30, 50),
	};
	let spec = spec.on_dataset(&data);
	run_on(spec, &data)
}

/// The small net of the program's tests with a residual block, layer normalization, GELU and
/// dropout, after one step.
fn mixed(loss: crate::task::Loss, optimizer: Optimizer) -> (TrainingSpec, StepRun) {
	let spec = program::tests::small_mixed(loss, optimizer, 5);
	let data = match loss {
		crate::task::Loss::SoftmaxCrossEntropy => synthetic_dataset(3, 30, 6, 3),
		crate::task::Loss::MeanSquaredError => crate::task::synthetic_regression(3, 30, 6),
	};
	let spec = spec.on_dataset(&data);
	run_on(spec, &data)
}

/// The small transformer of the program's tests (embedding, attention, the per-token loss)
/// after one step.
fn transformer(optimizer: Optimizer) -> (TrainingSpec, StepRun) {
	let spec = program::tests::small_transformer(optimizer, 3);
	let data = crate::task::synthetic_tokens(3, 30, 4, 5);
	let spec = spec.on_dataset(&data);
	run_on(spec, &data)
}

/// `(spec, data)`'s spec with gradient clipping at a norm that clips.
fn clipped(
	(mut spec, run): (TrainingSpec, StepRun),
	data: &[(Vec<f32>, u32)],
) -> (TrainingSpec, StepRun) {
	drop(run);
	spec.max_grad_norm = Some(crate::task::F32Bits::from_f32(0.01));
	run_on(spec, data)
}

fn run_on(spec: TrainingSpec, data: &[(Vec<f32>, u32)]) -> (TrainingSpec, StepRun) {
	let program = program::step_program(&spec).unwrap();
	let s0 = initial_state(&spec, &program).unwrap();
	let first = StepRun::new(&spec, 0, s0, data).unwrap();
	(spec.clone(), StepRun::new(&spec, 1, first.next, data).unwrap())
}

#[test]
fn every_element_of_every_operation_is_recomputed_bit_for_bit() {
	let adam = Optimizer::adam(0.01);
	let sgd = Optimizer::sgd(0.1, 0.9);
	use crate::task::Loss::*;
	for (spec, run) in [
		run(sgd),
		run(adam),
		regression(sgd),
		regression(adam),
		cnn(SoftmaxCrossEntropy, adam),
		cnn(MeanSquaredError, sgd),
		mixed(SoftmaxCrossEntropy, Optimizer::adamw(0.01, 0.05)),
		mixed(MeanSquaredError, sgd),
		transformer(Optimizer::adamw(0.01, 0.05)),
		transformer(sgd),
		// Gradient clipping: its row sums, its factor (every gradient's column of sums) and
		// the scaled gradients.
		clipped(run(adam), &synthetic_dataset(3, 30, 5, 3)),
		clipped(transformer(sgd), &crate::task::synthetic_tokens(3, 30, 4, 5)),
	] {
		let trace = run.op_trace();
		let pre = crate::commit::state_hash(&run.state);
		for (j, op) in run.program.ops.iter().enumerate() {
			let link = if j == 0 { pre } else { trace.links[j - 1] };
			for r in 0..op.rows {
				for c in 0..op.cols {
					let ev = element_evidence(&run, &spec, j as u32, (r, c)).unwrap();
					let got = element_value(&spec, 1, j as u32, (r, c), &pre, &link, &ev)
						.unwrap_or_else(|e| panic!("op {j} {:?} ({r}, {c}): {e:?}", op.kind));
					let want = run.outputs[j].data[(r * op.cols + c) as usize].to_bits();
					assert_eq!(got, want, "op {j} {:?} ({r}, {c})", op.kind);
				}
			}
		}
	}
}

#[test]
fn element_evidence_that_does_not_match_is_refused() {
	let (spec, run) = run(Optimizer::sgd(0.1, 0.9));
	let trace = run.op_trace();
	let pre = crate::commit::state_hash(&run.state);
	// Op 3 is layer 2's matmul: a row of op 2's output and a column of state tensor 2.
	let (j, rc, link) = (3u32, (2, 1), trace.links[2]);
	let good = element_evidence(&run, &spec, j, rc).unwrap();
	assert!(element_value(&spec, 1, j, rc, &pre, &link, &good).is_ok());
	let check = |ev: &ElementEvidence| element_value(&spec, 1, j, rc, &pre, &link, ev);
	let mut ev = good.clone();
	ev.inputs[0].values[0] ^= 1;
	assert_eq!(check(&ev), Err(RefereeError::WrongInput));
	let mut ev = good.clone();
	ev.inputs[1].opening.col_root = H256::repeat_byte(1);
	assert_eq!(check(&ev), Err(RefereeError::WrongInput));
	let mut ev = good.clone();
	ev.inputs.swap(0, 1);
	assert_eq!(check(&ev), Err(RefereeError::WrongInput));
	// Another element's lines.
	let other = element_evidence(&run, &spec, j, (1, 1)).unwrap();
	assert_eq!(check(&other), Err(RefereeError::WrongInput));
	assert_eq!(
		element_value(&spec, 1, j, (99, 0), &pre, &link, &good),
		Err(RefereeError::NoSuchOperation)
	);
	// A batch row from the wrong sample.
	let ev0 = element_evidence(&run, &spec, 0, (1, 0)).unwrap();
	assert_eq!(ev0.samples.len(), 1);
	assert!(element_value(&spec, 1, 0, (1, 0), &pre, &pre, &ev0).is_ok());
	assert_eq!(element_value(&spec, 1, 0, (2, 0), &pre, &pre, &ev0), Err(RefereeError::WrongBatch));
}

/// A convolution's weight gradient reads every sample's image and every row of the output
/// gradient: its evidence is every row of the one, and every sample for the first layer.
#[test]
fn a_convolutions_weight_gradient_reads_every_row() {
	let (spec, run) = cnn(crate::task::Loss::SoftmaxCrossEntropy, Optimizer::sgd(0.1, 0.9));
	let pre = crate::commit::state_hash(&run.state);
	let trace = run.op_trace();
	let dw: Vec<usize> = (0..run.program.ops.len())
		.filter(|j| matches!(run.program.ops[*j].kind, OpKind::Conv2dWeightGrad(_)))
		.collect();
	// The second convolution's (reads op outputs), then the first's (reads the batch).
	assert_eq!(dw.len(), 2);
	let second = element_evidence(&run, &spec, dw[0] as u32, (1, 2)).unwrap();
	assert_eq!((second.inputs.len(), second.samples.len()), (8, 0));
	let first = element_evidence(&run, &spec, dw[1] as u32, (1, 2)).unwrap();
	assert_eq!((first.inputs.len(), first.samples.len()), (4, 4));
	// One row of the output gradient withheld, or one sample: refused.
	let link = trace.links[dw[1] - 1];
	let mut short = first.clone();
	short.inputs.pop();
	assert_eq!(
		element_value(&spec, 1, dw[1] as u32, (1, 2), &pre, &link, &short),
		Err(RefereeError::WrongInput)
	);
	let mut short = first.clone();
	short.samples.pop();
	assert_eq!(
		element_value(&spec, 1, dw[1] as u32, (1, 2), &pre, &link, &short),
		Err(RefereeError::WrongBatch)
	);
	assert!(element_value(&spec, 1, dw[1] as u32, (1, 2), &pre, &link, &first).is_ok());
}
