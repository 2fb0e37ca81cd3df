//! The step bisection over the traces' entries ([`Pallet::reveal`]) and what happens when it
//! has narrowed to one transition: the leaf referee's verdict, the operator-level game over a
//! step, or the initialization game.

use crate::*;

impl<T: Config> Pallet<T> {
	/// [`Pallet::reveal`], once the caller is known to be a party.
	pub(crate) fn do_reveal(
		dispute: DisputeId,
		mut d: DisputeOf<T>,
		party: Party,
		position: u32,
		proof: TraceProof,
	) -> DispatchResult {
		let DisputePhase::Bisecting { round, mut reveals } = d.phase else {
			return Err(Error::<T>::NotBisecting.into());
		};
		let mid = d.bisection.midpoint().ok_or(Error::<T>::NotBisecting)?;
		ensure!(position == mid, Error::<T>::WrongPosition);
		let index = Bisection::trace_index(mid).ok_or(Error::<T>::Overflow)?;
		ensure!(reveals.of(party).is_none(), Error::<T>::AlreadyRevealed);
		let root = *d.roots.of(party);
		ensure!(verify_trace_proof(&root, d.points.len(), index, &proof), Error::<T>::BadProof);
		Self::deposit_event(Event::Revealed { dispute, party, position, state: proof.state });

		*reveals.of_mut(party) = Some(proof.state);
		let Some(both) = reveals.both().map(|b| Sides::new(*b.solver, *b.challenger)) else {
			d.phase = DisputePhase::Bisecting { round, reveals };
			Disputes::<T>::insert(dispute, d);
			return Ok(());
		};

		// Both revealed: narrow. Every check comes before the first write, the deadline
		// queue's room included.
		let agree = Self::take_reveals(&mut d, both);
		let narrowed = d.bisection.narrow(agree);
		let now = frame_system::Pallet::<T>::block_number();
		d.bisection = narrowed;
		if let Some(next) = d.bisection.midpoint() {
			let deadline = Self::slot(now.saturating_add(T::RoundTimeout::get()));
			Self::reschedule(dispute, &mut d, deadline);
			d.phase =
				DisputePhase::Bisecting { round: round.saturating_add(1), reveals: Sides::none() };
			Self::deposit_event(Event::Narrowed {
				dispute,
				agreed: d.bisection.agreed,
				disputed: d.bisection.disputed,
				position: next,
				deadline,
			});
			Disputes::<T>::insert(dispute, d);
			return Ok(());
		}
		match d.points.narrowed(d.bisection.disputed).ok_or(Error::<T>::Overflow)? {
			Narrowed::Transition(_) => Self::reach_leaf(dispute, d, now),
			Narrowed::Segment { first, len } => {
				let game = SegmentGame::new(first, len).ok_or(Error::<T>::Overflow)?;
				// Committing the segment's root means recomputing its steps.
				let time = T::RoundTimeout::get().saturating_add(Self::recompute(d.task, len));
				let deadline = Self::slot(now.saturating_add(time));
				Self::reschedule(dispute, &mut d, deadline);
				d.phase = DisputePhase::Segment(game);
				Self::deposit_event(Event::SegmentStarted { dispute, first, steps: len, deadline });
				Disputes::<T>::insert(dispute, d);
				Ok(())
			}
		}
	}

	/// Both sides revealed a state at the midpoint of a state bisection (over the trace's
	/// entries or inside a segment): equal, it is the new agreed state; different, they are
	/// the new disputed ones. Returns whether they agree.
	pub(crate) fn take_reveals(d: &mut DisputeOf<T>, reveals: Sides<H256>) -> bool {
		let agree = reveals.solver == reveals.challenger;
		if agree {
			d.agreed_state = Some(reveals.solver);
		} else {
			d.disputed = reveals;
		}
		agree
	}

	/// The step bisection (or the segment game) of `d` has narrowed to one transition: asks
	/// the leaf referee, then concludes the dispute, starts the operator-level game, or
	/// waits at the leaf. The referee only reads; what it decides is worked out (the op
	/// game's program and deadline included) before any write.
	pub(crate) fn reach_leaf(
		dispute: DisputeId,
		mut d: DisputeOf<T>,
		now: BlockNumberFor<T>,
	) -> DispatchResult {
		let case = d.leaf_case().ok_or(Error::<T>::Overflow)?;
		let leaf_deadline = Self::slot(now.saturating_add(T::LeafTimeout::get()));
		let verdict = T::Adjudicator::adjudicate(dispute, &case);
		let game = match verdict {
			Verdict::Operations => Self::op_game(&d, &case),
			_ => None,
		};
		// Committing the step's op trace means recomputing the step.
		let game_deadline = match game {
			Some(_) => {
				let time = T::RoundTimeout::get().saturating_add(Self::recompute(d.task, 1));
				Some(Self::slot(now.saturating_add(time)))
			}
			None => None,
		};
		// Revealing the state's tensor hashes means computing the initial state.
		let init = match (verdict, case.transition) {
			(Verdict::Initialization, Transition::Initialization) => {
				let spec = T::Tasks::spec(d.task).ok_or(Error::<T>::TaskNotFound)?;
				let program = step_program(&spec).map_err(|_| Error::<T>::WrongStage)?;
				let tensors =
					u32::try_from(program.state_shapes.len()).map_err(|_| Error::<T>::Overflow)?;
				let time = T::RoundTimeout::get().saturating_add(Self::recompute(d.task, 1));
				Some((tensors, Self::slot(now.saturating_add(time))))
			}
			_ => None,
		};
		Self::unschedule(dispute, d.deadline);
		d.phase = DisputePhase::Leaf { transition: case.transition };
		if let Some((tensors, deadline)) = init {
			Self::enqueue(dispute, deadline);
			d.deadline = deadline;
			d.phase = DisputePhase::Initialization(InitGame::default());
			Self::deposit_event(Event::InitializationStarted { dispute, tensors, deadline });
			Disputes::<T>::insert(dispute, d);
			return Ok(());
		}
		match (verdict, game, game_deadline) {
			(Verdict::Winner(winner), _, _) => {
				// Stored first so that `conclude` finds it where it expects it.
				Disputes::<T>::insert(dispute, d);
				Self::conclude(dispute, winner, Resolution::Ruling);
			}
			(_, Some(game), Some(deadline)) => {
				Self::enqueue(dispute, deadline);
				d.deadline = deadline;
				Self::deposit_event(Event::OperationsStarted {
					dispute,
					step: game.step,
					ops: game.ops,
					deadline,
				});
				d.phase = DisputePhase::Operations(game);
				Disputes::<T>::insert(dispute, d);
			}
			_ => {
				Self::enqueue(dispute, leaf_deadline);
				d.deadline = leaf_deadline;
				Self::deposit_event(Event::LeafReached {
					dispute,
					transition: case.transition,
					deadline: leaf_deadline,
				});
				Disputes::<T>::insert(dispute, d);
			}
		}
		Ok(())
	}

	/// The operator-level game over the disputed step of `case`, if it is a training
	/// step whose pre-state both sides agreed on and whose task still has its spec.
	pub(crate) fn op_game(d: &DisputeOf<T>, case: &LeafCase) -> Option<OpGame> {
		let Transition::Step(step) = case.transition else { return None };
		let spec = T::Tasks::spec(d.task)?;
		let ops = u32::try_from(step_program(&spec).ok()?.ops.len()).ok()?;
		OpGame::new(step, ops, d.agreed_state?)
	}
}
