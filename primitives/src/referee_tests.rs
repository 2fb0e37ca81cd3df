#![allow(
	clippy::unwrap_used,
	clippy::expect_used,
	clippy::arithmetic_side_effects,
	clippy::indexing_slicing
)]

use super::*;
use crate::{
	program::initial_state,
	task::{synthetic_dataset, Optimizer},
};

fn adam() -> Optimizer {
	Optimizer::adam(0.01)
}

fn sgd() -> Optimizer {
	Optimizer::sgd(0.1, 0.9)
}

/// A three-layer MLP after one step from initialization, and the run of step 1.
fn run(optimizer: Optimizer) -> (TrainingSpec, StepRun) {
	let data = synthetic_dataset(7, 40, 6, 3);
	let spec = TrainingSpec::example_mlp(&[6, 5, 4, 3], optimizer, 8).on_dataset(&data);
	run_on(spec, &data)
}

/// A regression (mean squared error on real-valued targets) after one step.
fn regression(optimizer: Optimizer) -> (TrainingSpec, StepRun) {
	let data = crate::task::synthetic_regression(7, 40, 6);
	let spec = TrainingSpec::example_regression(&[6, 5, 4, 1], optimizer, 8).on_dataset(&data);
	run_on(spec, &data)
}

fn run_on(spec: TrainingSpec, data: &[(Vec<f32>, u32)]) -> (TrainingSpec, StepRun) {
	let program = program::step_program(&spec).unwrap();
	let s0 = initial_state(&spec, &program).unwrap();
	let first = StepRun::new(&spec, 0, s0, data).unwrap();
	(spec.clone(), StepRun::new(&spec, 1, first.next, data).unwrap())
}

#[test]
fn every_operation_is_recomputed_to_its_true_hash() {
	for (spec, run) in [run(sgd()), run(adam()), regression(sgd()), regression(adam())] {
		let pre = state_hash(&run.state);
		let trace = run.op_trace();
		for j in 0..run.program.ops.len() as u32 {
			let link = if j == 0 { pre } else { trace.links[j as usize - 1] };
			let ev = run.evidence(j).unwrap();
			let out = operation_output(&spec, 1, j, &pre, &link, &ev).unwrap();
			assert_eq!(out, trace.outputs[j as usize], "operation {j}");
		}
		let last = *trace.links.last().unwrap();
		assert_eq!(
			post_state(&spec, &pre, &last, &run.output_hashes()).unwrap(),
			state_hash(&run.next)
		);
	}
}

#[test]
fn evidence_that_does_not_match_the_agreed_trace_is_refused() {
	let (spec, run) = run(adam());
	let pre = state_hash(&run.state);
	let trace = run.op_trace();
	// Operation 3 is layer 2's matmul: it reads op 2's output and state tensor 2.
	let j = 3u32;
	let link = trace.links[2];
	let good = run.evidence(j).unwrap();
	assert!(operation_output(&spec, 1, j, &pre, &link, &good).is_ok());

	let mut ev = good.clone();
	ev.inputs[0].bits[0] ^= 1;
	assert_eq!(operation_output(&spec, 1, j, &pre, &link, &ev), Err(RefereeError::WrongInput));
	let mut ev = good.clone();
	ev.inputs.swap(0, 1);
	assert_eq!(operation_output(&spec, 1, j, &pre, &link, &ev), Err(RefereeError::WrongInput));
	let mut ev = good.clone();
	ev.inputs.pop();
	assert_eq!(operation_output(&spec, 1, j, &pre, &link, &ev), Err(RefereeError::WrongInput));
	let mut ev = good.clone();
	ev.inputs.push(ev.inputs[0].clone());
	assert_eq!(operation_output(&spec, 1, j, &pre, &link, &ev), Err(RefereeError::WrongInput));
	let mut ev = good.clone();
	ev.outputs[1] = H256::repeat_byte(1);
	assert_eq!(operation_output(&spec, 1, j, &pre, &link, &ev), Err(RefereeError::BrokenChain));
	let mut ev = good.clone();
	ev.state[0] = H256::repeat_byte(1);
	assert_eq!(operation_output(&spec, 1, j, &pre, &link, &ev), Err(RefereeError::WrongState));
	// The wrong agreed link, or another operation index.
	assert_eq!(
		operation_output(&spec, 1, j, &pre, &trace.links[3], &good),
		Err(RefereeError::BrokenChain)
	);
	assert_eq!(
		operation_output(&spec, 1, 999, &pre, &link, &good),
		Err(RefereeError::NoSuchOperation)
	);

	// The first matmul reads the batch: samples from another step, or relabelled, fail.
	let ev0 = run.evidence(0).unwrap();
	assert_eq!(ev0.samples.len(), 8);
	assert!(operation_output(&spec, 1, 0, &pre, &pre, &ev0).is_ok());
	assert_eq!(operation_output(&spec, 2, 0, &pre, &pre, &ev0), Err(RefereeError::WrongBatch));
	let mut ev = ev0.clone();
	ev.samples[3].label = (ev.samples[3].label + 1) % 3;
	assert_eq!(operation_output(&spec, 1, 0, &pre, &pre, &ev), Err(RefereeError::WrongBatch));
	let mut ev = ev0;
	ev.samples.pop();
	assert_eq!(operation_output(&spec, 1, 0, &pre, &pre, &ev), Err(RefereeError::WrongBatch));

	// The assembly: all outputs, chained to the last agreed link.
	let last = *trace.links.last().unwrap();
	let mut outs = run.output_hashes();
	outs.pop();
	assert_eq!(post_state(&spec, &pre, &last, &outs), Err(RefereeError::BrokenChain));
}

#[test]
fn operations_beyond_the_leaf_bound_are_refused_before_any_work() {
	let data = synthetic_dataset(1, 4, 4, 2);
	let spec = TrainingSpec::example_mlp(&[4, 4096, 4096, 2], sgd(), 4).on_dataset(&data);
	let program = program::step_program(&spec).unwrap();
	// Layer 2's matmul: 4 x 4096 times 4096 x 4096 is 2^26 multiply-adds.
	let op = &program.ops[3];
	assert_eq!(op.kind, OpKind::MatMul);
	assert!(!fits_leaf(&spec, &program, op));
	let pre = H256::zero();
	assert_eq!(
		operation_output(&spec, 0, 3, &pre, &pre, &OpEvidence::default()),
		Err(RefereeError::TooLarge)
	);
	// Every operation of a small model fits.
	let small = TrainingSpec::example_mlp(&[6, 5, 4, 3], sgd(), 8);
	let p = program::step_program(&small).unwrap();
	assert!(p.ops.iter().all(|op| fits_leaf(&small, &p, op)));
}

#[test]
fn a_fault_changes_its_operation_and_everything_after_it() {
	let data = synthetic_dataset(7, 40, 6, 3);
	let mut spec = TrainingSpec::example_mlp(&[6, 5, 4, 3], sgd(), 8).on_dataset(&data);
	spec.steps = 3;
	let honest = TraceRun::new(&spec, &data, None).unwrap();
	assert_eq!(honest.states.len(), 4);
	assert_eq!(honest.states[3], state_hash(&honest.steps[2].next));
	let faulty = TraceRun::new(&spec, &data, Some(Fault { step: 1, op: 3 })).unwrap();
	assert_eq!(faulty.states[..2], honest.states[..2]);
	assert!(faulty.states[2..].iter().zip(&honest.states[2..]).all(|(a, b)| a != b));
	let (h, f) = (honest.steps[1].op_trace(), faulty.steps[1].op_trace());
	assert_eq!(h.outputs[..3], f.outputs[..3]);
	assert_ne!(h.outputs[3], f.outputs[3]);
}
