//! Commitments to tensors, training states and a step's operation trace (PROTOCOL.md,
//! "Trace and commitments"), shared by the worker that commits and the chain that checks.
//!
//! - A tensor's hash binds its shape, a Merkle root over its rows and a Merkle root over its
//!   columns, so one row or one column can later be proven against it (what an element-level
//!   leaf check reads).
//! - A state's hash `h_t` is a Merkle root over its tensors' hashes, in state order, so one
//!   tensor can be proven against it.
//! - A step's op trace is a Merkle root over leaves `L_j = (j, o_j, a_j)`, where `o_j` is the
//!   hash of operation `j`'s output and `a_j = H(a_{j-1}, o_j)` chains them from the agreed
//!   pre-state hash `a_{-1} = h_t`. Agreeing on `L_j` means agreeing on every earlier output.
//!
//! - A dataset's root is a Merkle root over its samples `(shape, i, label, features)`, so the
//!   rows of one batch can be proven against the spec's `dataset.root`, under its shape.
//!
//! All hashing is blake2b-256 (the chain's hasher) over SCALE encodings, through
//! polkadot-sdk's `binary-merkle-tree`; leaves carry a one-byte domain tag and their index, so
//! a row can never pass for a column, a tensor or an inner node.

use crate::repops::Matrix;
use crate::task::DatasetCommitment;
use crate::trace::ProofItems;
use alloc::vec::Vec;
use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;
use sp_core::H256;
use sp_runtime::traits::{BlakeTwo256, Hash};

/// Domain tags of the leaves.
const ROW: u8 = b'r';
const COL: u8 = b'c';
const TENSOR: u8 = b't';
const OP: u8 = b'o';
const SAMPLE: u8 = b's';

fn root(leaves: impl ExactSizeIterator<Item = Vec<u8>>) -> H256 {
	binary_merkle_tree::merkle_root::<BlakeTwo256, _>(leaves)
}

/// The leaf of row `i` of a tensor: its values' bit patterns.
pub fn row_leaf(i: u32, row: &[f32]) -> Vec<u8> {
	row_leaf_bits(i, &row.iter().map(|v| v.to_bits()).collect::<Vec<u32>>())
}

/// The leaf of column `j` of a tensor, top to bottom.
pub fn col_leaf(j: u32, col: impl Iterator<Item = f32>) -> Vec<u8> {
	col_leaf_bits(j, &col.map(|v| v.to_bits()).collect::<Vec<u32>>())
}

/// [`row_leaf`] from the values' bit patterns.
pub fn row_leaf_bits(i: u32, bits: &[u32]) -> Vec<u8> {
	(ROW, i, bits).encode()
}

/// [`col_leaf`] from the values' bit patterns.
pub fn col_leaf_bits(j: u32, bits: &[u32]) -> Vec<u8> {
	(COL, j, bits).encode()
}

/// A tensor's hash from its shape and roots: `H(rows, cols, row_root, col_root)`.
pub fn tensor_hash_of(rows: u32, cols: u32, row_root: &H256, col_root: &H256) -> H256 {
	BlakeTwo256::hash(&(rows, cols, row_root, col_root).encode())
}

/// A tensor's row root, column root and hash.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TensorCommitment {
	/// Merkle root over the rows.
	pub row_root: H256,
	/// Merkle root over the columns.
	pub col_root: H256,
	/// `H(rows, cols, row_root, col_root)`.
	pub hash: H256,
}

/// The commitment of a tensor.
pub fn tensor_commitment(m: &Matrix) -> TensorCommitment {
	let rows = (0..m.rows).map(|i| row_leaf(i, m.row(i).unwrap_or_default())).collect::<Vec<_>>();
	let cols = (0..m.cols).map(|j| col_leaf(j, m.col(j))).collect::<Vec<_>>();
	let row_root = root(rows.into_iter());
	let col_root = root(cols.into_iter());
	let hash = tensor_hash_of(m.rows, m.cols, &row_root, &col_root);
	TensorCommitment { row_root, col_root, hash }
}

/// A tensor's hash.
pub fn tensor_hash(m: &Matrix) -> H256 {
	tensor_commitment(m).hash
}

/// The leaf of tensor `i` of a state.
pub fn state_leaf(i: u32, tensor: &H256) -> Vec<u8> {
	(TENSOR, i, tensor).encode()
}

/// A state's hash from its tensors' hashes, in state order.
pub fn state_hash_of(tensors: &[H256]) -> H256 {
	root(tensors.iter().enumerate().map(|(i, t)| state_leaf(i as u32, t)))
}

/// A state's hash.
pub fn state_hash(state: &[Matrix]) -> H256 {
	let tensors: Vec<H256> = state.iter().map(tensor_hash).collect();
	state_hash_of(&tensors)
}

/// The next link of the op-trace chain: `a_j = H(a_{j-1}, o_j)`.
pub fn chain(prev: &H256, output: &H256) -> H256 {
	BlakeTwo256::hash(&(prev, output).encode())
}

/// Leaf `L_j = (j, o_j, a_j)` of an op trace.
pub fn op_leaf(j: u32, output: &H256, link: &H256) -> Vec<u8> {
	(OP, j, output, link).encode()
}

/// A step's op trace: the output hashes `o_j`, the chain links `a_j` and the root.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OpTrace {
	/// `o_j` for every operation.
	pub outputs: Vec<H256>,
	/// `a_j` for every operation.
	pub links: Vec<H256>,
	/// The Merkle root over the leaves `L_j`.
	pub root: H256,
}

/// The op trace of a step that started from the state hashing to `pre_state`, given its
/// operations' output hashes.
pub fn op_trace(pre_state: &H256, outputs: Vec<H256>) -> OpTrace {
	let mut links = Vec::with_capacity(outputs.len());
	let mut prev = *pre_state;
	for o in &outputs {
		prev = chain(&prev, o);
		links.push(prev);
	}
	let root = op_root(&outputs, &links);
	OpTrace { outputs, links, root }
}

/// The Merkle root over op-trace leaves `(j, outputs[j], links[j])` as given (an honest
/// trace's links chain its outputs; [`op_trace`] computes them).
pub fn op_root(outputs: &[H256], links: &[H256]) -> H256 {
	root(outputs.iter().zip(links).enumerate().map(|(j, (o, a))| op_leaf(j as u32, o, a)))
}

/// A revealed op-trace leaf `L_j = (j, output, link)` with its Merkle proof against a
/// party's op-trace root.
#[derive(
	Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, MaxEncodedLen, Debug,
)]
pub struct OpProof {
	/// The leaf's values.
	pub leaf: OpLeaf,
	/// Sibling hashes from the leaf up to (not including) the root.
	pub items: ProofItems,
}

/// The values of op-trace leaf `j`: the output hash `o_j` and the chain link `a_j`.
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
pub struct OpLeaf {
	/// `o_j`, the hash of the operation's output tensor.
	pub output: H256,
	/// `a_j = H(a_{j-1}, o_j)`.
	pub link: H256,
}

impl OpLeaf {
	/// Whether `link` chains `output` onto `prev`, as every honest leaf does.
	pub fn follows(&self, prev: &H256) -> bool {
		chain(prev, &self.output) == self.link
	}
}

impl OpTrace {
	/// The proof of leaf `j`, or `None` when `j` is out of range.
	pub fn proof(&self, j: u32) -> Option<OpProof> {
		let output = *self.outputs.get(j as usize)?;
		let link = *self.links.get(j as usize)?;
		let proof = binary_merkle_tree::merkle_proof::<BlakeTwo256, _, _>(self.leaves(), j);
		let items = ProofItems::try_from(proof.proof).ok()?;
		Some(OpProof { leaf: OpLeaf { output, link }, items })
	}

	fn leaves(&self) -> impl ExactSizeIterator<Item = Vec<u8>> + '_ {
		self.outputs.iter().zip(&self.links).enumerate().map(|(j, (o, a))| op_leaf(j as u32, o, a))
	}
}

/// Whether `proof` shows leaf `j` of an op trace of `ops` leaves under `root`.
pub fn verify_op_proof(root: &H256, ops: u32, j: u32, proof: &OpProof) -> bool {
	if j >= ops {
		return false;
	}
	let leaf = op_leaf(j, &proof.leaf.output, &proof.leaf.link);
	binary_merkle_tree::verify_proof::<BlakeTwo256, _, _>(
		root,
		proof.items.iter().copied(),
		ops,
		j,
		&leaf,
	)
}

/// The leaf of sample `i` of dataset `d`: the dataset's shape and manifest hash, the sample's
/// index, label and features' bit patterns.
///
/// Every leaf carries the shape (sample count, features, classes) and the manifest's hash, so
/// the root commits to them:
/// a sample proves against a spec's root only under the shape the dataset was built with,
/// and a spec that misstates its dataset's shape names no dataset at all (docs/protocol.md,
/// "A task's life"). The Merkle tree's own leaf count does not bind it: a proof for one count
/// can verify under another.
pub fn sample_leaf(d: &DatasetCommitment, i: u32, label: u32, features: &[u32]) -> Vec<u8> {
	(SAMPLE, d.samples, d.features, d.classes, d.manifest, i, label, features).encode()
}

/// The commitment to `samples` (`(features, label)`, in order) as a dataset of `features`
/// values per sample and `classes` classes, described by the manifest of hash `manifest`: its
/// shape, manifest and root over [`sample_leaf`]s.
pub fn dataset_commitment(
	features: u32,
	classes: u32,
	manifest: H256,
	samples: &[(Vec<f32>, u32)],
) -> DatasetCommitment {
	let mut d = DatasetCommitment {
		root: H256::zero(),
		samples: u32::try_from(samples.len()).unwrap_or(u32::MAX),
		features,
		classes,
		manifest,
	};
	d.root = root(sample_leaves(&d, samples));
	d
}

fn sample_leaves<'a>(
	d: &'a DatasetCommitment,
	samples: &'a [(Vec<f32>, u32)],
) -> impl ExactSizeIterator<Item = Vec<u8>> + 'a {
	samples.iter().enumerate().map(move |(i, (x, y))| {
		sample_leaf(d, i as u32, *y, &x.iter().map(|v| v.to_bits()).collect::<Vec<u32>>())
	})
}

/// One sample of a dataset with its Merkle proof against the dataset's root.
#[derive(Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, Debug)]
pub struct SampleProof {
	/// The features' bit patterns.
	pub features: Vec<u32>,
	/// The class label.
	pub label: u32,
	/// Sibling hashes from the leaf up to (not including) the root.
	pub items: ProofItems,
}

/// The proof of sample `i` of `samples`, the dataset `d` commits to, or `None` when `i` is out
/// of range.
pub fn sample_proof(
	d: &DatasetCommitment,
	samples: &[(Vec<f32>, u32)],
	i: u32,
) -> Option<SampleProof> {
	let (x, y) = samples.get(i as usize)?;
	let proof = binary_merkle_tree::merkle_proof::<BlakeTwo256, _, _>(sample_leaves(d, samples), i);
	Some(SampleProof {
		features: x.iter().map(|v| v.to_bits()).collect(),
		label: *y,
		items: ProofItems::try_from(proof.proof).ok()?,
	})
}

/// Whether `proof` shows sample `i` of dataset `d`: under its root and shape, with as many
/// features as the shape says and a label below its class count (any label of a dataset of
/// real-valued targets, 0 classes: its bits are the target's).
pub fn verify_sample_proof(d: &DatasetCommitment, i: u32, proof: &SampleProof) -> bool {
	let label_ok = d.classes == 0 || proof.label < d.classes;
	if i >= d.samples || proof.features.len() != d.features as usize || !label_ok {
		return false;
	}
	let leaf = sample_leaf(d, i, proof.label, &proof.features);
	binary_merkle_tree::verify_proof::<BlakeTwo256, _, _>(
		&d.root,
		proof.items.iter().copied(),
		d.samples,
		i,
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

	fn m(rows: u32, cols: u32, data: &[f32]) -> Matrix {
		Matrix::new(rows, cols, data.to_vec()).unwrap()
	}

	#[test]
	fn a_tensor_hash_binds_every_bit_and_the_shape() {
		let a = m(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
		let h = tensor_hash(&a);
		assert_eq!(h, tensor_hash(&a.clone()));
		// Same values, other shape.
		assert_ne!(h, tensor_hash(&m(3, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])));
		// One bit anywhere.
		for i in 0..6 {
			let mut b = a.clone();
			b.data[i] = f32::from_bits(b.data[i].to_bits() ^ 1);
			assert_ne!(h, tensor_hash(&b), "element {i}");
		}
		// Signed zeros differ.
		assert_ne!(tensor_hash(&m(1, 1, &[0.0])), tensor_hash(&m(1, 1, &[-0.0])));
	}

	#[test]
	fn rows_and_columns_are_provable_against_their_roots() {
		let a = m(3, 4, &(0..12).map(|v| v as f32).collect::<Vec<_>>());
		let c = tensor_commitment(&a);
		let rows: Vec<Vec<u8>> = (0..3).map(|i| row_leaf(i, a.row(i).unwrap())).collect();
		let proof = binary_merkle_tree::merkle_proof::<BlakeTwo256, _, _>(rows.clone(), 1);
		assert_eq!(proof.root, c.row_root);
		assert!(binary_merkle_tree::verify_proof::<BlakeTwo256, _, _>(
			&c.row_root,
			proof.proof,
			3,
			1,
			&rows[1]
		));
		// A column leaf never passes for the row with the same index and values.
		let col0: Vec<u8> = col_leaf(1, a.row(1).unwrap().iter().copied());
		assert_ne!(col0, rows[1]);
	}

	#[test]
	fn the_op_trace_chains_every_output_from_the_pre_state() {
		let pre = H256::repeat_byte(1);
		let outs: Vec<H256> = (0..5u8).map(H256::repeat_byte).collect();
		let t = op_trace(&pre, outs.clone());
		assert_eq!(t.links[0], chain(&pre, &outs[0]));
		assert_eq!(t.links[4], chain(&t.links[3], &outs[4]));
		// Changing an early output changes every later link and the root.
		let mut changed = outs.clone();
		changed[1] = H256::repeat_byte(9);
		let u = op_trace(&pre, changed);
		assert_eq!(t.links[0], u.links[0]);
		assert!((1..5).all(|j| t.links[j] != u.links[j]));
		assert_ne!(t.root, u.root);
		// And another pre-state changes everything.
		assert_ne!(op_trace(&H256::repeat_byte(2), outs).links[0], t.links[0]);
	}

	#[test]
	fn a_state_hash_is_a_root_over_its_tensors() {
		let s = vec![m(1, 2, &[1.0, 2.0]), m(2, 1, &[3.0, 4.0])];
		let hashes: Vec<H256> = s.iter().map(tensor_hash).collect();
		assert_eq!(state_hash(&s), state_hash_of(&hashes));
		let swapped = vec![s[1].clone(), s[0].clone()];
		assert_ne!(state_hash(&s), state_hash(&swapped));
	}

	#[test]
	fn op_leaves_and_samples_prove_against_their_roots() {
		let pre = H256::repeat_byte(1);
		let t = op_trace(&pre, (0..7u8).map(H256::repeat_byte).collect());
		for j in 0..7 {
			let p = t.proof(j).unwrap();
			assert!(verify_op_proof(&t.root, 7, j, &p), "leaf {j}");
			assert!(!verify_op_proof(&t.root, 7, (j + 1) % 7, &p));
			let prev = if j == 0 { pre } else { t.links[j as usize - 1] };
			assert!(p.leaf.follows(&prev));
			let mut forged = p.clone();
			forged.leaf.output = H256::repeat_byte(0xee);
			assert!(!verify_op_proof(&t.root, 7, j, &forged));
			assert!(!forged.leaf.follows(&prev));
		}
		assert!(t.proof(7).is_none());

		let data: Vec<(Vec<f32>, u32)> = (0..5).map(|i| (vec![i as f32, -0.0], i % 2)).collect();
		let d = dataset_commitment(2, 2, H256::zero(), &data);
		assert_eq!(d.samples, 5);
		for i in 0..5 {
			let p = sample_proof(&d, &data, i).unwrap();
			assert!(verify_sample_proof(&d, i, &p));
			assert!(!verify_sample_proof(&d, (i + 1) % 5, &p));
			let mut relabeled = p.clone();
			relabeled.label ^= 1;
			assert!(!verify_sample_proof(&d, i, &relabeled));
		}
	}

	/// The root commits to the dataset's shape: a spec that declares another sample count,
	/// width or class count than the dataset was built with gets no sample proved, and a
	/// count the Merkle tree alone would accept is refused too.
	#[test]
	fn a_dataset_root_commits_to_its_shape() {
		let data: Vec<(Vec<f32>, u32)> = (0..6).map(|i| (vec![i as f32, 1.0], i % 3)).collect();
		let d = dataset_commitment(2, 3, H256::zero(), &data);
		let proofs: Vec<_> = (0..6).map(|i| sample_proof(&d, &data, i).unwrap()).collect();
		for (i, p) in proofs.iter().enumerate() {
			assert!(verify_sample_proof(&d, i as u32, p));
		}
		for wrong in [
			DatasetCommitment { samples: 5, ..d },
			DatasetCommitment { samples: 7, ..d },
			DatasetCommitment { samples: 8, ..d },
			DatasetCommitment { features: 1, ..d },
			DatasetCommitment { classes: 4, ..d },
			DatasetCommitment { manifest: H256::repeat_byte(1), ..d },
		] {
			for (i, p) in proofs.iter().enumerate() {
				assert!(!verify_sample_proof(&wrong, i as u32, p), "{wrong:?}, sample {i}");
			}
		}
		// The same samples under another shape have another root.
		assert_ne!(dataset_commitment(2, 4, H256::zero(), &data).root, d.root);
		// And under another manifest.
		assert_ne!(dataset_commitment(2, 3, H256::repeat_byte(1), &data).root, d.root);
		// A label beyond the classes is refused even under a root that holds it.
		let bad: Vec<(Vec<f32>, u32)> = vec![(vec![0.0, 0.0], 5), (vec![1.0, 1.0], 0)];
		let b = dataset_commitment(2, 3, H256::zero(), &bad);
		assert!(!verify_sample_proof(&b, 0, &sample_proof(&b, &bad, 0).unwrap()));
		assert!(verify_sample_proof(&b, 1, &sample_proof(&b, &bad, 1).unwrap()));
	}

	/// Why the shape is in every leaf: a tree over leaves without it proves the first
	/// samples of six under a count of five too, so its root alone would not fix the count.
	#[test]
	fn a_merkle_root_alone_does_not_fix_the_leaf_count() {
		let leaves: Vec<Vec<u8>> = (0u32..6).map(|i| (SAMPLE, i).encode()).collect();
		let root = root(leaves.clone().into_iter());
		let proof = binary_merkle_tree::merkle_proof::<BlakeTwo256, _, _>(leaves.clone(), 0);
		assert!(binary_merkle_tree::verify_proof::<BlakeTwo256, _, _>(
			&root,
			proof.proof.iter().copied(),
			5,
			0,
			&leaves[0],
		));
	}
}
