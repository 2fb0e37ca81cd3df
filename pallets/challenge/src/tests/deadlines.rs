//! Deadlines and weights: what others can and cannot crowd out, and what is carried over.

use super::*;

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
		commit(10, task, commitment(&lies), &lies);
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

/// Attack: the deadline queue holds `MaxDeadlinesPerBlock` disputes a block and a deadline
/// slides at most `MAX_DEADLINE_SLIDE` blocks; whoever filled the blocks an honest side's next
/// deadline would land in (with disputes of their own, opened a round earlier) made its answer
/// fail with `DeadlineQueueFull`, and it lost by timeout. An answer now never fails for a
/// full queue: the dispute keeps its deadline unqueued (`DeadlineNotQueued`), takes no answer
/// after it like any other, and anyone's `timeout` ends it.
#[test]
fn a_full_deadline_queue_cannot_make_an_honest_answer_fail() {
	new_test_ext().execute_with(|| {
		let truth = honest(8);
		let lies = lie_from(&truth, 2);
		let task = committed_task(10, &truth);
		let id = open(task, 20, &lies);
		let d = Disputes::<Test>::get(id).unwrap();
		let mid = d.bisection.midpoint().unwrap();
		// The liar reveals first; the honest solver's answer ends the round and sets the
		// next deadline, and every block it could go to is full.
		run_to_block(2);
		assert_ok!(Challenge::reveal(
			RuntimeOrigin::signed(20),
			id,
			mid,
			trace_proof(&lies, mid - 1).unwrap()
		));
		let now = System::block_number();
		let at = now + ROUND_TIMEOUT;
		assert!(d.deadline < at);
		let capacity = <Test as crate::Config>::MaxDeadlinesPerBlock::get() as u64;
		let fillers = |block: u64| (0..capacity).map(move |k| u64::MAX - block * 1000 - k);
		for block in at..=at + crate::deadline_queue::MAX_DEADLINE_SLIDE as u64 {
			crate::Deadlines::<Test>::insert(
				block,
				frame_support::BoundedVec::try_from(fillers(block).collect::<Vec<_>>()).unwrap(),
			);
		}
		assert_ok!(Challenge::reveal(
			RuntimeOrigin::signed(10),
			id,
			mid,
			trace_proof(&truth, mid - 1).unwrap()
		));
		let deadline = Disputes::<Test>::get(id).unwrap().deadline;
		assert_eq!(deadline, at);
		System::assert_has_event(crate::Event::DeadlineNotQueued { dispute: id, deadline }.into());
		assert!(crate::Unqueued::<Test>::contains_key(id));
		// The fillers were never disputes: take them out before the invariants are read.
		for block in at..=at + crate::deadline_queue::MAX_DEADLINE_SLIDE as u64 {
			crate::Deadlines::<Test>::remove(block);
		}
		check_invariants(now);
		// The lying challenger does not answer the next round. At the deadline nothing ends
		// the dispute by itself, and it takes no late answer; anyone's `timeout` ends it, for
		// the solver.
		let next = Disputes::<Test>::get(id).unwrap().bisection.midpoint().unwrap();
		run_to_block(deadline);
		assert!(Disputes::<Test>::contains_key(id));
		check_invariants(deadline);
		assert_noop!(
			Challenge::reveal(
				RuntimeOrigin::signed(20),
				id,
				next,
				trace_proof(&lies, next - 1).unwrap()
			),
			Error::<Test>::DeadlinePassed
		);
		assert_ok!(Challenge::timeout(RuntimeOrigin::signed(99), id));
		assert_eq!(resolved(id), Some((Party::Solver, Resolution::Timeout)));
		assert!(!crate::Unqueued::<Test>::contains_key(id));
		check_invariants(deadline);
	});
}
