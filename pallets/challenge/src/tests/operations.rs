//! The operator-level game on the mock market with real training: a three-layer MLP trained
//! with Adam on a synthetic dataset, where one side alters one operation's output in one step
//! (and computes everything after it from the altered value, as a consistent liar would). Step
//! bisection finds the step, operator bisection the operation, and the chain re-executes it
//! with the reference operators and rules for the honest side, for every operation of the
//! step and both liars.

use super::*;
use crate::OpStage;
use trainet_primitives::{
	commit::{op_root, state_hash, OpTrace},
	descent::{
		element_evidence, element_partials, line, term_evidence, DescentAnswer, LineTree,
		TensorOpening,
	},
	market::OpGame,
	program,
	referee::{Fault, LeafBound, OpEvidence, StepRun, TraceRun},
	settle,
	task::{synthetic_dataset, Optimizer, TrainingSpec},
};

type Dataset = Vec<(Vec<f32>, u32)>;

const STEPS: u32 = 3;
/// The step the liar lies in.
const BAD_STEP: u32 = 1;

fn task_spec() -> (TrainingSpec, Dataset) {
	let data = synthetic_dataset(7, 40, 6, 3);
	let adam = Optimizer::adam(0.01);
	let mut spec = TrainingSpec::example_mlp(&[6, 5, 4, 3], adam, 8).on_dataset(&data);
	spec.steps = STEPS;
	(spec, data)
}

/// [`task_spec`] with gradient clipping by global norm, at a norm that clips every step.
fn clipped_spec() -> (TrainingSpec, Dataset) {
	let (mut spec, data) = task_spec();
	spec.max_grad_norm = Some(trainet_primitives::task::F32Bits::from_f32(0.01));
	(spec, data)
}

/// A regression: mean squared error against real-valued targets, one output.
fn regression_spec() -> (TrainingSpec, Dataset) {
	let data = trainet_primitives::task::synthetic_regression(7, 40, 6);
	let sgd = Optimizer::sgd(0.05, 0.9);
	let mut spec = TrainingSpec::example_regression(&[6, 5, 4, 1], sgd, 8).on_dataset(&data);
	spec.steps = STEPS;
	(spec, data)
}

/// A small CNN on 6 x 5 images of 2 channels: every image operation (a strided, padded
/// convolution, overlapping max and average pools, a second convolution, a dense layer).
fn cnn_spec() -> (TrainingSpec, Dataset) {
	use trainet_primitives::{
		repops::image::ImageShape,
		task::{Layer, Layers, Loss, Model},
	};
	let data = synthetic_dataset(7, 40, 60, 3);
	let layers = vec![
		Layer::Conv2d { out_channels: 3, kernel: 3, stride: 2, padding: 1 },
		Layer::Relu,
		Layer::MaxPool2d { kernel: 2, stride: 1 },
		Layer::Conv2d { out_channels: 2, kernel: 2, stride: 1, padding: 1 },
		Layer::AvgPool2d { kernel: 2, stride: 1 },
		Layer::Flatten,
		Layer::Linear { out: 3 },
	];
	let model = Model::Graph {
		input: ImageShape { channels: 2, height: 6, width: 5 },
		layers: Layers::truncate_from(layers),
	};
	let adam = Optimizer::adam(0.01);
	let spec = TrainingSpec::example_graph(model, Loss::SoftmaxCrossEntropy, adam, 4);
	let mut spec = spec.on_dataset(&data);
	spec.steps = STEPS;
	(spec, data)
}

/// A net with a residual block of layer normalization, a dense layer and GELU, then dropout,
/// trained with AdamW.
fn mixed_spec() -> (TrainingSpec, Dataset) {
	use trainet_primitives::{
		repops::image::ImageShape,
		task::{F32Bits, Layer, Layers, Loss, Model},
	};
	let data = synthetic_dataset(7, 40, 6, 3);
	let layers = vec![
		Layer::Linear { out: 5 },
		Layer::Residual { layers: 3 },
		Layer::LayerNorm,
		Layer::Linear { out: 5 },
		Layer::Gelu,
		Layer::Dropout { p: F32Bits::from_f32(0.25) },
		Layer::Linear { out: 3 },
	];
	let model = Model::Graph { input: ImageShape::flat(6), layers: Layers::truncate_from(layers) };
	let adamw = Optimizer::adamw(0.01, 0.05);
	let spec = TrainingSpec::example_graph(model, Loss::SoftmaxCrossEntropy, adamw, 8);
	let mut spec = spec.on_dataset(&data);
	spec.steps = STEPS;
	(spec, data)
}

/// A one-block transformer on token sequences (vocabulary 6, context 4): embeddings, an
/// attention block of two heads and an MLP block, the per-token loss, AdamW.
fn transformer_spec() -> (TrainingSpec, Dataset) {
	use trainet_primitives::{
		repops::image::ImageShape,
		task::{synthetic_tokens, Layer, Layers, Loss, Model},
	};
	let data = synthetic_tokens(7, 40, 4, 6);
	let layers = vec![
		Layer::Embedding { vocab: 6, dim: 8 },
		Layer::Residual { layers: 4 },
		Layer::LayerNorm,
		Layer::Linear { out: 24 },
		Layer::Attention { heads: 2 },
		Layer::Linear { out: 8 },
		Layer::Residual { layers: 4 },
		Layer::LayerNorm,
		Layer::Linear { out: 12 },
		Layer::Gelu,
		Layer::Linear { out: 8 },
		Layer::Linear { out: 6 },
	];
	let model = Model::Graph { input: ImageShape::flat(5), layers: Layers::truncate_from(layers) };
	let adamw = Optimizer::adamw(0.01, 0.05);
	let spec = TrainingSpec::example_graph(model, Loss::SoftmaxCrossEntropy, adamw, 3);
	let mut spec = spec.on_dataset(&data);
	spec.steps = STEPS;
	(spec, data)
}

/// A task's spec and dataset.
type Task = fn() -> (TrainingSpec, Dataset);

/// How a side runs the bad step.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Lie {
	/// Honestly.
	None,
	/// Alters operation `j`'s output and goes on from it ([`StepRun::with_fault`]).
	Operation(u32),
	/// Alters only the last value of operation `j`'s output and goes on from it.
	LastValue(u32),
	/// Computes every operation honestly but commits a next state with one value changed.
	Assembly,
	/// Commits a wrong next state, and an op trace whose leaves from `j` on name other
	/// outputs without re-chaining the links (leaves that do not follow from the one before).
	Unchained(u32),
}

/// A side's whole run: its state trace, and its run and op trace of the bad step.
struct Side {
	states: Vec<H256>,
	bad: StepRun,
	ops: OpTrace,
}

fn side(spec: &TrainingSpec, data: &Dataset, lie: Lie) -> Side {
	let fault = match lie {
		Lie::Operation(op) => Some(Fault { step: BAD_STEP, op }),
		_ => None,
	};
	let mut run = TraceRun::new(spec, data, fault).unwrap();
	assert_eq!(real_final(spec, &run.steps.last().unwrap().next), *run.states.last().unwrap());
	let mut bad = run.steps.swap_remove(BAD_STEP as usize);
	let mut states = run.states;
	if let Lie::LastValue(j) = lie {
		bad = last_value_altered(spec, &bad, j);
		let mut state = bad.next.clone();
		states.truncate(BAD_STEP as usize + 1);
		states.push(state_hash(&state));
		for t in BAD_STEP + 1..STEPS {
			state = StepRun::new(spec, t, state, data).unwrap().next;
			states.push(state_hash(&state));
		}
		real_final(spec, &state);
	}
	if matches!(lie, Lie::Assembly | Lie::Unchained(_)) {
		// The next state with one value changed, and the rest of the run from it.
		let mut next = bad.next.clone();
		next[0].data[0] += 1.0;
		let mut state = next;
		states.truncate(BAD_STEP as usize + 1);
		states.push(state_hash(&state));
		for t in BAD_STEP + 1..STEPS {
			state = StepRun::new(spec, t, state, data).unwrap().next;
			states.push(state_hash(&state));
		}
		real_final(spec, &state);
	}
	let mut ops = bad.op_trace();
	if let Lie::Unchained(j) = lie {
		for k in j as usize..ops.outputs.len() {
			ops.outputs[k] = H256::from_low_u64_be(0xee00 + k as u64);
		}
		ops.root = op_root(&ops.outputs, &ops.links);
	}
	Side { states, bad, ops }
}

/// `run` again with only the last value of operation `j`'s output altered.
fn last_value_altered(spec: &TrainingSpec, run: &StepRun, j: u32) -> StepRun {
	let (batch, labels) =
		trainet_primitives::referee::verified_batch(spec, BAD_STEP, &run.samples).unwrap();
	let mut n = 0;
	let (outputs, next) = program::run_step_with(&run.program, &run.state, &batch, |op, inputs| {
		let mut out = program::execute(spec, op, inputs, &labels, BAD_STEP)?;
		if n == j {
			*out.data.last_mut().unwrap() += 0.25;
		}
		n += 1;
		Ok(out)
	})
	.unwrap();
	StepRun { outputs, next, ..run.clone() }
}

fn game(id: u64) -> Option<OpGame> {
	match Disputes::<Test>::get(id)?.phase {
		DisputePhase::Operations(g) => Some(g),
		_ => None,
	}
}

/// Posts the task, lets solver 10 commit `solver.states`, challenger 20 dispute with
/// `challenger.states`, and plays the step bisection to the operator-level game.
fn to_operations(spec: &TrainingSpec, solver: &Side, challenger: &Side) -> u64 {
	play_operations();
	let id = to_leaf(spec, &solver.states, &challenger.states);
	let g = game(id).expect("a disputed step goes to the operator-level game");
	assert_eq!(g.step, BAD_STEP);
	assert_eq!(g.ops as usize, solver.bad.program.ops.len());
	assert_eq!(g.agreed_link, solver.states[BAD_STEP as usize]);
	id
}

/// Commits both op-trace roots and plays the operator bisection until it stops at an
/// operation or the assembly (or the dispute ends). Returns the rounds played.
fn play_ops(id: u64, solver: &Side, challenger: &Side) -> u32 {
	let d = Disputes::<Test>::get(id).unwrap();
	assert_ok!(Challenge::commit_ops(RuntimeOrigin::signed(10), id, solver.ops.root));
	assert_eq!(game(id).unwrap().stage(), OpStage::Committing);
	assert_ok!(Challenge::commit_ops(RuntimeOrigin::signed(20), id, challenger.ops.root));
	check_invariants(System::block_number());
	let mut rounds = 0;
	while let Some(OpStage::Revealing(mid)) = game(id).map(|g| g.stage()) {
		for (who, side) in [(d.solver, solver), (d.challenger, challenger)] {
			assert_ok!(Challenge::reveal_op(
				RuntimeOrigin::signed(who),
				id,
				mid,
				side.ops.proof(mid - 1).unwrap()
			));
		}
		rounds += 1;
		check_invariants(System::block_number());
	}
	rounds
}

fn settled(id: u64) -> Option<H256> {
	System::events().into_iter().find_map(|r| match r.event {
		RuntimeEvent::Challenge(Event::OperationSettled { dispute, truth }) if dispute == id => {
			Some(truth)
		}
		_ => None,
	})
}

/// One dispute where `liar` tells `lie` in the bad step; the honest side settles.
fn operation_case(liar: Party, lie: Lie) {
	operation_case_of(task_spec, liar, lie)
}

/// [`operation_case`] on the task `task` makes.
fn operation_case_of(task: Task, liar: Party, lie: Lie) {
	new_test_ext().execute_with(|| {
		let (spec, data) = task();
		let issuance = Balances::total_issuance();
		let honest = side(&spec, &data, Lie::None);
		let lying = side(&spec, &data, lie);
		let ctx = format!("liar {liar:?} lie {lie:?}");
		let (solver, challenger) = roles(liar, &lying, &honest);
		let id = to_operations(&spec, solver, challenger);
		let ops = honest.bad.program.ops.len() as u32;
		let rounds = play_ops(id, solver, challenger);
		assert!(rounds <= Bisection::max_rounds(ops), "{ctx}: {rounds} rounds");
		match lie {
			Lie::Operation(j) => {
				let g = game(id).unwrap();
				assert_eq!(g.stage(), OpStage::Operation(j), "{ctx}");
				// Evidence for another operation, or tampered, is refused.
				let other = honest.bad.evidence((j + 1) % ops).unwrap();
				assert!(Challenge::settle_op(RuntimeOrigin::signed(99), id, other).is_err());
				let mut ev = honest.bad.evidence(j).unwrap();
				if let Some(t) = ev.inputs.first_mut() {
					t.bits[0] ^= 1;
					assert_noop!(
						Challenge::settle_op(RuntimeOrigin::signed(99), id, ev),
						Error::<Test>::EvidenceWrongInput
					);
				}
				// Anyone may settle with the honest run's evidence.
				assert_ok!(Challenge::settle_op(
					RuntimeOrigin::signed(99),
					id,
					honest.bad.evidence(j).unwrap()
				));
				assert_eq!(settled(id), Some(honest.ops.outputs[j as usize]), "{ctx}");
			}
			Lie::Assembly => {
				assert_eq!(game(id).unwrap().stage(), OpStage::Assembly, "{ctx}");
				let outputs = honest.bad.output_hashes();
				assert_ok!(Challenge::settle_op(
					RuntimeOrigin::signed(99),
					id,
					OpEvidence { outputs, ..Default::default() }
				));
				assert_eq!(settled(id), Some(honest.states[BAD_STEP as usize + 1]), "{ctx}");
			}
			Lie::Unchained(_) => {
				// Decided by the reveal itself, with no evidence.
				assert_eq!(settled(id), None, "{ctx}");
			}
			Lie::None | Lie::LastValue(_) => unreachable!(),
		}
		let (winner, how) = resolved(id).unwrap_or_else(|| panic!("{ctx}: unresolved"));
		assert_eq!((winner, how), (liar.other(), Resolution::Ruling), "{ctx}");
		assert!(Disputes::<Test>::get(id).is_none());
		// The liar's stake or bond was slashed: half to the winner, half burned.
		let slashed = if liar == Party::Solver { SOLVER_STAKE } else { BOND };
		assert_eq!(Balances::total_issuance(), issuance - (slashed - WINNER_SHARE * slashed));
		check_invariants(System::block_number());
	});
}

/// Plays [`operation_case_of`] on `task` for every operation of the bad step whose lie
/// reaches the state, with either side lying; returns the kinds of those skipped and the
/// indices of those played.
fn every_operation_of(task: Task) -> (Vec<program::OpKind>, Vec<u32>) {
	let (spec, data) = task();
	let honest = side(&spec, &data, Lie::None);
	let ops = honest.bad.program.ops.len() as u32;
	let (mut skipped, mut played) = (vec![], vec![]);
	for j in 0..ops {
		// The reported loss (per-row losses and their mean) reaches no state tensor: a lie
		// there changes nothing anyone commits to, so there is nothing to dispute.
		if side(&spec, &data, Lie::Operation(j)).states == honest.states {
			skipped.push(honest.bad.program.ops[j as usize].kind);
			continue;
		}
		played.push(j);
		for liar in [Party::Solver, Party::Challenger] {
			operation_case_of(task, liar, Lie::Operation(j));
		}
	}
	(skipped, played)
}

#[test]
fn an_altered_operation_loses_wherever_it_is_in_the_step() {
	let (skipped, _) = every_operation_of(task_spec);
	assert_eq!(skipped, vec![program::OpKind::SoftmaxXent, program::OpKind::Mean]);
}

/// A regression's step: a lie in any operation that reaches the state (its squared error's
/// gradient included) loses, settled whole and, with the leaf bound at nothing, element by
/// element.
#[test]
fn an_altered_operation_of_a_regression_loses_wherever_it_is_in_the_step() {
	let (spec, data) = regression_spec();
	let honest = side(&spec, &data, Lie::None);
	let (skipped, played) = every_operation_of(regression_spec);
	// After the whole-operation cases: the descent's leaf bound (a thread's setting) stays.
	let mut descended = 0;
	let mut descended_kinds = vec![];
	for &j in &played {
		// A change to one value that reaches no state tensor (a ReLU's zero) is no lie.
		if side(&spec, &data, Lie::LastValue(j)).states == honest.states {
			continue;
		}
		for liar in [Party::Solver, Party::Challenger] {
			descent_case_of(regression_spec, liar, Lie::LastValue(j));
		}
		descended += 1;
		descended_kinds.push(honest.bad.program.ops[j as usize].kind);
	}
	assert!(descended_kinds.contains(&program::OpKind::SquaredErrorBackward));
	assert!(descended * 2 > played.len(), "{descended} of {} operations descended", played.len());
	assert_eq!(skipped, vec![program::OpKind::SquaredError, program::OpKind::Mean]);
}

/// A CNN's step: a lie at any operation that reaches the state (every convolution, its
/// gradients, the pools and theirs) is played to the whole-operation leaf and loses, either
/// side lying; and, with the leaf bound at nothing, to one element of it (a convolution's
/// weight gradient reads every sample's image), where it loses again.
#[test]
fn an_altered_operation_of_a_cnn_loses_wherever_it_is_in_the_step() {
	use program::OpKind::*;
	let (spec, data) = cnn_spec();
	let honest = side(&spec, &data, Lie::None);
	let (skipped, played) = every_operation_of(cnn_spec);
	// Besides the reported loss, the logits' own operations may be skipped: the fault adds
	// 0.25 to every value, and the softmax of logits shifted by a constant is the same (here
	// to the bit), so nothing reaches the state.
	assert!(
		skipped.iter().all(|k| matches!(k, SoftmaxXent | Mean | MatMul | BiasAdd)),
		"{skipped:?}"
	);
	let kinds: Vec<_> = played.iter().map(|j| honest.bad.program.ops[*j as usize].kind).collect();
	for image in [
		|k: &program::OpKind| matches!(k, Conv2d(_)),
		|k: &program::OpKind| matches!(k, Conv2dInputGrad(_)),
		|k: &program::OpKind| matches!(k, Conv2dWeightGrad(_)),
		|k: &program::OpKind| matches!(k, ConvBiasGrad(_)),
		|k: &program::OpKind| matches!(k, MaxPool2d(_)),
		|k: &program::OpKind| matches!(k, MaxPool2dGrad(_)),
		|k: &program::OpKind| matches!(k, AvgPool2d(_)),
		|k: &program::OpKind| matches!(k, AvgPool2dGrad(_)),
	] {
		assert!(kinds.iter().any(image), "{kinds:?}");
	}
	let mut descended = vec![];
	for &j in &played {
		let kind = honest.bad.program.ops[j as usize].kind;
		if kind.element_terms(1).is_none() {
			continue;
		}
		// A change to one value that reaches no state tensor (under a max pool's loser, a
		// ReLU's zero) is no lie.
		if side(&spec, &data, Lie::LastValue(j)).states == honest.states {
			continue;
		}
		for liar in [Party::Solver, Party::Challenger] {
			descent_case_of(cnn_spec, liar, Lie::LastValue(j));
		}
		descended.push(kind);
	}
	assert!(descended.iter().any(|k| matches!(k, Conv2d(_))), "{descended:?}");
	assert!(descended.iter().any(|k| matches!(k, Conv2dWeightGrad(_))), "{descended:?}");
	assert!(descended.len() >= 5, "{descended:?}");
}

/// Layer normalization, GELU, a residual block's sums, dropout and AdamW: a lie at any of
/// their operations is played to the whole-operation leaf and loses, either side lying; and,
/// with the leaf bound at nothing, to one element, where it loses again (the scale's gradient
/// reads every row).
#[test]
fn an_altered_operation_of_a_normalized_residual_net_loses_wherever_it_is_in_the_step() {
	use program::OpKind::*;
	let (spec, data) = mixed_spec();
	let honest = side(&spec, &data, Lie::None);
	let (skipped, played) = every_operation_of(mixed_spec);
	assert!(
		skipped.iter().all(|k| matches!(k, SoftmaxXent | Mean | MatMul | BiasAdd)),
		"{skipped:?}"
	);
	let kinds: Vec<_> = played.iter().map(|j| honest.bad.program.ops[*j as usize].kind).collect();
	for kind in
		[Add, Gelu, GeluBackward, LayerNorm, LayerNormInputGrad, LayerNormGammaGrad, AdamWStep]
	{
		assert!(kinds.contains(&kind), "{kind:?} not played: {kinds:?}");
	}
	assert!(kinds.iter().any(|k| matches!(k, Dropout(_))), "{kinds:?}");
	assert!(kinds.iter().any(|k| matches!(k, DropoutGrad(_))), "{kinds:?}");
	let mut descended = vec![];
	for &j in &played {
		let kind = honest.bad.program.ops[j as usize].kind;
		let new = matches!(
			kind,
			Add | Gelu
				| GeluBackward
				| LayerNorm | LayerNormInputGrad
				| LayerNormGammaGrad
				| Dropout(_) | DropoutGrad(_)
				| AdamWStep
		);
		if !new || side(&spec, &data, Lie::LastValue(j)).states == honest.states {
			continue;
		}
		for liar in [Party::Solver, Party::Challenger] {
			descent_case_of(mixed_spec, liar, Lie::LastValue(j));
		}
		descended.push(kind);
	}
	for kind in [LayerNorm, LayerNormInputGrad, LayerNormGammaGrad, Gelu, AdamWStep] {
		assert!(descended.contains(&kind), "{kind:?} not descended: {descended:?}");
	}
}

/// A transformer's step: a lie at any operation that reaches the state (the embedding and
/// its tables' gradients, attention and its gradient, the per-token loss's gradient, the layer
/// norms) is played to the whole-operation leaf and loses, either side lying; and, with the
/// leaf bound at nothing, to one element (an attention element reads every row of its
/// sequence; the token table's gradient, every sample), where it loses again.
#[test]
fn an_altered_operation_of_a_transformer_loses_wherever_it_is_in_the_step() {
	use program::OpKind::*;
	let (spec, data) = transformer_spec();
	let honest = side(&spec, &data, Lie::None);
	let (skipped, played) = every_operation_of(transformer_spec);
	assert!(
		skipped.iter().all(|k| matches!(k, TokenXent(_) | Mean | MatMul | BiasAdd)),
		"{skipped:?}"
	);
	let kinds: Vec<_> = played.iter().map(|j| honest.bad.program.ops[*j as usize].kind).collect();
	for kind in [
		|k: &program::OpKind| matches!(k, Embed(_)),
		|k: &program::OpKind| matches!(k, EmbedGrad(_)),
		|k: &program::OpKind| matches!(k, PositionGrad(_)),
		|k: &program::OpKind| matches!(k, Attention(_)),
		|k: &program::OpKind| matches!(k, AttentionGrad(_)),
		|k: &program::OpKind| matches!(k, TokenXentBackward(_)),
		|k: &program::OpKind| matches!(k, LayerNorm),
	] {
		assert!(kinds.iter().any(kind), "{kinds:?}");
	}
	let mut descended = vec![];
	for &j in &played {
		let kind = honest.bad.program.ops[j as usize].kind;
		let new =
			matches!(
				kind,
				Embed(_)
					| EmbedGrad(_) | PositionGrad(_)
					| Attention(_) | AttentionGrad(_)
					| TokenXentBackward(_)
					| LayerNorm
			);
		if !new || side(&spec, &data, Lie::LastValue(j)).states == honest.states {
			continue;
		}
		for liar in [Party::Solver, Party::Challenger] {
			descent_case_of(transformer_spec, liar, Lie::LastValue(j));
		}
		descended.push(kind);
	}
	for kind in [
		|k: &program::OpKind| matches!(k, Attention(_)),
		|k: &program::OpKind| matches!(k, AttentionGrad(_)),
		|k: &program::OpKind| matches!(k, Embed(_)),
		|k: &program::OpKind| matches!(k, EmbedGrad(_)),
		|k: &program::OpKind| matches!(k, LayerNorm),
	] {
		assert!(descended.iter().any(kind), "{descended:?}");
	}
}

/// Gradient clipping: a lie at a gradient's row sums of squares, at the clipping factor or at
/// a scaled gradient is played to the whole-operation leaf and loses, either side lying; and,
/// with the leaf bound at nothing, to one element (the factor's reads every gradient's column
/// of row sums), where it loses again.
#[test]
fn an_altered_operation_of_a_clipped_step_loses_wherever_it_is_in_the_step() {
	use program::OpKind::*;
	let (spec, data) = clipped_spec();
	let honest = side(&spec, &data, Lie::None);
	let (skipped, played) = every_operation_of(clipped_spec);
	assert_eq!(skipped, vec![SoftmaxXent, Mean]);
	let clipping = |k: &program::OpKind| matches!(k, SumSquares | ClipCoefficient(_) | ClipScale);
	let mut descended = vec![];
	for &j in &played {
		let kind = honest.bad.program.ops[j as usize].kind;
		if !clipping(&kind) {
			continue;
		}
		assert_ne!(side(&spec, &data, Lie::LastValue(j)).states, honest.states, "{kind:?}");
		for liar in [Party::Solver, Party::Challenger] {
			descent_case_of(clipped_spec, liar, Lie::LastValue(j));
		}
		descended.push(kind);
	}
	let count = |k: fn(&program::OpKind) -> bool| descended.iter().filter(|d| k(d)).count();
	// Six parameter tensors: six row sums, one factor, six scaled gradients.
	assert_eq!(count(|k| *k == SumSquares), 6, "{descended:?}");
	assert_eq!(count(|k| matches!(k, ClipCoefficient(_))), 1, "{descended:?}");
	assert_eq!(count(|k| *k == ClipScale), 6, "{descended:?}");
}

#[test]
fn a_wrongly_assembled_next_state_loses() {
	operation_case(Party::Solver, Lie::Assembly);
	operation_case(Party::Challenger, Lie::Assembly);
}

#[test]
fn a_leaf_that_does_not_chain_from_the_agreed_one_loses_at_once() {
	for j in [0, 9, 20] {
		operation_case(Party::Solver, Lie::Unchained(j));
		operation_case(Party::Challenger, Lie::Unchained(j));
	}
}

#[test]
fn operator_calls_check_who_and_when() {
	new_test_ext().execute_with(|| {
		let (spec, data) = task_spec();
		let honest = side(&spec, &data, Lie::None);
		let lying = side(&spec, &data, Lie::Operation(3));
		let id = to_operations(&spec, &lying, &honest);
		let proof = honest.ops.proof(0).unwrap();
		assert_noop!(
			Challenge::commit_ops(RuntimeOrigin::signed(21), id, H256::zero()),
			Error::<Test>::NotAParty
		);
		assert_noop!(
			Challenge::reveal_op(RuntimeOrigin::signed(20), id, 1, proof.clone()),
			Error::<Test>::WrongStage
		);
		assert_noop!(
			Challenge::settle_op(RuntimeOrigin::signed(20), id, OpEvidence::default()),
			Error::<Test>::WrongStage
		);
		assert_ok!(Challenge::commit_ops(RuntimeOrigin::signed(20), id, honest.ops.root));
		assert_noop!(
			Challenge::commit_ops(RuntimeOrigin::signed(20), id, honest.ops.root),
			Error::<Test>::AlreadyCommitted
		);
		assert_ok!(Challenge::commit_ops(RuntimeOrigin::signed(10), id, lying.ops.root));
		let mid = match game(id).unwrap().stage() {
			OpStage::Revealing(mid) => mid,
			s => panic!("{s:?}"),
		};
		assert_noop!(
			Challenge::reveal_op(RuntimeOrigin::signed(20), id, mid + 1, proof.clone()),
			Error::<Test>::WrongPosition
		);
		// A proof of another leaf, or against the other side's root, fails.
		assert_noop!(
			Challenge::reveal_op(RuntimeOrigin::signed(20), id, mid, proof),
			Error::<Test>::BadProof
		);
		assert_noop!(
			Challenge::reveal_op(
				RuntimeOrigin::signed(10),
				id,
				mid,
				honest.ops.proof(mid - 1).unwrap()
			),
			Error::<Test>::BadProof
		);
		assert_ok!(Challenge::reveal_op(
			RuntimeOrigin::signed(20),
			id,
			mid,
			honest.ops.proof(mid - 1).unwrap()
		));
		assert_noop!(
			Challenge::reveal_op(
				RuntimeOrigin::signed(20),
				id,
				mid,
				honest.ops.proof(mid - 1).unwrap()
			),
			Error::<Test>::AlreadyRevealed
		);
		// Step-level calls are over.
		assert_noop!(
			Challenge::reveal(
				RuntimeOrigin::signed(10),
				id,
				2,
				trace_proof(&lying.states, 1).unwrap()
			),
			Error::<Test>::NotBisecting
		);
	});
}

/// `quitter` stops answering at `stage` ("commit", "reveal" or "settle"): it loses by
/// timeout (the challenger, when nobody settles).
fn quit_case(liar: Party, stage: &str) {
	new_test_ext().execute_with(|| {
		let (spec, data) = task_spec();
		let honest = side(&spec, &data, Lie::None);
		let lying = side(&spec, &data, Lie::Operation(5));
		let (solver, challenger) = roles(liar, &lying, &honest);
		let id = to_operations(&spec, solver, challenger);
		let d = Disputes::<Test>::get(id).unwrap();
		let honest_account = if liar == Party::Solver { d.challenger } else { d.solver };
		let honest_side = if liar == Party::Solver { challenger } else { solver };
		let expected = match stage {
			"commit" => {
				assert_ok!(Challenge::commit_ops(
					RuntimeOrigin::signed(honest_account),
					id,
					honest_side.ops.root
				));
				liar.other()
			}
			"reveal" => {
				for (who, s) in [(d.solver, solver), (d.challenger, challenger)] {
					assert_ok!(Challenge::commit_ops(RuntimeOrigin::signed(who), id, s.ops.root));
				}
				let OpStage::Revealing(mid) = game(id).unwrap().stage() else { panic!() };
				assert_ok!(Challenge::reveal_op(
					RuntimeOrigin::signed(honest_account),
					id,
					mid,
					honest_side.ops.proof(mid - 1).unwrap()
				));
				liar.other()
			}
			_ => {
				play_ops(id, solver, challenger);
				assert_eq!(game(id).unwrap().stage(), OpStage::Operation(5));
				Party::Solver
			}
		};
		run_to_block(Disputes::<Test>::get(id).unwrap().deadline);
		assert_eq!(resolved(id), Some((expected, Resolution::Timeout)), "{liar:?} {stage}");
	});
}

#[test]
fn whoever_stops_answering_in_the_operator_game_loses() {
	for liar in [Party::Solver, Party::Challenger] {
		quit_case(liar, "commit");
		quit_case(liar, "reveal");
	}
	// Nobody settles: the challenger, who must pursue its dispute, loses.
	quit_case(Party::Solver, "settle");
}

/// Both sides answer the element descent of dispute `id` from their own outputs until it
/// stops at an element (or ends). Returns the answers' rounds.
fn play_descent(id: u64, solver: &Side, challenger: &Side) -> u32 {
	let d = Disputes::<Test>::get(id).unwrap();
	let mut rounds = 0;
	while let Some(g) = game(id) {
		let walk = g.descent.as_ref().and_then(|x| x.walk.clone());
		for (who, side) in [(d.solver, solver), (d.challenger, challenger)] {
			let answer = match g.stage() {
				OpStage::Opening(j) => {
					DescentAnswer::Opening(TensorOpening::of(&side.bad.outputs[j as usize]))
				}
				OpStage::Descending { op, cursor } => {
					let tree =
						LineTree::new(&side.bad.outputs[op as usize], walk.clone().unwrap().axis);
					let (l, r) = tree.children(cursor).unwrap();
					DescentAnswer::Children(l, r)
				}
				OpStage::Line { op, axis, index } => DescentAnswer::Line(
					line(&side.bad.outputs[op as usize], axis, index).try_into().unwrap(),
				),
				_ => return rounds,
			};
			assert_ok!(Challenge::descend(RuntimeOrigin::signed(who), id, answer));
		}
		rounds += 1;
		check_invariants(System::block_number());
	}
	rounds
}

/// A dispute where every operation goes through the element descent (the leaf bound set to
/// nothing) and `liar` tells `lie`; the honest side settles the element.
fn descent_case(liar: Party, lie: Lie) {
	descent_case_of(task_spec, liar, lie)
}

/// [`descent_case`] on the task `task` makes.
fn descent_case_of(task: Task, liar: Party, lie: Lie) {
	new_test_ext().execute_with(|| {
		set_leaf_bound(LeafBound { values: 0, macs: 0 });
		let (spec, data) = task();
		let issuance = Balances::total_issuance();
		let honest = side(&spec, &data, Lie::None);
		let lying = side(&spec, &data, lie);
		let ctx = format!("liar {liar:?} lie {lie:?}");
		let (solver, challenger) = roles(liar, &lying, &honest);
		let (Lie::Operation(j) | Lie::LastValue(j)) = lie else { panic!("{ctx}") };
		let id = to_operations(&spec, solver, challenger);
		play_ops(id, solver, challenger);
		assert_eq!(game(id).unwrap().stage(), OpStage::Opening(j), "{ctx}");
		play_descent(id, solver, challenger);
		let OpStage::Element { op, row, col } = game(id).unwrap().stage() else {
			panic!("{ctx}: {:?}", game(id).map(|g| g.stage()))
		};
		assert_eq!(op, j);
		let out = &honest.bad.outputs[j as usize];
		if let Lie::LastValue(_) = lie {
			assert_eq!((row, col), (out.rows - 1, out.cols - 1), "{ctx}");
		}
		// Tampered evidence is refused; the true evidence settles.
		let mut ev = element_evidence(&honest.bad, &spec, j, (row, col)).unwrap();
		let expected = match ev.inputs.first_mut() {
			Some(line) => {
				line.values[0] ^= 1;
				Error::<Test>::EvidenceWrongInput
			}
			None => {
				ev.samples[0].features[0] ^= 1;
				Error::<Test>::EvidenceWrongBatch
			}
		};
		assert_noop!(Challenge::settle_element(RuntimeOrigin::signed(99), id, ev), expected);
		let ev = element_evidence(&honest.bad, &spec, j, (row, col)).unwrap();
		assert_ok!(Challenge::settle_element(RuntimeOrigin::signed(99), id, ev));
		let truth = System::events().into_iter().find_map(|r| match r.event {
			RuntimeEvent::Challenge(Event::ElementSettled { dispute, truth, .. })
				if dispute == id =>
			{
				Some(truth)
			}
			_ => None,
		});
		assert_eq!(truth, Some(out.data[(row * out.cols + col) as usize].to_bits()), "{ctx}");
		assert_eq!(resolved(id), Some((liar.other(), Resolution::Ruling)), "{ctx}");
		let slashed = if liar == Party::Solver { SOLVER_STAKE } else { BOND };
		assert_eq!(Balances::total_issuance(), issuance - (slashed - WINNER_SHARE * slashed));
		assert_eq!(crate::Lines::<Test>::iter().count(), 0);
		check_invariants(System::block_number());
	});
}

/// The first layer's weight gradient `Xᵀ · dZ`, whose every element reads a column of the
/// batch (every sample of it).
fn batch_column_product(spec: &TrainingSpec) -> u32 {
	program::step_program(spec).unwrap().batch_column_product().unwrap()
}

/// The byte budget under which no element of the batch-column product fits one leaf but one
/// term of it, and one element of every other operation, do; `None` when there is none.
fn terms_budget(spec: &TrainingSpec) -> Option<u64> {
	let j = batch_column_product(spec);
	let program = program::step_program(spec).ok()?;
	let others = (0..program.ops.len() as u32)
		.filter(|o| *o != j)
		.map(|o| settle::element_bytes(spec, &program, o))
		.max()?;
	let budget = settle::term_bytes(spec, &program, j).max(others);
	(settle::element_bytes(spec, &program, j) > budget).then_some(budget)
}

/// Issue item 2: one element of the first layer's weight gradient reads every sample of the
/// batch, beyond one leaf for large batches, so such specs were refused (or, before the rule,
/// voided). Here the leaf's byte budget is set so that no element of that product fits while
/// one term does: the sides reveal their partial sums, the first that differs is one term,
/// and the chain computes it from one sample and one row of `dZ`.
fn term_case(liar: Party, lie: Lie) {
	new_test_ext().execute_with(|| {
		let (spec, data) = task_spec();
		let j = batch_column_product(&spec);
		let budget = terms_budget(&spec).expect("a budget between one term and one element");
		set_leaf_bound(LeafBound { values: 0, macs: 0 });
		set_leaf_bytes(budget);
		let issuance = Balances::total_issuance();
		let honest = side(&spec, &data, Lie::None);
		let lying = side(&spec, &data, lie);
		let ctx = format!("liar {liar:?} lie {lie:?}");
		let (solver, challenger) = roles(liar, &lying, &honest);
		let id = to_operations(&spec, solver, challenger);
		play_ops(id, solver, challenger);
		play_descent(id, solver, challenger);
		let OpStage::Partials { op, row, col } = game(id).unwrap().stage() else {
			panic!("{ctx}: {:?}", game(id).map(|g| g.stage()))
		};
		assert_eq!(op, j, "{ctx}");
		// The honest partial sums end at the honest value; the liar's keep the honest ones
		// and end at its own value (its best chance: the last term).
		let truth = element_partials(&honest.bad, j, (row, col)).unwrap();
		let out = &lying.bad.outputs[j as usize];
		let mut lie_sums = truth.clone();
		*lie_sums.last_mut().unwrap() = out.data[(row * out.cols + col) as usize].to_bits();
		assert_ne!(lie_sums, truth, "{ctx}");
		let (s_sums, c_sums) = match liar {
			Party::Solver => (lie_sums, truth.clone()),
			Party::Challenger => (truth.clone(), lie_sums),
		};
		// One sum per term, the last the side's own value.
		assert_noop!(
			Challenge::descend(
				RuntimeOrigin::signed(20),
				id,
				DescentAnswer::Partials(c_sums[1..].to_vec().try_into().unwrap())
			),
			Error::<Test>::WrongLineLength
		);
		assert_noop!(
			Challenge::descend(
				RuntimeOrigin::signed(20),
				id,
				DescentAnswer::Partials(s_sums.clone().try_into().unwrap())
			),
			Error::<Test>::BadProof
		);
		for (who, sums) in [(10, &s_sums), (20, &c_sums)] {
			assert_ok!(Challenge::descend(
				RuntimeOrigin::signed(who),
				id,
				DescentAnswer::Partials(sums.clone().try_into().unwrap())
			));
		}
		let OpStage::Term { k, .. } = game(id).unwrap().stage() else { panic!("{ctx}") };
		assert_eq!(k as usize, truth.len() - 1, "{ctx}");
		// Tampered evidence is refused; the true evidence settles.
		let mut ev = term_evidence(&honest.bad, j, (row, col), k).unwrap();
		ev.samples[0].features[0] ^= 1;
		assert_noop!(
			Challenge::settle_element(RuntimeOrigin::signed(99), id, ev),
			Error::<Test>::EvidenceWrongBatch
		);
		let mut ev = term_evidence(&honest.bad, j, (row, col), k).unwrap();
		ev.inputs[0].values[0] ^= 1;
		assert_noop!(
			Challenge::settle_element(RuntimeOrigin::signed(99), id, ev),
			Error::<Test>::EvidenceWrongInput
		);
		let ev = term_evidence(&honest.bad, j, (row, col), k).unwrap();
		assert!((codec::Encode::encode(&ev).len() as u64) < budget, "{ctx}");
		assert_ok!(Challenge::settle_element(RuntimeOrigin::signed(99), id, ev));
		let settled = System::events().into_iter().find_map(|r| match r.event {
			RuntimeEvent::Challenge(Event::TermSettled { dispute, truth, .. }) if dispute == id => {
				Some(truth)
			}
			_ => None,
		});
		assert_eq!(settled, truth.last().copied(), "{ctx}");
		assert_eq!(resolved(id), Some((liar.other(), Resolution::Ruling)), "{ctx}");
		let slashed = if liar == Party::Solver { SOLVER_STAKE } else { BOND };
		assert_eq!(Balances::total_issuance(), issuance - (slashed - WINNER_SHARE * slashed));
		assert_eq!(crate::Lines::<Test>::iter().count(), 0);
		check_invariants(System::block_number());
	});
}

#[test]
fn an_element_too_large_for_a_leaf_is_settled_term_by_term() {
	let (spec, _) = task_spec();
	let j = batch_column_product(&spec);
	for lie in [Lie::Operation(j), Lie::LastValue(j)] {
		for liar in [Party::Solver, Party::Challenger] {
			term_case(liar, lie);
		}
	}
}

#[test]
fn the_element_descent_finds_and_settles_one_value_of_any_operation() {
	let (spec, data) = task_spec();
	let honest = side(&spec, &data, Lie::None);
	let ops = honest.bad.program.ops.len() as u32;
	for j in 0..ops {
		let mut played = 0;
		for lie in [Lie::Operation(j), Lie::LastValue(j)] {
			// A lie that reaches no state tensor changes nothing anyone commits to.
			if side(&spec, &data, lie).states == honest.states {
				continue;
			}
			for liar in [Party::Solver, Party::Challenger] {
				descent_case(liar, lie);
				played += 1;
			}
		}
		// Every operation but the reported loss was played, both ways.
		let kind = honest.bad.program.ops[j as usize].kind;
		let loss = matches!(kind, program::OpKind::SoftmaxXent | program::OpKind::Mean);
		assert!(loss || played >= 2, "operation {j} ({kind:?}): {played} cases");
	}
}

#[test]
fn whoever_stops_answering_the_descent_loses() {
	for liar in [Party::Solver, Party::Challenger] {
		new_test_ext().execute_with(|| {
			set_leaf_bound(LeafBound { values: 0, macs: 0 });
			let (spec, data) = task_spec();
			let honest = side(&spec, &data, Lie::None);
			let lying = side(&spec, &data, Lie::Operation(3));
			let (solver, challenger) = roles(liar, &lying, &honest);
			let id = to_operations(&spec, solver, challenger);
			play_ops(id, solver, challenger);
			let d = Disputes::<Test>::get(id).unwrap();
			let (who, side) =
				if liar == Party::Solver { (d.challenger, challenger) } else { (d.solver, solver) };
			// Only the honest side opens its output.
			assert_ok!(Challenge::descend(
				RuntimeOrigin::signed(who),
				id,
				DescentAnswer::Opening(TensorOpening::of(&side.bad.outputs[3]))
			));
			// Not twice, and not another tensor's opening.
			assert_noop!(
				Challenge::descend(
					RuntimeOrigin::signed(who),
					id,
					DescentAnswer::Opening(TensorOpening::of(&side.bad.outputs[3]))
				),
				Error::<Test>::AlreadyRevealed
			);
			let liar_account = if liar == Party::Solver { d.solver } else { d.challenger };
			assert_noop!(
				Challenge::descend(
					RuntimeOrigin::signed(liar_account),
					id,
					DescentAnswer::Opening(TensorOpening::of(&side.bad.outputs[2]))
				),
				Error::<Test>::BadProof
			);
			assert_noop!(
				Challenge::descend(
					RuntimeOrigin::signed(liar_account),
					id,
					DescentAnswer::Children(H256::zero(), H256::zero())
				),
				Error::<Test>::WrongStage
			);
			run_to_block(Disputes::<Test>::get(id).unwrap().deadline);
			assert_eq!(resolved(id), Some((liar.other(), Resolution::Timeout)), "{liar:?}");
		});
	}
}

/// Makes `side` commit to its output of operation `j` through a row tree over its rows cut
/// to `keep` values (a self-consistent commitment to lines of the wrong length), its op trace
/// re-chained over that output hash. Returns the short rows and their opening.
fn commit_short_rows(
	side: &mut Side,
	j: u32,
	keep: usize,
) -> (trainet_primitives::repops::Matrix, TensorOpening) {
	let real = &side.bad.outputs[j as usize];
	let short = trainet_primitives::repops::Matrix {
		rows: real.rows,
		cols: keep as u32,
		data: (0..real.rows as usize)
			.flat_map(|r| real.data[r * real.cols as usize..][..keep].to_vec())
			.collect(),
	};
	let tree = LineTree::new(&short, trainet_primitives::descent::Axis::Rows);
	let opening = TensorOpening { row_root: tree.root(), ..TensorOpening::of(real) };
	let mut outputs = side.ops.outputs.clone();
	outputs[j as usize] = opening.hash();
	side.ops = trainet_primitives::commit::op_trace(&state_hash(&side.bad.state), outputs);
	(short, opening)
}

/// Attack: a liar builds its output's row tree over truncated rows (each leaf hashes a prefix
/// of the true row, here `keep` values of it), so that every node it reveals checks out, and
/// reveals its short row first. The lines used to be compared only over their shared length,
/// so the honest side's full row was refused (`BadProof`) and it lost at the deadline.
fn short_line_case(liar: Party, keep: usize) {
	new_test_ext().execute_with(|| {
		set_leaf_bound(LeafBound { values: 0, macs: 0 });
		let (spec, data) = task_spec();
		let j = 3u32;
		let honest = side(&spec, &data, Lie::None);
		let mut lying = side(&spec, &data, Lie::Operation(j));
		let (short, fake) = commit_short_rows(&mut lying, j, keep);
		let short_tree = LineTree::new(&short, trainet_primitives::descent::Axis::Rows);

		let (solver, challenger) = roles(liar, &lying, &honest);
		let id = to_operations(&spec, solver, challenger);
		play_ops(id, solver, challenger);
		assert_eq!(game(id).unwrap().stage(), OpStage::Opening(j));
		let d = Disputes::<Test>::get(id).unwrap();
		let (liar_account, honest_account) = match liar {
			Party::Solver => (d.solver, d.challenger),
			Party::Challenger => (d.challenger, d.solver),
		};
		let honest_out = &honest.bad.outputs[j as usize];
		let honest_tree = LineTree::new(honest_out, trainet_primitives::descent::Axis::Rows);
		// Both play the descent to the row, the liar always first.
		loop {
			let g = game(id).unwrap();
			match g.stage() {
				OpStage::Opening(_) => {
					assert_ok!(Challenge::descend(
						RuntimeOrigin::signed(liar_account),
						id,
						DescentAnswer::Opening(fake)
					));
					assert_ok!(Challenge::descend(
						RuntimeOrigin::signed(honest_account),
						id,
						DescentAnswer::Opening(TensorOpening::of(honest_out))
					));
				}
				OpStage::Descending { cursor, .. } => {
					let (l, r) = short_tree.children(cursor).unwrap();
					assert_ok!(Challenge::descend(
						RuntimeOrigin::signed(liar_account),
						id,
						DescentAnswer::Children(l, r)
					));
					let (l, r) = honest_tree.children(cursor).unwrap();
					assert_ok!(Challenge::descend(
						RuntimeOrigin::signed(honest_account),
						id,
						DescentAnswer::Children(l, r)
					));
				}
				OpStage::Line { axis, index, .. } => {
					// The liar's short row matches its own tree, but not the shape both
					// opened: refused, and nothing is stored.
					assert_noop!(
						Challenge::descend(
							RuntimeOrigin::signed(liar_account),
							id,
							DescentAnswer::Line(line(&short, axis, index).try_into().unwrap())
						),
						Error::<Test>::WrongLineLength
					);
					// The honest side's full row is taken.
					assert_ok!(Challenge::descend(
						RuntimeOrigin::signed(honest_account),
						id,
						DescentAnswer::Line(line(honest_out, axis, index).try_into().unwrap())
					));
					break;
				}
				stage => panic!("liar {liar:?}: the descent stopped at {stage:?}"),
			}
		}
		// The liar has no full row that matches its tree: it loses at the deadline.
		run_to_block(Disputes::<Test>::get(id).unwrap().deadline);
		assert_eq!(resolved(id), Some((liar.other(), Resolution::Timeout)), "liar {liar:?}");
		check_invariants(System::block_number());
	});
}

#[test]
fn an_empty_line_cannot_stop_the_honest_side() {
	for liar in [Party::Solver, Party::Challenger] {
		short_line_case(liar, 0);
	}
}

#[test]
fn a_truncated_line_cannot_stop_the_honest_side() {
	for liar in [Party::Solver, Party::Challenger] {
		short_line_case(liar, 2);
	}
}

mod adversaries;
