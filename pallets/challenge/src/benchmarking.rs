//! Benchmarks of every call at its worst case, and of `on_initialize` with a full queue.

use super::*;
use frame_benchmarking::v2::*;
use frame_support::traits::Hooks;
use frame_system::RawOrigin;
use trainet_primitives::{
	market::TraceCommitment,
	trace::{trace_proof, trace_root},
};

/// Steps of the benchmarked traces for `open`: a proof of 12 levels (proof checks cost one
/// hash per level, at most 24 for the longest task; the weights allow for that).
const STEPS: u32 = 4095;

/// A trace of `steps` steps; `salt` makes different traces.
fn states(steps: u32, salt: u64) -> alloc::vec::Vec<H256> {
	(0..=steps)
		.map(|t| {
			<sp_runtime::traits::BlakeTwo256 as sp_runtime::traits::Hash>::hash(&(salt, t).encode())
		})
		.collect()
}

fn committed<T: Config>(solver: &T::AccountId, steps: u32) -> TaskId {
	let s = states(steps, 0);
	let commitment = TraceCommitment {
		trace_root: trace_root(&s),
		steps,
		final_state: s.last().copied().unwrap_or_default(),
		model_hash: H256::zero(),
	};
	T::Tasks::benchmark_committed_task(solver, commitment)
}

fn challenger<T: Config>(i: u32) -> T::AccountId {
	let who: T::AccountId = account("challenger", i, 0);
	T::Stake::benchmark_staker(&who, T::ChallengeBond::get().saturating_mul(4u32.into()));
	who
}

/// Opens a dispute by challenger `i` with a trace that differs from the solver's everywhere.
fn open_dispute<T: Config>(task: TaskId, steps: u32, i: u32) -> Result<DisputeId, BenchmarkError> {
	let who = challenger::<T>(i);
	let s = states(steps, u64::from(i) + 1);
	let id = NextDisputeId::<T>::get();
	let proof = trace_proof(&s, steps).ok_or(BenchmarkError::Stop("no proof"))?;
	Pallet::<T>::open(RawOrigin::Signed(who).into(), task, trace_root(&s), proof)?;
	Ok(id)
}

/// A dispute over one step where the challenger (challenger 0) has revealed and the solver
/// has not, with `v` other disputes against the same task.
fn half_revealed<T: Config>(v: u32) -> Result<(T::AccountId, DisputeId), BenchmarkError> {
	let solver: T::AccountId = account("solver", 0, 0);
	let task = committed::<T>(&solver, 1);
	let id = open_dispute::<T>(task, 1, 0)?;
	for i in 1..=v {
		open_dispute::<T>(task, 1, i)?;
	}
	let challenger: T::AccountId = account("challenger", 0, 0);
	let proof = trace_proof(&states(1, 1), 0).ok_or(BenchmarkError::Stop("no proof"))?;
	Pallet::<T>::reveal(RawOrigin::Signed(challenger).into(), id, 1, proof)?;
	Ok((solver, id))
}

#[benchmarks]
mod benchmarks {
	use super::*;

	#[benchmark]
	fn open() -> Result<(), BenchmarkError> {
		let solver: T::AccountId = account("solver", 0, 0);
		let task = committed::<T>(&solver, STEPS);
		let who = challenger::<T>(0);
		let s = states(STEPS, 1);
		let proof = trace_proof(&s, STEPS).ok_or(BenchmarkError::Stop("no proof"))?;
		#[extrinsic_call]
		_(RawOrigin::Signed(who), task, trace_root(&s), proof);
		assert_eq!(DisputeCount::<T>::get(task), 1);
		Ok(())
	}

	/// The last reveal of the last round: bisection resolves and the leaf referee is asked,
	/// with `v` other disputes on the task (voided should the solver lose).
	#[benchmark]
	fn reveal(
		v: Linear<0, { T::MaxDisputesPerTask::get().saturating_sub(1) }>,
	) -> Result<(), BenchmarkError> {
		let (solver, id) = half_revealed::<T>(v)?;
		let proof = trace_proof(&states(1, 0), 0).ok_or(BenchmarkError::Stop("no proof"))?;
		#[extrinsic_call]
		_(RawOrigin::Signed(solver), id, 1, proof);
		Ok(())
	}

	/// The solver missed a round: it loses, `v` other disputes are voided, its stake is
	/// slashed and the task reopened.
	#[benchmark]
	fn timeout(
		v: Linear<0, { T::MaxDisputesPerTask::get().saturating_sub(1) }>,
	) -> Result<(), BenchmarkError> {
		let (_, id) = half_revealed::<T>(v)?;
		let deadline = Disputes::<T>::get(id).ok_or(BenchmarkError::Stop("no dispute"))?.deadline;
		frame_system::Pallet::<T>::set_block_number(deadline);
		#[extrinsic_call]
		_(RawOrigin::Signed(account("caller", 0, 0)), id);
		assert!(!Disputes::<T>::contains_key(id));
		Ok(())
	}

	/// `n` disputes time out in one block, each with the solver losing.
	#[benchmark]
	fn on_initialize(
		n: Linear<0, { T::MaxDeadlinesPerBlock::get() }>,
	) -> Result<(), BenchmarkError> {
		for i in 0..n {
			let solver: T::AccountId = account("solver", i, 0);
			let task = committed::<T>(&solver, 1);
			let id = open_dispute::<T>(task, 1, i)?;
			let challenger: T::AccountId = account("challenger", i, 0);
			let proof = trace_proof(&states(1, u64::from(i) + 1), 0)
				.ok_or(BenchmarkError::Stop("no proof"))?;
			Pallet::<T>::reveal(RawOrigin::Signed(challenger).into(), id, 1, proof)?;
		}
		let deadline =
			frame_system::Pallet::<T>::block_number().saturating_add(T::RoundTimeout::get());
		frame_system::Pallet::<T>::set_block_number(deadline);
		#[block]
		{
			Pallet::<T>::on_initialize(deadline);
		}
		assert_eq!(Disputes::<T>::iter().count(), 0);
		Ok(())
	}

	impl_benchmark_test_suite!(Pallet, crate::mock::new_test_ext(), crate::mock::Test);
}
