//! Tests of every call's success and error paths, and of the interface other pallets use.

// Tests may panic: the no-panic lints are for code that runs on chain.
#![allow(
	clippy::unwrap_used,
	clippy::expect_used,
	clippy::arithmetic_side_effects,
	clippy::indexing_slicing
)]

use crate::{mock::*, Error, Event, HoldReason, Ledgers, Role, Roles, StakeInterface};
use frame_support::{
	assert_noop, assert_ok,
	traits::{
		fungible::{Inspect, InspectHold},
		Imbalance,
	},
};

fn held(who: AccountId) -> Balance {
	Balances::balance_on_hold(&HoldReason::Bond.into(), &who)
}

fn free(who: AccountId) -> Balance {
	Balances::balance(&who)
}

fn last_event() -> RuntimeEvent {
	System::events().pop().expect("an event").event
}

#[test]
fn register_holds_the_bond() {
	new_test_ext().execute_with(|| {
		assert_ok!(Staking::register(RuntimeOrigin::signed(1), Roles::SOLVER, 300));
		assert_eq!(held(1), 300);
		assert_eq!(free(1), 700);
		let ledger = Ledgers::<Test>::get(1).unwrap();
		assert_eq!((ledger.active, ledger.locked), (300, 0));
		assert_eq!(
			last_event(),
			Event::Registered { who: 1, roles: Roles::SOLVER, bond: 300 }.into()
		);
		Staking::do_try_state().unwrap();
	});
}

#[test]
fn register_errors() {
	new_test_ext().execute_with(|| {
		assert_noop!(
			Staking::register(RuntimeOrigin::signed(1), Roles::default(), 300),
			Error::<Test>::NoRole
		);
		assert_noop!(
			Staking::register(RuntimeOrigin::signed(1), Roles::SOLVER, MIN_SOLVER_BOND - 1),
			Error::<Test>::BondBelowMinimum
		);
		// Both roles need the larger minimum.
		assert_noop!(
			Staking::register(RuntimeOrigin::signed(1), Roles::BOTH, MIN_VERIFIER_BOND),
			Error::<Test>::BondBelowMinimum
		);
		assert_noop!(
			Staking::register(RuntimeOrigin::signed(9), Roles::VERIFIER, MIN_VERIFIER_BOND),
			Error::<Test>::InsufficientBalance
		);
		assert_noop!(
			Staking::register(RuntimeOrigin::signed(1), Roles::SOLVER, u128::MAX),
			Error::<Test>::InsufficientBalance
		);
		assert_ok!(Staking::register(RuntimeOrigin::signed(1), Roles::VERIFIER, 60));
		assert_noop!(
			Staking::register(RuntimeOrigin::signed(1), Roles::VERIFIER, 60),
			Error::<Test>::AlreadyRegistered
		);
		assert_noop!(
			Staking::register(RuntimeOrigin::none(), Roles::VERIFIER, 60),
			sp_runtime::DispatchError::BadOrigin
		);
	});
}

#[test]
fn bond_extra_adds_and_checks() {
	new_test_ext().execute_with(|| {
		assert_noop!(
			Staking::bond_extra(RuntimeOrigin::signed(1), 10),
			Error::<Test>::NotRegistered
		);
		assert_ok!(Staking::register(RuntimeOrigin::signed(1), Roles::SOLVER, 100));
		assert_noop!(Staking::bond_extra(RuntimeOrigin::signed(1), 0), Error::<Test>::ZeroAmount);
		assert_noop!(
			Staking::bond_extra(RuntimeOrigin::signed(1), 1_000),
			Error::<Test>::InsufficientBalance
		);
		assert_noop!(
			Staking::bond_extra(RuntimeOrigin::signed(1), u128::MAX),
			Error::<Test>::Overflow
		);
		assert_ok!(Staking::bond_extra(RuntimeOrigin::signed(1), 50));
		assert_eq!(held(1), 150);
		assert_eq!(Ledgers::<Test>::get(1).unwrap().active, 150);
		assert_eq!(last_event(), Event::Bonded { who: 1, amount: 50 }.into());
	});
}

#[test]
fn unbond_then_withdraw_after_the_period() {
	new_test_ext().execute_with(|| {
		assert_ok!(Staking::register(RuntimeOrigin::signed(1), Roles::SOLVER, 300));
		assert_ok!(Staking::unbond(RuntimeOrigin::signed(1), 100));
		assert_eq!(
			last_event(),
			Event::Unbonding { who: 1, amount: 100, unlock_at: 1 + UNBONDING_PERIOD }.into()
		);
		// Two unbonds in one block share a chunk.
		assert_ok!(Staking::unbond(RuntimeOrigin::signed(1), 50));
		let ledger = Ledgers::<Test>::get(1).unwrap();
		assert_eq!(ledger.active, 150);
		assert_eq!(ledger.unbonding.len(), 1);
		assert_eq!(held(1), 300, "unbonding funds stay held");

		run_to_block(UNBONDING_PERIOD);
		assert_noop!(
			Staking::withdraw_unbonded(RuntimeOrigin::signed(1)),
			Error::<Test>::NothingToWithdraw
		);
		run_to_block(1 + UNBONDING_PERIOD);
		assert_ok!(Staking::withdraw_unbonded(RuntimeOrigin::signed(1)));
		assert_eq!(held(1), 150);
		assert_eq!(free(1), 850);
		assert_eq!(last_event(), Event::Withdrawn { who: 1, amount: 150 }.into());
		assert!(Ledgers::<Test>::get(1).unwrap().unbonding.is_empty());
	});
}

#[test]
fn unbonding_everything_deregisters_on_withdraw() {
	new_test_ext().execute_with(|| {
		assert_ok!(Staking::register(RuntimeOrigin::signed(2), Roles::VERIFIER, 80));
		assert_ok!(Staking::unbond(RuntimeOrigin::signed(2), 80));
		run_to_block(1 + UNBONDING_PERIOD);
		assert_ok!(Staking::withdraw_unbonded(RuntimeOrigin::signed(2)));
		assert!(Ledgers::<Test>::get(2).is_none());
		assert_eq!(last_event(), Event::Deregistered { who: 2 }.into());
		assert_eq!(free(2), 1_000);
	});
}

#[test]
fn unbond_errors() {
	new_test_ext().execute_with(|| {
		assert_noop!(Staking::unbond(RuntimeOrigin::signed(1), 1), Error::<Test>::NotRegistered);
		assert_ok!(Staking::register(RuntimeOrigin::signed(1), Roles::SOLVER, 300));
		assert_noop!(Staking::unbond(RuntimeOrigin::signed(1), 0), Error::<Test>::ZeroAmount);
		assert_noop!(
			Staking::unbond(RuntimeOrigin::signed(1), 301),
			Error::<Test>::InsufficientFreeStake
		);
		// Locked stake backs open work: it cannot be unbonded.
		assert_ok!(<Staking as StakeInterface<_>>::lock(&1, Role::Solver, 250));
		assert_noop!(
			Staking::unbond(RuntimeOrigin::signed(1), 51),
			Error::<Test>::InsufficientFreeStake
		);
		// Chunks are bounded: one per block, MAX_CHUNKS at once.
		for _ in 0..MAX_CHUNKS {
			assert_ok!(Staking::unbond(RuntimeOrigin::signed(1), 10));
			run_to_block(System::block_number() + 1);
		}
		assert_noop!(
			Staking::unbond(RuntimeOrigin::signed(1), 10),
			Error::<Test>::TooManyUnbondingChunks
		);
	});
}

#[test]
fn withdraw_errors() {
	new_test_ext().execute_with(|| {
		assert_noop!(
			Staking::withdraw_unbonded(RuntimeOrigin::signed(1)),
			Error::<Test>::NotRegistered
		);
		assert_ok!(Staking::register(RuntimeOrigin::signed(1), Roles::SOLVER, 300));
		assert_noop!(
			Staking::withdraw_unbonded(RuntimeOrigin::signed(1)),
			Error::<Test>::NothingToWithdraw
		);
	});
}

#[test]
fn set_roles_checks_the_minimum() {
	new_test_ext().execute_with(|| {
		assert_noop!(
			Staking::set_roles(RuntimeOrigin::signed(1), Roles::BOTH),
			Error::<Test>::NotRegistered
		);
		assert_ok!(Staking::register(RuntimeOrigin::signed(1), Roles::VERIFIER, 60));
		assert_noop!(
			Staking::set_roles(RuntimeOrigin::signed(1), Roles::default()),
			Error::<Test>::NoRole
		);
		assert_noop!(
			Staking::set_roles(RuntimeOrigin::signed(1), Roles::BOTH),
			Error::<Test>::BondBelowMinimum
		);
		assert_ok!(Staking::bond_extra(RuntimeOrigin::signed(1), 40));
		assert_ok!(Staking::set_roles(RuntimeOrigin::signed(1), Roles::BOTH));
		assert_eq!(last_event(), Event::RolesChanged { who: 1, roles: Roles::BOTH }.into());
		assert!(Staking::can_serve(&1, Role::Solver));
	});
}

#[test]
fn can_serve_needs_the_role_and_its_minimum() {
	new_test_ext().execute_with(|| {
		assert!(!Staking::can_serve(&1, Role::Solver));
		assert_ok!(Staking::register(RuntimeOrigin::signed(1), Roles::SOLVER, 100));
		assert!(Staking::can_serve(&1, Role::Solver));
		assert!(!Staking::can_serve(&1, Role::Verifier));
		assert_ok!(Staking::unbond(RuntimeOrigin::signed(1), 1));
		assert!(!Staking::can_serve(&1, Role::Solver), "below the minimum after unbonding");
	});
}

#[test]
fn lock_unlock_and_free_stake() {
	new_test_ext().execute_with(|| {
		assert_noop!(Staking::lock(&1, Role::Solver, 10), Error::<Test>::NotRegistered);
		assert_ok!(Staking::register(RuntimeOrigin::signed(1), Roles::SOLVER, 300));
		assert_noop!(Staking::lock(&1, Role::Verifier, 10), Error::<Test>::MissingRole);
		assert_noop!(Staking::lock(&1, Role::Solver, 301), Error::<Test>::InsufficientFreeStake);
		assert_ok!(Staking::lock(&1, Role::Solver, 200));
		assert_eq!(Staking::free_stake(&1), 100);
		assert_eq!(Staking::unlock(&1, 500), 200, "unlock is capped at what is locked");
		assert_eq!(Staking::free_stake(&1), 300);
		assert_eq!(Staking::unlock(&1, 5), 0);
		assert_eq!(Staking::unlock(&7, 5), 0, "a stranger has nothing locked");
		assert_eq!(Staking::free_stake(&7), 0);
	});
}

#[test]
fn slashing_takes_only_locked_stake_and_burns_on_drop() {
	new_test_ext().execute_with(|| {
		let issuance = Balances::total_issuance();
		assert_ok!(Staking::register(RuntimeOrigin::signed(1), Roles::SOLVER, 300));
		assert_ok!(Staking::lock(&1, Role::Solver, 120));
		let credit = Staking::slash_locked(&1, 500);
		assert_eq!(credit.peek(), 120, "only the locked part is slashed");
		drop(credit);
		assert_eq!(Balances::total_issuance(), issuance - 120, "a dropped credit is burned");
		let ledger = Ledgers::<Test>::get(1).unwrap();
		assert_eq!((ledger.active, ledger.locked), (180, 0));
		assert_eq!(held(1), 180);
		assert_eq!(free(1), 700);
		Staking::do_try_state().unwrap();
		assert_eq!(Staking::slash_locked(&1, 10).peek(), 0, "nothing locked, nothing slashed");
		assert_eq!(Staking::slash_locked(&8, 10).peek(), 0, "a stranger yields nothing");
	});
}

#[test]
fn slashing_everything_removes_the_ledger() {
	new_test_ext().execute_with(|| {
		assert_ok!(Staking::register(RuntimeOrigin::signed(3), Roles::VERIFIER, 50));
		assert_ok!(Staking::lock(&3, Role::Verifier, 50));
		let credit = Staking::slash_locked(&3, 50);
		// The slashed funds can go to someone instead of being burned.
		let issuance = Balances::total_issuance();
		assert_ok!(<Balances as frame_support::traits::fungible::Balanced<_>>::resolve(&4, credit));
		assert_eq!(Balances::total_issuance(), issuance);
		assert_eq!(free(4), 1_050);
		assert!(Ledgers::<Test>::get(3).is_none());
		Staking::do_try_state().unwrap();
	});
}
