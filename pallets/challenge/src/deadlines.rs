//! Deadlines: every stage of a dispute has one, queued by block ([`Deadlines`]); `on_initialize`
//! ends the due disputes, a bounded number a block ([`Pallet::end_due`]), and whoever has not
//! moved by its deadline loses ([`Pallet::do_timeout`]).

use crate::*;

impl<T: Config> Pallet<T> {
	/// Open dispute `dispute`, if its deadline has not passed: once it has, the dispute
	/// only waits for `on_initialize` (or anyone's `timeout`) to end it, and takes no more
	/// answers, even while the per-block budget carries its ending over.
	pub(crate) fn live(dispute: DisputeId) -> Result<DisputeOf<T>, Error<T>> {
		let d = Disputes::<T>::get(dispute).ok_or(Error::<T>::DisputeNotFound)?;
		let now = frame_system::Pallet::<T>::block_number();
		ensure!(now < d.deadline, Error::<T>::DeadlinePassed);
		Ok(d)
	}

	/// The blocks, on top of a round, that recomputing `steps` steps of `task` is given at
	/// the budget's reference speed ([`settle::recompute_blocks`]).
	pub(crate) fn recompute(task: TaskId, steps: u32) -> BlockNumberFor<T> {
		use sp_runtime::traits::UniqueSaturatedInto;
		let Some(spec) = T::Tasks::spec(task) else { return Zero::zero() };
		let Ok(program) = step_program(&spec) else { return Zero::zero() };
		let budget = T::LeafBudget::get();
		settle::recompute_blocks(&spec, &program, steps, &budget)
			.min(budget.max_recompute_blocks)
			.unique_saturated_into()
	}

	/// The deadline of a stage due at `at`: `at`, or the first block after it whose queue
	/// has room (at most [`deadline_queue::MAX_DEADLINE_SLIDE`] later), or `at` again when
	/// every one of them is full ([`Self::enqueue`] then leaves it unqueued). Reads only;
	/// never fails, so a full queue cannot make an answer fail.
	pub(crate) fn slot(at: BlockNumberFor<T>) -> BlockNumberFor<T> {
		deadline_queue::slot::<Deadlines<T>, _, _, _>(at).unwrap_or(at)
	}

	/// Queues `dispute` at `block`, a block [`Self::slot`] returned in the same call; if it
	/// is full, the dispute's deadline stands unqueued ([`Unqueued`]) and anyone's `timeout`
	/// ends it after the deadline.
	pub(crate) fn enqueue(dispute: DisputeId, block: BlockNumberFor<T>) {
		if deadline_queue::insert::<Deadlines<T>, _, _, _>(dispute, block) {
			if Unqueued::<T>::contains_key(dispute) {
				Unqueued::<T>::remove(dispute);
			}
		} else {
			Unqueued::<T>::insert(dispute, ());
			Self::deposit_event(Event::DeadlineNotQueued { dispute, deadline: block });
		}
	}

	/// Moves dispute `dispute`'s deadline to `at`, in `d` and in the deadline queue.
	pub(crate) fn reschedule(dispute: DisputeId, d: &mut DisputeOf<T>, at: BlockNumberFor<T>) {
		Self::unschedule(dispute, d.deadline);
		Self::enqueue(dispute, at);
		d.deadline = at;
	}

	pub(crate) fn unschedule(dispute: DisputeId, at: BlockNumberFor<T>) {
		deadline_queue::unschedule::<Deadlines<T>, _, _, _>(&dispute, at)
	}

	/// Ends due disputes, oldest deadline first, at most `MaxTimeoutsPerBlock` of them,
	/// carrying the rest over ([`DueFrom`]). Returns the disputes ended and the queues
	/// read.
	pub(crate) fn end_due(now: BlockNumberFor<T>) -> (u32, u32) {
		let mut budget = T::MaxTimeoutsPerBlock::get();
		// Empty blocks between a carried-over queue and now cost a read each: at most
		// this many a block (the cursor catches up over the next blocks).
		let mut probes_left = budget.saturating_add(16);
		let mut block = DueFrom::<T>::get().unwrap_or(now).min(now);
		let (mut ended, mut probes) = (0u32, 0u32);
		while block <= now && probes_left > 0 {
			probes = probes.saturating_add(1);
			probes_left = probes_left.saturating_sub(1);
			let queue = Deadlines::<T>::get(block);
			if queue.is_empty() {
				block = block.saturating_add(One::one());
				continue;
			}
			if budget == 0 {
				break;
			}
			for id in queue.into_iter().take(budget as usize) {
				// Every queued dispute is due (the queue is kept exact). A dispute ended
				// by an earlier one of the loop is already gone from its queue.
				if Disputes::<T>::contains_key(id) && Self::do_timeout(id, now).is_err() {
					// Cannot happen; never loop on it.
					Self::unschedule(id, block);
				}
				budget = budget.saturating_sub(1);
				ended = ended.saturating_add(1);
			}
		}
		if block <= now {
			DueFrom::<T>::put(block);
		} else {
			DueFrom::<T>::kill();
		}
		(ended, probes)
	}

	/// What happens when `dispute`'s deadline has come by `now`.
	pub(crate) fn do_timeout(dispute: DisputeId, now: BlockNumberFor<T>) -> DispatchResult {
		let d = Disputes::<T>::get(dispute).ok_or(Error::<T>::DisputeNotFound)?;
		ensure!(d.deadline <= now, Error::<T>::DeadlineNotReached);
		match d.phase {
			DisputePhase::Bisecting { reveals, .. } => {
				// Whoever has not revealed loses; if neither has, the challenger does.
				Self::conclude(dispute, reveals.given().winner_at_deadline(), Resolution::Timeout);
			}
			DisputePhase::Segment(ref game) => {
				// Whoever has not committed (or, once both have, revealed) loses; the
				// challenger if neither has.
				let given = match game.position() {
					None => game.roots.given(),
					Some(_) => game.reveals.given(),
				};
				Self::conclude(dispute, given.winner_at_deadline(), Resolution::Timeout);
			}
			DisputePhase::Leaf { .. } => {
				let verdict = d.leaf_case().and_then(|c| T::Adjudicator::expired(dispute, &c));
				match verdict {
					Some(winner) => Self::conclude(dispute, winner, Resolution::Timeout),
					None => Self::void(dispute, &d),
				}
			}
			DisputePhase::Operations(ref game) => {
				// Whoever has not committed or revealed loses (the challenger if neither
				// has); an unsettled operation costs the challenger, who must pursue its
				// dispute, unless the chain could not have executed it.
				let winner = match game.stage() {
					OpStage::Committing => Some(game.roots.given().winner_at_deadline()),
					OpStage::Revealing(_) => Some(game.reveals.given().winner_at_deadline()),
					OpStage::Operation(j) => Self::settleable(d.task, j).then_some(Party::Solver),
					OpStage::Assembly => Some(Party::Solver),
					OpStage::Opening(_)
					| OpStage::Descending { .. }
					| OpStage::Line { .. }
					| OpStage::Partials { .. } => game
						.descent
						.as_ref()
						.map(|descent| Self::answered(dispute, descent).winner_at_deadline()),
					OpStage::Element { op, .. } | OpStage::Term { op, .. } => {
						matches!(Self::plan(d.task, op), Some(Plan::Elements | Plan::Terms))
							.then_some(Party::Solver)
					}
				};
				match winner {
					Some(winner) => Self::conclude(dispute, winner, Resolution::Timeout),
					None => Self::void(dispute, &d),
				}
			}
			DisputePhase::Availability(_) => {
				// Nobody showed the asked rows: the state is not available.
				Self::conclude(dispute, Party::Challenger, Resolution::Timeout);
			}
			DisputePhase::Initialization(ref game) => {
				// Whoever has not revealed (or answered the descent) loses; the
				// challenger if neither has.
				let given = match game.disputed {
					None => game.tensors.given(),
					Some(_) => Self::answered(dispute, &game.descent),
				};
				Self::conclude(dispute, given.winner_at_deadline(), Resolution::Timeout);
			}
		}
		Ok(())
	}
}
