//! The pallet's invariants, checked by `try_state` and after every call of the property
//! tests.

use crate::*;

impl<T: Config> Pallet<T> {
	/// The invariants: every dispute's deadline is in the future and queued there (or, when
	/// the queue was full, marked unqueued, waiting for anyone's `timeout` once past); the
	/// per-task books match the disputes; the interval is sound and unresolved while
	/// bisecting, resolved at the leaf.
	pub fn do_try_state(now: BlockNumberFor<T>) -> Result<(), sp_runtime::TryRuntimeError> {
		let mut counted: alloc::collections::btree_map::BTreeMap<TaskId, u32> = Default::default();
		for (id, d) in Disputes::<T>::iter() {
			ensure!(id < NextDisputeId::<T>::get(), "a dispute id at or above NextDisputeId");
			let unqueued = Unqueued::<T>::contains_key(id);
			ensure!(
				d.deadline > now
					|| unqueued || DueFrom::<T>::get().is_some_and(|f| f <= d.deadline),
				"a dispute's deadline passed and nothing ended it (nor carried it over)"
			);
			ensure!(
				Deadlines::<T>::get(d.deadline).contains(&id) != unqueued,
				"a dispute's deadline is neither queued nor marked unqueued (or both)"
			);
			ensure!(
				TaskDisputes::<T>::get(d.task, &d.challenger) == Some(id),
				"a dispute missing from its task's book"
			);
			ensure!(d.bisection.agreed < d.bisection.disputed, "an empty interval");
			ensure!(d.bisection.disputed <= d.points.len(), "an interval beyond the trace");
			let resolved = d.bisection.is_resolved();
			ensure!(
				resolved
					== matches!(
						d.phase,
						DisputePhase::Leaf { .. }
							| DisputePhase::Operations(_)
							| DisputePhase::Segment(_)
							| DisputePhase::Initialization(_)
					),
				"the phase does not match the interval"
			);
			let narrowed = resolved.then(|| d.points.narrowed(d.bisection.disputed)).flatten();
			if let DisputePhase::Segment(game) = &d.phase {
				ensure!(
					narrowed == Some(Narrowed::Segment { first: game.first, len: game.len }),
					"a segment game over another segment than the disputed one"
				);
				ensure!(
					game.bisection.agreed < game.bisection.disputed
						&& game.bisection.disputed <= game.len,
					"a segment interval beyond the segment"
				);
			}
			if let DisputePhase::Availability(game) = &d.phase {
				ensure!(
					game.point < d.points.len()
						&& game.chunks.len() as u32
							== trainet_primitives::availability::AVAILABILITY_CHUNKS,
					"an availability challenge of an entry the trace lacks, or without its rows"
				);
			}
			if let DisputePhase::Initialization(_) = &d.phase {
				ensure!(
					narrowed == Some(Narrowed::Transition(Transition::Initialization)),
					"an initialization game over another transition than the first"
				);
			}
			if let DisputePhase::Operations(game) = &d.phase {
				let within = match narrowed {
					Some(Narrowed::Transition(t)) => t == Transition::Step(game.step),
					Some(Narrowed::Segment { first, len }) => {
						game.step.checked_sub(first).is_some_and(|i| i < len)
					}
					None => false,
				};
				ensure!(
					within,
					"an operator-level game over another transition than the disputed one"
				);
				ensure!(
					game.bisection.agreed < game.bisection.disputed
						&& game.bisection.disputed <= game.ops.saturating_add(1),
					"an operator-level interval beyond the step"
				);
			}
			let c = counted.entry(d.task).or_insert(0);
			*c = c.saturating_add(1);
		}
		for (task, count) in DisputeCount::<T>::iter() {
			ensure!(counted.get(&task) == Some(&count), "a task's dispute count is wrong");
		}
		for (task, _) in FullSince::<T>::iter() {
			ensure!(
				DisputeCount::<T>::get(task) >= T::MaxDisputesPerTask::get(),
				"a task marked full has a free dispute slot"
			);
		}
		ensure!(
			TaskDisputes::<T>::iter().count() == Disputes::<T>::iter().count(),
			"the task books hold other disputes than the open ones"
		);
		ensure!(
			Unqueued::<T>::iter_keys().all(Disputes::<T>::contains_key),
			"an unqueued mark outlived its dispute"
		);
		for (block, queue) in Deadlines::<T>::iter() {
			ensure!(
				block > now || DueFrom::<T>::get().is_some_and(|f| f <= block),
				"a deadline queue was left behind"
			);
			for id in queue {
				ensure!(
					Disputes::<T>::get(id).is_some_and(|d| d.deadline == block),
					"a queued deadline belongs to no dispute"
				);
			}
		}
		Ok(())
	}
}
