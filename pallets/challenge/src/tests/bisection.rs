//! The step bisection: liars lose at every step of traces of 1..=64 steps, by the referee's
//! ruling or by timing out; every call's errors; a deferred leaf.

use super::*;

/// One full dispute over `steps` steps where `liar`'s trace is wrong from entry `lie_at` on;
/// with `quit_round`, the liar stops answering from that round instead of lying to the end.
fn dispute_case(steps: u32, liar: Party, lie_at: u32, quit_round: Option<u32>) {
	new_test_ext().execute_with(|| {
		let issuance = Balances::total_issuance();
		let truth = honest(steps);
		let lies = lie_from(&truth, lie_at);
		let (solver_states, challenger_states) = match liar {
			Party::Solver => (lies.clone(), truth.clone()),
			Party::Challenger => (truth.clone(), lies.clone()),
		};
		let task = committed_task(10, &solver_states);
		let id = open(task, 20, &challenger_states);
		let rounds = play(id, &solver_states, &challenger_states, quit_round.map(|r| (liar, r)));
		let ctx = format!("steps {steps} liar {liar:?} lie_at {lie_at} quit {quit_round:?}");
		assert!(rounds <= Bisection::max_rounds(steps), "{ctx}: {rounds} rounds");
		let honest_side = liar.other();
		let (winner, how) = resolved(id).unwrap_or_else(|| panic!("{ctx}: unresolved"));
		assert_eq!(winner, honest_side, "{ctx}");
		assert!(Disputes::<Test>::get(id).is_none(), "{ctx}");

		let quit_early = quit_round.is_some_and(|r| r < rounds || rounds == 0);
		if quit_early {
			assert_eq!(how, Resolution::Timeout, "{ctx}");
		} else {
			assert_eq!(how, Resolution::Ruling, "{ctx}");
			// The referee saw exactly the first wrong transition.
			let (_, case) = cases().pop().unwrap();
			let expected =
				if lie_at == 0 { Transition::Initialization } else { Transition::Step(lie_at - 1) };
			assert_eq!(case.transition, expected, "{ctx}");
			assert_eq!(case.pre_state, lie_at.checked_sub(1).map(|i| truth[i as usize]), "{ctx}");
		}

		let slash = match liar {
			Party::Solver => SOLVER_STAKE,
			Party::Challenger => BOND,
		};
		let paid = WINNER_SHARE.mul_floor(slash);
		match liar {
			Party::Solver => {
				assert_eq!(active(10), 1_000 - SOLVER_STAKE, "{ctx}");
				assert_eq!(locked(10), 0, "{ctx}");
				assert_eq!(locked(20), 0, "{ctx}");
				assert_eq!(Balances::balance(&20), 9_000 + paid, "{ctx}");
				// The task is open again for another solver.
				assert!(matches!(Tasks::<Test>::get(task).unwrap().state, TaskState::Open { .. }));
			}
			Party::Challenger => {
				assert_eq!(active(20), 1_000 - BOND, "{ctx}");
				assert_eq!(locked(20), 0, "{ctx}");
				assert_eq!(Balances::balance(&10), 9_000 + paid, "{ctx}");
				// The solver is paid when the window closes.
				run_to_block(System::block_number() + 31);
				assert!(Tasks::<Test>::get(task).is_none(), "{ctx}");
				assert_eq!(Balances::total_balance(&10), 10_000 + paid + 500, "{ctx}");
				assert_eq!(locked(10), 0, "{ctx}");
			}
		}
		assert_eq!(burned(), slash - paid, "{ctx}");
		assert_eq!(Balances::total_issuance(), issuance - (slash - paid), "{ctx}");
	});
}

#[test]
fn a_lying_solver_loses_to_an_honest_challenger_at_every_step() {
	for steps in 1..=64 {
		for lie_at in 0..=steps {
			dispute_case(steps, Party::Solver, lie_at, None);
		}
	}
}

#[test]
fn an_honest_solver_beats_a_lying_challenger_at_every_step() {
	for steps in 1..=64 {
		for lie_at in 0..=steps {
			dispute_case(steps, Party::Challenger, lie_at, None);
		}
	}
}

#[test]
fn a_lying_solver_that_stops_answering_loses_by_timeout() {
	for steps in 1..=64 {
		let rounds = Bisection::max_rounds(steps);
		for lie_at in 0..=steps {
			dispute_case(steps, Party::Solver, lie_at, Some(lie_at % rounds));
		}
	}
}

#[test]
fn a_lying_challenger_that_stops_answering_loses_by_timeout() {
	for steps in 1..=64 {
		let rounds = Bisection::max_rounds(steps);
		for lie_at in 0..=steps {
			dispute_case(steps, Party::Challenger, lie_at, Some(lie_at % rounds));
		}
	}
}

#[test]
fn when_neither_side_reveals_the_challenger_loses() {
	new_test_ext().execute_with(|| {
		let truth = honest(8);
		let task = committed_task(10, &lie_from(&truth, 3));
		let id = open(task, 20, &truth);
		let deadline = Disputes::<Test>::get(id).unwrap().deadline;
		assert_eq!(deadline, 1 + ROUND_TIMEOUT);
		run_to_block(deadline);
		assert_eq!(resolved(id), Some((Party::Solver, Resolution::Timeout)));
		assert_eq!(active(20), 1_000 - BOND);
	});
}

#[test]
fn open_errors_are_named_and_change_nothing() {
	new_test_ext().execute_with(|| {
		let truth = honest(4);
		let root = trace_root(&truth);
		let proof = trace_proof(&truth, 4).unwrap();
		let open_with =
			|who, task, root, proof| Challenge::open(RuntimeOrigin::signed(who), task, root, proof);
		// No such task; a task not yet committed.
		assert_noop!(
			open_with(20, 7, root, proof.clone()),
			pallet_task_escrow::Error::<Test>::TaskNotFound
		);
		assert_ok!(Escrow::submit(RuntimeOrigin::signed(1), spec(4), 500, timeouts()));
		assert_noop!(
			open_with(20, 0, root, proof.clone()),
			pallet_task_escrow::Error::<Test>::NotCommitted
		);
		assert_ok!(Escrow::claim(RuntimeOrigin::signed(10), 0));
		assert_noop!(
			open_with(20, 0, root, proof),
			pallet_task_escrow::Error::<Test>::NotCommitted
		);
	});
}

#[test]
fn open_rejects_bad_challengers_and_proofs() {
	new_test_ext().execute_with(|| {
		let truth = honest(4);
		let lies = lie_from(&truth, 2);
		let task = committed_task(10, &lies);
		let root = trace_root(&truth);
		let proof = trace_proof(&truth, 4).unwrap();
		let open_with =
			|who, root, proof| Challenge::open(RuntimeOrigin::signed(who), task, root, proof);
		assert_noop!(open_with(10, root, proof.clone()), Error::<Test>::OwnTask);
		// A solver-only staker and a non-staker.
		assert_noop!(
			open_with(11, root, proof.clone()),
			pallet_compute_staking::Error::<Test>::MissingRole
		);
		assert_noop!(
			open_with(2, root, proof.clone()),
			pallet_compute_staking::Error::<Test>::NotRegistered
		);
		// A proof of another entry, or against another root.
		assert_noop!(open_with(20, root, trace_proof(&truth, 3).unwrap()), Error::<Test>::BadProof);
		assert_noop!(open_with(20, H256::repeat_byte(9), proof.clone()), Error::<Test>::BadProof);
		// The same final state as the solver's.
		assert_noop!(
			open_with(20, trace_root(&lies), trace_proof(&lies, 4).unwrap()),
			Error::<Test>::NoDisagreement
		);
		assert_noop!(
			Challenge::open(RuntimeOrigin::none(), task, root, proof.clone()),
			sp_runtime::DispatchError::BadOrigin
		);
		// A verifier whose free stake is below the bond.
		assert_ok!(Staking::unbond(RuntimeOrigin::signed(24), 1_000 - BOND + 1));
		assert_noop!(
			open_with(24, root, proof.clone()),
			pallet_compute_staking::Error::<Test>::MissingRole
		);

		assert_ok!(open_with(20, root, proof.clone()));
		assert_eq!(locked(20), BOND);
		assert_noop!(open_with(20, root, proof.clone()), Error::<Test>::AlreadyDisputing);
		assert_ok!(open_with(21, root, proof.clone()));
		assert_ok!(open_with(30, root, proof.clone()));
		assert_eq!(DisputeCount::<Test>::get(task), MAX_DISPUTES);
		assert_noop!(open_with(22, root, proof.clone()), Error::<Test>::TooManyDisputes);
	});
}

#[test]
fn reveal_errors_are_named_and_change_nothing() {
	new_test_ext().execute_with(|| {
		let truth = honest(8);
		let lies = lie_from(&truth, 5);
		let task = committed_task(10, &lies);
		let id = open(task, 20, &truth);
		let mid = Disputes::<Test>::get(id).unwrap().bisection.midpoint().unwrap();
		let good = trace_proof(&truth, mid - 1).unwrap();
		let reveal =
			|who, id, pos, proof| Challenge::reveal(RuntimeOrigin::signed(who), id, pos, proof);
		assert_noop!(reveal(20, 99, mid, good.clone()), Error::<Test>::DisputeNotFound);
		assert_noop!(reveal(21, id, mid, good.clone()), Error::<Test>::NotAParty);
		assert_noop!(
			reveal(20, id, mid + 1, trace_proof(&truth, mid).unwrap()),
			Error::<Test>::WrongPosition
		);
		// A proof of another entry, or of a forged state.
		assert_noop!(
			reveal(20, id, mid, trace_proof(&truth, mid).unwrap()),
			Error::<Test>::BadProof
		);
		let mut forged = good.clone();
		forged.state = H256::repeat_byte(3);
		assert_noop!(reveal(20, id, mid, forged), Error::<Test>::BadProof);
		assert_ok!(reveal(20, id, mid, good.clone()));
		assert_noop!(reveal(20, id, mid, good), Error::<Test>::AlreadyRevealed);
		assert_noop!(
			Challenge::timeout(RuntimeOrigin::signed(5), id),
			Error::<Test>::DeadlineNotReached
		);
		assert_noop!(
			Challenge::timeout(RuntimeOrigin::signed(5), 77),
			Error::<Test>::DisputeNotFound
		);
	});
}

#[test]
fn a_deferred_leaf_that_expires_is_void_or_goes_to_the_default_winner() {
	// Void: bonds unlocked, nobody slashed, the task paid once its window closes.
	new_test_ext().execute_with(|| {
		defer_rulings(None);
		let truth = honest(6);
		let lies = lie_from(&truth, 2);
		let task = committed_task(10, &lies);
		let id = open(task, 20, &truth);
		play(id, &lies, &truth, None);
		let d = Disputes::<Test>::get(id).unwrap();
		assert_eq!(d.phase, DisputePhase::Leaf { transition: Transition::Step(1) });
		let mid = 1;
		assert_noop!(
			Challenge::reveal(RuntimeOrigin::signed(20), id, mid, trace_proof(&truth, 0).unwrap()),
			Error::<Test>::NotBisecting
		);
		System::assert_has_event(
			Event::LeafReached {
				dispute: id,
				transition: Transition::Step(1),
				deadline: d.deadline,
			}
			.into(),
		);
		run_to_block(d.deadline);
		System::assert_has_event(Event::DisputeVoided { dispute: id, task }.into());
		assert_eq!((locked(20), active(20), active(10)), (0, 1_000, 1_000));
		run_to_block(40);
		assert!(Tasks::<Test>::get(task).is_none());
	});
	// A default winner.
	new_test_ext().execute_with(|| {
		defer_rulings(Some(Party::Solver));
		let truth = honest(6);
		let task = committed_task(10, &truth);
		let lies = lie_from(&truth, 4);
		let id = open(task, 20, &lies);
		play(id, &truth, &lies, None);
		run_to_block(Disputes::<Test>::get(id).unwrap().deadline);
		assert_eq!(resolved(id), Some((Party::Solver, Resolution::Timeout)));
		assert_eq!(active(20), 1_000 - BOND);
	});
	// The referee's later ruling.
	new_test_ext().execute_with(|| {
		defer_rulings(None);
		let truth = honest(6);
		let lies = lie_from(&truth, 4);
		let task = committed_task(10, &lies);
		let id = open(task, 20, &truth);
		assert_noop!(Challenge::leaf_ruling(id, Party::Challenger), Error::<Test>::NotAtLeaf);
		play(id, &lies, &truth, None);
		assert_ok!(Challenge::leaf_ruling(id, Party::Challenger));
		assert_eq!(resolved(id), Some((Party::Challenger, Resolution::Ruling)));
		assert_noop!(Challenge::leaf_ruling(id, Party::Challenger), Error::<Test>::DisputeNotFound);
	});
}
