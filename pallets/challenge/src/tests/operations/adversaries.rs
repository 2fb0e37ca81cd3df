//! The adversary library: for random specs the chain accepts (widths, optimizer, batch) and
//! random lies (any operation of the disputed step, all of its output or one value), an
//! honest solver and an honest challenger each win the operator-level game and the element
//! descent against every strategy below, played by the other side at a random stage, with the
//! two sides answering in a random order. Every answer of the honest side must be taken
//! (`assert_ok!`): nothing the liar does may stop it. At the end the liar lost, its stake or
//! bond was slashed (half burned), and every invariant holds.
//!
//! The number of cases is proptest's (`PROPTEST_CASES`, 128 by default); `scripts/fuzz` runs
//! many more in release mode.

use super::*;
use crate::{
	tests::adversary::{adversary, play_against, Adversary},
	Lines,
};
use proptest::prelude::*;
use trainet_primitives::descent::{element_evidence, element_partials, term_evidence};

/// How the chain settles the disputed operation in a case.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Leaf {
	/// Whole, when it fits (the chain's bound).
	Whole,
	/// Element by element (the whole-operation bound set to nothing).
	Elements,
	/// Element by element, and the batch-column product term by term (the leaf's byte budget
	/// set below one of its elements and above one of its terms).
	Terms,
}

fn leaf() -> impl Strategy<Value = Leaf> {
	prop_oneof![Just(Leaf::Whole), Just(Leaf::Elements), Just(Leaf::Terms)]
}

/// A random small spec the chain accepts, and its dataset.
fn random_spec(
	seed: u64,
	hidden: Vec<u32>,
	input: u32,
	classes: u32,
	optimizer: u8,
	batch: u32,
) -> (TrainingSpec, Dataset) {
	let classes = classes.min(input);
	let data = synthetic_dataset(seed, 40, input, classes);
	let optimizer = match optimizer {
		0 => Optimizer::sgd(0.1, 0.0),
		1 => Optimizer::sgd(0.05, 0.9),
		_ => Optimizer::adam(0.01),
	};
	let mut widths = vec![input];
	widths.extend(hidden);
	widths.push(classes);
	let mut spec = TrainingSpec::example_mlp(&widths, optimizer, batch).on_dataset(&data);
	spec.steps = STEPS;
	spec.seed = seed;
	(spec, data)
}

/// A side's output of operation `.0` committed through a row tree over the rows of `.1` (cut
/// short), opened as `.2`.
type Short = (u32, trainet_primitives::repops::Matrix, TensorOpening);

/// The answer `party`, playing `side`, owes dispute `id` at its current stage (none when it
/// has answered, or the stage is a settlement and `settles` is false). With `short`, the
/// side answers the descent over that operation from its short rows.
fn answer(
	id: u64,
	party: Party,
	side: &Side,
	spec: &TrainingSpec,
	settles: bool,
	short: Option<&Short>,
) -> Option<crate::Call<Test>> {
	let short_of = |op: u32| short.filter(|s| s.0 == op);
	let d = Disputes::<Test>::get(id)?;
	let DisputePhase::Operations(g) = d.phase else { return None };
	let descent = g.descent.clone().unwrap_or_default();
	let walk = descent.walk.clone();
	match g.stage() {
		OpStage::Committing => (!*g.roots.given().of(party))
			.then_some(crate::Call::commit_ops { dispute: id, root: side.ops.root }),
		OpStage::Revealing(mid) => {
			(!*g.reveals.given().of(party)).then(|| crate::Call::reveal_op {
				dispute: id,
				position: mid,
				proof: side.ops.proof(mid - 1).unwrap(),
			})
		}
		OpStage::Opening(j) => {
			(!*descent.openings.given().of(party)).then(|| crate::Call::descend {
				dispute: id,
				answer: DescentAnswer::Opening(match short_of(j) {
					Some(s) => s.2,
					None => TensorOpening::of(&side.bad.outputs[j as usize]),
				}),
			})
		}
		OpStage::Descending { op, cursor } => {
			let w = walk?;
			(!*w.reveals.given().of(party)).then(|| {
				let m = short_of(op).map_or(&side.bad.outputs[op as usize], |s| &s.1);
				let (l, r) = LineTree::new(m, w.axis).children(cursor).unwrap();
				crate::Call::descend { dispute: id, answer: DescentAnswer::Children(l, r) }
			})
		}
		OpStage::Line { op, axis, index } => {
			(!Lines::<Test>::contains_key(id, party)).then(|| crate::Call::descend {
				dispute: id,
				answer: DescentAnswer::Line(
					line(
						short_of(op).map_or(&side.bad.outputs[op as usize], |s| &s.1),
						axis,
						index,
					)
					.try_into()
					.unwrap(),
				),
			})
		}
		OpStage::Operation(j) if settles => {
			Some(crate::Call::settle_op { dispute: id, evidence: side.bad.evidence(j).unwrap() })
		}
		OpStage::Assembly if settles => Some(crate::Call::settle_op {
			dispute: id,
			evidence: OpEvidence { outputs: side.bad.output_hashes(), ..Default::default() },
		}),
		OpStage::Element { op, row, col } if settles => Some(crate::Call::settle_element {
			dispute: id,
			evidence: element_evidence(&side.bad, spec, op, (row, col)).unwrap(),
		}),
		OpStage::Partials { op, row, col } => {
			(!Lines::<Test>::contains_key(id, party)).then(|| {
				// The sums from the side's inputs, ending at its own value of the element
				// (a liar's altered output is not the sum of its inputs).
				let mut sums = element_partials(&side.bad, op, (row, col)).unwrap();
				let m = short_of(op).map_or(&side.bad.outputs[op as usize], |s| &s.1);
				*sums.last_mut().unwrap() =
					m.data.get((row * m.cols + col) as usize).map_or(0, |v| v.to_bits());
				crate::Call::descend {
					dispute: id,
					answer: DescentAnswer::Partials(sums.try_into().unwrap()),
				}
			})
		}
		OpStage::Term { op, row, col, k } if settles => Some(crate::Call::settle_element {
			dispute: id,
			evidence: term_evidence(&side.bad, op, (row, col), k).unwrap(),
		}),
		_ => None,
	}
}

/// `call` made wrong in the way a malformed (`truncate`: a short line) answer is.
fn malformed(call: &crate::Call<Test>, truncate: bool) -> Option<crate::Call<Test>> {
	let mut call = call.clone();
	match &mut call {
		crate::Call::commit_ops { root, .. } if !truncate => *root = H256::repeat_byte(0xab),
		crate::Call::reveal_op { proof, .. } if !truncate => {
			proof.leaf.output = H256::repeat_byte(0xcd)
		}
		crate::Call::descend { answer, .. } => match answer {
			DescentAnswer::Opening(o) if !truncate => o.row_root = H256::repeat_byte(0xef),
			DescentAnswer::Children(l, _) if !truncate => *l = H256::repeat_byte(0x12),
			DescentAnswer::Line(values) if truncate => {
				let keep = values.len().saturating_sub(1) / 2;
				values.truncate(keep);
			}
			DescentAnswer::Line(values) if !truncate => values[0] ^= 1,
			DescentAnswer::Partials(values) if truncate => {
				let keep = values.len().saturating_sub(1) / 2;
				values.truncate(keep);
			}
			DescentAnswer::Partials(values) if !truncate => *values.last_mut()? ^= 1,
			_ => return None,
		},
		_ => return None,
	}
	Some(call)
}

/// Plays one dispute to its end with `liar` lying with `lie` and playing `adversary`; checks
/// the honest side won and the books. `order` picks who answers first each round.
fn adversary_case(
	(spec, data): (TrainingSpec, Dataset),
	lie: Lie,
	liar: Party,
	adversary: Adversary,
	leaf: Leaf,
	order: u64,
) -> Result<(), TestCaseError> {
	let honest = side(&spec, &data, Lie::None);
	let mut lying = side(&spec, &data, lie);
	// A lie that reaches no state tensor changes nothing anyone commits to; one whose
	// effect vanishes by the final state leaves nothing to dispute (the final claim is right).
	if lying.states.last() == honest.states.last() {
		return Ok(());
	}
	let short = match (adversary, lie) {
		(Adversary::ShortLines(keep), Lie::Operation(j) | Lie::LastValue(j)) => {
			let keep = keep.min(lying.bad.outputs[j as usize].cols - 1) as usize;
			let (rows, opening) = commit_short_rows(&mut lying, j, keep);
			Some((j, rows, opening))
		}
		_ => None,
	};
	new_test_ext().execute_with(|| {
		if leaf != Leaf::Whole {
			set_leaf_bound(LeafBound { values: 0, macs: 0 });
		}
		if let (Leaf::Terms, Some(budget)) = (leaf, terms_budget(&spec)) {
			set_leaf_bytes(budget);
		}
		let issuance = Balances::total_issuance();
		let (solver, challenger) = roles(liar, &lying, &honest);
		let id = to_operations(&spec, solver, challenger);
		let ctx = format!("liar {liar:?} {lie:?} {adversary:?} leaf {leaf:?}");
		play_against(
			id,
			liar,
			adversary,
			order,
			&ctx,
			issuance,
			|p| answer(id, p, &honest, &spec, true, None),
			|p| answer(id, p, &honest, &spec, false, None),
			|p| answer(id, p, &lying, &spec, false, short.as_ref()),
			malformed,
		)?;
		crate::proptests::report("adversaries");
		Ok(())
	})
}

proptest! {
	#![proptest_config(ProptestConfig::with_cases(128))]

	#[test]
	fn an_honest_side_beats_every_adversary_on_random_specs(
		seed in 0u64..1_000,
		hidden in proptest::collection::vec(1u32..7, 1..3),
		input in 2u32..8,
		classes in 2u32..5,
		optimizer in 0u8..3,
		batch in 1u32..10,
		op in 0u32..64,
		one_value in any::<bool>(),
		liar_solver in any::<bool>(),
		adversary in adversary(),
		leaf in leaf(),
		order in any::<u64>(),
	) {
		let (spec, data) = random_spec(seed, hidden, input, classes, optimizer, batch);
		prop_assert!(trainet_primitives::settle::check(&spec, &trainet_primitives::settle::LeafBudget::CHAIN).is_ok());
		let ops = trainet_primitives::program::step_program(&spec).unwrap().ops.len() as u32;
		let j = op % ops;
		let lie = if one_value { Lie::LastValue(j) } else { Lie::Operation(j) };
		let liar = if liar_solver { Party::Solver } else { Party::Challenger };
		adversary_case((spec, data), lie, liar, adversary, leaf, order)?;
	}
}
