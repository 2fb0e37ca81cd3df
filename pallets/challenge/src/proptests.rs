//! Random sequences of calls from many accounts against the whole market (staking, escrow,
//! challenge, slashing), dispatched as the chain dispatches them. After every call and every
//! block: nothing panicked, every pallet's invariants hold (holds match the books, every open
//! task and dispute has a deadline in the future), the accounts' balances add up to the total
//! issuance, and the issuance fell by exactly what the slashes burned.

#![allow(
	clippy::unwrap_used,
	clippy::expect_used,
	clippy::arithmetic_side_effects,
	clippy::indexing_slicing
)]

use crate::mock::*;
use frame_support::traits::fungible::{Inspect, InspectHold};
use proptest::prelude::*;
use sp_core::H256;
use sp_runtime::traits::Dispatchable;
use std::collections::BTreeMap;
use trainet_primitives::{
	market::{DisputePhase, Timeouts, TraceCommitment},
	trace::{trace_proof, trace_root, TraceProof},
};

const SUBMITTERS: [AccountId; 2] = [1, 2];
const SOLVERS: [AccountId; 4] = [10, 11, 12, 30];
const VERIFIERS: [AccountId; 4] = [20, 21, 22, 30];
const EVERYONE: [AccountId; 13] = [1, 2, 10, 11, 12, 13, 14, 20, 21, 22, 23, 24, 30];

#[derive(Debug, Clone)]
enum Action {
	Submit {
		who: usize,
		steps: u32,
		reward: Balance,
		claim: u64,
		commit: u64,
		challenge: u64,
	},
	Cancel {
		who: usize,
		task: u64,
	},
	Claim {
		who: usize,
		task: u64,
	},
	/// Commit a trace that is honest (`None`) or wrong from entry `lie_at` on.
	Commit {
		task: u64,
		lie_at: Option<u32>,
	},
	/// Dispute with a trace that is honest or wrong from `lie_at` on.
	Open {
		who: usize,
		task: u64,
		lie_at: Option<u32>,
	},
	/// A party reveals at this round's position; `honest_proof: false` sends a garbage proof.
	Reveal {
		dispute: u64,
		solver: bool,
		honest_proof: bool,
	},
	Timeout {
		dispute: u64,
	},
	Expire {
		task: u64,
	},
	Unbond {
		who: usize,
		amount: Balance,
	},
	Blocks(u64),
}

fn action() -> impl Strategy<Value = Action> {
	// Tasks and disputes are picked among the live ones (by index, modulo their number), and
	// the calls that move them on are the likeliest, so that sequences reach disputes.
	let task = 0u64..64;
	let lie = proptest::option::of(0u32..12);
	let reward = prop_oneof![8 => 10u128..2_000, 1 => 0u128..20, 1 => Just(u128::MAX)];
	let timeout = prop_oneof![9 => 2u64..15, 1 => 0u64..2];
	prop_oneof![
		2 => (0..SUBMITTERS.len(), 1u32..12, reward, timeout.clone(), timeout.clone(), timeout)
			.prop_map(|(who, steps, reward, claim, commit, challenge)| Action::Submit { who, steps, reward, claim, commit, challenge }),
		1 => (0..SUBMITTERS.len(), task.clone()).prop_map(|(who, task)| Action::Cancel { who, task }),
		3 => (0..SOLVERS.len(), task.clone()).prop_map(|(who, task)| Action::Claim { who, task }),
		3 => (task.clone(), lie.clone()).prop_map(|(task, lie_at)| Action::Commit { task, lie_at }),
		3 => (0..VERIFIERS.len(), task.clone(), lie).prop_map(|(who, task, lie_at)| Action::Open { who, task, lie_at }),
		10 => (0u64..64, any::<bool>(), prop_oneof![9 => Just(true), 1 => Just(false)])
			.prop_map(|(dispute, solver, honest_proof)| Action::Reveal { dispute, solver, honest_proof }),
		1 => (0u64..64).prop_map(|dispute| Action::Timeout { dispute }),
		1 => task.prop_map(|task| Action::Expire { task }),
		1 => (0..EVERYONE.len(), 0u128..1_200).prop_map(|(who, amount)| Action::Unbond { who, amount }),
		2 => (1u64..6).prop_map(Action::Blocks),
	]
}

/// The `i`-th live task (modulo their number), or an id past the last one when none lives.
fn live_task(i: u64) -> u64 {
	let ids: Vec<u64> = pallet_task_escrow::Tasks::<Test>::iter_keys().collect();
	if ids.is_empty() {
		return pallet_task_escrow::NextTaskId::<Test>::get();
	}
	let mut ids = ids;
	ids.sort();
	ids[(i as usize) % ids.len()]
}

/// The `i`-th open dispute (modulo their number), or an unused id when none is open.
fn live_dispute(i: u64) -> u64 {
	let mut ids: Vec<u64> = crate::Disputes::<Test>::iter_keys().collect();
	if ids.is_empty() {
		return crate::NextDisputeId::<Test>::get();
	}
	ids.sort();
	ids[(i as usize) % ids.len()]
}

/// The honest trace of a task with `steps` steps (distinct per task), ending at a made-up
/// final state of `spec(steps)`'s size that `commit` accepts.
fn honest(task: u64, steps: u32) -> Vec<H256> {
	let mut states: Vec<H256> =
		(0..steps).map(|t| H256::from_low_u64_be((task << 20) + u64::from(t) + 1)).collect();
	states.push(made_up_final(&spec(steps), task));
	states
}

fn traced(task: u64, steps: u32, lie_at: Option<u32>, salt: u64) -> Vec<H256> {
	let mut states = honest(task, steps);
	if let Some(from) = lie_at {
		let from = from.min(steps);
		let last = steps as usize;
		for (i, h) in states.iter_mut().enumerate().skip(from as usize) {
			*h = if i == last {
				other_final(h, (salt << 24) + (task << 16))
			} else {
				H256::from_low_u64_be(0xdead_0000_0000 + (salt << 24) + (task << 16) + i as u64)
			};
		}
	}
	states
}

/// Calls dispatched by the property tests of this process (`scripts/fuzz` reports them).
pub static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// With `TRAINET_FUZZ` set, prints the calls dispatched so far (every one of them followed by
/// every invariant check, none of which failed, or the test would have stopped).
pub fn report(test: &str) {
	if std::env::var_os("TRAINET_FUZZ").is_some() {
		let calls = CALLS.load(std::sync::atomic::Ordering::Relaxed);
		eprintln!("fuzz: {test}: {calls} calls so far, every invariant held");
	}
}

fn dispatch(call: impl Into<RuntimeCall>, who: AccountId) {
	// Errors are expected for many random calls; panics are not. A failed call changes
	// nothing, as on chain.
	CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
	let _ = call.into().dispatch(RuntimeOrigin::signed(who));
}

fn check_money(initial: Balance) {
	let issuance = Balances::total_issuance();
	assert_eq!(issuance, initial - burned(), "issuance moved by more than the burns");
	let sum: Balance = EVERYONE.iter().map(Balances::total_balance).sum();
	assert_eq!(sum, issuance, "balances do not add up to the issuance");
	for a in EVERYONE {
		let held = Balances::balance_on_hold(&pallet_task_escrow::HoldReason::Reward.into(), &a)
			+ Balances::balance_on_hold(&pallet_compute_staking::HoldReason::Bond.into(), &a);
		assert_eq!(Balances::total_balance(&a), Balances::balance(&a) + held, "held + free of {a}");
	}
}

proptest! {
	#![proptest_config(ProptestConfig::with_cases(128))]

	#[test]
	fn random_market_activity_keeps_every_invariant(actions in proptest::collection::vec(action(), 1..80)) {
		new_test_ext().execute_with(|| {
			let initial = Balances::total_issuance();
			// The traces each party committed to, as the test remembers them.
			let mut solver_traces: BTreeMap<u64, Vec<H256>> = BTreeMap::new();
			let mut challenger_traces: BTreeMap<u64, Vec<H256>> = BTreeMap::new();
			for (n, action) in actions.into_iter().enumerate() {
				let salt = n as u64;
				match action {
					Action::Submit { who, steps, reward, claim, commit, challenge } => {
						let task = pallet_task_escrow::NextTaskId::<Test>::get();
						set_truth(task, honest(task, steps));
						let timeouts = Timeouts { claim, commit, challenge };
						dispatch(pallet_task_escrow::Call::submit { spec: spec(steps), reward, timeouts }, SUBMITTERS[who]);
					}
					Action::Cancel { who, task } => {
						dispatch(pallet_task_escrow::Call::cancel { task: live_task(task) }, SUBMITTERS[who])
					}
					Action::Claim { who, task } => {
						dispatch(pallet_task_escrow::Call::claim { task: live_task(task) }, SOLVERS[who])
					}
					Action::Commit { task, lie_at } => {
						let task = live_task(task);
						let Some(t) = pallet_task_escrow::Tasks::<Test>::get(task) else { continue };
						let trainet_primitives::market::TaskState::Claimed { solver, .. } = t.state else { continue };
						let states = traced(task, t.spec.steps, lie_at, salt);
						let last = final_state(states.last().unwrap());
						let commitment = TraceCommitment {
							trace_root: trace_root(&states),
							steps: t.spec.steps,
							final_state: last.state,
							model_hash: last.model,
						};
						let final_proof = trace_proof(&states, t.spec.steps).unwrap();
						solver_traces.insert(task, states);
						let final_tensors = last.tensors;
						dispatch(pallet_task_escrow::Call::commit { task, commitment, final_proof, final_tensors }, solver);
					}
					Action::Open { who, task, lie_at } => {
						let task = live_task(task);
						let Some(t) = pallet_task_escrow::Tasks::<Test>::get(task) else { continue };
						let states = traced(task, t.spec.steps, lie_at, salt + 1_000);
						let id = crate::NextDisputeId::<Test>::get();
						let call = crate::Call::open {
							task,
							root: trace_root(&states),
							final_proof: trace_proof(&states, t.spec.steps).unwrap(),
						};
						challenger_traces.insert(id, states);
						dispatch(call, VERIFIERS[who]);
					}
					Action::Reveal { dispute, solver, honest_proof } => {
						let dispute = live_dispute(dispute);
						let Some(d) = crate::Disputes::<Test>::get(dispute) else { continue };
						let DisputePhase::Bisecting { .. } = d.phase else { continue };
						let position = d.bisection.midpoint().unwrap();
						let (who, states) = if solver {
							(d.solver, solver_traces.get(&d.task))
						} else {
							(d.challenger, challenger_traces.get(&dispute))
						};
						let proof = match states {
							Some(s) if honest_proof => trace_proof(s, position - 1).unwrap(),
							_ => TraceProof { state: H256::repeat_byte(1), items: Default::default() },
						};
						dispatch(crate::Call::reveal { dispute, position, proof }, who);
					}
					Action::Timeout { dispute } => {
						dispatch(crate::Call::timeout { dispute: live_dispute(dispute) }, 13)
					}
					Action::Expire { task } => dispatch(pallet_task_escrow::Call::expire { task: live_task(task) }, 13),
					Action::Unbond { who, amount } => {
						dispatch(pallet_compute_staking::Call::unbond { amount }, EVERYONE[who])
					}
					Action::Blocks(n) => run_to_block(System::block_number() + n),
				}
				check_invariants(System::block_number());
				check_money(initial);
			}
			// Left alone, everything ends: every task and dispute meets its deadline.
			run_to_block(System::block_number() + 200);
			check_money(initial);
			prop_assert_eq!(crate::Disputes::<Test>::iter().count(), 0);
			prop_assert_eq!(pallet_task_escrow::Tasks::<Test>::iter().filter(|(_, t)| !matches!(t.state, trainet_primitives::market::TaskState::Open { .. })).count(), 0);
			report("market");
			Ok(())
		})?;
	}
}
