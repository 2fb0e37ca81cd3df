//! Benchmarks of every call at its worst case, and of `on_initialize` with a full queue.

use super::*;
use frame_benchmarking::v2::*;
use frame_support::traits::{fungible::Mutate, Hooks};
use frame_system::RawOrigin;
use sp_core::H256;
use trainet_primitives::trace::{trace_proof, trace_root};

/// Steps of the benchmarked tasks: a proof of 12 levels. (Proof checks cost one hash per
/// level, at most 24 levels for the longest task; the weights allow for that.)
const STEPS: u32 = 4095;

fn funded<T: Config>(name: &'static str, i: u32) -> T::AccountId {
	let who: T::AccountId = account(name, i, 0);
	T::Currency::set_balance(&who, T::MinReward::get().saturating_mul(1_000u32.into()));
	who
}

/// The shortest claim window (so that claim deadlines never share a block with commit
/// deadlines), the longest commit and challenge windows.
fn timeouts<T: Config>() -> Timeouts<BlockNumberFor<T>> {
	let max = T::MaxTimeout::get();
	Timeouts { claim: T::MinTimeout::get(), commit: max, challenge: max }
}

fn spec() -> TrainingSpec {
	let mut spec = TrainingSpec::example_digits(H256::repeat_byte(1));
	spec.steps = STEPS;
	spec
}

fn submitted<T: Config>(i: u32) -> Result<TaskId, BenchmarkError> {
	let submitter = funded::<T>("submitter", i);
	let id = NextTaskId::<T>::get();
	Pallet::<T>::submit(
		RawOrigin::Signed(submitter).into(),
		spec(),
		T::MinReward::get(),
		timeouts::<T>(),
	)?;
	Ok(id)
}

fn solver<T: Config>(tasks: u32) -> T::AccountId {
	let solver: T::AccountId = account("solver", 0, 0);
	T::Stake::benchmark_staker(
		&solver,
		T::SolverStake::get().saturating_mul((tasks.saturating_add(1)).into()),
	);
	solver
}

#[benchmarks]
mod benchmarks {
	use super::*;

	#[benchmark]
	fn submit() {
		let submitter = funded::<T>("submitter", 0);
		#[extrinsic_call]
		_(RawOrigin::Signed(submitter), spec(), T::MinReward::get(), timeouts::<T>());
		assert!(Tasks::<T>::contains_key(0));
	}

	#[benchmark]
	fn cancel() -> Result<(), BenchmarkError> {
		let id = submitted::<T>(0)?;
		let submitter = Tasks::<T>::get(id).ok_or(BenchmarkError::Stop("no task"))?.submitter;
		#[extrinsic_call]
		_(RawOrigin::Signed(submitter), id);
		assert!(!Tasks::<T>::contains_key(id));
		Ok(())
	}

	#[benchmark]
	fn claim() -> Result<(), BenchmarkError> {
		let id = submitted::<T>(0)?;
		let solver = solver::<T>(1);
		#[extrinsic_call]
		_(RawOrigin::Signed(solver), id);
		Ok(())
	}

	/// The largest state a spec may have (the most layers, Adam's two tensors per
	/// parameter): the most tensor hashes to check against the final state and model hash.
	#[benchmark]
	fn commit() -> Result<(), BenchmarkError> {
		let submitter = funded::<T>("submitter", 0);
		let id = NextTaskId::<T>::get();
		let mut spec = TrainingSpec::example_deepest(spec().dataset.root);
		spec.steps = STEPS;
		let last = trainet_primitives::availability::FinalState::made_up(&spec, 0)
			.ok_or(BenchmarkError::Stop("no state"))?;
		assert_eq!(last.tensors.len() as u32, trainet_primitives::program::MAX_STATE_TENSORS);
		Pallet::<T>::submit(
			RawOrigin::Signed(submitter).into(),
			spec,
			T::MinReward::get(),
			timeouts::<T>(),
		)?;
		let solver = solver::<T>(1);
		Pallet::<T>::claim(RawOrigin::Signed(solver.clone()).into(), id)?;
		let mut states: alloc::vec::Vec<H256> = (0..STEPS)
			.map(|t| {
				<sp_runtime::traits::BlakeTwo256 as sp_runtime::traits::Hash>::hash(
					&t.to_le_bytes(),
				)
			})
			.collect();
		states.push(last.state);
		let commitment = TraceCommitment {
			trace_root: trace_root(&states),
			steps: STEPS,
			final_state: last.state,
			model_hash: last.model,
		};
		let proof = trace_proof(&states, STEPS).ok_or(BenchmarkError::Stop("no proof"))?;
		#[extrinsic_call]
		_(RawOrigin::Signed(solver), id, commitment, proof, last.tensors);
		Ok(())
	}

	/// The dearest expiry: a missed commitment (slash, pay the submitter, refund).
	#[benchmark]
	fn expire() -> Result<(), BenchmarkError> {
		let id = submitted::<T>(0)?;
		let solver = solver::<T>(1);
		Pallet::<T>::claim(RawOrigin::Signed(solver).into(), id)?;
		let deadline = Tasks::<T>::get(id).ok_or(BenchmarkError::Stop("no task"))?.deadline();
		frame_system::Pallet::<T>::set_block_number(deadline);
		#[extrinsic_call]
		_(RawOrigin::Signed(account("caller", 0, 0)), id);
		assert!(!Tasks::<T>::contains_key(id));
		Ok(())
	}

	/// `n` missed commitments due in one block.
	#[benchmark]
	fn on_initialize(
		n: Linear<0, { T::MaxDeadlinesPerBlock::get() }>,
	) -> Result<(), BenchmarkError> {
		let solver = solver::<T>(n);
		for i in 0..n {
			let id = submitted::<T>(i)?;
			Pallet::<T>::claim(RawOrigin::Signed(solver.clone()).into(), id)?;
		}
		let deadline =
			frame_system::Pallet::<T>::block_number().saturating_add(T::MaxTimeout::get());
		frame_system::Pallet::<T>::set_block_number(deadline);
		#[block]
		{
			Pallet::<T>::on_initialize(deadline);
		}
		assert_eq!(Tasks::<T>::iter().count(), 0);
		Ok(())
	}

	impl_benchmark_test_suite!(Pallet, crate::mock::new_test_ext(), crate::mock::Test);
}
