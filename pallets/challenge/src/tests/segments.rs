//! The segment game, with a checkpoint interval above 1.

use super::*;

/// The entries a trace with checkpoint interval `interval` commits to, of the per-step
/// `states`.
fn checkpoints(states: &[H256], interval: u32) -> Vec<H256> {
	let points = TracePoints::new(states.len() as u32 - 1, interval).unwrap();
	(0..points.len()).map(|k| states[points.step(k).unwrap() as usize]).collect()
}

/// A task of `per_step.len() - 1` steps with checkpoint interval `interval` whose honest
/// per-step trace is `honest(steps)`; `solver` commits the checkpoints of `per_step`.
fn checkpointed_task(solver: AccountId, per_step: &[H256], interval: u32) -> u64 {
	let steps = per_step.len() as u32 - 1;
	let task = NextTaskId::<Test>::get();
	let mut s = spec(steps);
	s.checkpoint_interval = interval;
	assert_ok!(Escrow::submit(RuntimeOrigin::signed(1), s, 500, timeouts()));
	set_truth(task, honest(steps));
	assert_ok!(Escrow::claim(RuntimeOrigin::signed(solver), task));
	let entries = checkpoints(per_step, interval);
	let mut c = commitment(&entries);
	c.steps = steps;
	commit(solver, task, c, &entries);
	task
}

/// Plays dispute `id` to its end, both sides answering from their per-step traces: the step
/// bisection over the checkpoints, then the segment game. `quits` stops `party` from the
/// segment stage on (`0`: committing, `1`: revealing). Returns the rounds of reveals.
fn play_segments(
	id: u64,
	interval: u32,
	solver_states: &[H256],
	challenger_states: &[H256],
	quits: Option<(Party, u32)>,
) -> u32 {
	let (solver_entries, challenger_entries) =
		(checkpoints(solver_states, interval), checkpoints(challenger_states, interval));
	let mut rounds = play(id, &solver_entries, &challenger_entries, None);
	while let Some(d) = Disputes::<Test>::get(id) {
		let DisputePhase::Segment(game) = d.phase.clone() else { break };
		let sides = [
			(Party::Solver, d.solver, solver_states),
			(Party::Challenger, d.challenger, challenger_states),
		];
		let segment = |states: &[H256]| {
			states[game.first as usize..=(game.first + game.len) as usize].to_vec()
		};
		let stage = if game.position().is_none() { 0 } else { 1 };
		let mut quit = false;
		for (party, who, states) in sides {
			if quits.is_some_and(|(p, s)| p == party && stage >= s) {
				quit = true;
				continue;
			}
			let own = segment(states);
			match game.position() {
				None => {
					assert_ok!(Challenge::commit_segment(
						RuntimeOrigin::signed(who),
						id,
						trace_root(&own)
					));
				}
				Some(position) => {
					assert_ok!(Challenge::reveal_segment(
						RuntimeOrigin::signed(who),
						id,
						position,
						trace_proof(&own, position).unwrap()
					));
				}
			}
		}
		rounds += stage;
		if quit {
			run_to_block(d.deadline);
			break;
		}
		check_invariants(System::block_number());
	}
	rounds
}

#[test]
fn a_liar_is_caught_inside_a_segment_at_every_step() {
	for (steps, interval) in [(10, 4), (9, 3), (17, 16), (5, 64), (12, 1)] {
		for lie_at in 0..=steps {
			for liar in [Party::Solver, Party::Challenger] {
				new_test_ext().execute_with(|| {
					let ctx = format!("steps {steps} C {interval} lie_at {lie_at} {liar:?}");
					let truth = honest(steps);
					let lies = lie_from(&truth, lie_at);
					let (solver_states, challenger_states) = match liar {
						Party::Solver => (lies.clone(), truth.clone()),
						Party::Challenger => (truth.clone(), lies.clone()),
					};
					let task = checkpointed_task(10, &solver_states, interval);
					let id = open(task, 20, &checkpoints(&challenger_states, interval));
					let rounds =
						play_segments(id, interval, &solver_states, &challenger_states, None);
					let (winner, how) = resolved(id).unwrap_or_else(|| panic!("{ctx}"));
					assert_eq!((winner, how), (liar.other(), Resolution::Ruling), "{ctx}");
					// The referee saw the first wrong step, from the last right state.
					let (_, case) = cases().pop().unwrap();
					let expected = match lie_at {
						0 => Transition::Initialization,
						t => Transition::Step(t - 1),
					};
					assert_eq!(case.transition, expected, "{ctx}");
					let pre = lie_at.checked_sub(1).map(|i| truth[i as usize]);
					assert_eq!(case.pre_state, pre, "{ctx}");
					assert!(
						[case.solver_post, case.challenger_post].contains(&truth[lie_at as usize]),
						"{ctx}"
					);
					// No more rounds than per-step commitments would take, plus one.
					assert!(rounds <= Bisection::max_rounds(steps) + 1, "{ctx}: {rounds} rounds");
				});
			}
		}
	}
}

#[test]
fn inside_a_segment_whoever_stops_answering_loses() {
	// 16 steps, checkpoints every 8: a lie from step 3 narrows to the first segment.
	for (quitter, stage) in
		[(Party::Solver, 0), (Party::Challenger, 0), (Party::Solver, 1), (Party::Challenger, 1)]
	{
		new_test_ext().execute_with(|| {
			let truth = honest(16);
			let lies = lie_from(&truth, 3);
			let task = checkpointed_task(10, &lies, 8);
			let id = open(task, 20, &checkpoints(&truth, 8));
			play_segments(id, 8, &lies, &truth, Some((quitter, stage)));
			assert_eq!(
				resolved(id),
				Some((quitter.other(), Resolution::Timeout)),
				"{quitter:?} quits at stage {stage}"
			);
		});
	}
	// Neither commits: the challenger loses.
	new_test_ext().execute_with(|| {
		let truth = honest(16);
		let lies = lie_from(&truth, 3);
		let task = checkpointed_task(10, &lies, 8);
		let id = open(task, 20, &checkpoints(&truth, 8));
		play(id, &checkpoints(&lies, 8), &checkpoints(&truth, 8), None);
		assert!(matches!(Disputes::<Test>::get(id).unwrap().phase, DisputePhase::Segment(_)));
		run_to_block(Disputes::<Test>::get(id).unwrap().deadline);
		assert_eq!(resolved(id), Some((Party::Solver, Resolution::Timeout)));
	});
}

/// Attack: the segment's root is due within one round whatever the segment's length, so a
/// challenger with an honest checkpoint and garbage after it won by timeout against an honest
/// solver whose recomputation of the segment takes longer than a round. The deadline now
/// grows with the segment's work at the reference speed.
#[test]
fn a_long_segment_gives_the_honest_side_time_to_recompute_it() {
	new_test_ext().execute_with(|| {
		let s = spec(16);
		let program = trainet_primitives::program::step_program(&s).unwrap();
		// One step's work per block: the 8-step segment is given 8 blocks more than a round.
		set_work_per_block(trainet_primitives::settle::step_work(&s, &program));
		let truth = honest(16);
		let lies = lie_from(&truth, 3);
		let task = checkpointed_task(10, &truth, 8);
		let id = open(task, 20, &checkpoints(&lies, 8));
		play(id, &checkpoints(&truth, 8), &checkpoints(&lies, 8), None);
		let d = Disputes::<Test>::get(id).unwrap();
		assert!(matches!(d.phase, DisputePhase::Segment(_)));
		let now = System::block_number();
		assert_eq!(d.deadline, now + ROUND_TIMEOUT + 8);
		// The liar commits at once; the honest solver is still recomputing after a round.
		assert_ok!(Challenge::commit_segment(
			RuntimeOrigin::signed(20),
			id,
			trace_root(&lies[..=8])
		));
		run_to_block(now + ROUND_TIMEOUT + 4);
		assert!(resolved(id).is_none(), "the honest solver lost while recomputing");
		assert_ok!(Challenge::commit_segment(
			RuntimeOrigin::signed(10),
			id,
			trace_root(&truth[..=8])
		));
		play_segments(id, 8, &truth, &lies, None);
		assert_eq!(resolved(id), Some((Party::Solver, Resolution::Ruling)));
	});
}

#[test]
fn segment_errors_are_named_and_change_nothing() {
	new_test_ext().execute_with(|| {
		let truth = honest(16);
		let lies = lie_from(&truth, 3);
		let task = checkpointed_task(10, &lies, 8);
		let id = open(task, 20, &checkpoints(&truth, 8));
		let root = trace_root(&truth[..=8]);
		// Not in a segment yet.
		assert_noop!(
			Challenge::commit_segment(RuntimeOrigin::signed(10), id, root),
			Error::<Test>::NotInSegment
		);
		assert_noop!(
			Challenge::reveal_segment(
				RuntimeOrigin::signed(10),
				id,
				4,
				trace_proof(&truth, 4).unwrap()
			),
			Error::<Test>::NotInSegment
		);
		play(id, &checkpoints(&lies, 8), &checkpoints(&truth, 8), None);
		let DisputePhase::Segment(game) = Disputes::<Test>::get(id).unwrap().phase else {
			panic!("not in a segment")
		};
		assert_eq!((game.first, game.len), (0, 8));
		// Only the parties; reveals wait for both roots.
		assert_noop!(
			Challenge::commit_segment(RuntimeOrigin::signed(21), id, root),
			Error::<Test>::NotAParty
		);
		assert_ok!(Challenge::commit_segment(RuntimeOrigin::signed(20), id, root));
		assert_noop!(
			Challenge::commit_segment(RuntimeOrigin::signed(20), id, root),
			Error::<Test>::AlreadyCommitted
		);
		let own = truth[..=8].to_vec();
		assert_noop!(
			Challenge::reveal_segment(
				RuntimeOrigin::signed(20),
				id,
				4,
				trace_proof(&own, 4).unwrap()
			),
			Error::<Test>::WrongStage
		);
		assert_ok!(Challenge::commit_segment(
			RuntimeOrigin::signed(10),
			id,
			trace_root(&lies[..=8])
		));
		// The first round is at position 4.
		assert_noop!(
			Challenge::reveal_segment(
				RuntimeOrigin::signed(20),
				id,
				3,
				trace_proof(&own, 3).unwrap()
			),
			Error::<Test>::WrongPosition
		);
		// A state that is not under the caller's root.
		assert_noop!(
			Challenge::reveal_segment(
				RuntimeOrigin::signed(20),
				id,
				4,
				trace_proof(&lies[..=8], 4).unwrap()
			),
			Error::<Test>::BadProof
		);
		assert_ok!(Challenge::reveal_segment(
			RuntimeOrigin::signed(20),
			id,
			4,
			trace_proof(&own, 4).unwrap()
		));
		assert_noop!(
			Challenge::reveal_segment(
				RuntimeOrigin::signed(20),
				id,
				4,
				trace_proof(&own, 4).unwrap()
			),
			Error::<Test>::AlreadyRevealed
		);
		// The step bisection's call is refused here.
		assert_noop!(
			Challenge::reveal(RuntimeOrigin::signed(10), id, 2, trace_proof(&lies, 1).unwrap()),
			Error::<Test>::NotBisecting
		);
	});
}
