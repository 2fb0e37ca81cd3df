//! How a dispute ends: a winner ([`Pallet::conclude`]: every other dispute on the task ends too
//! when the solver lost, and the settlement applies the outcome) or none
//! ([`Pallet::void`]).

use crate::*;

impl<T: Config> Pallet<T> {
	/// Ends `dispute` with no winner: the bond is unlocked, nobody is slashed.
	pub(crate) fn void(dispute: DisputeId, d: &DisputeOf<T>) {
		Self::remove(dispute, d);
		T::Stake::unlock(&d.challenger, d.bond);
		Self::deposit_event(Event::DisputeVoided { dispute, task: d.task });
		T::Tasks::dispute_ended(d.task);
	}

	/// Removes a dispute from every book.
	pub(crate) fn remove(id: DisputeId, d: &DisputeOf<T>) {
		Disputes::<T>::remove(id);
		let _ = Lines::<T>::clear_prefix(id, 2, None);
		TaskDisputes::<T>::remove(d.task, &d.challenger);
		DisputeCount::<T>::mutate_exists(d.task, |c| {
			let left = c.unwrap_or(0).saturating_sub(1);
			*c = (left > 0).then_some(left);
		});
		Self::unschedule(id, d.deadline);
		Unqueued::<T>::remove(id);
		// A slot is free again: the time every slot was taken goes back to the window.
		if let Some(since) = FullSince::<T>::take(d.task) {
			use sp_runtime::traits::UniqueSaturatedInto;
			let now = frame_system::Pallet::<T>::block_number();
			T::Tasks::extend_window(d.task, now.saturating_sub(since).unique_saturated_into());
		}
	}

	/// Ends `dispute` with `winner`: removes it and, when the solver lost, voids every
	/// other dispute against the task first; then hands the outcome to the settlement.
	pub(crate) fn conclude(dispute: DisputeId, winner: Party, resolution: Resolution) {
		let Some(d) = Disputes::<T>::get(dispute) else { return };
		Self::remove(dispute, &d);
		// When the solver lost, every other dispute on the task still stood (a dispute
		// that was lost is already gone): each ends here, its bond unlocked, and its
		// challenger shares the winner's reward.
		let mut standing = alloc::vec::Vec::new();
		if winner == Party::Challenger {
			// At most `MaxDisputesPerTask - 1` others.
			let others: alloc::vec::Vec<DisputeId> =
				TaskDisputes::<T>::iter_prefix_values(d.task).collect();
			for other in others {
				if let Some(o) = Disputes::<T>::get(other) {
					Self::remove(other, &o);
					T::Stake::unlock(&o.challenger, o.bond);
					Self::deposit_event(Event::DisputeVoided { dispute: other, task: o.task });
					standing.push(o.challenger);
				}
			}
		}
		Self::deposit_event(Event::DisputeResolved { dispute, task: d.task, winner, resolution });
		T::Settlement::settle(&DisputeOutcome {
			task: d.task,
			dispute,
			solver: d.solver,
			challenger: d.challenger,
			solver_stake: d.solver_stake,
			bond: d.bond,
			winner,
			standing,
		});
	}

	/// The leaf referee's ruling on a dispute waiting at the leaf.
	pub fn leaf_ruling(dispute: DisputeId, winner: Party) -> DispatchResult {
		let d = Disputes::<T>::get(dispute).ok_or(Error::<T>::DisputeNotFound)?;
		ensure!(matches!(d.phase, DisputePhase::Leaf { .. }), Error::<T>::NotAtLeaf);
		Self::conclude(dispute, winner, Resolution::Ruling);
		Ok(())
	}
}
