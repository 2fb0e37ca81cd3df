//! Unit tests: both outcomes of a dispute, a missed commitment, offence records, bars and
//! pardons; issuance falls by exactly what is burned.

#![allow(
	clippy::unwrap_used,
	clippy::expect_used,
	clippy::arithmetic_side_effects,
	clippy::indexing_slicing
)]

use crate::{
	mock::*, DisputeOutcome, Error, Event, Offence, OffenceRecord, Offences, SettleDispute,
};
use frame_support::{assert_noop, assert_ok, traits::fungible::Inspect};
use pallet_compute_staking::{Ledgers, Role, StakeInterface};
use pallet_task_escrow::{NextTaskId, Tasks};
use sp_core::H256;
use trainet_primitives::availability::FinalState;
use trainet_primitives::{
	market::{Party, TaskState, TraceCommitment},
	trace::{trace_proof, trace_root},
};

const BOND: Balance = 50;

fn ledger(who: AccountId) -> (Balance, Balance) {
	Ledgers::<Test>::get(who).map(|l| (l.active, l.locked)).unwrap_or((0, 0))
}

/// A committed task of solver 10 with a dispute of challenger 20 (bond locked).
fn disputed() -> DisputeOutcome<AccountId, Balance> {
	let last = FinalState::made_up(&spec(4), 0).unwrap();
	let mut states: Vec<H256> = (0..4u64).map(H256::from_low_u64_be).collect();
	states.push(last.state);
	let task = NextTaskId::<Test>::get();
	assert_ok!(Escrow::submit(RuntimeOrigin::signed(1), spec(4), 500, timeouts()));
	assert_ok!(Escrow::claim(RuntimeOrigin::signed(10), task));
	let commitment = TraceCommitment {
		trace_root: trace_root(&states),
		steps: 4,
		final_state: last.state,
		model_hash: last.model,
	};
	assert_ok!(Escrow::commit(
		RuntimeOrigin::signed(10),
		task,
		commitment,
		trace_proof(&states, 4).unwrap(),
		last.tensors
	));
	assert_ok!(Staking::lock(&20, Role::Verifier, BOND));
	DisputeOutcome {
		task,
		dispute: 7,
		solver: 10,
		challenger: 20,
		solver_stake: SOLVER_STAKE,
		bond: BOND,
		winner: Party::Challenger,
		standing: vec![],
	}
}

#[test]
fn a_losing_solver_is_slashed_the_challenger_paid_and_the_task_reopened() {
	new_test_ext().execute_with(|| {
		let issuance = Balances::total_issuance();
		let o = disputed();
		Slashing::settle(&o);
		let paid = WINNER_SHARE.mul_floor(SOLVER_STAKE);
		assert_eq!(ledger(10), (1_000 - SOLVER_STAKE, 0));
		assert_eq!(ledger(20), (1_000, 0));
		assert_eq!(Balances::balance(&20), 9_000 + paid);
		assert_eq!(Balances::total_issuance(), issuance - (SOLVER_STAKE - paid));
		System::assert_has_event(
			Event::Slashed {
				offender: 10,
				offence: Offence::LostDispute { task: o.task, dispute: 7, party: Party::Solver },
				amount: SOLVER_STAKE,
				beneficiary: 20,
				paid,
				burned: SOLVER_STAKE - paid,
			}
			.into(),
		);
		assert_eq!(
			Offences::<Test>::get(10),
			Some(OffenceRecord {
				count: 1,
				last: Offence::LostDispute { task: o.task, dispute: 7, party: Party::Solver },
				at: 1
			})
		);
		assert!(matches!(Tasks::<Test>::get(o.task).unwrap().state, TaskState::Open { .. }));
		Slashing::do_try_state().unwrap();
	});
}

#[test]
fn a_losing_challenger_is_slashed_and_the_solver_paid_its_share() {
	new_test_ext().execute_with(|| {
		let issuance = Balances::total_issuance();
		let o = DisputeOutcome { winner: Party::Solver, ..disputed() };
		Slashing::settle(&o);
		let paid = WINNER_SHARE.mul_floor(BOND);
		assert_eq!(ledger(20), (1_000 - BOND, 0));
		// The solver's stake stays locked for its task, which stays committed.
		assert_eq!(ledger(10), (1_000, SOLVER_STAKE));
		assert_eq!(Balances::balance(&10), 9_000 + paid);
		assert_eq!(Balances::total_issuance(), issuance - (BOND - paid));
		assert!(matches!(Tasks::<Test>::get(o.task).unwrap().state, TaskState::Committed { .. }));
		// When the window closes the solver is paid as usual.
		run_to_block(40);
		assert!(Tasks::<Test>::get(o.task).is_none());
		assert_eq!(ledger(10), (1_000, 0));
	});
}

#[test]
fn a_missed_commitment_pays_the_submitter_and_counts_as_an_offence() {
	new_test_ext().execute_with(|| {
		let issuance = Balances::total_issuance();
		assert_ok!(Escrow::submit(RuntimeOrigin::signed(1), spec(4), 500, timeouts()));
		assert_ok!(Escrow::claim(RuntimeOrigin::signed(10), 0));
		run_to_block(21);
		let paid = WINNER_SHARE.mul_floor(SOLVER_STAKE);
		assert_eq!(ledger(10), (1_000 - SOLVER_STAKE, 0));
		assert_eq!(Balances::balance(&1), 100_000 + paid);
		assert_eq!(Offences::<Test>::get(10).unwrap().last, Offence::MissedCommitment { task: 0 });
		assert_eq!(Balances::total_issuance(), issuance - (SOLVER_STAKE - paid));
	});
}

#[test]
fn offenders_are_barred_at_the_limit_and_pardoned_by_the_admin() {
	new_test_ext().execute_with(|| {
		for i in 0..BAR_AFTER {
			assert!(!Slashing::is_barred(&10));
			Slashing::settle(&disputed());
			assert_eq!(Offences::<Test>::get(10).unwrap().count, i + 1);
		}
		assert!(Slashing::is_barred(&10));
		System::assert_has_event(Event::Barred { who: 10 }.into());
		assert_noop!(
			Slashing::pardon(RuntimeOrigin::signed(1), 10),
			sp_runtime::DispatchError::BadOrigin
		);
		assert_noop!(Slashing::pardon(RuntimeOrigin::root(), 11), Error::<Test>::NoOffences);
		assert_ok!(Slashing::pardon(RuntimeOrigin::root(), 10));
		assert!(!Slashing::is_barred(&10));
		System::assert_last_event(Event::Pardoned { who: 10 }.into());
	});
}

#[test]
fn a_slash_never_takes_more_than_is_locked() {
	new_test_ext().execute_with(|| {
		let issuance = Balances::total_issuance();
		// Nothing locked: nothing taken, nothing paid, but the offence is recorded.
		Slashing::settle(&DisputeOutcome {
			task: 99,
			dispute: 1,
			solver: 11,
			challenger: 21,
			solver_stake: SOLVER_STAKE,
			bond: BOND,
			winner: Party::Challenger,
			standing: vec![],
		});
		assert_eq!(ledger(11), (1_000, 0));
		assert_eq!(Balances::total_issuance(), issuance);
		assert_eq!(Offences::<Test>::get(11).unwrap().count, 1);
	});
}
