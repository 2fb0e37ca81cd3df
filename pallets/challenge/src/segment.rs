//! The segment game ([`SegmentGame`]): bisection over the per-step states between two
//! checkpoints of the traces, when the spec's checkpoint interval is above 1.

use crate::*;

impl<T: Config> Pallet<T> {
	/// [`Pallet::commit_segment`], once the caller is known to be a party.
	pub(crate) fn do_commit_segment(
		dispute: DisputeId,
		mut d: DisputeOf<T>,
		party: Party,
		root: H256,
	) -> DispatchResult {
		let DisputePhase::Segment(mut game) = d.phase.clone() else {
			return Err(Error::<T>::NotInSegment.into());
		};
		let own = game.roots.of_mut(party);
		ensure!(own.is_none(), Error::<T>::AlreadyCommitted);
		*own = Some(root);
		let first_round = match game.position() {
			Some(position) => {
				let now = frame_system::Pallet::<T>::block_number();
				Some((position, Self::slot(now.saturating_add(T::RoundTimeout::get()))))
			}
			None => None,
		};
		Self::deposit_event(Event::SegmentCommitted { dispute, party, root });
		if let Some((position, deadline)) = first_round {
			Self::reschedule(dispute, &mut d, deadline);
			Self::deposit_event(Event::SegmentRound {
				dispute,
				agreed: game.bisection.agreed,
				disputed: game.bisection.disputed,
				position,
				deadline,
			});
		}
		d.phase = DisputePhase::Segment(game);
		Disputes::<T>::insert(dispute, d);
		Ok(())
	}

	/// [`Pallet::reveal_segment`], once the caller is known to be a party.
	pub(crate) fn do_reveal_segment(
		dispute: DisputeId,
		mut d: DisputeOf<T>,
		party: Party,
		position: u32,
		proof: TraceProof,
	) -> DispatchResult {
		let DisputePhase::Segment(mut game) = d.phase.clone() else {
			return Err(Error::<T>::NotInSegment.into());
		};
		let mid = game.position().ok_or(Error::<T>::WrongStage)?;
		ensure!(position == mid, Error::<T>::WrongPosition);
		let root = game.roots.of(party).ok_or(Error::<T>::WrongStage)?;
		ensure!(game.reveals.of(party).is_none(), Error::<T>::AlreadyRevealed);
		let entries = game.len.checked_add(1).ok_or(Error::<T>::Overflow)?;
		ensure!(verify_trace_proof(&root, entries, position, &proof), Error::<T>::BadProof);
		Self::deposit_event(Event::SegmentRevealed {
			dispute,
			party,
			position,
			state: proof.state,
		});
		*game.reveals.of_mut(party) = Some(proof.state);
		let Some(both) = game.reveals.both().map(|b| Sides::new(*b.solver, *b.challenger)) else {
			d.phase = DisputePhase::Segment(game);
			Disputes::<T>::insert(dispute, d);
			return Ok(());
		};

		// Both revealed: narrow, as the step bisection does.
		let agree = Self::take_reveals(&mut d, both);
		game.bisection = game.bisection.narrow(agree);
		game.round = game.round.saturating_add(1);
		game.reveals = Sides::none();
		let now = frame_system::Pallet::<T>::block_number();
		if let Some(next) = game.bisection.midpoint() {
			let deadline = Self::slot(now.saturating_add(T::RoundTimeout::get()));
			Self::reschedule(dispute, &mut d, deadline);
			Self::deposit_event(Event::SegmentRound {
				dispute,
				agreed: game.bisection.agreed,
				disputed: game.bisection.disputed,
				position: next,
				deadline,
			});
			d.phase = DisputePhase::Segment(game);
			Disputes::<T>::insert(dispute, d);
			return Ok(());
		}
		d.phase = DisputePhase::Segment(game);
		Self::reach_leaf(dispute, d, now)
	}
}
