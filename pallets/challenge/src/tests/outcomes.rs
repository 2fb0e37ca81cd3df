//! Outcomes: who is paid and slashed when a dispute ends, with several disputes on one task
//! and disputes on many tasks at once.

use super::*;

/// Attack: the solver's own second account opens a dispute too, and the solver loses that
/// one on purpose (it never answers) before the honest challenger's dispute ends. The
/// solver's loss used to void the honest dispute unpaid and hand the sybil the whole winner's
/// share: the solver's net penalty halved and the challenger who did the work got nothing.
#[test]
fn a_sybil_challenger_cannot_take_the_honest_challengers_reward() {
	new_test_ext().execute_with(|| {
		let issuance = Balances::total_issuance();
		let truth = honest(16);
		let lies = lie_from(&truth, 9);
		let task = committed_task(10, &lies);
		let (solver_before, sybil_before, honest_before) =
			(Balances::balance(&10), Balances::balance(&21), Balances::balance(&20));
		// The sybil opens first, so its deadline comes first.
		let sybil = open(task, 21, &truth);
		run_to_block(System::block_number() + 1);
		let d20 = open(task, 20, &truth);
		let deadline = Disputes::<Test>::get(sybil).unwrap().deadline;
		assert!(deadline < Disputes::<Test>::get(d20).unwrap().deadline);
		// The solver lets the sybil win by default.
		play(sybil, &lies, &truth, Some((Party::Solver, 0)));
		assert_eq!(resolved(sybil), Some((Party::Challenger, Resolution::Timeout)));
		assert!(Disputes::<Test>::get(d20).is_none());
		// The honest challenger's bond is free and it has half the winners' share; the
		// sybil the other half; the rest of the stake is burned.
		let share = WINNER_SHARE.mul_floor(SOLVER_STAKE);
		assert_eq!((locked(20), active(20)), (0, 1_000));
		assert_eq!(Balances::balance(&20), honest_before + share / 2);
		assert_eq!(Balances::balance(&21), sybil_before + share / 2);
		System::assert_has_event(
			pallet_slashing::Event::ChallengerRewarded {
				challenger: 20,
				offender: 10,
				amount: share / 2,
			}
			.into(),
		);
		// The solver and its sybil together lose at least the burned part of the stake.
		let together_before = solver_before + sybil_before;
		let together_after = Balances::balance(&10) + Balances::balance(&21);
		assert!(together_before + share / 2 <= together_after + SOLVER_STAKE);
		assert_eq!(Balances::total_issuance(), issuance - (SOLVER_STAKE - share));
		check_invariants(System::block_number());
	});
}

#[test]
fn when_the_solver_loses_every_standing_challenger_shares_the_reward() {
	new_test_ext().execute_with(|| {
		let issuance = Balances::total_issuance();
		let truth = honest(16);
		let lies = lie_from(&truth, 9);
		let task = committed_task(10, &lies);
		// 21 lies worse than the solver; 20 and 22 are honest.
		let worse = lie_from(&truth, 3);
		let d20 = open(task, 20, &truth);
		let d21 = open(task, 21, &worse);
		let d22 = open(task, 22, &truth);
		// 21 loses first: the solver keeps the task; 21's bond is slashed.
		play(d21, &lies, &worse, None);
		assert_eq!(resolved(d21), Some((Party::Solver, Resolution::Ruling)));
		assert_eq!(active(21), 1_000 - BOND);
		assert!(Tasks::<Test>::get(task).is_some());
		// 20 wins: 22's dispute, still standing, ends with it: its bond unlocked, nobody
		// else slashed, and 22 shares the winners' part of the solver's slash with 20.
		let (free20, free22) = (Balances::balance(&20), Balances::balance(&22));
		play(d20, &lies, &truth, None);
		assert_eq!(resolved(d20), Some((Party::Challenger, Resolution::Ruling)));
		System::assert_has_event(Event::DisputeVoided { dispute: d22, task }.into());
		assert!(Disputes::<Test>::get(d22).is_none());
		assert_eq!((locked(22), active(22)), (0, 1_000));
		let part = WINNER_SHARE.mul_floor(SOLVER_STAKE) / 2;
		assert_eq!(Balances::balance(&20), free20 + part);
		assert_eq!(Balances::balance(&22), free22 + part);
		// 21, whose dispute was lost, shares nothing.
		assert!(!System::events().iter().any(|r| matches!(
			r.event,
			RuntimeEvent::Slashing(pallet_slashing::Event::ChallengerRewarded {
				challenger: 21,
				..
			})
		)));
		assert_eq!(DisputeCount::<Test>::get(task), 0);
		assert!(matches!(Tasks::<Test>::get(task).unwrap().state, TaskState::Open { .. }));
		let burned_total = (BOND - WINNER_SHARE.mul_floor(BOND))
			+ (SOLVER_STAKE - WINNER_SHARE.mul_floor(SOLVER_STAKE));
		assert_eq!(Balances::total_issuance(), issuance - burned_total);
		run_to_block(60);
	});
}

#[test]
fn many_tasks_are_disputed_at_once() {
	new_test_ext().execute_with(|| {
		let mut games = vec![];
		for (i, solver) in (10..=14).enumerate() {
			let steps = 5 + 7 * i as u32;
			let truth = honest(steps);
			let lies = lie_from(&truth, 1 + i as u32);
			let solver_lies = i % 2 == 0;
			let (s, c) = if solver_lies { (lies, truth) } else { (truth.clone(), lies) };
			let task = committed_task(solver, &s);
			let id = open(task, 20 + i as u64, &c);
			games.push((id, s, c, solver_lies));
		}
		// Interleave: one round of every game at a time.
		loop {
			let mut moved = false;
			for (id, s, c, _) in &games {
				let Some(d) = Disputes::<Test>::get(id) else { continue };
				let DisputePhase::Bisecting { .. } = d.phase else { continue };
				let mid = d.bisection.midpoint().unwrap();
				assert_ok!(Challenge::reveal(
					RuntimeOrigin::signed(d.solver),
					*id,
					mid,
					trace_proof(s, mid - 1).unwrap()
				));
				assert_ok!(Challenge::reveal(
					RuntimeOrigin::signed(d.challenger),
					*id,
					mid,
					trace_proof(c, mid - 1).unwrap()
				));
				moved = true;
			}
			if !moved {
				break;
			}
			run_to_block(System::block_number() + 1);
		}
		for (id, _, _, solver_lies) in games {
			let winner = if solver_lies { Party::Challenger } else { Party::Solver };
			assert_eq!(resolved(id), Some((winner, Resolution::Ruling)));
		}
	});
}

#[test]
fn a_repeat_offender_is_barred_until_pardoned() {
	new_test_ext().execute_with(|| {
		let truth = honest(4);
		let lies = lie_from(&truth, 1);
		for _ in 0..BAR_AFTER {
			let task = committed_task(10, &lies);
			let id = open(task, 20, &truth);
			play(id, &lies, &truth, None);
		}
		System::assert_has_event(pallet_slashing::Event::Barred { who: 10 }.into());
		assert_ok!(Escrow::submit(RuntimeOrigin::signed(1), spec(4), 500, timeouts()));
		let task = NextTaskId::<Test>::get() - 1;
		assert_noop!(
			Escrow::claim(RuntimeOrigin::signed(10), task),
			pallet_task_escrow::Error::<Test>::SolverBarred
		);
		assert_noop!(
			Slashing::pardon(RuntimeOrigin::signed(1), 10),
			sp_runtime::DispatchError::BadOrigin
		);
		assert_ok!(Slashing::pardon(RuntimeOrigin::root(), 10));
		assert_ok!(Escrow::claim(RuntimeOrigin::signed(10), task));
	});
}

#[cfg(feature = "try-runtime")]
#[test]
fn frame_runs_every_pallets_try_state_hook_and_it_catches_a_broken_book() {
	use frame_support::traits::{fungible::MutateHold, TryState, TryStateSelect};
	new_test_ext().execute_with(|| {
		let truth = honest(8);
		let lies = lie_from(&truth, 3);
		let task = committed_task(10, &lies);
		let id = open(task, 20, &truth);
		play(id, &lies, &truth, Some((Party::Solver, 1)));
		let now = System::block_number();
		assert_ok!(AllPalletsWithSystem::try_state(now, TryStateSelect::All));
		// A reward hold on a submitter that its tasks do not explain.
		assert_ok!(Balances::hold(&pallet_task_escrow::HoldReason::Reward.into(), &1, 5));
		assert!(AllPalletsWithSystem::try_state(now, TryStateSelect::All).is_err());
	});
}
