//! The dispute game end to end on the mock market: liars lose at every step of traces of
//! 1..=64 steps, by the referee's ruling or by timing out; every call's errors; several
//! disputes on one task and disputes on many tasks at once.

#![allow(
	clippy::unwrap_used,
	clippy::expect_used,
	clippy::arithmetic_side_effects,
	clippy::indexing_slicing
)]

use crate::{mock::*, DisputeCount, Disputes, Error, Event, Resolution};
use frame_support::{
	assert_noop, assert_ok,
	traits::fungible::{Inspect, InspectHold},
};
use pallet_compute_staking::Ledgers;
use pallet_task_escrow::{NextTaskId, Tasks};
use sp_core::H256;
use trainet_primitives::{
	bisection::{Bisection, Transition},
	market::{DisputePhase, Party, TaskState, Timeouts, TraceCommitment},
	trace::{trace_proof, trace_root, TracePoints},
};

/// The honest trace of a task: `steps + 1` distinct state hashes.
fn honest(steps: u32) -> Vec<H256> {
	(0..=steps).map(|t| H256::from_low_u64_be(0x1000 + u64::from(t))).collect()
}

/// `states` with every entry from `from` on replaced by a wrong one (liars that start at
/// different entries tell different lies).
fn lie_from(states: &[H256], from: u32) -> Vec<H256> {
	states
		.iter()
		.enumerate()
		.map(|(i, h)| {
			if i as u32 >= from {
				H256::from_low_u64_be(0xbad0_0000 + (u64::from(from) << 16) + i as u64)
			} else {
				*h
			}
		})
		.collect()
}

fn commitment(states: &[H256]) -> TraceCommitment {
	TraceCommitment {
		trace_root: trace_root(states),
		steps: states.len() as u32 - 1,
		final_state: *states.last().unwrap(),
		model_hash: H256::repeat_byte(0xaa),
	}
}

/// Posts a task of `steps` steps whose honest trace is `honest(steps)`; `solver` claims it
/// and commits `solver_states`. Returns the task id.
fn committed_task(solver: AccountId, solver_states: &[H256]) -> u64 {
	let steps = solver_states.len() as u32 - 1;
	let task = NextTaskId::<Test>::get();
	assert_ok!(Escrow::submit(RuntimeOrigin::signed(1), spec(steps), 500, timeouts()));
	set_truth(task, honest(steps));
	assert_ok!(Escrow::claim(RuntimeOrigin::signed(solver), task));
	assert_ok!(Escrow::commit(
		RuntimeOrigin::signed(solver),
		task,
		commitment(solver_states),
		trace_proof(solver_states, steps).unwrap()
	));
	task
}

/// `challenger` opens a dispute against `task` with `states`; returns the dispute id.
fn open(task: u64, challenger: AccountId, states: &[H256]) -> u64 {
	let id = crate::NextDisputeId::<Test>::get();
	let steps = states.len() as u32 - 1;
	assert_ok!(Challenge::open(
		RuntimeOrigin::signed(challenger),
		task,
		trace_root(states),
		trace_proof(states, steps).unwrap()
	));
	id
}

/// Plays dispute `id` with both sides revealing from their traces; `quits` stops revealing
/// from round `round` on and lets the deadline pass. Returns the rounds played.
fn play(
	id: u64,
	solver_states: &[H256],
	challenger_states: &[H256],
	quits: Option<(Party, u32)>,
) -> u32 {
	let mut rounds = 0;
	while let Some(d) = Disputes::<Test>::get(id) {
		let DisputePhase::Bisecting { round, .. } = d.phase else { break };
		let mid = d.bisection.midpoint().unwrap();
		let index = mid - 1;
		let mut quit = false;
		for (party, who, states) in [
			(Party::Solver, d.solver, solver_states),
			(Party::Challenger, d.challenger, challenger_states),
		] {
			if quits.is_some_and(|(p, r)| p == party && round >= r) {
				quit = true;
				continue;
			}
			assert_ok!(Challenge::reveal(
				RuntimeOrigin::signed(who),
				id,
				mid,
				trace_proof(states, index).unwrap()
			));
		}
		rounds += 1;
		if quit {
			run_to_block(d.deadline);
			break;
		}
		check_invariants(System::block_number());
	}
	rounds
}

fn resolved(id: u64) -> Option<(Party, Resolution)> {
	System::events().into_iter().find_map(|r| match r.event {
		RuntimeEvent::Challenge(Event::DisputeResolved { dispute, winner, resolution, .. })
			if dispute == id =>
		{
			Some((winner, resolution))
		}
		_ => None,
	})
}

fn active(who: AccountId) -> Balance {
	Ledgers::<Test>::get(who).map(|l| l.active).unwrap_or(0)
}

fn locked(who: AccountId) -> Balance {
	Ledgers::<Test>::get(who).map(|l| l.locked).unwrap_or(0)
}

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

/// Attack: one leaf can be at the product bound and the elementwise bound at once; weighing
/// `settle_op` as the larger of the two let such a call run past what it paid for.
#[test]
fn settle_op_is_weighed_for_both_of_its_bounds_at_once() {
	use crate::WeightInfo;
	type W = <Test as crate::Config>::WeightInfo;
	let both = W::settle_op_matmul().saturating_add(W::settle_op_elementwise());
	assert!(both.all_gt(W::settle_op_matmul().max(W::settle_op_elementwise())));
	assert!(Challenge::settle_op_weight().all_gte(both));
}

/// Attack: `on_initialize` ended every dispute due in its block, each ending others, so a
/// block full of due disputes could weigh more than a block. It now ends at most
/// `MaxTimeoutsPerBlock` a block and carries the rest over; a dispute past its deadline takes
/// no more answers while it waits.
#[test]
fn due_disputes_beyond_the_per_block_budget_are_carried_over() {
	new_test_ext().execute_with(|| {
		MaxTimeoutsPerBlock::set(2);
		let truth = honest(8);
		let tasks: Vec<u64> = [10, 11, 12].map(|s| committed_task(s, &truth)).to_vec();
		let ids: Vec<u64> = tasks
			.iter()
			.zip([20, 21, 22])
			.map(|(t, c)| open(*t, c, &lie_from(&truth, 2)))
			.collect();
		let deadline = Disputes::<Test>::get(ids[0]).unwrap().deadline;
		assert!(ids.iter().all(|id| Disputes::<Test>::get(id).unwrap().deadline == deadline));
		// Nobody reveals. At the deadline two end (the challengers, who must pursue, lose).
		run_to_block(deadline);
		let ended = ids.iter().filter(|id| resolved(**id).is_some()).count();
		assert_eq!(ended, 2);
		let late = *ids.iter().find(|id| resolved(**id).is_none()).unwrap();
		assert_eq!(crate::DueFrom::<Test>::get(), Some(deadline));
		check_invariants(deadline);
		// Past its deadline the third takes no answer, though it is still stored.
		let d = Disputes::<Test>::get(late).unwrap();
		let mid = d.bisection.midpoint().unwrap();
		assert_noop!(
			Challenge::reveal(
				RuntimeOrigin::signed(d.challenger),
				late,
				mid,
				trace_proof(&lie_from(&truth, 2), mid - 1).unwrap()
			),
			Error::<Test>::DeadlinePassed
		);
		// The next block ends it.
		run_to_block(deadline + 1);
		assert_eq!(resolved(late), Some((Party::Solver, Resolution::Timeout)));
		assert_eq!(crate::DueFrom::<Test>::get(), None);
		check_invariants(deadline + 1);
		MaxTimeoutsPerBlock::set(64);
	});
}

/// Attack: a cheating solver's own accounts take every dispute slot of its task and keep
/// their disputes going (both sides answering each round at the last block) past the end of
/// the challenge window, then lose them: the honest challenger, refused with
/// `TooManyDisputes` all along, found the window closed and the cheat was paid. The time
/// every slot was taken now goes back to the window.
#[test]
fn sybils_that_fill_every_dispute_slot_give_the_window_back() {
	new_test_ext().execute_with(|| {
		let steps = 4096;
		let truth = honest(steps);
		let lies = lie_from(&truth, 100);
		let task = NextTaskId::<Test>::get();
		let short = Timeouts { claim: 10, commit: 20, challenge: 12 };
		assert_ok!(Escrow::submit(RuntimeOrigin::signed(1), spec(steps), 500, short));
		set_truth(task, truth.clone());
		assert_ok!(Escrow::claim(RuntimeOrigin::signed(10), task));
		assert_ok!(Escrow::commit(
			RuntimeOrigin::signed(10),
			task,
			commitment(&lies),
			trace_proof(&lies, steps).unwrap()
		));
		let window = match Tasks::<Test>::get(task).unwrap().state {
			TaskState::Committed { challenge_until, .. } => challenge_until,
			_ => unreachable!(),
		};
		// The sybils' trace: the solver's, but for its final state.
		let mut sybil = lies.clone();
		*sybil.last_mut().unwrap() = H256::repeat_byte(0x5b);
		let ids: Vec<u64> = [21, 22, 23].map(|c| open(task, c, &sybil)).to_vec();
		assert_noop!(
			Challenge::open(
				RuntimeOrigin::signed(20),
				task,
				trace_root(&truth),
				trace_proof(&truth, steps).unwrap()
			),
			Error::<Test>::TooManyDisputes
		);
		// Round after round, each side answers in the block before the deadline.
		while ids.iter().all(|id| Disputes::<Test>::get(id).is_some()) {
			let d = Disputes::<Test>::get(ids[0]).unwrap();
			let DisputePhase::Bisecting { .. } = d.phase else { break };
			if System::block_number() > window + 4 {
				break;
			}
			run_to_block(d.deadline - 1);
			for id in &ids {
				let d = Disputes::<Test>::get(id).unwrap();
				let mid = d.bisection.midpoint().unwrap();
				for (who, states) in [(d.solver, &lies), (d.challenger, &sybil)] {
					assert_ok!(Challenge::reveal(
						RuntimeOrigin::signed(who),
						*id,
						mid,
						trace_proof(states, mid - 1).unwrap()
					));
				}
			}
		}
		let full_until = System::block_number();
		assert!(full_until > window, "the sybils held every slot past the window");
		// Now the sybils stop answering and lose.
		run_to_block(Disputes::<Test>::get(ids[0]).unwrap().deadline);
		assert!(ids.iter().all(|id| resolved(*id) == Some((Party::Solver, Resolution::Timeout))));
		// The task is not paid: its window got back the blocks every slot was taken.
		let TaskState::Committed { challenge_until, .. } = Tasks::<Test>::get(task).unwrap().state
		else {
			panic!("the cheat was paid")
		};
		assert!(challenge_until > System::block_number());
		// The honest challenger opens, and the cheat loses.
		let d20 = open(task, 20, &truth);
		play(d20, &lies, &truth, None);
		assert_eq!(resolved(d20), Some((Party::Challenger, Resolution::Ruling)));
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
fn payment_waits_for_disputes_open_past_the_window() {
	new_test_ext().execute_with(|| {
		let truth = honest(32);
		let task = committed_task(10, &truth);
		let l1 = lie_from(&truth, 20);
		let l2 = lie_from(&truth, 5);
		let d1 = open(task, 20, &l1);
		// The second opens late in the window (which ends at block 31) and answers slowly.
		run_to_block(25);
		let d2 = open(task, 21, &l2);
		play(d1, &truth, &l1, None);
		assert!(Tasks::<Test>::get(task).is_some());
		let mut past_window = false;
		while let Some(d) = Disputes::<Test>::get(d2) {
			let mid = d.bisection.midpoint().unwrap();
			run_to_block(System::block_number() + 2);
			assert_ok!(Challenge::reveal(
				RuntimeOrigin::signed(10),
				d2,
				mid,
				trace_proof(&truth, mid - 1).unwrap()
			));
			assert_ok!(Challenge::reveal(
				RuntimeOrigin::signed(21),
				d2,
				mid,
				trace_proof(&l2, mid - 1).unwrap()
			));
			if System::block_number() >= 31 && Disputes::<Test>::get(d2).is_some() {
				// Past the window with a dispute open: not paid, and closed to new disputes.
				past_window = true;
				assert!(Tasks::<Test>::get(task).is_some());
				assert_noop!(
					Challenge::open(
						RuntimeOrigin::signed(22),
						task,
						trace_root(&l1),
						trace_proof(&l1, 32).unwrap()
					),
					pallet_task_escrow::Error::<Test>::ChallengeWindowClosed
				);
			}
		}
		assert!(past_window);
		assert_eq!(resolved(d2), Some((Party::Solver, Resolution::Ruling)));
		// The last dispute's end paid the solver at once.
		assert!(Tasks::<Test>::get(task).is_none());
		assert_eq!(locked(10), 0);
		assert_eq!(
			Balances::balance_on_hold(&pallet_task_escrow::HoldReason::Reward.into(), &1),
			0
		);
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

mod initialization;
mod operations;

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
	let last = entries.len() as u32 - 1;
	let mut c = commitment(&entries);
	c.steps = steps;
	assert_ok!(Escrow::commit(
		RuntimeOrigin::signed(solver),
		task,
		c,
		trace_proof(&entries, last).unwrap()
	));
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
