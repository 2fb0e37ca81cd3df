//! # Compute staking
//!
//! ## Overview
//!
//! Solvers (who train) and verifiers (who check and challenge) put up a bond before they may
//! work. The bond is what the protocol slashes when a dispute proves them wrong, so it is
//! what makes a commitment to a training trace worth believing.
//!
//! ## Design
//!
//! A bond is a hold ([`HoldReason::Bond`]) on the staker's balance through
//! `fungible::MutateHold`: the funds stay in the staker's account, counted in total issuance,
//! and cannot be spent. Each staker has a [`Ledger`]:
//!
//! - `active`: bonded funds that can back work;
//! - `locked`: the part of `active` that backs open tasks and disputes right now; it cannot be
//!   unbonded until the other pallets unlock it, and it is what they slash;
//! - `unbonding`: chunks on their way out, each released once its block is reached.
//!
//! The hold always equals `active + sum(unbonding)`; `locked <= active`. Other pallets lock,
//! unlock and slash through the [`StakeInterface`] trait, never through storage.
//!
//! ## Terms
//!
//! - *Role*: solver, verifier, or both; each has a minimum bond ([`Config::MinSolverBond`],
//!   [`Config::MinVerifierBond`]).
//! - *Free stake*: `active - locked`, what can back new work or be unbonded.
//! - *Unbonding period*: blocks between `unbond` and the funds' release, so a staker cannot
//!   run from a slash that is about to happen.

#![cfg_attr(not(feature = "std"), no_std)]

pub use pallet::*;
pub use weights::WeightInfo;

#[cfg(feature = "runtime-benchmarks")]
mod benchmarking;
#[cfg(test)]
mod mock;
#[cfg(test)]
mod tests;
pub mod weights;

use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use frame_support::{
	dispatch::DispatchResult,
	pallet_prelude::*,
	traits::{
		fungible::{self, Credit, Inspect, InspectHold, MutateHold},
		tokens::{fungible::hold::Balanced as BalancedHold, Precision},
		Imbalance,
	},
};
use frame_system::pallet_prelude::BlockNumberFor;
use scale_info::TypeInfo;
use sp_runtime::traits::{CheckedAdd, CheckedSub, Saturating, Zero};

/// The roles a staker takes.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Default,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	Debug,
)]
pub struct Roles {
	/// May claim and train tasks.
	pub solver: bool,
	/// May check solvers and open challenges.
	pub verifier: bool,
}

impl Roles {
	/// Solver only.
	pub const SOLVER: Roles = Roles { solver: true, verifier: false };
	/// Verifier only.
	pub const VERIFIER: Roles = Roles { solver: false, verifier: true };
	/// Both roles.
	pub const BOTH: Roles = Roles { solver: true, verifier: true };

	/// Whether no role is taken.
	pub fn is_empty(&self) -> bool {
		!self.solver && !self.verifier
	}

	/// Whether `role` is among these roles.
	pub fn has(&self, role: Role) -> bool {
		match role {
			Role::Solver => self.solver,
			Role::Verifier => self.verifier,
		}
	}
}

/// One role, as the other pallets ask for it.
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
pub enum Role {
	/// Trains tasks.
	Solver,
	/// Checks and challenges.
	Verifier,
}

/// Funds on their way out of a bond.
#[derive(
	Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, MaxEncodedLen, Debug,
)]
pub struct UnbondChunk<Balance, BlockNumber> {
	/// How much.
	pub amount: Balance,
	/// The block from which it can be withdrawn.
	pub unlock_at: BlockNumber,
}

/// A staker's bond.
#[derive(
	CloneNoBound, PartialEqNoBound, EqNoBound, Encode, Decode, TypeInfo, MaxEncodedLen, DebugNoBound,
)]
#[scale_info(skip_type_params(T))]
pub struct Ledger<T: Config> {
	/// The roles taken.
	pub roles: Roles,
	/// Bonded funds that can back work.
	pub active: BalanceOf<T>,
	/// The part of `active` backing open tasks and disputes.
	pub locked: BalanceOf<T>,
	/// Chunks being unbonded, in order of `unlock_at`.
	pub unbonding: BoundedVec<UnbondChunk<BalanceOf<T>, BlockNumberFor<T>>, T::MaxUnbondingChunks>,
}

impl<T: Config> Ledger<T> {
	/// `active - locked`.
	pub fn free(&self) -> BalanceOf<T> {
		self.active.saturating_sub(self.locked)
	}

	/// Whether nothing is bonded, locked or unbonding: such a ledger is removed.
	pub fn is_empty(&self) -> bool {
		self.active.is_zero() && self.locked.is_zero() && self.unbonding.is_empty()
	}

	/// `active + sum(unbonding)`: what the hold must be.
	pub fn total(&self) -> BalanceOf<T> {
		self.unbonding.iter().fold(self.active, |acc, c| acc.saturating_add(c.amount))
	}
}

/// A balance of the staking currency.
pub type BalanceOf<T> =
	<<T as Config>::Currency as Inspect<<T as frame_system::Config>::AccountId>>::Balance;

/// An imbalance created by slashing: dropping it burns the funds.
pub type CreditOf<T> = Credit<<T as frame_system::Config>::AccountId, <T as Config>::Currency>;

/// What the task escrow and the dispute pallets need of staking.
pub trait StakeInterface<AccountId> {
	/// The balance type.
	type Balance;
	/// What a slash yields: funds taken from the staker, not yet given to anyone.
	type Credit;

	/// Whether `who` has `role` and a bond of at least that role's minimum.
	fn can_serve(who: &AccountId, role: Role) -> bool;

	/// `who`'s free stake (`active - locked`); zero for a non-staker.
	fn free_stake(who: &AccountId) -> Self::Balance;

	/// Locks `amount` of `who`'s free stake to back work in `role`.
	fn lock(who: &AccountId, role: Role, amount: Self::Balance) -> DispatchResult;

	/// Unlocks up to `amount` of `who`'s locked stake; returns how much was unlocked.
	fn unlock(who: &AccountId, amount: Self::Balance) -> Self::Balance;

	/// Takes up to `amount` of `who`'s *locked* stake out of the bond. The caller decides
	/// where the credit goes; dropping it burns the funds.
	fn slash_locked(who: &AccountId, amount: Self::Balance) -> Self::Credit;

	/// Benchmarks only: funds `who` and registers it as solver and verifier with a bond of
	/// `bond` (at least both minimums).
	#[cfg(feature = "runtime-benchmarks")]
	fn benchmark_staker(who: &AccountId, bond: Self::Balance);
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

	/// Why this pallet holds funds.
	#[pallet::composite_enum]
	pub enum HoldReason {
		/// A solver's or verifier's bond.
		#[codec(index = 0)]
		Bond,
	}

	#[pallet::config]
	pub trait Config: frame_system::Config {
		/// The overarching event type.
		#[allow(deprecated)]
		type RuntimeEvent: From<Event<Self>> + IsType<<Self as frame_system::Config>::RuntimeEvent>;

		/// The currency bonds are held in.
		type Currency: MutateHold<Self::AccountId, Reason = Self::RuntimeHoldReason>
			+ BalancedHold<Self::AccountId>
			+ InspectHold<Self::AccountId>
			+ fungible::Mutate<Self::AccountId>
			+ fungible::Balanced<Self::AccountId>;

		/// The runtime's hold reasons, of which [`HoldReason::Bond`] is one.
		type RuntimeHoldReason: From<HoldReason>;

		/// The least bond a solver must keep to claim tasks.
		#[pallet::constant]
		type MinSolverBond: Get<BalanceOf<Self>>;

		/// The least bond a verifier must keep to challenge.
		#[pallet::constant]
		type MinVerifierBond: Get<BalanceOf<Self>>;

		/// Blocks between `unbond` and the release of the funds. Must exceed the longest a
		/// task or dispute can stay open, so a staker cannot escape a coming slash.
		#[pallet::constant]
		type UnbondingPeriod: Get<BlockNumberFor<Self>>;

		/// The most unbonding chunks a staker may have at once (bounds the ledger).
		#[pallet::constant]
		type MaxUnbondingChunks: Get<u32>;

		/// Weights of this pallet's calls.
		type WeightInfo: WeightInfo;
	}

	/// Every staker's bond, by account.
	#[pallet::storage]
	pub type Ledgers<T: Config> = StorageMap<_, Blake2_128Concat, T::AccountId, Ledger<T>>;

	#[pallet::event]
	#[pallet::generate_deposit(pub(super) fn deposit_event)]
	pub enum Event<T: Config> {
		/// A staker registered with a first bond.
		Registered { who: T::AccountId, roles: Roles, bond: BalanceOf<T> },
		/// A staker added to its bond.
		Bonded { who: T::AccountId, amount: BalanceOf<T> },
		/// A staker started unbonding `amount`, withdrawable from block `unlock_at`.
		Unbonding { who: T::AccountId, amount: BalanceOf<T>, unlock_at: BlockNumberFor<T> },
		/// Matured unbonding chunks were released to the staker.
		Withdrawn { who: T::AccountId, amount: BalanceOf<T> },
		/// A staker's roles changed.
		RolesChanged { who: T::AccountId, roles: Roles },
		/// A staker left: no bond, no lock, nothing unbonding.
		Deregistered { who: T::AccountId },
		/// Stake was locked to back a task or a dispute.
		Locked { who: T::AccountId, amount: BalanceOf<T> },
		/// Locked stake was freed.
		Unlocked { who: T::AccountId, amount: BalanceOf<T> },
		/// Locked stake was slashed out of the bond.
		Slashed { who: T::AccountId, amount: BalanceOf<T> },
	}

	#[pallet::error]
	pub enum Error<T> {
		/// The account is already registered.
		AlreadyRegistered,
		/// The account is not registered.
		NotRegistered,
		/// No role was given.
		NoRole,
		/// The bond is below the minimum of the roles asked for.
		BondBelowMinimum,
		/// The amount is zero.
		ZeroAmount,
		/// The account cannot hold that much more (free balance too low).
		InsufficientBalance,
		/// More than the free stake (`active - locked`) was asked for.
		InsufficientFreeStake,
		/// Too many unbonding chunks: withdraw matured ones first, or wait.
		TooManyUnbondingChunks,
		/// Nothing has finished unbonding yet.
		NothingToWithdraw,
		/// The staker does not have the role the work needs.
		MissingRole,
		/// An amount overflowed.
		Overflow,
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
		/// Registers the caller in `roles` with a bond of `bond`, held from its balance.
		///
		/// The bond must reach the minimum of every role taken.
		#[pallet::call_index(0)]
		#[pallet::weight(T::WeightInfo::register())]
		pub fn register(origin: OriginFor<T>, roles: Roles, bond: BalanceOf<T>) -> DispatchResult {
			let who = ensure_signed(origin)?;
			ensure!(!Ledgers::<T>::contains_key(&who), Error::<T>::AlreadyRegistered);
			ensure!(!roles.is_empty(), Error::<T>::NoRole);
			ensure!(bond >= Self::min_bond(roles), Error::<T>::BondBelowMinimum);
			T::Currency::hold(&HoldReason::Bond.into(), &who, bond)
				.map_err(|_| Error::<T>::InsufficientBalance)?;
			Ledgers::<T>::insert(
				&who,
				Ledger { roles, active: bond, locked: Zero::zero(), unbonding: Default::default() },
			);
			Self::deposit_event(Event::Registered { who, roles, bond });
			Ok(())
		}

		/// Adds `amount` to the caller's bond.
		#[pallet::call_index(1)]
		#[pallet::weight(T::WeightInfo::bond_extra())]
		pub fn bond_extra(origin: OriginFor<T>, amount: BalanceOf<T>) -> DispatchResult {
			let who = ensure_signed(origin)?;
			ensure!(!amount.is_zero(), Error::<T>::ZeroAmount);
			let mut ledger = Ledgers::<T>::get(&who).ok_or(Error::<T>::NotRegistered)?;
			ledger.active = ledger.active.checked_add(&amount).ok_or(Error::<T>::Overflow)?;
			T::Currency::hold(&HoldReason::Bond.into(), &who, amount)
				.map_err(|_| Error::<T>::InsufficientBalance)?;
			Ledgers::<T>::insert(&who, ledger);
			Self::deposit_event(Event::Bonded { who, amount });
			Ok(())
		}

		/// Starts unbonding `amount` of the caller's free stake; it can be withdrawn after
		/// [`Config::UnbondingPeriod`] blocks. Locked stake cannot be unbonded.
		#[pallet::call_index(2)]
		#[pallet::weight(T::WeightInfo::unbond())]
		pub fn unbond(origin: OriginFor<T>, amount: BalanceOf<T>) -> DispatchResult {
			let who = ensure_signed(origin)?;
			ensure!(!amount.is_zero(), Error::<T>::ZeroAmount);
			let mut ledger = Ledgers::<T>::get(&who).ok_or(Error::<T>::NotRegistered)?;
			ensure!(amount <= ledger.free(), Error::<T>::InsufficientFreeStake);
			let unlock_at =
				frame_system::Pallet::<T>::block_number().saturating_add(T::UnbondingPeriod::get());
			match ledger.unbonding.last_mut() {
				// Chunks ending in the same block merge, so one block's calls use one chunk.
				Some(last) if last.unlock_at == unlock_at => {
					last.amount = last.amount.checked_add(&amount).ok_or(Error::<T>::Overflow)?
				}
				_ => ledger
					.unbonding
					.try_push(UnbondChunk { amount, unlock_at })
					.map_err(|_| Error::<T>::TooManyUnbondingChunks)?,
			}
			ledger.active = ledger.active.checked_sub(&amount).ok_or(Error::<T>::Overflow)?;
			Ledgers::<T>::insert(&who, ledger);
			Self::deposit_event(Event::Unbonding { who, amount, unlock_at });
			Ok(())
		}

		/// Releases every unbonding chunk whose block has come. A staker left with nothing
		/// bonded, locked or unbonding is deregistered.
		#[pallet::call_index(3)]
		#[pallet::weight(T::WeightInfo::withdraw_unbonded(T::MaxUnbondingChunks::get()))]
		pub fn withdraw_unbonded(origin: OriginFor<T>) -> DispatchResult {
			let who = ensure_signed(origin)?;
			let mut ledger = Ledgers::<T>::get(&who).ok_or(Error::<T>::NotRegistered)?;
			let now = frame_system::Pallet::<T>::block_number();
			let mut amount = BalanceOf::<T>::zero();
			for chunk in ledger.unbonding.iter().filter(|c| c.unlock_at <= now) {
				amount = amount.checked_add(&chunk.amount).ok_or(Error::<T>::Overflow)?;
			}
			ensure!(!amount.is_zero(), Error::<T>::NothingToWithdraw);
			ledger.unbonding.retain(|c| c.unlock_at > now);
			T::Currency::release(&HoldReason::Bond.into(), &who, amount, Precision::Exact)?;
			Self::deposit_event(Event::Withdrawn { who: who.clone(), amount });
			if ledger.is_empty() {
				Ledgers::<T>::remove(&who);
				Self::deposit_event(Event::Deregistered { who });
			} else {
				Ledgers::<T>::insert(&who, ledger);
			}
			Ok(())
		}

		/// Changes the caller's roles; the active bond must reach the new roles' minimum.
		#[pallet::call_index(4)]
		#[pallet::weight(T::WeightInfo::set_roles())]
		pub fn set_roles(origin: OriginFor<T>, roles: Roles) -> DispatchResult {
			let who = ensure_signed(origin)?;
			ensure!(!roles.is_empty(), Error::<T>::NoRole);
			let mut ledger = Ledgers::<T>::get(&who).ok_or(Error::<T>::NotRegistered)?;
			ensure!(ledger.active >= Self::min_bond(roles), Error::<T>::BondBelowMinimum);
			ledger.roles = roles;
			Ledgers::<T>::insert(&who, ledger);
			Self::deposit_event(Event::RolesChanged { who, roles });
			Ok(())
		}
	}

	impl<T: Config> Pallet<T> {
		/// The minimum bond of `roles`: the largest minimum among them.
		pub fn min_bond(roles: Roles) -> BalanceOf<T> {
			let solver = if roles.solver { T::MinSolverBond::get() } else { Zero::zero() };
			let verifier = if roles.verifier { T::MinVerifierBond::get() } else { Zero::zero() };
			solver.max(verifier)
		}

		/// The invariants: the hold equals `active + unbonding`, `locked <= active`, chunk
		/// counts within bounds, and nobody without a ledger holds a bond.
		pub fn do_try_state() -> Result<(), sp_runtime::TryRuntimeError> {
			for (who, ledger) in Ledgers::<T>::iter() {
				let held = T::Currency::balance_on_hold(&HoldReason::Bond.into(), &who);
				ensure!(held == ledger.total(), "bond hold differs from the ledger");
				ensure!(ledger.locked <= ledger.active, "more locked than bonded");
				ensure!(
					ledger.active > Zero::zero()
						|| ledger.locked > Zero::zero()
						|| !ledger.unbonding.is_empty(),
					"an empty ledger was kept"
				);
				ensure!(
					ledger.unbonding.windows(2).all(|w| match w {
						[a, b] => a.unlock_at < b.unlock_at,
						_ => true,
					}),
					"unbonding chunks out of order"
				);
			}
			Ok(())
		}
	}

	impl<T: Config> StakeInterface<T::AccountId> for Pallet<T> {
		type Balance = BalanceOf<T>;
		type Credit = CreditOf<T>;

		fn can_serve(who: &T::AccountId, role: Role) -> bool {
			let min = match role {
				Role::Solver => T::MinSolverBond::get(),
				Role::Verifier => T::MinVerifierBond::get(),
			};
			Ledgers::<T>::get(who).is_some_and(|l| l.roles.has(role) && l.active >= min)
		}

		fn free_stake(who: &T::AccountId) -> BalanceOf<T> {
			Ledgers::<T>::get(who).map(|l| l.free()).unwrap_or_default()
		}

		fn lock(who: &T::AccountId, role: Role, amount: BalanceOf<T>) -> DispatchResult {
			let mut ledger = Ledgers::<T>::get(who).ok_or(Error::<T>::NotRegistered)?;
			ensure!(Self::can_serve(who, role), Error::<T>::MissingRole);
			ensure!(amount <= ledger.free(), Error::<T>::InsufficientFreeStake);
			ledger.locked = ledger.locked.checked_add(&amount).ok_or(Error::<T>::Overflow)?;
			Ledgers::<T>::insert(who, ledger);
			Self::deposit_event(Event::Locked { who: who.clone(), amount });
			Ok(())
		}

		fn unlock(who: &T::AccountId, amount: BalanceOf<T>) -> BalanceOf<T> {
			let Some(mut ledger) = Ledgers::<T>::get(who) else { return Zero::zero() };
			let unlocked = amount.min(ledger.locked);
			if unlocked.is_zero() {
				return unlocked;
			}
			ledger.locked = ledger.locked.saturating_sub(unlocked);
			Ledgers::<T>::insert(who, ledger);
			Self::deposit_event(Event::Unlocked { who: who.clone(), amount: unlocked });
			unlocked
		}

		#[cfg(feature = "runtime-benchmarks")]
		fn benchmark_staker(who: &T::AccountId, bond: BalanceOf<T>) {
			use fungible::Mutate;
			let bond = bond.max(Self::min_bond(Roles::BOTH));
			let funds =
				bond.saturating_mul(4u32.into()).saturating_add(T::Currency::minimum_balance());
			T::Currency::set_balance(who, funds);
			let _ = Self::register(
				frame_system::RawOrigin::Signed(who.clone()).into(),
				Roles::BOTH,
				bond,
			);
		}

		fn slash_locked(who: &T::AccountId, amount: BalanceOf<T>) -> CreditOf<T> {
			let Some(mut ledger) = Ledgers::<T>::get(who) else {
				return CreditOf::<T>::zero();
			};
			let target = amount.min(ledger.locked);
			let (credit, _missing) = T::Currency::slash(&HoldReason::Bond.into(), who, target);
			let taken = credit.peek();
			ledger.locked = ledger.locked.saturating_sub(taken);
			ledger.active = ledger.active.saturating_sub(taken);
			if ledger.is_empty() {
				Ledgers::<T>::remove(who);
			} else {
				Ledgers::<T>::insert(who, ledger);
			}
			if !taken.is_zero() {
				Self::deposit_event(Event::Slashed { who: who.clone(), amount: taken });
			}
			credit
		}
	}
}
