//! Availability challenges on the mock market with a really trained model: a solver that
//! shows the asked rows of its final model (or of a checkpoint) keeps its task and takes the
//! challenger's bond; one that withholds its model loses its stake and the task, and the
//! reward waits while a challenge is open. Every wrong answer is refused.

use super::*;
use trainet_primitives::{
	availability::{answer, AvailabilityAnswer, Chunks, AVAILABILITY_CHUNKS},
	commit::state_hash,
	market::DisputePhase,
	referee::TraceRun,
	repops::Matrix,
	task::{synthetic_dataset, Optimizer, TrainingSpec},
};

const STEPS: u32 = 3;

/// A trained task's spec, its states' hashes and its states themselves.
struct Trained {
	spec: TrainingSpec,
	hashes: Vec<H256>,
	states: Vec<Vec<Matrix>>,
}

fn trained() -> Trained {
	let data = synthetic_dataset(11, 40, 6, 3);
	let mut spec =
		TrainingSpec::example_mlp(&[6, 5, 3], Optimizer::adam(0.01), 8).on_dataset(&data);
	spec.steps = STEPS;
	let run = TraceRun::new(&spec, &data, None).unwrap();
	let program = trainet_primitives::program::step_program(&spec).unwrap();
	let mut states = vec![trainet_primitives::program::initial_state(&spec, &program).unwrap()];
	states.extend(run.steps.iter().map(|s| s.next.clone()));
	assert_eq!(states.iter().map(|s| state_hash(s)).collect::<Vec<_>>(), run.states);
	real_final(&spec, states.last().unwrap());
	Trained { spec, hashes: run.states, states }
}

/// Posts and commits `t` (solver 10); returns the task.
fn committed(t: &Trained) -> u64 {
	let task = NextTaskId::<Test>::get();
	assert_ok!(Escrow::submit(RuntimeOrigin::signed(1), t.spec.clone(), 500, timeouts()));
	assert_ok!(Escrow::claim(RuntimeOrigin::signed(10), task));
	commit(10, task, commitment(&t.hashes), &t.hashes);
	task
}

/// `who` asks for entry `point` of `task`; returns the challenge and the rows drawn.
fn request(task: u64, who: AccountId, point: u32) -> (u64, Chunks) {
	let id = crate::NextDisputeId::<Test>::get();
	assert_ok!(Challenge::request_availability(RuntimeOrigin::signed(who), task, point));
	let Some(DisputePhase::Availability(game)) = Disputes::<Test>::get(id).map(|d| d.phase) else {
		panic!("an availability challenge");
	};
	assert_eq!(game.point, point);
	assert_eq!(game.chunks.len() as u32, AVAILABILITY_CHUNKS);
	(id, game.chunks)
}

/// The block at whose start committed task `task`'s challenge window closes.
fn window_end(task: u64) -> u64 {
	match Tasks::<Test>::get(task).unwrap().state {
		TaskState::Committed { challenge_until, .. } => challenge_until,
		other => panic!("not committed: {other:?}"),
	}
}

fn honest_answer(t: &Trained, point: u32, chunks: &Chunks) -> AvailabilityAnswer {
	answer(&t.hashes, point, &t.states[point as usize], chunks).unwrap()
}

#[test]
fn a_solver_that_shows_its_model_keeps_the_task_and_takes_the_bond() {
	new_test_ext().execute_with(|| {
		let issuance = Balances::total_issuance();
		let t = trained();
		let task = committed(&t);
		let (id, chunks) = request(task, 20, STEPS);
		assert_eq!(locked(20), BOND);
		System::assert_has_event(
			Event::AvailabilityRequested {
				dispute: id,
				task,
				challenger: 20,
				point: STEPS,
				chunks: chunks.clone(),
				deadline: System::block_number() + ROUND_TIMEOUT,
			}
			.into(),
		);
		let before = Balances::balance(&10);
		assert_ok!(Challenge::prove_availability(
			RuntimeOrigin::signed(10),
			id,
			honest_answer(&t, STEPS, &chunks)
		));
		System::assert_has_event(Event::AvailabilityProven { dispute: id, task }.into());
		assert_eq!(resolved(id), Some((Party::Solver, Resolution::Ruling)));
		// The challenger's bond is slashed: the winner's share to the solver, the rest burned.
		let share = WINNER_SHARE.mul_floor(BOND);
		assert_eq!((locked(20), active(20)), (0, 1_000 - BOND));
		assert_eq!(Balances::balance(&10), before + share);
		assert_eq!(Balances::total_issuance(), issuance - (BOND - share));
		// The task stands and is paid when its window closes.
		let challenge_until = window_end(task);
		run_to_block(challenge_until);
		assert!(Tasks::<Test>::get(task).is_none());
		check_invariants(System::block_number());
	});
}

#[test]
fn a_solver_that_withholds_its_model_is_slashed_and_loses_the_task() {
	new_test_ext().execute_with(|| {
		let issuance = Balances::total_issuance();
		let t = trained();
		let task = committed(&t);
		let (id, _) = request(task, 20, STEPS);
		let deadline = Disputes::<Test>::get(id).unwrap().deadline;
		let before = Balances::balance(&20);
		run_to_block(deadline);
		assert_eq!(resolved(id), Some((Party::Challenger, Resolution::Timeout)));
		// The solver's stake is slashed (the winner's share to the challenger, whose bond is
		// free again) and the task reopened for another solver; the submitter may take the
		// reward back.
		let share = WINNER_SHARE.mul_floor(SOLVER_STAKE);
		assert_eq!(locked(10), 0);
		assert_eq!(active(10), 1_000 - SOLVER_STAKE);
		assert_eq!((locked(20), Balances::balance(&20)), (0, before + share));
		assert_eq!(Balances::total_issuance(), issuance - (SOLVER_STAKE - share));
		assert!(matches!(Tasks::<Test>::get(task).unwrap().state, TaskState::Open { .. }));
		let submitter = Balances::balance(&1);
		assert_ok!(Escrow::cancel(RuntimeOrigin::signed(1), task));
		assert_eq!(Balances::balance(&1), submitter + 500);
		check_invariants(System::block_number());
	});
}

#[test]
fn the_reward_waits_for_an_open_availability_challenge() {
	new_test_ext().execute_with(|| {
		let t = trained();
		let task = committed(&t);
		let challenge_until = window_end(task);
		// Asked in the window's last block: the window closes with the challenge open.
		run_to_block(challenge_until - 1);
		let (id, chunks) = request(task, 20, 1);
		run_to_block(challenge_until + 1);
		assert!(Tasks::<Test>::get(task).is_some(), "paid while a challenge was open");
		// A checkpoint's rows are shown (by anyone holding it): the task is paid at once.
		assert_ok!(Challenge::prove_availability(
			RuntimeOrigin::signed(30),
			id,
			honest_answer(&t, 1, &chunks)
		));
		assert!(Tasks::<Test>::get(task).is_none());
		check_invariants(System::block_number());
	});
}

#[test]
fn every_wrong_answer_is_refused() {
	new_test_ext().execute_with(|| {
		let t = trained();
		let task = committed(&t);
		let (id, chunks) = request(task, 20, STEPS);
		let good = honest_answer(&t, STEPS, &chunks);
		let refuse = |a: AvailabilityAnswer| {
			assert_noop!(
				Challenge::prove_availability(RuntimeOrigin::signed(10), id, a),
				Error::<Test>::BadAvailabilityAnswer
			);
		};
		// Another entry's state (a solver that kept only a checkpoint).
		refuse(answer(&t.hashes, 2, &t.states[2], &chunks).unwrap());
		// The right entry with other rows.
		let mut others = chunks.clone();
		for c in others.iter_mut() {
			c.row = (c.row + 1) % t.states[STEPS as usize][c.tensor as usize].rows;
		}
		if others != chunks {
			refuse(answer(&t.hashes, STEPS, &t.states[STEPS as usize], &others).unwrap());
		}
		// A changed value, a row too few, a forged tensor list.
		let mut bad = good.clone();
		bad.rows[0].values[0] ^= 1;
		refuse(bad);
		let mut bad = good.clone();
		bad.rows.pop();
		refuse(bad);
		let mut bad = good.clone();
		bad.tensors[0] = H256::zero();
		refuse(bad);
		// A state that is not under the solver's root at all: another model's rows.
		let mut other = t.states[STEPS as usize].clone();
		other[0].data[0] += 1.0;
		let mut hashes = t.hashes.clone();
		hashes[STEPS as usize] = state_hash(&other);
		refuse(answer(&hashes, STEPS, &other, &chunks).unwrap());
		// The honest answer still goes through.
		assert_ok!(Challenge::prove_availability(RuntimeOrigin::signed(10), id, good));
	});
}

#[test]
fn requests_and_answers_are_checked() {
	new_test_ext().execute_with(|| {
		let t = trained();
		let task = committed(&t);
		assert_noop!(
			Challenge::request_availability(RuntimeOrigin::signed(10), task, STEPS),
			Error::<Test>::OwnTask
		);
		assert_noop!(
			Challenge::request_availability(RuntimeOrigin::signed(20), task, STEPS + 1),
			Error::<Test>::NoSuchEntry
		);
		assert_noop!(
			Challenge::request_availability(RuntimeOrigin::signed(1), task, STEPS),
			pallet_compute_staking::Error::<Test>::NotRegistered
		);
		let (id, chunks) = request(task, 20, STEPS);
		assert_noop!(
			Challenge::request_availability(RuntimeOrigin::signed(20), task, 0),
			Error::<Test>::AlreadyDisputing
		);
		// A bisection dispute takes no availability answer, nor the reverse.
		let lies: Vec<H256> =
			(0..=STEPS).map(|i| H256::from_low_u64_be(0xbad + u64::from(i))).collect();
		let dispute = open(task, 21, &lies);
		assert_noop!(
			Challenge::prove_availability(
				RuntimeOrigin::signed(10),
				dispute,
				honest_answer(&t, STEPS, &chunks)
			),
			Error::<Test>::NotAnAvailabilityChallenge
		);
		assert_noop!(
			Challenge::reveal(RuntimeOrigin::signed(10), id, 1, trace_proof(&t.hashes, 0).unwrap()),
			Error::<Test>::NotBisecting
		);
		// Past the deadline, an answer is too late.
		let deadline = Disputes::<Test>::get(id).unwrap().deadline;
		System::set_block_number(deadline);
		assert_noop!(
			Challenge::prove_availability(
				RuntimeOrigin::signed(10),
				id,
				honest_answer(&t, STEPS, &chunks)
			),
			Error::<Test>::DeadlinePassed
		);
		// After the window, no request.
		let challenge_until = window_end(task);
		System::set_block_number(challenge_until);
		assert_noop!(
			Challenge::request_availability(RuntimeOrigin::signed(22), task, STEPS),
			pallet_task_escrow::Error::<Test>::ChallengeWindowClosed
		);
	});
}
