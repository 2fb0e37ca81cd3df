//! Benchmarks of every call, at their worst case.

use super::*;
use frame_benchmarking::v2::*;
use frame_support::traits::fungible::Mutate;
use frame_system::RawOrigin;

/// A funded account with a bond of twice the larger minimum.
fn staker<T: Config>(name: &'static str) -> (T::AccountId, BalanceOf<T>) {
	let who: T::AccountId = account(name, 0, 0);
	let bond = Pallet::<T>::min_bond(Roles::BOTH).saturating_mul(2u32.into());
	T::Currency::set_balance(&who, bond.saturating_mul(100u32.into()));
	(who, bond)
}

#[benchmarks]
mod benchmarks {
	use super::*;

	#[benchmark]
	fn register() {
		let (who, bond) = staker::<T>("staker");
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()), Roles::BOTH, bond);
		assert!(Ledgers::<T>::contains_key(&who));
	}

	#[benchmark]
	fn bond_extra() -> Result<(), BenchmarkError> {
		let (who, bond) = staker::<T>("staker");
		Pallet::<T>::register(RawOrigin::Signed(who.clone()).into(), Roles::BOTH, bond)?;
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()), bond);
		Ok(())
	}

	#[benchmark]
	fn unbond() -> Result<(), BenchmarkError> {
		let (who, bond) = staker::<T>("staker");
		Pallet::<T>::register(RawOrigin::Signed(who.clone()).into(), Roles::BOTH, bond)?;
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()), 1u32.into());
		Ok(())
	}

	/// Worst case: `c` chunks, all matured, released at once.
	#[benchmark]
	fn withdraw_unbonded(
		c: Linear<1, { T::MaxUnbondingChunks::get() }>,
	) -> Result<(), BenchmarkError> {
		let (who, bond) = staker::<T>("staker");
		Pallet::<T>::register(RawOrigin::Signed(who.clone()).into(), Roles::BOTH, bond)?;
		for i in 0..c {
			frame_system::Pallet::<T>::set_block_number(i.into());
			Pallet::<T>::unbond(RawOrigin::Signed(who.clone()).into(), 1u32.into())?;
		}
		frame_system::Pallet::<T>::set_block_number(
			T::UnbondingPeriod::get().saturating_add(c.into()),
		);
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()));
		Ok(())
	}

	#[benchmark]
	fn set_roles() -> Result<(), BenchmarkError> {
		let (who, bond) = staker::<T>("staker");
		Pallet::<T>::register(RawOrigin::Signed(who.clone()).into(), Roles::BOTH, bond)?;
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()), Roles::SOLVER);
		Ok(())
	}

	impl_benchmark_test_suite!(Pallet, crate::mock::new_test_ext(), crate::mock::Test);
}
