//! Trace commitments: a Merkle root over the state hashes `(t, h_t)` of a training run, and
//! the proofs that reveal one of them during a dispute.
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
