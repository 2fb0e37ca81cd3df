//! The initialization game on the mock market: a dispute over `h_0` of a state the chain
//! does not recompute whole is decided element by element. One side commits an initial
//! state with one value altered (and trains from it, as a consistent liar would); the sides
//! reveal their states' tensor hashes, descend inside the first tensor they differ on, and the
//! chain computes the one value their lines differ on from the seed.

use super::*;
use crate::InitGame;
use trainet_primitives::{
	commit::{state_hash, tensor_hash},
	descent::{line, DescentAnswer, LineTree, TensorOpening},
	market::{DescentStage, InitStage, StateTensors},
	program::{initial_state, initial_value, step_program},
	referee::TraceRun,
	repops::Matrix,
	task::{synthetic_dataset, Optimizer, TrainingSpec},
};

const STEPS: u32 = 3;

fn task_spec() -> (TrainingSpec, Vec<(Vec<f32>, u32)>) {
	let data = synthetic_dataset(7, 40, 6, 3);
	let adam = Optimizer::adam(0.01);
	let mut spec = TrainingSpec::example_mlp(&[6, 5, 4, 3], adam, 8).on_dataset(&data);
	spec.steps = STEPS;
	(spec, data)
}

/// A side's initial state and trace.
struct Side {
	init: Vec<Matrix>,
	states: Vec<H256>,
}

impl Side {
	fn tensors(&self) -> StateTensors {
		self.init.iter().map(tensor_hash).collect::<Vec<_>>().try_into().unwrap()
	}
}

/// The honest side, or (`alter = Some((tensor, value))`) a liar whose initial state has that
/// value changed and whose every later state differs too.
fn side(spec: &TrainingSpec, data: &[(Vec<f32>, u32)], alter: Option<(usize, usize)>) -> Side {
	let program = step_program(spec).unwrap();
	let mut init = initial_state(spec, &program).unwrap();
	let run = TraceRun::new(spec, data, None).unwrap();
	let mut states = run.states;
	let last = real_final(spec, &run.steps.last().unwrap().next);
	if let Some((tensor, value)) = alter {
		init[tensor].data[value] += 0.5;
		states[0] = state_hash(&init);
		for (t, s) in states.iter_mut().enumerate().skip(1) {
			*s = H256::from_low_u64_be(0xbad0 + t as u64);
		}
		*states.last_mut().unwrap() = other_final(&last, (tensor * 1000 + value) as u64);
	}
	assert_eq!(states[0], state_hash(&init));
	Side { init, states }
}

fn init_game(id: u64) -> Option<InitGame> {
	match Disputes::<Test>::get(id)?.phase {
		DisputePhase::Initialization(g) => Some(g),
		_ => None,
	}
}

/// Posts the task, lets solver 10 commit `solver.states` and challenger 20 dispute them with
/// `challenger.states`, and plays the step bisection to the initialization game.
fn to_initialization(spec: &TrainingSpec, solver: &Side, challenger: &Side) -> u64 {
	play_initialization();
	let id = to_leaf(spec, &solver.states, &challenger.states);
	assert_eq!(
		init_game(id).expect("a disputed h_0 goes to the initialization game").stage(),
		InitStage::Revealing
	);
	id
}

/// Both sides answer every stage of the game from their initial states, `silent` skipping its
/// answers from the `quit`-th stage on (then the deadline passes).
fn play_init(id: u64, solver: &Side, challenger: &Side, silent: Option<(Party, u32)>) {
	let mut stage_no = 0;
	while let Some(g) = init_game(id) {
		let d = Disputes::<Test>::get(id).unwrap();
		let mut quit = false;
		for (party, who, side) in [(Party::Solver, 10, solver), (Party::Challenger, 20, challenger)]
		{
			if silent.is_some_and(|(p, from)| p == party && stage_no >= from) {
				quit = true;
				continue;
			}
			if init_game(id).is_none() {
				break;
			}
			let origin = RuntimeOrigin::signed(who);
			match g.stage() {
				InitStage::Revealing => {
					assert_ok!(Challenge::reveal_state(origin, id, side.tensors()));
				}
				InitStage::Descent { tensor, stage } => {
					let m = &side.init[tensor as usize];
					let answer = match stage {
						DescentStage::Opening => DescentAnswer::Opening(TensorOpening::of(m)),
						DescentStage::Descending(cursor) => {
							let axis = g.descent.walk.as_ref().unwrap().axis;
							let (l, r) = LineTree::new(m, axis).children(cursor).unwrap();
							DescentAnswer::Children(l, r)
						}
						DescentStage::Line { axis, index } => {
							DescentAnswer::Line(line(m, axis, index).try_into().unwrap())
						}
						DescentStage::Element { .. }
						| DescentStage::Partials { .. }
						| DescentStage::Term { .. } => {
							panic!("an initial value is never left due")
						}
					};
					assert_ok!(Challenge::descend(origin, id, answer));
				}
			}
		}
		stage_no += 1;
		if quit {
			run_to_block(d.deadline);
			break;
		}
		check_invariants(System::block_number());
	}
}

fn value_settled(id: u64) -> Option<(u32, u32, u32, u32)> {
	System::events().into_iter().find_map(|r| match r.event {
		RuntimeEvent::Challenge(Event::InitialValueSettled {
			dispute,
			tensor,
			row,
			col,
			truth,
		}) if dispute == id => Some((tensor, row, col, truth)),
		_ => None,
	})
}

/// Issue item 2: on a state the chain does not recompute whole, a dispute over `h_0` was void
/// at its deadline, so a solver could commit random hashes, train nothing and be paid. Now the
/// sides descend to one initial value and the chain computes it: the liar loses, whichever
/// side it is and wherever the altered value is (a weight's first or last value, a bias, an
/// optimizer tensor).
#[test]
fn a_lie_in_a_state_too_large_to_recompute_loses_element_by_element() {
	let (spec, data) = task_spec();
	let program = step_program(&spec).unwrap();
	let last = program.state_shapes.len() - 1;
	let values = |t: usize| (program.state_shapes[t].0 * program.state_shapes[t].1) as usize;
	for (tensor, value) in [(0, 0), (0, values(0) - 1), (1, 2), (2, 7), (last, values(last) - 1)] {
		for liar in [Party::Solver, Party::Challenger] {
			new_test_ext().execute_with(|| {
				let ctx = format!("liar {liar:?}, value {value} of tensor {tensor}");
				let issuance = Balances::total_issuance();
				let honest = side(&spec, &data, None);
				let lying = side(&spec, &data, Some((tensor, value)));
				let (solver, challenger) = roles(liar, &lying, &honest);
				let id = to_initialization(&spec, solver, challenger);
				play_init(id, solver, challenger, None);
				let (t, row, col, truth) = value_settled(id).unwrap_or_else(|| panic!("{ctx}"));
				let cols = program.state_shapes[tensor].1 as usize;
				assert_eq!(
					(t as usize, row as usize, col as usize),
					(tensor, value / cols, value % cols),
					"{ctx}"
				);
				assert_eq!(Some(truth), initial_value(&spec, &program, t, (row, col)), "{ctx}");
				assert_eq!(resolved(id), Some((liar.other(), Resolution::Ruling)), "{ctx}");
				let slashed = if liar == Party::Solver { SOLVER_STAKE } else { BOND };
				assert_eq!(
					Balances::total_issuance(),
					issuance - (slashed - WINNER_SHARE * slashed)
				);
				check_invariants(System::block_number());
			});
		}
	}
}

/// A side that stops answering at any stage of the initialization game loses at its deadline
/// (the honest side always can answer).
#[test]
fn a_liar_silent_in_the_initialization_game_loses_by_timeout() {
	let (spec, data) = task_spec();
	for from in 0..6 {
		for liar in [Party::Solver, Party::Challenger] {
			new_test_ext().execute_with(|| {
				let honest = side(&spec, &data, None);
				let lying = side(&spec, &data, Some((0, 13)));
				let (solver, challenger) = roles(liar, &lying, &honest);
				let id = to_initialization(&spec, solver, challenger);
				play_init(id, solver, challenger, Some((liar, from)));
				let want = if value_settled(id).is_some() {
					Resolution::Ruling
				} else {
					Resolution::Timeout
				};
				assert_eq!(
					resolved(id),
					Some((liar.other(), want)),
					"liar {liar:?} silent from stage {from}"
				);
			});
		}
	}
}

/// Every reveal is checked against what the program fixes: the number of tensors, and that
/// they make the side's `h_0`; only the parties may answer, once each, in the right phase.
#[test]
fn state_reveals_are_checked_against_the_program_and_the_claim() {
	new_test_ext().execute_with(|| {
		let (spec, data) = task_spec();
		let honest = side(&spec, &data, None);
		let lying = side(&spec, &data, Some((0, 1)));
		let id = to_initialization(&spec, &lying, &honest);
		let tensors = honest.tensors();
		let short: StateTensors = tensors[..tensors.len() - 1].to_vec().try_into().unwrap();
		assert_noop!(
			Challenge::reveal_state(RuntimeOrigin::signed(20), id, short),
			Error::<Test>::WrongTensorCount
		);
		// The solver's claim is the lying `h_0`: the honest tensors do not make it.
		assert_noop!(
			Challenge::reveal_state(RuntimeOrigin::signed(10), id, tensors.clone()),
			Error::<Test>::BadProof
		);
		assert_noop!(
			Challenge::reveal_state(RuntimeOrigin::signed(21), id, tensors.clone()),
			Error::<Test>::NotAParty
		);
		assert_noop!(
			Challenge::descend(
				RuntimeOrigin::signed(20),
				id,
				DescentAnswer::Opening(TensorOpening::of(&honest.init[0]))
			),
			Error::<Test>::WrongStage
		);
		assert_ok!(Challenge::reveal_state(RuntimeOrigin::signed(20), id, tensors.clone()));
		assert_noop!(
			Challenge::reveal_state(RuntimeOrigin::signed(20), id, tensors),
			Error::<Test>::AlreadyRevealed
		);
		assert_ok!(Challenge::reveal_state(RuntimeOrigin::signed(10), id, lying.tensors()));
		assert_eq!(
			init_game(id).unwrap().stage(),
			InitStage::Descent { tensor: 0, stage: DescentStage::Opening }
		);
		// An opening must open the side's own tensor hash.
		assert_ok!(Challenge::descend(
			RuntimeOrigin::signed(20),
			id,
			DescentAnswer::Opening(TensorOpening::of(&honest.init[0]))
		));
		assert_noop!(
			Challenge::descend(
				RuntimeOrigin::signed(10),
				id,
				DescentAnswer::Opening(TensorOpening::of(&honest.init[0]))
			),
			Error::<Test>::BadProof
		);
	});
}

/// Outside the initialization game, `reveal_state` is refused.
#[test]
fn reveal_state_outside_the_initialization_game_is_refused() {
	new_test_ext().execute_with(|| {
		let (spec, data) = task_spec();
		let honest = side(&spec, &data, None);
		let task = NextTaskId::<Test>::get();
		assert_ok!(Escrow::submit(RuntimeOrigin::signed(1), spec.clone(), 500, timeouts()));
		assert_ok!(Escrow::claim(RuntimeOrigin::signed(10), task));
		commit(10, task, commitment(&honest.states), &honest.states);
		let lying = side(&spec, &data, Some((0, 1)));
		let id = open(task, 20, &lying.states);
		assert_noop!(
			Challenge::reveal_state(RuntimeOrigin::signed(20), id, honest.tensors()),
			Error::<Test>::NotInInitialization
		);
	});
}

/// The adversary library's initialization game: on random specs and a random altered initial
/// value, an honest solver and an honest challenger each win against a liar that, from its
/// `k`-th answer on, is silent, malformed, truncated or copies the honest side, the two
/// answering in a random order. Every honest answer must be taken.
mod adversaries {
	use super::*;
	use crate::{
		tests::adversary::{adversary, play_against, Adversary},
		Lines,
	};
	use proptest::prelude::*;

	/// A liar's tensor committed through short rows: its index, the short rows, the opening
	/// of its hash, and the state's tensor hashes with it.
	type Short = (u32, Matrix, TensorOpening, StateTensors);

	/// `side`'s tensor `tensor` committed through its rows cut to `keep` values, and `side`'s
	/// `h_0` made of it.
	fn short_rows(side: &mut Side, tensor: usize, keep: usize) -> Short {
		use trainet_primitives::{commit::state_hash_of, descent::Axis};
		let real = &side.init[tensor];
		let short = Matrix {
			rows: real.rows,
			cols: keep as u32,
			data: (0..real.rows as usize)
				.flat_map(|r| real.data[r * real.cols as usize..][..keep].to_vec())
				.collect(),
		};
		let opening = TensorOpening {
			row_root: LineTree::new(&short, Axis::Rows).root(),
			..TensorOpening::of(real)
		};
		let mut tensors = side.tensors();
		tensors[tensor] = opening.hash();
		side.states[0] = state_hash_of(&tensors);
		(tensor as u32, short, opening, tensors)
	}

	/// The answer `party`, playing `side`, owes dispute `id` now (none once it has answered).
	fn answer(
		id: u64,
		party: Party,
		side: &Side,
		short: Option<&Short>,
	) -> Option<crate::Call<Test>> {
		let g = init_game(id)?;
		let descend = |answer| crate::Call::descend { dispute: id, answer };
		match g.stage() {
			InitStage::Revealing => g.tensors.of(party).is_none().then(|| {
				let tensors = short.map_or_else(|| side.tensors(), |s| s.3.clone());
				crate::Call::reveal_state { dispute: id, tensors }
			}),
			InitStage::Descent { tensor, stage } => {
				let short = short.filter(|s| s.0 == tensor);
				let m = short.map_or(&side.init[tensor as usize], |s| &s.1);
				match stage {
					DescentStage::Opening => g.descent.openings.of(party).is_none().then(|| {
						let opening = short.map_or_else(|| TensorOpening::of(m), |s| s.2);
						descend(DescentAnswer::Opening(opening))
					}),
					DescentStage::Descending(cursor) => {
						let w = g.descent.walk.as_ref()?;
						w.reveals.of(party).is_none().then(|| {
							let (l, r) = LineTree::new(m, w.axis).children(cursor).unwrap();
							descend(DescentAnswer::Children(l, r))
						})
					}
					DescentStage::Line { axis, index } => (!Lines::<Test>::contains_key(id, party))
						.then(|| {
							descend(DescentAnswer::Line(line(m, axis, index).try_into().unwrap()))
						}),
					_ => None,
				}
			}
		}
	}

	/// `call` made wrong: a changed value, or (`truncate`) one too few.
	fn malformed(call: &crate::Call<Test>, truncate: bool) -> Option<crate::Call<Test>> {
		let mut call = call.clone();
		match &mut call {
			crate::Call::reveal_state { tensors, .. } if truncate => {
				tensors.pop();
			}
			crate::Call::reveal_state { tensors, .. } => tensors[0] = H256::repeat_byte(0xab),
			crate::Call::descend { answer, .. } => match answer {
				DescentAnswer::Opening(o) if !truncate => o.col_root = H256::repeat_byte(0xef),
				DescentAnswer::Children(l, _) if !truncate => *l = H256::repeat_byte(0x12),
				DescentAnswer::Line(values) if truncate => {
					let keep = values.len() / 2;
					values.truncate(keep);
				}
				DescentAnswer::Line(values) if !truncate => values[0] ^= 1,
				_ => return None,
			},
			_ => return None,
		}
		Some(call)
	}

	#[allow(clippy::too_many_arguments)]
	fn case(
		spec: TrainingSpec,
		data: Vec<(Vec<f32>, u32)>,
		(tensor, value): (usize, usize),
		liar: Party,
		adversary: Adversary,
		order: u64,
	) -> Result<(), TestCaseError> {
		let honest = side(&spec, &data, None);
		let mut lying = side(&spec, &data, Some((tensor, value)));
		let short = match adversary {
			Adversary::ShortLines(keep) => {
				let cols = lying.init[tensor].cols as usize;
				Some(short_rows(&mut lying, tensor, (keep as usize).min(cols - 1)))
			}
			_ => None,
		};
		new_test_ext().execute_with(|| {
			let issuance = Balances::total_issuance();
			let (solver, challenger) = roles(liar, &lying, &honest);
			let id = to_initialization(&spec, solver, challenger);
			let ctx = format!("liar {liar:?}, value {value} of tensor {tensor}, {adversary:?}");
			play_against(
				id,
				liar,
				adversary,
				order,
				&ctx,
				issuance,
				|p| answer(id, p, &honest, None),
				|p| answer(id, p, &honest, None),
				|p| answer(id, p, &lying, short.as_ref()),
				malformed,
			)?;
			crate::proptests::report("initialization adversaries");
			Ok(())
		})
	}

	proptest! {
		#![proptest_config(ProptestConfig::with_cases(256))]

		#[test]
		fn an_honest_side_beats_every_adversary_in_the_initialization_game(
			seed in 0u64..1_000,
			hidden in proptest::collection::vec(1u32..7, 1..3),
			input in 2u32..8,
			classes in 2u32..5,
			adam in any::<bool>(),
			batch in 1u32..10,
			tensor in 0usize..64,
			value in 0usize..1_000,
			liar_solver in any::<bool>(),
			adversary in adversary(),
			order in any::<u64>(),
		) {
			let classes = classes.min(input);
			let data = synthetic_dataset(seed, 40, input, classes);
			let optimizer = if adam {
				Optimizer::adam(0.01)
			} else {
				Optimizer::sgd(0.05, 0.9)
			};
			let mut widths = vec![input];
			widths.extend(hidden);
			widths.push(classes);
			let mut spec = TrainingSpec::example_mlp(&widths, optimizer, batch).on_dataset(&data);
			spec.steps = STEPS;
			spec.seed = seed;
			let program = step_program(&spec).unwrap();
			let tensor = tensor % program.state_shapes.len();
			let (rows, cols) = program.state_shapes[tensor];
			let value = value % (rows * cols) as usize;
			let liar = if liar_solver { Party::Solver } else { Party::Challenger };
			case(spec, data, (tensor, value), liar, adversary, order)?;
		}
	}
}
