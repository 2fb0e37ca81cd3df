//! # Slashing
//!
//! ## Overview
//!
//! Applies the outcome of every dispute and every missed commitment:
//!
//! 1. slashes the loser's locked stake (held funds, through [`StakeInterface::slash_locked`]);
//! 2. pays [`Config::WinnerShare`] of it to the winner (the dispute's winner, or the
//!    submitter whose task was abandoned) and burns the rest, so that total issuance falls by
//!    exactly the burned amount;
//! 3. unlocks the winner's own lock (a winning challenger's bond);
//! 4. records the offence; an account with [`Config::BarAfter`] offences is barred from
//!    claiming tasks until [`Pallet::pardon`];
//! 5. reopens or refunds the task whose solver lost ([`TaskMarket::solver_lost`]), or tells
//!    the escrow a dispute ended without proving the solver wrong
//!    ([`TaskMarket::dispute_ended`]).
//!
//! The challenge pallet calls [`SettleDispute::settle`]; the task escrow calls
//! [`SolverDiscipline`].

#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub use pallet::*;
pub use weights::WeightInfo;

#[cfg(feature = "runtime-benchmarks")]
mod benchmarking;
#[cfg(test)]
mod mock;
#[cfg(test)]
mod tests;
pub mod weights;

use alloc::vec::Vec;
use frame_support::{
	pallet_prelude::*,
	traits::{
		fungible::{self, Balanced, Credit, Inspect},
		Imbalance,
	},
};
use frame_system::pallet_prelude::BlockNumberFor;
use pallet_compute_staking::StakeInterface;
use pallet_task_escrow::{SolverDiscipline, TaskMarket};
use sp_runtime::{
	traits::{Saturating, Zero},
	Perbill,
};
use trainet_primitives::market::{DisputeId, Party, TaskId};

/// A balance of the slashed currency.
pub type BalanceOf<T> =
	<<T as Config>::Currency as Inspect<<T as frame_system::Config>::AccountId>>::Balance;

/// How a dispute ended, as the challenge pallet reports it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DisputeOutcome<AccountId, Balance> {
	/// The disputed task.
	pub task: TaskId,
	/// The dispute.
	pub dispute: DisputeId,
	/// The task's solver.
	pub solver: AccountId,
	/// The challenger.
	pub challenger: AccountId,
	/// The solver's stake locked behind the task.
	pub solver_stake: Balance,
	/// The challenger's locked bond.
	pub bond: Balance,
	/// Who won.
	pub winner: Party,
	/// When the solver lost: the challengers of the task's other disputes, which still stood
	/// (none had lost) and end with this one. They share the winner's part of the slash with
	/// `challenger`, so that a challenger of the solver's own that wins first (the solver
	/// losing to it on purpose) cannot take an honest challenger's reward.
	pub standing: Vec<AccountId>,
}

/// Applies a dispute's outcome.
pub trait SettleDispute<AccountId, Balance> {
	/// Slashes the loser, pays the winner, records the offence and moves the task on. The
	/// dispute must already be removed from the challenge pallet's books.
	fn settle(outcome: &DisputeOutcome<AccountId, Balance>);
}

/// What an offender did.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	Debug,
)]
pub enum Offence {
	/// Lost a dispute, as `party` (by a wrong hash or a missed round).
	LostDispute {
		/// The task.
		task: TaskId,
		/// The dispute.
		dispute: DisputeId,
		/// The side the offender was on.
		party: Party,
	},
	/// Claimed a task and did not commit in time.
	MissedCommitment {
		/// The task.
		task: TaskId,
	},
}

/// An account's offences.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	Debug,
)]
pub struct OffenceRecord<BlockNumber> {
	/// How many.
	pub count: u32,
	/// The last one.
	pub last: Offence,
	/// When the last one happened.
	pub at: BlockNumber,
}

// FRAME's `#[pallet::*]` expansions call `expect` on paths that cannot fail (and clippy blames
// the attributes for it); the other no-panic lints stay denied here, and nothing written in
// this module by hand calls `expect`.
#[allow(clippy::expect_used)]
#[frame_support::pallet]
pub mod pallet {
	use super::*;
	use frame_system::pallet_prelude::*;

	#[pallet::pallet]
	pub struct Pallet<T>(_);

	#[pallet::config]
	pub trait Config: frame_system::Config {
		/// The overarching event type.
		#[allow(deprecated)]
		type RuntimeEvent: From<Event<Self>> + IsType<<Self as frame_system::Config>::RuntimeEvent>;

		/// The currency slashed and paid out.
		type Currency: fungible::Balanced<Self::AccountId>;

		/// The stakes slashed.
		type Stake: StakeInterface<
			Self::AccountId,
			Balance = BalanceOf<Self>,
			Credit = Credit<Self::AccountId, Self::Currency>,
		>;

		/// The tasks whose solver lost, reopened or refunded.
		type Tasks: TaskMarket<Self::AccountId, BalanceOf<Self>>;

		/// The winner's share of a slash; the rest is burned.
		#[pallet::constant]
		type WinnerShare: Get<Perbill>;

		/// The offence count from which an account may not claim tasks.
		#[pallet::constant]
		type BarAfter: Get<u32>;

		/// Who may pardon an offender.
		type AdminOrigin: EnsureOrigin<Self::RuntimeOrigin>;

		/// Weights of this pallet's calls.
		type WeightInfo: WeightInfo;
	}

	/// Every offender's record, by account.
	#[pallet::storage]
	pub type Offences<T: Config> =
		StorageMap<_, Blake2_128Concat, T::AccountId, OffenceRecord<BlockNumberFor<T>>>;

	#[pallet::event]
	#[pallet::generate_deposit(pub(super) fn deposit_event)]
	pub enum Event<T: Config> {
		/// `offender`'s stake was slashed by `amount`: `paid` went to `beneficiary`, `burned`
		/// left the issuance.
		Slashed {
			offender: T::AccountId,
			offence: Offence,
			amount: BalanceOf<T>,
			beneficiary: T::AccountId,
			paid: BalanceOf<T>,
			burned: BalanceOf<T>,
		},
		/// `who` reached the offence limit and may no longer claim tasks.
		Barred { who: T::AccountId },
		/// `who`'s record was cleared.
		Pardoned { who: T::AccountId },
		/// `challenger`, whose dispute against `offender` still stood when another challenger
		/// won, was paid `amount` of the slash just announced (its share of the winners' part,
		/// which is `paid` plus these).
		ChallengerRewarded {
			challenger: T::AccountId,
			offender: T::AccountId,
			amount: BalanceOf<T>,
		},
	}

	#[pallet::error]
	pub enum Error<T> {
		/// The account has no offence on record.
		NoOffences,
	}

	#[pallet::hooks]
	impl<T: Config> Hooks<BlockNumberFor<T>> for Pallet<T> {
		#[cfg(feature = "try-runtime")]
		fn try_state(_n: BlockNumberFor<T>) -> Result<(), sp_runtime::TryRuntimeError> {
			Self::do_try_state()
		}
	}

	#[pallet::call]
	impl<T: Config> Pallet<T> {
		/// Clears `who`'s offence record, lifting a bar. Admin only.
		#[pallet::call_index(0)]
		#[pallet::weight(T::WeightInfo::pardon())]
		pub fn pardon(origin: OriginFor<T>, who: T::AccountId) -> DispatchResult {
			T::AdminOrigin::ensure_origin(origin)?;
			ensure!(Offences::<T>::contains_key(&who), Error::<T>::NoOffences);
			Offences::<T>::remove(&who);
			Self::deposit_event(Event::Pardoned { who });
			Ok(())
		}
	}

	impl<T: Config> Pallet<T> {
		/// Whether `who` is barred from claiming.
		pub fn is_barred(who: &T::AccountId) -> bool {
			Offences::<T>::get(who).is_some_and(|r| r.count >= T::BarAfter::get())
		}

		/// Slashes `amount` of `offender`'s locked stake (unlocking whatever of it cannot be
		/// taken), pays the winners' share (`WinnerShare` of it) in equal parts to
		/// `beneficiary` and each of `others`, burns the rest (the rounding included) and
		/// records the offence. The burned part is never less than `1 - WinnerShare` of the
		/// slash, however many share the rest.
		fn punish(
			offender: &T::AccountId,
			amount: BalanceOf<T>,
			beneficiary: &T::AccountId,
			others: &[T::AccountId],
			offence: Offence,
		) {
			let credit = T::Stake::slash_locked(offender, amount);
			let taken = credit.peek();
			if taken < amount {
				T::Stake::unlock(offender, amount.saturating_sub(taken));
			}
			let share = T::WinnerShare::get().mul_floor(taken);
			let (mut to_winners, to_burn) = credit.split(share);
			let winners = u32::try_from(others.len()).unwrap_or(u32::MAX).saturating_add(1);
			let part = share.checked_div(&winners.into()).unwrap_or_default();
			// `part` of the winners' credit to each, `beneficiary` first. One that cannot
			// receive it (it would not reach the existential deposit) gets nothing: burned too.
			let mut paid_to = Vec::with_capacity(others.len().saturating_add(1));
			for who in core::iter::once(beneficiary).chain(others) {
				let (one, rest) = to_winners.split(part);
				to_winners = rest;
				let amount = match T::Currency::resolve(who, one) {
					Ok(()) => part,
					Err(back) => {
						drop(back);
						Zero::zero()
					}
				};
				paid_to.push((who.clone(), amount));
			}
			drop(to_winners);
			let rewarded = paid_to
				.iter()
				.fold(Zero::zero(), |sum: BalanceOf<T>, (_, amount)| sum.saturating_add(*amount));
			let mut paid_to = paid_to.into_iter();
			let paid = paid_to.next().map(|(_, amount)| amount).unwrap_or_default();
			let burned = taken.saturating_sub(rewarded);
			drop(to_burn);
			let now = frame_system::Pallet::<T>::block_number();
			let count = Offences::<T>::mutate(offender, |r| {
				let count = r.map(|r| r.count).unwrap_or(0).saturating_add(1);
				*r = Some(OffenceRecord { count, last: offence, at: now });
				count
			});
			Self::deposit_event(Event::Slashed {
				offender: offender.clone(),
				offence,
				amount: taken,
				beneficiary: beneficiary.clone(),
				paid,
				burned,
			});
			// The others, after the slash is announced.
			for (challenger, amount) in paid_to {
				Self::deposit_event(Event::ChallengerRewarded {
					challenger,
					offender: offender.clone(),
					amount,
				});
			}
			if count == T::BarAfter::get() {
				Self::deposit_event(Event::Barred { who: offender.clone() });
			}
		}

		/// The invariant: every record counts at least one offence.
		pub fn do_try_state() -> Result<(), sp_runtime::TryRuntimeError> {
			for (_, record) in Offences::<T>::iter() {
				ensure!(record.count > 0, "an offence record with no offence");
			}
			Ok(())
		}
	}

	impl<T: Config> SettleDispute<T::AccountId, BalanceOf<T>> for Pallet<T> {
		fn settle(o: &DisputeOutcome<T::AccountId, BalanceOf<T>>) {
			let offence =
				Offence::LostDispute { task: o.task, dispute: o.dispute, party: o.winner.other() };
			match o.winner {
				Party::Challenger => {
					Self::punish(&o.solver, o.solver_stake, &o.challenger, &o.standing, offence);
					T::Stake::unlock(&o.challenger, o.bond);
					T::Tasks::solver_lost(o.task);
				}
				Party::Solver => {
					Self::punish(&o.challenger, o.bond, &o.solver, &[], offence);
					T::Tasks::dispute_ended(o.task);
				}
			}
		}
	}

	impl<T: Config> SolverDiscipline<T::AccountId, BalanceOf<T>> for Pallet<T> {
		fn is_barred(who: &T::AccountId) -> bool {
			Pallet::<T>::is_barred(who)
		}

		fn missed_commit(
			task: TaskId,
			solver: &T::AccountId,
			submitter: &T::AccountId,
			stake: BalanceOf<T>,
		) {
			Self::punish(solver, stake, submitter, &[], Offence::MissedCommitment { task });
		}
	}
}
