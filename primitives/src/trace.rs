//! Trace commitments: a Merkle root over the state hashes of a training run, and the proofs
//! that reveal one of them during a dispute.
//!
//! With checkpoint interval `C` (the spec's), the trace commits to the states after steps
//! `0, C, 2C, ...` and the last one, `N` ([`TracePoints`]): entry `k` of the tree is the state
//! after step `min(k * C, N)`. With `C = 1` that is every step. A segment of steps between two
//! entries is committed only when a dispute narrows to it: then both sides commit a root over
//! its per-step hashes, built the same way (entry `i` is the state `i` steps into the segment).
//!
//! The tree is polkadot-sdk's `binary-merkle-tree` with blake2b-256 (the chain's hasher). Its
//! leaves are hashed with the same function as its inner nodes; a leaf here is the SCALE
//! encoding of `(u32, H256)`, 36 bytes, which can never be mistaken for the 64-byte
//! concatenation of two child hashes, so no second-preimage confusion is possible.

use alloc::vec::Vec;
use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;
use sp_core::{ConstU32, H256};
use sp_runtime::{traits::BlakeTwo256, BoundedVec};

/// The deepest proof accepted: enough for `2^32` leaves.
pub const MAX_PROOF_DEPTH: u32 = 32;

/// The sibling hashes of a Merkle proof, leaf to root.
pub type ProofItems = BoundedVec<H256, ConstU32<MAX_PROOF_DEPTH>>;

/// Which training states a trace of `steps` steps with checkpoint interval `interval`
/// commits to: entry `k` is the state after step `min(k * interval, steps)`.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	Debug,
)]
pub struct TracePoints {
	/// Training steps `N`.
	pub steps: u32,
	/// The checkpoint interval `C`, at least 1.
	pub interval: u32,
}

/// Where a step bisection over trace entries ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Narrowed {
	/// At one transition (initialization, or one training step).
	Transition(crate::bisection::Transition),
	/// At a segment of `len >= 2` steps starting after step `first`, whose per-step hashes the
	/// trace does not hold.
	Segment {
		/// The step whose state both sides agree on.
		first: u32,
		/// Steps in the segment.
		len: u32,
	},
}

impl TracePoints {
	/// The points of `steps` steps with checkpoint interval `interval`, or `None` when
	/// `interval` is 0.
	pub fn new(steps: u32, interval: u32) -> Option<Self> {
		(interval > 0).then_some(Self { steps, interval })
	}

	/// Entries in the trace: `ceil(steps / interval) + 1` (at most `steps + 1`).
	#[allow(clippy::len_without_is_empty)] // never empty: `h_0` is always an entry
	pub fn len(&self) -> u32 {
		self.steps.div_ceil(self.interval.max(1)).saturating_add(1)
	}

	/// The step after which entry `k` is the state, if the trace has entry `k`.
	pub fn step(&self, k: u32) -> Option<u32> {
		(k < self.len()).then(|| k.saturating_mul(self.interval).min(self.steps))
	}

	/// The entry holding the state after step `t`, if the trace holds it.
	pub fn entry(&self, t: u32) -> Option<u32> {
		if t == self.steps {
			return self.len().checked_sub(1);
		}
		let k = t.checked_div(self.interval)?;
		(t < self.steps && t.is_multiple_of(self.interval)).then_some(k)
	}

	/// The steps between entries `k` and `k + 1`: the first step's index and how many.
	pub fn segment(&self, k: u32) -> Option<(u32, u32)> {
		let first = self.step(k)?;
		let end = self.step(k.checked_add(1)?)?;
		Some((first, end.checked_sub(first)?))
	}

	/// Where a step bisection over these entries ends once it is one position wide at
	/// `disputed` (see [`crate::bisection`]: position 1 is entry 0, `h_0`; position `p` is
	/// entry `p - 1`).
	pub fn narrowed(&self, disputed: u32) -> Option<Narrowed> {
		use crate::bisection::Transition;
		let k = match disputed {
			0 => return None,
			1 => return Some(Narrowed::Transition(Transition::Initialization)),
			p => p.checked_sub(2)?,
		};
		let (first, len) = self.segment(k)?;
		Some(match len {
			0 => return None,
			1 => Narrowed::Transition(Transition::Step(first)),
			len => Narrowed::Segment { first, len },
		})
	}
}

/// A revealed trace entry with its Merkle proof: "the state after step `index` hashes to
/// `state`", provable against a trace root of `leaf_count` leaves.
#[derive(
	Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, MaxEncodedLen, Debug,
)]
pub struct TraceProof {
	/// The state hash revealed.
	pub state: H256,
	/// Sibling hashes from the leaf up to (not including) the root.
	pub items: ProofItems,
}

/// The SCALE-encoded leaf of trace entry `(index, state)`.
pub fn trace_leaf(index: u32, state: &H256) -> Vec<u8> {
	(index, state).encode()
}

/// The leaves of a trace, in order.
fn trace_leaves(states: &[H256]) -> impl ExactSizeIterator<Item = Vec<u8>> + '_ {
	states.iter().enumerate().map(|(t, h)| trace_leaf(t as u32, h))
}

/// The trace root over `states`, where `states[t]` is `h_t`.
pub fn trace_root(states: &[H256]) -> H256 {
	binary_merkle_tree::merkle_root::<BlakeTwo256, _>(trace_leaves(states))
}

/// The proof of entry `index` of `states`, or `None` if `index` is out of range or the proof
/// would be deeper than [`MAX_PROOF_DEPTH`].
pub fn trace_proof(states: &[H256], index: u32) -> Option<TraceProof> {
	let state = *states.get(index as usize)?;
	let proof = binary_merkle_tree::merkle_proof::<BlakeTwo256, _, _>(trace_leaves(states), index);
	let items = ProofItems::try_from(proof.proof).ok()?;
	Some(TraceProof { state, items })
}

/// Whether `proof` shows that entry `index` of a trace with `leaf_count` entries and root
/// `root` is `proof.state`.
pub fn verify_trace_proof(root: &H256, leaf_count: u32, index: u32, proof: &TraceProof) -> bool {
	if index >= leaf_count {
		return false;
	}
	let leaf = trace_leaf(index, &proof.state);
	binary_merkle_tree::verify_proof::<BlakeTwo256, _, _>(
		root,
		proof.items.iter().copied(),
		leaf_count,
		index,
		&leaf,
	)
}

#[cfg(test)]
#[allow(
	clippy::unwrap_used,
	clippy::expect_used,
	clippy::arithmetic_side_effects,
	clippy::indexing_slicing
)]
mod tests {
	use super::*;

	fn states(n: u32) -> Vec<H256> {
		(0..n).map(|i| H256::repeat_byte((i % 251) as u8 + 1)).collect()
	}

	#[test]
	fn trace_points_cover_every_checkpoint_and_the_last_step() {
		let p = TracePoints::new(10, 4).unwrap();
		assert_eq!(p.len(), 4);
		let steps: Vec<_> = (0..5).map(|k| p.step(k)).collect();
		assert_eq!(steps, vec![Some(0), Some(4), Some(8), Some(10), None]);
		assert_eq!((0..=10).filter_map(|t| p.entry(t)).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
		assert_eq!(p.entry(4), Some(1));
		assert_eq!(p.entry(5), None);
		assert_eq!(p.segment(2), Some((8, 2)));
		assert_eq!(p.segment(3), None);
		// Every step: the trace of old.
		let every = TracePoints::new(10, 1).unwrap();
		assert_eq!(every.len(), 11);
		assert!((0..=10).all(|t| every.entry(t) == Some(t) && every.step(t) == Some(t)));
		// An interval beyond the steps: the first and the last state only.
		let wide = TracePoints::new(10, 64).unwrap();
		assert_eq!((wide.len(), wide.step(1), wide.segment(0)), (2, Some(10), Some((0, 10))));
		assert_eq!(TracePoints::new(10, 0), None);
	}

	#[test]
	fn a_narrowed_position_is_a_transition_or_a_segment() {
		use crate::bisection::Transition;
		let p = TracePoints::new(10, 4).unwrap();
		assert_eq!(p.narrowed(1), Some(Narrowed::Transition(Transition::Initialization)));
		assert_eq!(p.narrowed(2), Some(Narrowed::Segment { first: 0, len: 4 }));
		assert_eq!(p.narrowed(4), Some(Narrowed::Segment { first: 8, len: 2 }));
		assert_eq!(p.narrowed(5), None);
		assert_eq!(p.narrowed(0), None);
		let every = TracePoints::new(10, 1).unwrap();
		assert_eq!(every.narrowed(6), Some(Narrowed::Transition(Transition::Step(4))));
		let last_one = TracePoints::new(9, 4).unwrap();
		assert_eq!(last_one.narrowed(4), Some(Narrowed::Transition(Transition::Step(8))));
	}

	#[test]
	fn every_entry_proves_and_no_other_does() {
		for n in 1..=33u32 {
			let s = states(n);
			let root = trace_root(&s);
			for i in 0..n {
				let proof = trace_proof(&s, i).unwrap();
				assert!(verify_trace_proof(&root, n, i, &proof), "n {n} i {i}");
				// The leaf binds its index: the proof fails at any other index.
				if n > 1 {
					assert!(!verify_trace_proof(&root, n, (i + 1) % n, &proof));
				}
				// And its state: a forged state fails.
				let mut forged = proof.clone();
				forged.state = H256::repeat_byte(0xee);
				assert!(!verify_trace_proof(&root, n, i, &forged));
			}
			assert!(trace_proof(&s, n).is_none());
			assert!(!verify_trace_proof(&root, n, n, &trace_proof(&s, 0).unwrap()));
		}
	}
}
