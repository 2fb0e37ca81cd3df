//! The adversary library's liars and the loop that plays one against an honest side: shared
//! by the operator-level game's (`operations/adversaries.rs`) and the initialization game's
//! (`initialization.rs`).

use super::*;
use proptest::prelude::*;
use sp_runtime::traits::Dispatchable;

/// What the liar does from its `k`-th answer on (its answers counted from 0).
#[derive(Clone, Copy, Debug)]
pub(super) enum Adversary {
	/// Answers every stage consistently with its own (lying) run.
	Consistent,
	/// Stops answering at answer `k`.
	Silent(u32),
	/// At answer `k`, first sends a malformed answer (a wrong root, a proof of another value,
	/// children or a line that do not hash to its node), then its own.
	Malformed(u32),
	/// At answer `k`, a line shorter than the shape (a prefix of its own), then its own.
	Truncated(u32),
	/// At answer `k`, sends the honest side's answer as its own, then its own if refused.
	CopyOnce(u32),
	/// From answer `k` on, sends the honest side's answers as its own.
	CopyFrom(u32),
	/// Commits to its lying output of the disputed operation through a row tree built over
	/// rows cut to `keep` values (a self-consistent commitment to lines of the wrong length),
	/// and answers the descent from it.
	ShortLines(u32),
}

pub(super) fn adversary() -> impl Strategy<Value = Adversary> {
	prop_oneof![
		Just(Adversary::Consistent),
		(0u32..40).prop_map(Adversary::Silent),
		(0u32..40).prop_map(Adversary::Malformed),
		(0u32..40).prop_map(Adversary::Truncated),
		(0u32..40).prop_map(Adversary::CopyOnce),
		(0u32..40).prop_map(Adversary::CopyFrom),
		(0u32..4).prop_map(Adversary::ShortLines),
	]
}

fn dispatch(call: crate::Call<Test>, who: AccountId) -> bool {
	crate::proptests::CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
	RuntimeCall::from(call).dispatch(RuntimeOrigin::signed(who)).is_ok()
}

/// Plays dispute `id` until it ends (or 400 rounds), each round both sides in the order the
/// bits of `order` say. The honest side gives `honest(party)` whenever it is due, and every
/// such answer must be taken; the liar gives `lying(party)`, or first what `adversary` says
/// from its `k`-th answer on: nothing, `malformed(answer, truncate)`, or the honest side's
/// answer `copy(party)`. When nobody moved, the chain goes to the dispute's deadline. At the
/// end the liar must have lost, with its stake or bond slashed (half burned) from the total
/// issuance `issuance` before the dispute, and every invariant must hold.
#[allow(clippy::too_many_arguments)]
pub(super) fn play_against(
	id: u64,
	liar: Party,
	adversary: Adversary,
	order: u64,
	ctx: &str,
	issuance: Balance,
	honest: impl Fn(Party) -> Option<crate::Call<Test>>,
	copy: impl Fn(Party) -> Option<crate::Call<Test>>,
	lying: impl Fn(Party) -> Option<crate::Call<Test>>,
	malformed: impl Fn(&crate::Call<Test>, bool) -> Option<crate::Call<Test>>,
) -> Result<(), TestCaseError> {
	let d = Disputes::<Test>::get(id).unwrap();
	let account = |p: Party| if p == Party::Solver { d.solver } else { d.challenger };
	let mut k = 0u32;
	for round in 0..400u64 {
		if Disputes::<Test>::get(id).is_none() {
			break;
		}
		let parties = if (order >> (round % 64)) & 1 == 0 {
			[liar, liar.other()]
		} else {
			[liar.other(), liar]
		};
		let mut moved = false;
		for party in parties {
			if Disputes::<Test>::get(id).is_none() {
				break;
			}
			if party != liar {
				// Anyone may settle: the honest side does as soon as it can.
				if let Some(call) = honest(party) {
					crate::proptests::CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
					let r = RuntimeCall::from(call.clone())
						.dispatch(RuntimeOrigin::signed(account(party)));
					prop_assert!(r.is_ok(), "{ctx}: the honest answer {call:?} was refused: {r:?}");
					moved = true;
				}
				continue;
			}
			let Some(own) = lying(party) else { continue };
			let this = k;
			k += 1;
			let who = account(party);
			let tried = match adversary {
				Adversary::Silent(s) if this >= s => continue,
				Adversary::Malformed(s) if this == s => malformed(&own, false),
				Adversary::Truncated(s) if this >= s => malformed(&own, true),
				Adversary::CopyOnce(s) if this == s => copy(party),
				Adversary::CopyFrom(s) if this >= s => copy(party),
				_ => None,
			};
			if let Some(bad) = tried {
				if dispatch(bad, who) {
					moved = true;
					continue;
				}
			}
			moved |= dispatch(own, who);
		}
		if !moved {
			let Some(d) = Disputes::<Test>::get(id) else { break };
			run_to_block(d.deadline.max(System::block_number() + 1));
		}
		check_invariants(System::block_number());
	}
	let resolved = resolved(id);
	prop_assert!(resolved.is_some(), "{ctx}: unresolved");
	prop_assert_eq!(resolved.unwrap().0, liar.other(), "{}", ctx);
	let slashed = if liar == Party::Solver { SOLVER_STAKE } else { BOND };
	prop_assert_eq!(
		Balances::total_issuance(),
		issuance - (slashed - WINNER_SHARE * slashed),
		"{}",
		ctx
	);
	check_invariants(System::block_number());
	Ok(())
}
