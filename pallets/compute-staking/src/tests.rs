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

mod properties {
	//! Random sequences of calls from many accounts, checking after every block that no call
	//! panics, the ledger invariants hold, and money is only ever burned by slashes.

	use super::*;
	use proptest::prelude::*;

	const ACCOUNTS: [AccountId; 5] = [1, 2, 3, 4, 5];

	#[derive(Debug, Clone)]
	enum Action {
		Register(usize, u8, Balance),
		BondExtra(usize, Balance),
		Unbond(usize, Balance),
		Withdraw(usize),
		SetRoles(usize, u8),
		Lock(usize, Balance),
		Unlock(usize, Balance),
		/// Slash, then burn the credit (`None`) or pay it to another account.
		Slash(usize, Balance, Option<usize>),
		NextBlocks(u64),
	}

	fn roles(r: u8) -> Roles {
		match r % 3 {
			0 => Roles::SOLVER,
			1 => Roles::VERIFIER,
			_ => Roles::BOTH,
		}
	}

	fn action() -> impl Strategy<Value = Action> {
		let who = 0..ACCOUNTS.len();
		let amount = prop_oneof![0u128..200, 0u128..1_200, Just(u128::MAX)];
		prop_oneof![
			(who.clone(), any::<u8>(), amount.clone())
				.prop_map(|(w, r, a)| Action::Register(w, r, a)),
			(who.clone(), amount.clone()).prop_map(|(w, a)| Action::BondExtra(w, a)),
			(who.clone(), amount.clone()).prop_map(|(w, a)| Action::Unbond(w, a)),
			who.clone().prop_map(Action::Withdraw),
			(who.clone(), any::<u8>()).prop_map(|(w, r)| Action::SetRoles(w, r)),
			(who.clone(), amount.clone()).prop_map(|(w, a)| Action::Lock(w, a)),
			(who.clone(), amount.clone()).prop_map(|(w, a)| Action::Unlock(w, a)),
			(who.clone(), amount, proptest::option::of(who))
				.prop_map(|(w, a, to)| Action::Slash(w, a, to)),
			(1u64..8).prop_map(Action::NextBlocks),
		]
	}

	proptest! {
		#![proptest_config(ProptestConfig::with_cases(200))]

		#[test]
		fn random_calls_keep_the_invariants(actions in proptest::collection::vec(action(), 1..60)) {
			new_test_ext().execute_with(|| {
				let initial = Balances::total_issuance();
				let mut burned: Balance = 0;
				for action in actions {
					let o = |i: usize| RuntimeOrigin::signed(ACCOUNTS[i]);
					// Errors are expected for many random calls; panics are not.
					match action {
						Action::Register(w, r, a) => { let _ = Staking::register(o(w), roles(r), a); },
						Action::BondExtra(w, a) => { let _ = Staking::bond_extra(o(w), a); },
						Action::Unbond(w, a) => { let _ = Staking::unbond(o(w), a); },
						Action::Withdraw(w) => { let _ = Staking::withdraw_unbonded(o(w)); },
						Action::SetRoles(w, r) => { let _ = Staking::set_roles(o(w), roles(r)); },
						Action::Lock(w, a) => { let _ = Staking::lock(&ACCOUNTS[w], Role::Solver, a); },
						Action::Unlock(w, a) => { Staking::unlock(&ACCOUNTS[w], a); },
						Action::Slash(w, a, to) => {
							let credit = Staking::slash_locked(&ACCOUNTS[w], a);
							match to {
								None => burned += credit.peek(),
								Some(t) => {
									// A credit that cannot be paid out is dropped, i.e. burned.
									if let Err(unpaid) = <Balances as frame_support::traits::fungible::Balanced<_>>::resolve(&ACCOUNTS[t], credit) {
										burned += unpaid.peek();
									}
								},
							}
						},
						Action::NextBlocks(n) => run_to_block(System::block_number() + n),
					}
					Staking::do_try_state().unwrap();
					prop_assert_eq!(Balances::total_issuance(), initial - burned);
					let held_and_free: Balance = ACCOUNTS
						.iter()
						.chain([9u64].iter())
						.map(Balances::total_balance)
						.sum();
					prop_assert_eq!(held_and_free, Balances::total_issuance());
					for a in ACCOUNTS {
						prop_assert_eq!(
							held(a),
							Ledgers::<Test>::get(a).map(|l| l.total()).unwrap_or(0),
							"hold of {} differs from its ledger", a
						);
					}
				}
				Ok(())
			})?;
		}
	}
}
