//! Benchmarks of every call.

use super::*;
use frame_benchmarking::v2::*;

#[benchmarks]
mod benchmarks {
	use super::*;

	#[benchmark]
	fn pardon() -> Result<(), BenchmarkError> {
		let who: T::AccountId = account("offender", 0, 0);
		Offences::<T>::insert(
			&who,
			OffenceRecord {
				count: T::BarAfter::get(),
				last: Offence::MissedCommitment { task: 0 },
				at: Zero::zero(),
			},
		);
		let origin =
			T::AdminOrigin::try_successful_origin().map_err(|_| BenchmarkError::Weightless)?;
		#[extrinsic_call]
		_(origin as T::RuntimeOrigin, who.clone());
		assert!(!Offences::<T>::contains_key(&who));
		Ok(())
	}

	impl_benchmark_test_suite!(Pallet, crate::mock::new_test_ext(), crate::mock::Test);
}
