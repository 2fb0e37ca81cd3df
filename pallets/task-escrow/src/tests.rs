//! Unit tests of every call's success and error paths, and of every deadline.

#![allow(
	clippy::unwrap_used,
	clippy::expect_used,
	clippy::arithmetic_side_effects,
	clippy::indexing_slicing
)]

use crate::{
	mock::*, ClaimDeadlines, Deadlines, Error, Event, Expiry, HoldReason, NextTaskId,
	ReceiptExpiries, Receipts, TaskMarket, Tasks,
};
use frame_support::{
	assert_noop, assert_ok,
	traits::fungible::{Inspect, InspectHold},
};
use pallet_compute_staking::{Ledgers, StakeInterface};
use sp_core::H256;
use trainet_primitives::{
	availability::FinalState,
	market::{StateTensors, TaskState, Timeouts, TraceCommitment},
	task::{LayerWidths, Model, Optimizer},
	trace::{trace_proof, trace_root, TraceProof},
};

/// An honest-looking trace of `steps` steps: its commitment, the final entry's proof and the
/// final state's tensor hashes.
fn trace(steps: u32) -> (TraceCommitment, TraceProof, StateTensors) {
	let last = FinalState::made_up(&spec(steps), 0).unwrap();
	let mut states: Vec<H256> =
		(0..steps).map(|t| H256::from_low_u64_be(u64::from(t) + 1)).collect();
	states.push(last.state);
	let commitment = TraceCommitment {
		trace_root: trace_root(&states),
		steps,
		final_state: last.state,
		model_hash: last.model,
	};
	(commitment, trace_proof(&states, steps).unwrap(), last.tensors)
}

fn reward_held(who: AccountId) -> Balance {
	Balances::balance_on_hold(&HoldReason::Reward.into(), &who)
}

fn locked(who: AccountId) -> Balance {
	Ledgers::<Test>::get(who).map(|l| l.locked).unwrap_or(0)
}

fn last_event() -> RuntimeEvent {
	System::events().pop().expect("an event").event
}

/// Submits a 100-reward task of 4 steps from account 1; returns its id.
fn submit() -> u64 {
	let id = NextTaskId::<Test>::get();
	assert_ok!(Escrow::submit(RuntimeOrigin::signed(1), spec(4), 100, timeouts()));
	id
}

fn claimed(solver: AccountId) -> u64 {
	let id = submit();
	assert_ok!(Escrow::claim(RuntimeOrigin::signed(solver), id));
	id
}

fn committed(solver: AccountId) -> u64 {
	let id = claimed(solver);
	let (c, p, t) = trace(4);
	assert_ok!(Escrow::commit(RuntimeOrigin::signed(solver), id, c, p, t.clone()));
	id
}

#[test]
fn submit_holds_the_reward_and_queues_the_claim_deadline() {
	new_test_ext().execute_with(|| {
		let id = submit();
		assert_eq!(reward_held(1), 100);
		assert_eq!(Balances::balance(&1), 9_900);
		let t = Tasks::<Test>::get(id).unwrap();
		assert_eq!(t.state, TaskState::Open { claim_by: 6 });
		assert_eq!(ClaimDeadlines::<Test>::get(6).into_inner(), vec![id]);
		assert_eq!(
			last_event(),
			Event::TaskSubmitted { task: id, submitter: 1, reward: 100, claim_by: 6 }.into()
		);
		assert_eq!(submit(), id + 1);
	});
}

#[test]
fn submit_rejects_bad_specs_rewards_timeouts_and_balances() {
	new_test_ext().execute_with(|| {
		let go = |s, r, t| Escrow::submit(RuntimeOrigin::signed(1), s, r, t);
		let mut s = spec(4);
		s.steps = 0;
		assert_noop!(go(s, 100, timeouts()), Error::<Test>::SpecBadSteps);
		let mut s = spec(4);
		s.batch_size = 0;
		assert_noop!(go(s, 100, timeouts()), Error::<Test>::SpecBadBatchSize);
		let mut s = spec(4);
		s.model = Model::Mlp {
			widths: LayerWidths::truncate_from(vec![64]),
			activation: trainet_primitives::task::Activation::Relu,
		};
		assert_noop!(go(s, 100, timeouts()), Error::<Test>::SpecTooFewLayers);
		let mut s = spec(4);
		s.dataset.classes = 3;
		assert_noop!(go(s, 100, timeouts()), Error::<Test>::SpecDatasetShapeMismatch);
		let mut s = spec(4);
		s.dataset.samples = 0;
		assert_noop!(go(s, 100, timeouts()), Error::<Test>::SpecEmptyDataset);
		let mut s = spec(4);
		s.optimizer = Optimizer::sgd(f32::NAN, 0.5);
		assert_noop!(go(s, 100, timeouts()), Error::<Test>::SpecBadHyperparameter);

		assert_noop!(go(spec(4), MIN_REWARD - 1, timeouts()), Error::<Test>::RewardTooLow);
		for bad in [
			Timeouts { claim: MIN_TIMEOUT - 1, commit: 10, challenge: 10 },
			Timeouts { claim: 10, commit: MAX_TIMEOUT + 1, challenge: 10 },
			Timeouts { claim: 10, commit: 10, challenge: 0 },
		] {
			assert_noop!(go(spec(4), 100, bad), Error::<Test>::BadTimeout);
		}
		assert_noop!(
			Escrow::submit(RuntimeOrigin::signed(9), spec(4), 100, timeouts()),
			Error::<Test>::InsufficientBalance
		);
		assert_noop!(go(spec(4), Balance::MAX, timeouts()), Error::<Test>::InsufficientBalance);
		assert_noop!(
			Escrow::submit(RuntimeOrigin::none(), spec(4), 100, timeouts()),
			sp_runtime::DispatchError::BadOrigin
		);
	});
}

#[test]
fn cancel_refunds_an_open_task_only_for_its_submitter() {
	new_test_ext().execute_with(|| {
		let id = submit();
		assert_noop!(Escrow::cancel(RuntimeOrigin::signed(2), id), Error::<Test>::NotSubmitter);
		assert_noop!(Escrow::cancel(RuntimeOrigin::signed(1), 99), Error::<Test>::TaskNotFound);
		assert_ok!(Escrow::cancel(RuntimeOrigin::signed(1), id));
		assert_eq!(reward_held(1), 0);
		assert_eq!(Balances::balance(&1), 10_000);
		assert!(Tasks::<Test>::get(id).is_none());
		assert!(ClaimDeadlines::<Test>::get(6).is_empty());
		assert_eq!(last_event(), Event::TaskCancelled { task: id }.into());

		let id = claimed(10);
		assert_noop!(Escrow::cancel(RuntimeOrigin::signed(1), id), Error::<Test>::NotOpen);
	});
}

#[test]
fn claim_locks_the_solver_stake_and_moves_the_deadline() {
	new_test_ext().execute_with(|| {
		let id = claimed(10);
		assert_eq!(locked(10), SOLVER_STAKE);
		assert_eq!(
			Tasks::<Test>::get(id).unwrap().state,
			TaskState::Claimed { solver: 10, commit_by: 11 }
		);
		assert!(ClaimDeadlines::<Test>::get(6).is_empty());
		assert_eq!(Deadlines::<Test>::get(11).into_inner(), vec![id]);
		assert_eq!(last_event(), Event::TaskClaimed { task: id, solver: 10, commit_by: 11 }.into());
	});
}

#[test]
fn claim_errors_are_named() {
	new_test_ext().execute_with(|| {
		let id = submit();
		assert_noop!(Escrow::claim(RuntimeOrigin::signed(10), 99), Error::<Test>::TaskNotFound);
		// Not a staker, a verifier only.
		assert_noop!(
			Escrow::claim(RuntimeOrigin::signed(2), id),
			pallet_compute_staking::Error::<Test>::NotRegistered
		);
		assert_noop!(
			Escrow::claim(RuntimeOrigin::signed(13), id),
			pallet_compute_staking::Error::<Test>::MissingRole
		);
		bar(12);
		assert_noop!(Escrow::claim(RuntimeOrigin::signed(12), id), Error::<Test>::SolverBarred);
		// Solver 10 has 300 bonded: three tasks lock it all, a fourth finds no free stake.
		assert_ok!(Escrow::claim(RuntimeOrigin::signed(10), id));
		assert_noop!(Escrow::claim(RuntimeOrigin::signed(11), id), Error::<Test>::NotOpen);
		claimed(10);
		claimed(10);
		let fourth = submit();
		assert_noop!(
			Escrow::claim(RuntimeOrigin::signed(10), fourth),
			pallet_compute_staking::Error::<Test>::InsufficientFreeStake
		);
		// Locked stake cannot be unbonded.
		assert_noop!(
			Staking::unbond(RuntimeOrigin::signed(10), 1),
			pallet_compute_staking::Error::<Test>::InsufficientFreeStake
		);
	});
}

#[test]
fn commit_checks_solver_steps_final_state_proof_and_model_hash() {
	new_test_ext().execute_with(|| {
		let id = claimed(10);
		let (c, p, t) = trace(4);
		assert_noop!(
			Escrow::commit(RuntimeOrigin::signed(11), id, c, p.clone(), t.clone()),
			Error::<Test>::NotSolver
		);
		assert_noop!(
			Escrow::commit(RuntimeOrigin::signed(10), 99, c, p.clone(), t.clone()),
			Error::<Test>::TaskNotFound
		);
		let (c5, p5, t5) = trace(5);
		assert_noop!(
			Escrow::commit(RuntimeOrigin::signed(10), id, c5, p5, t5),
			Error::<Test>::StepsMismatch
		);
		// A final state that is not the trace's last entry.
		let mut lie = c;
		lie.final_state = H256::repeat_byte(0x55);
		assert_noop!(
			Escrow::commit(RuntimeOrigin::signed(10), id, lie, p.clone(), t.clone()),
			Error::<Test>::BadFinalStateProof
		);
		// A proof of another entry.
		let states: Vec<H256> = (0..=4u64).map(|t| H256::from_low_u64_be(t + 1)).collect();
		let mut other = trace_proof(&states, 3).unwrap();
		other.state = c.final_state;
		assert_noop!(
			Escrow::commit(RuntimeOrigin::signed(10), id, c, other, t.clone()),
			Error::<Test>::BadFinalStateProof
		);

		// A model hash that is not the final state's parameter part: the solver would be
		// paid for a trace while serving (or withholding) some other model.
		let mut other_model = c;
		other_model.model_hash = H256::repeat_byte(0xaa);
		assert_noop!(
			Escrow::commit(RuntimeOrigin::signed(10), id, other_model, p.clone(), t.clone()),
			Error::<Test>::BadModelHash
		);
		// The hash of the whole final state (optimizer included) is not the model's either.
		let mut whole = c;
		whole.model_hash = c.final_state;
		assert_noop!(
			Escrow::commit(RuntimeOrigin::signed(10), id, whole, p.clone(), t.clone()),
			Error::<Test>::BadModelHash
		);
		// Tensor hashes that do not make the final state, or too few of them.
		let mut forged = t.clone();
		forged[0] = H256::zero();
		assert_noop!(
			Escrow::commit(RuntimeOrigin::signed(10), id, c, p.clone(), forged),
			Error::<Test>::BadModelHash
		);
		let mut short = t.clone();
		short.pop();
		assert_noop!(
			Escrow::commit(RuntimeOrigin::signed(10), id, c, p.clone(), short),
			Error::<Test>::BadModelHash
		);

		assert_ok!(Escrow::commit(RuntimeOrigin::signed(10), id, c, p.clone(), t.clone()));
		assert_eq!(
			Tasks::<Test>::get(id).unwrap().state,
			TaskState::Committed { solver: 10, commitment: c, challenge_until: 21 }
		);
		assert_eq!(Deadlines::<Test>::get(21).into_inner(), vec![id]);
		assert!(Deadlines::<Test>::get(11).is_empty());
		assert_noop!(
			Escrow::commit(RuntimeOrigin::signed(10), id, c, p, t.clone()),
			Error::<Test>::NotClaimed
		);
		let open = submit();
		let (c, p, t) = trace(4);
		assert_noop!(
			Escrow::commit(RuntimeOrigin::signed(10), open, c, p, t.clone()),
			Error::<Test>::NotClaimed
		);
	});
}

#[test]
fn an_unclaimed_task_is_refunded_at_its_deadline() {
	new_test_ext().execute_with(|| {
		let issuance = Balances::total_issuance();
		let id = submit();
		run_to_block(5);
		assert!(Tasks::<Test>::get(id).is_some());
		run_to_block(6);
		assert!(Tasks::<Test>::get(id).is_none());
		assert_eq!(Balances::balance(&1), 10_000);
		assert_eq!(reward_held(1), 0);
		System::assert_has_event(Event::TaskExpired { task: id, stage: Expiry::Unclaimed }.into());
		assert_eq!(Balances::total_issuance(), issuance);
	});
}

#[test]
fn a_solver_that_misses_its_commitment_is_slashed_and_the_submitter_refunded() {
	new_test_ext().execute_with(|| {
		let issuance = Balances::total_issuance();
		let id = claimed(10);
		run_to_block(10);
		assert!(missed().is_empty());
		run_to_block(11);
		assert_eq!(missed(), vec![(id, 10, SOLVER_STAKE)]);
		assert!(Tasks::<Test>::get(id).is_none());
		assert_eq!(locked(10), 0);
		assert_eq!(Ledgers::<Test>::get(10).unwrap().active, 300 - SOLVER_STAKE);
		// Refund plus half the slash.
		assert_eq!(Balances::balance(&1), 10_000 + SOLVER_STAKE / 2);
		System::assert_has_event(
			Event::TaskExpired { task: id, stage: Expiry::Uncommitted }.into(),
		);
		// Half the slash was burned, nothing else.
		assert_eq!(Balances::total_issuance(), issuance - SOLVER_STAKE / 2);
	});
}

#[test]
fn a_committed_task_is_paid_when_the_window_closes() {
	new_test_ext().execute_with(|| {
		let issuance = Balances::total_issuance();
		let id = committed(10);
		run_to_block(20);
		assert_noop!(
			Escrow::expire(RuntimeOrigin::signed(5), id),
			Error::<Test>::DeadlineNotReached
		);
		run_to_block(21);
		assert!(Tasks::<Test>::get(id).is_none());
		assert_eq!(Balances::total_balance(&10), 1_000 + 100);
		assert_eq!(Balances::balance(&1), 10_000 - 100);
		assert_eq!(locked(10), 0);
		System::assert_has_event(Event::TaskFinalized { task: id, solver: 10, reward: 100 }.into());
		assert_eq!(Balances::total_issuance(), issuance);
	});
}

#[test]
fn a_paid_task_leaves_a_receipt_naming_its_model_for_a_while() {
	new_test_ext().execute_with(|| {
		let id = committed(10);
		let (c, _, _) = trace(4);
		run_to_block(21);
		assert!(Tasks::<Test>::get(id).is_none());
		// The submitter can still learn which model it paid for, and what was trained.
		let r = Receipts::<Test>::get(id).expect("a receipt");
		assert_eq!((r.submitter, r.solver, r.commitment), (1, 10, c));
		assert_eq!(r.spec, spec(4));
		assert_eq!(r.kept_until, 21 + 30);
		System::assert_has_event(Event::ReceiptKept { task: id, until: 51 }.into());
		// It goes at its end (every block's invariants checked on the way).
		run_to_block(50);
		assert!(Receipts::<Test>::get(id).is_some());
		run_to_block(51);
		assert!(Receipts::<Test>::get(id).is_none());
		assert!(ReceiptExpiries::<Test>::get(51).is_empty());
		System::assert_has_event(Event::ReceiptDropped { task: id }.into());
		// A refunded or cancelled task never paid anyone: no receipt.
		let open = submit();
		assert_ok!(Escrow::cancel(RuntimeOrigin::signed(1), open));
		assert!(Receipts::<Test>::get(open).is_none());
	});
}

#[test]
fn open_disputes_hold_payment_until_the_last_one_ends() {
	new_test_ext().execute_with(|| {
		let id = committed(10);
		assert!(Escrow::challengeable(id).is_ok());
		set_open_disputes(id, 2);
		run_to_block(21);
		// Past its window, but disputes are open: not paid, and not challengeable any more.
		assert!(Tasks::<Test>::get(id).is_some());
		assert_noop!(Escrow::expire(RuntimeOrigin::signed(5), id), Error::<Test>::DisputesOpen);
		assert_eq!(
			Escrow::challengeable(id).unwrap_err(),
			Error::<Test>::ChallengeWindowClosed.into()
		);
		set_open_disputes(id, 1);
		Escrow::dispute_ended(id);
		assert!(Tasks::<Test>::get(id).is_some());
		set_open_disputes(id, 0);
		Escrow::dispute_ended(id);
		assert!(Tasks::<Test>::get(id).is_none());
		assert_eq!(Balances::total_balance(&10), 1_100);
	});
}

#[test]
fn a_dispute_ending_inside_the_window_leaves_the_task_open_to_others() {
	new_test_ext().execute_with(|| {
		let id = committed(10);
		set_open_disputes(id, 0);
		Escrow::dispute_ended(id);
		assert!(Tasks::<Test>::get(id).is_some());
		run_to_block(21);
		assert!(Tasks::<Test>::get(id).is_none());
	});
}

#[test]
fn a_losing_solver_reopens_the_task_until_the_limit_then_the_submitter_is_refunded() {
	new_test_ext().execute_with(|| {
		let id = committed(10);
		let (c, p, tensors) = trace(4);
		// The solver's stake is slashed by the slashing pallet before it reports.
		let _ = Staking::slash_locked(&10, SOLVER_STAKE);
		Escrow::solver_lost(id);
		let t = Tasks::<Test>::get(id).unwrap();
		assert_eq!(t.state, TaskState::Open { claim_by: 6 });
		assert_eq!((t.reopened, t.last_failed_solver), (1, Some(10)));
		assert!(Deadlines::<Test>::get(21).is_empty());
		System::assert_has_event(Event::TaskReopened { task: id, claim_by: 6 }.into());
		assert_noop!(
			Escrow::claim(RuntimeOrigin::signed(10), id),
			Error::<Test>::SolverFailedThisTask
		);
		// Another solver takes it, and loses too: reopened a second time (the limit).
		assert_ok!(Escrow::claim(RuntimeOrigin::signed(11), id));
		assert_ok!(Escrow::commit(RuntimeOrigin::signed(11), id, c, p.clone(), tensors.clone()));
		let _ = Staking::slash_locked(&11, SOLVER_STAKE);
		Escrow::solver_lost(id);
		assert_eq!(Tasks::<Test>::get(id).unwrap().reopened, 2);
		// The first loser may come back now; the third loss refunds.
		assert_ok!(Escrow::claim(RuntimeOrigin::signed(10), id));
		assert_ok!(Escrow::commit(RuntimeOrigin::signed(10), id, c, p, tensors));
		let _ = Staking::slash_locked(&10, SOLVER_STAKE);
		Escrow::solver_lost(id);
		assert!(Tasks::<Test>::get(id).is_none());
		assert_eq!(Balances::balance(&1), 10_000);
		System::assert_has_event(Event::TaskRefunded { task: id }.into());
		run_to_block(30);
	});
}

#[test]
fn full_deadline_queues_slide_to_the_next_block() {
	new_test_ext().execute_with(|| {
		let ids: Vec<u64> = (0..MAX_PER_BLOCK + 2).map(|_| submit()).collect();
		assert_eq!(ClaimDeadlines::<Test>::get(6).len() as u32, MAX_PER_BLOCK);
		assert_eq!(
			ClaimDeadlines::<Test>::get(7).into_inner(),
			ids[MAX_PER_BLOCK as usize..].to_vec()
		);
		let last = ids[ids.len() - 1];
		assert_eq!(Tasks::<Test>::get(last).unwrap().deadline(), 7);
		run_to_block(7);
		assert!(ids.iter().all(|id| Tasks::<Test>::get(id).is_none()));
	});
}

#[test]
fn a_queue_full_for_every_block_in_reach_is_an_error() {
	new_test_ext().execute_with(|| {
		let slots = MAX_PER_BLOCK * (crate::MAX_DEADLINE_SLIDE + 1);
		for _ in 0..slots {
			submit();
		}
		assert_noop!(
			Escrow::submit(RuntimeOrigin::signed(1), spec(4), 100, timeouts()),
			Error::<Test>::DeadlineQueueFull
		);
	});
}

/// Attack: a submitter filled every block in reach of a solver's commit with the claim
/// deadlines of cheap tasks, so the solver's `commit` failed with `DeadlineQueueFull` and the
/// submitter took half its stake at the commit deadline. Claim deadlines now have a queue of
/// their own; only claims, each locking a solver's stake, reach the solver's.
#[test]
fn a_flood_of_cheap_tasks_cannot_make_a_commit_fail() {
	new_test_ext().execute_with(|| {
		let id = claimed(10);
		let now = System::block_number();
		let due = now + timeouts().challenge;
		for block in due..=due + crate::MAX_DEADLINE_SLIDE as u64 {
			for _ in 0..MAX_PER_BLOCK {
				let t = Timeouts { claim: block - now, ..timeouts() };
				assert_ok!(Escrow::submit(RuntimeOrigin::signed(1), spec(4), MIN_REWARD, t));
			}
		}
		let (c, p, t) = trace(4);
		assert_ok!(Escrow::commit(RuntimeOrigin::signed(10), id, c, p, t.clone()));
		assert!(matches!(
			Tasks::<Test>::get(id).unwrap().state,
			TaskState::Committed { challenge_until, .. } if challenge_until == due
		));
		run_to_block(due + 20);
	});
}

#[test]
fn expire_is_permissionless_but_not_early() {
	new_test_ext().execute_with(|| {
		let id = submit();
		assert_noop!(
			Escrow::expire(RuntimeOrigin::signed(2), id),
			Error::<Test>::DeadlineNotReached
		);
		assert_noop!(Escrow::expire(RuntimeOrigin::signed(2), 42), Error::<Test>::TaskNotFound);
		assert_noop!(
			Escrow::expire(RuntimeOrigin::none(), id),
			sp_runtime::DispatchError::BadOrigin
		);
		// Should a block's queue be skipped, anyone can move the task on.
		System::set_block_number(6);
		assert_ok!(Escrow::expire(RuntimeOrigin::signed(2), id));
		assert!(Tasks::<Test>::get(id).is_none());
		assert_eq!(Balances::balance(&1), 10_000);
	});
}

#[test]
fn spec_is_readable_while_the_task_lives() {
	new_test_ext().execute_with(|| {
		let id = submit();
		assert_eq!(Escrow::spec(id), Some(spec(4)));
		assert_eq!(Escrow::spec(id + 1), None);
		assert_eq!(Escrow::challengeable(id).unwrap_err(), Error::<Test>::NotCommitted.into());
		assert_eq!(Escrow::challengeable(9).unwrap_err(), Error::<Test>::TaskNotFound.into());
		assert_eq!(<Staking as StakeInterface<_>>::free_stake(&10), 300);
	});
}

/// Attack: with a flat stake, cheating on a task whose reward is above the stake pays even
/// when caught. The stake now scales with the reward (above a floor).
#[test]
fn the_solver_stake_scales_with_the_reward() {
	new_test_ext().execute_with(|| {
		SolverStakeMultiple::set(2);
		let small = NextTaskId::<Test>::get();
		assert_ok!(Escrow::submit(RuntimeOrigin::signed(1), spec(4), MIN_REWARD, timeouts()));
		let large = NextTaskId::<Test>::get();
		assert_ok!(Escrow::submit(RuntimeOrigin::signed(1), spec(4), 140, timeouts()));
		// The floor for a small reward, twice the reward above it.
		assert_eq!(Tasks::<Test>::get(small).unwrap().solver_stake, SOLVER_STAKE);
		assert_eq!(Tasks::<Test>::get(large).unwrap().solver_stake, 280);
		assert_ok!(Escrow::claim(RuntimeOrigin::signed(10), large));
		assert_eq!(locked(10), 280);
		SolverStakeMultiple::set(0);
	});
}
