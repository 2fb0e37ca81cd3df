//! Availability challenges ([`trainet_primitives::availability`]): a verifier asks for a state
//! the solver committed to (the final model, or a checkpoint), the chain draws rows of it, and
//! the solver (or anyone holding the state) must show them, proven against the state's hash,
//! before the deadline. An answer ends the challenge for the solver (the challenger's bond pays
//! for the trouble); silence ends it against the solver, as a lost dispute does: slashed, the
//! task reopened or refunded, every other dispute on it ended. An open challenge counts as a
//! dispute of the task, so the reward waits for it.

use crate::*;
use trainet_primitives::availability::{
	draw_chunks, verify_answer, AvailabilityAnswer, AvailabilityGame, AVAILABILITY_CHUNKS,
};

impl<T: Config> Pallet<T> {
	/// The state shapes of task `task`'s program.
	pub(crate) fn state_shapes(task: TaskId) -> Result<alloc::vec::Vec<(u32, u32)>, Error<T>> {
		let spec = T::Tasks::spec(task).ok_or(Error::<T>::TaskNotFound)?;
		Ok(step_program(&spec).map_err(|_| Error::<T>::TaskNotFound)?.state_shapes)
	}

	/// Opens an availability challenge of `challenger` against `task`'s trace entry `point`.
	pub(crate) fn do_request_availability(
		challenger: T::AccountId,
		task: TaskId,
		point: u32,
	) -> DispatchResult {
		let (target, count) = Self::admissible(task, &challenger)?;
		let points = target.points;
		ensure!(point < points.len(), Error::<T>::NoSuchEntry);
		let last = points.len().checked_sub(1).ok_or(Error::<T>::Overflow)?;
		let bisection = Bisection::new(last).ok_or(Error::<T>::Overflow)?;
		let id = NextDisputeId::<T>::get();
		// The rows are drawn from the parent block's hash, which nobody knew when the request
		// was signed (a block author could grind it only by withholding blocks).
		let seed = <sp_runtime::traits::BlakeTwo256 as sp_runtime::traits::Hash>::hash(
			&(frame_system::Pallet::<T>::parent_hash(), id, task, point).encode(),
		);
		let chunks = draw_chunks(&seed, &Self::state_shapes(task)?);
		ensure!(chunks.len() as u32 == AVAILABILITY_CHUNKS, Error::<T>::TaskNotFound);
		let now = frame_system::Pallet::<T>::block_number();
		let deadline = Self::slot(now.saturating_add(T::RoundTimeout::get()));
		let (root, final_state) = (target.commitment.trace_root, target.commitment.final_state);
		Self::book(
			id,
			count,
			Dispute {
				task,
				solver: target.solver,
				challenger: challenger.clone(),
				bond: T::ChallengeBond::get(),
				solver_stake: target.solver_stake,
				// Only the solver's trace is in question: both sides name it.
				roots: Sides::new(root, root),
				points,
				bisection,
				agreed_state: None,
				disputed: Sides::new(final_state, final_state),
				phase: DisputePhase::Availability(AvailabilityGame {
					point,
					chunks: chunks.clone(),
				}),
				deadline,
			},
		)?;
		Self::deposit_event(Event::AvailabilityRequested {
			dispute: id,
			task,
			challenger,
			point,
			chunks,
			deadline,
		});
		Ok(())
	}

	/// Checks `answer` to availability challenge `dispute`; a good one ends it for the solver.
	pub(crate) fn do_prove_availability(
		dispute: DisputeId,
		d: DisputeOf<T>,
		answer: AvailabilityAnswer,
	) -> DispatchResult {
		let DisputePhase::Availability(game) = &d.phase else {
			return Err(Error::<T>::NotAnAvailabilityChallenge.into());
		};
		let shapes = Self::state_shapes(d.task)?;
		verify_answer(&d.roots.solver, d.points.len(), game.point, &shapes, &game.chunks, &answer)
			.map_err(|_| Error::<T>::BadAvailabilityAnswer)?;
		Self::deposit_event(Event::AvailabilityProven { dispute, task: d.task });
		Self::conclude(dispute, Party::Solver, Resolution::Ruling);
		Ok(())
	}
}
