//! The initialization game ([`InitGame`]): a dispute over `h_0` when the state is too large
//! for the chain to recompute whole. Both sides reveal the tensor hashes their `h_0` is made
//! of; the first tensor they differ on goes to the element descent ([`crate::descent`]),
//! which ends at one value the chain computes from the seed alone
//! ([`trainet_primitives::program::initial_value`]).

use crate::*;
use trainet_primitives::{commit::state_hash_of, market::DisputedTensor};

impl<T: Config> Pallet<T> {
	/// [`Pallet::reveal_state`] by `party`, once the caller is known to be one.
	pub(crate) fn do_reveal_state(
		dispute: DisputeId,
		mut d: DisputeOf<T>,
		party: Party,
		tensors: StateTensors,
	) -> DispatchResult {
		let DisputePhase::Initialization(mut game) = d.phase.clone() else {
			return Err(Error::<T>::NotInInitialization.into());
		};
		ensure!(game.disputed.is_none(), Error::<T>::WrongStage);
		let (own, claim) = (game.tensors.of_mut(party), *d.disputed.of(party));
		ensure!(own.is_none(), Error::<T>::AlreadyRevealed);
		let spec = T::Tasks::spec(d.task).ok_or(Error::<T>::TaskNotFound)?;
		let program = step_program(&spec).map_err(|_| Error::<T>::WrongStage)?;
		// The count the program fixes: a longer or shorter list could hash to anything.
		ensure!(tensors.len() == program.state_shapes.len(), Error::<T>::WrongTensorCount);
		ensure!(state_hash_of(&tensors) == claim, Error::<T>::BadProof);
		*own = Some(tensors);

		let mut next = None;
		if let Some(Sides { solver: s, challenger: c }) = game.tensors.both() {
			// Both hash to their `h_0`, which differ: so do the lists, somewhere.
			let (index, (solver, challenger)) = s
				.iter()
				.zip(c.iter())
				.enumerate()
				.find(|(_, (a, b))| a != b)
				.ok_or(Error::<T>::BadProof)?;
			let index = u32::try_from(index).map_err(|_| Error::<T>::Overflow)?;
			let hashes = Sides::new(*solver, *challenger);
			game.disputed = Some(DisputedTensor { index, hashes });
			let now = frame_system::Pallet::<T>::block_number();
			next = Some((index, Self::slot(now.saturating_add(T::RoundTimeout::get()))));
		}
		Self::deposit_event(Event::StateRevealed { dispute, party });
		if let Some((tensor, deadline)) = next {
			Self::reschedule(dispute, &mut d, deadline);
			Self::deposit_event(Event::TensorDisputed { dispute, tensor, deadline });
		}
		d.phase = DisputePhase::Initialization(game);
		Disputes::<T>::insert(dispute, d);
		Ok(())
	}
}
