//! The dispute game end to end on the mock market: liars lose at every step of traces of
//! 1..=64 steps, by the referee's ruling or by timing out; every call's errors; several
//! disputes on one task and disputes on many tasks at once.

#![allow(
	clippy::unwrap_used,
	clippy::expect_used,
	clippy::arithmetic_side_effects,
	clippy::indexing_slicing
)]

use crate::{mock::*, DisputeCount, Disputes, Error, Event, Resolution};
use frame_support::{
	assert_noop, assert_ok,
	traits::fungible::{Inspect, InspectHold},
};
use pallet_compute_staking::Ledgers;
use pallet_task_escrow::{NextTaskId, Tasks};
use sp_core::H256;
use trainet_primitives::{
	bisection::{Bisection, Transition},
	market::{DisputePhase, Party, TaskState, Timeouts, TraceCommitment},
	trace::{trace_proof, trace_root, TracePoints},
};

/// The honest trace of a task of `spec(steps)`: `steps + 1` distinct state hashes, the last
/// a made-up final state of the spec's size ([`made_up_final`]).
fn honest(steps: u32) -> Vec<H256> {
	let mut states: Vec<H256> =
		(0..steps).map(|t| H256::from_low_u64_be(0x1000 + u64::from(t))).collect();
	states.push(made_up_final(&spec(steps), u64::from(steps)));
	states
}

/// `states` with every entry from `from` on replaced by a wrong one (liars that start at
/// different entries tell different lies).
fn lie_from(states: &[H256], from: u32) -> Vec<H256> {
	let last = states.len() - 1;
	states
		.iter()
		.enumerate()
		.map(|(i, h)| {
			if i == last && i as u32 >= from {
				other_final(h, u64::from(from))
			} else if i as u32 >= from {
				H256::from_low_u64_be(0xbad0_0000 + (u64::from(from) << 16) + i as u64)
			} else {
				*h
			}
		})
		.collect()
}

/// The commitment to `states`, whose last entry is a final state a test made: its model hash
/// is that state's parameter part.
fn commitment(states: &[H256]) -> TraceCommitment {
	let last = *states.last().unwrap();
	TraceCommitment {
		trace_root: trace_root(states),
		steps: states.len() as u32 - 1,
		final_state: last,
		model_hash: final_state(&last).model,
	}
}

/// `solver` commits the trace `entries` (with `c` its commitment) for `task`.
fn commit(solver: AccountId, task: u64, c: TraceCommitment, entries: &[H256]) {
	let last = entries.len() as u32 - 1;
	assert_ok!(Escrow::commit(
		RuntimeOrigin::signed(solver),
		task,
		c,
		trace_proof(entries, last).unwrap(),
		final_state(&c.final_state).tensors
	));
}

/// Posts a task of `steps` steps whose honest trace is `honest(steps)`; `solver` claims it
/// and commits `solver_states`. Returns the task id.
fn committed_task(solver: AccountId, solver_states: &[H256]) -> u64 {
	let steps = solver_states.len() as u32 - 1;
	let task = NextTaskId::<Test>::get();
	assert_ok!(Escrow::submit(RuntimeOrigin::signed(1), spec(steps), 500, timeouts()));
	set_truth(task, honest(steps));
	assert_ok!(Escrow::claim(RuntimeOrigin::signed(solver), task));
	commit(solver, task, commitment(solver_states), solver_states);
	task
}

/// `(solver's, challenger's)`: `lying` for the side that lies, `honest` for the other.
fn roles<'a, T>(liar: Party, lying: &'a T, honest: &'a T) -> (&'a T, &'a T) {
	match liar {
		Party::Solver => (lying, honest),
		Party::Challenger => (honest, lying),
	}
}

/// `challenger` opens a dispute against `task` with `states`; returns the dispute id.
fn open(task: u64, challenger: AccountId, states: &[H256]) -> u64 {
	let id = crate::NextDisputeId::<Test>::get();
	let steps = states.len() as u32 - 1;
	assert_ok!(Challenge::open(
		RuntimeOrigin::signed(challenger),
		task,
		trace_root(states),
		trace_proof(states, steps).unwrap()
	));
	id
}

/// Plays dispute `id` with both sides revealing from their traces; `quits` stops revealing
/// from round `round` on and lets the deadline pass. Returns the rounds played.
fn play(
	id: u64,
	solver_states: &[H256],
	challenger_states: &[H256],
	quits: Option<(Party, u32)>,
) -> u32 {
	let mut rounds = 0;
	while let Some(d) = Disputes::<Test>::get(id) {
		let DisputePhase::Bisecting { round, .. } = d.phase else { break };
		let mid = d.bisection.midpoint().unwrap();
		let index = mid - 1;
		let mut quit = false;
		for (party, who, states) in [
			(Party::Solver, d.solver, solver_states),
			(Party::Challenger, d.challenger, challenger_states),
		] {
			if quits.is_some_and(|(p, r)| p == party && round >= r) {
				quit = true;
				continue;
			}
			assert_ok!(Challenge::reveal(
				RuntimeOrigin::signed(who),
				id,
				mid,
				trace_proof(states, index).unwrap()
			));
		}
		rounds += 1;
		if quit {
			run_to_block(d.deadline);
			break;
		}
		check_invariants(System::block_number());
	}
	rounds
}

fn resolved(id: u64) -> Option<(Party, Resolution)> {
	System::events().into_iter().find_map(|r| match r.event {
		RuntimeEvent::Challenge(Event::DisputeResolved { dispute, winner, resolution, .. })
			if dispute == id =>
		{
			Some((winner, resolution))
		}
		_ => None,
	})
}

/// Posts `spec`, lets solver 10 commit the trace `solver` and challenger 20 dispute it with
/// `challenger`, and plays the step bisection to the transition they dispute. Returns the
/// dispute.
fn to_leaf(
	spec: &trainet_primitives::task::TrainingSpec,
	solver: &[H256],
	challenger: &[H256],
) -> u64 {
	let task = NextTaskId::<Test>::get();
	assert_ok!(Escrow::submit(RuntimeOrigin::signed(1), spec.clone(), 500, timeouts()));
	assert_ok!(Escrow::claim(RuntimeOrigin::signed(10), task));
	commit(10, task, commitment(solver), solver);
	let id = open(task, 20, challenger);
	play(id, solver, challenger, None);
	id
}

fn active(who: AccountId) -> Balance {
	Ledgers::<Test>::get(who).map(|l| l.active).unwrap_or(0)
}

fn locked(who: AccountId) -> Balance {
	Ledgers::<Test>::get(who).map(|l| l.locked).unwrap_or(0)
}

mod adversary;
mod availability;
mod bisection;
mod deadlines;
mod initialization;
mod operations;
mod outcomes;
mod segments;
