//! State hashes `h_t` as the worker computes them after every step: the very bits of
//! [`trainet_primitives::commit::state_hash`] (the chain's definition), computed faster.
//!
//! The definition builds each row's and each column's leaf as a SCALE-encoded vector and
//! hashes them one after another, gathering every column element by element. Here, on
//! rayon's pool (the engine's, whose size `--threads` sets):
//!
//! - the rows of each tensor and blocks of its columns are hashed in parallel, tensors too;
//! - each leaf's bytes are written into reused buffers, never a fresh vector, and leaves are
//!   hashed eight at a time with blake2b_simd's `hash_many` (one leaf per SIMD lane);
//! - columns are gathered a block of [`COL_BLOCK`] at a time, reading the tensor row by row
//!   (cache lines, not a stride per element);
//! - the leaf hashes go into `binary_merkle_tree::merkle_root_raw`, the same tree that
//!   `merkle_root` builds over the leaves themselves.
//!
//! Equality with the definition is tested on tensors of every shape class and on a real
//! training state.

use codec::{Compact, Encode};
use rayon::prelude::*;
use sp_core::H256;
use trainet_primitives::{
	commit::{state_hash_of, tensor_hash_of},
	repops::Matrix,
};

/// Columns gathered together: 64 values of a row are four cache lines.
const COL_BLOCK: usize = 64;

/// The leaf tags of `trainet_primitives::commit` (rows and columns).
const ROW: u8 = b'r';
const COL: u8 = b'c';

/// Leaves hashed together by [`leaf_hashes`]: a multiple of `hash_many`'s width (4 on AVX2).
const LEAF_GROUP: usize = 8;

/// Writes leaf `(tag, index, bits)` into `buf`: the SCALE encoding of the definition's
/// tuple, whose last field (the values' bit patterns) is a compact length and then each
/// pattern as little-endian `u32`.
fn encode_leaf(buf: &mut Vec<u8>, tag: u8, index: u32, values: &[f32]) {
	buf.clear();
	buf.push(tag);
	buf.extend_from_slice(&index.to_le_bytes());
	Compact(values.len() as u32).encode_to(buf);
	// Sized once and filled four bytes a value: a loop the compiler turns into wide moves.
	// Pushing each value's bytes in turn (a length update each time) did not vectorize: 4 ms
	// per 4 MiB of values against 0.4 ms this way, on the benchmark machine.
	let start = buf.len();
	buf.resize(start + 4 * values.len(), 0);
	for (bytes, v) in buf[start..].chunks_exact_mut(4).zip(values) {
		bytes.copy_from_slice(&v.to_bits().to_le_bytes());
	}
}

/// The BLAKE2-256 hashes of leaves `(tag, first + i, leaves[i])`, the digests `blake2_256`
/// gives one by one, but computed several at a time: blake2b_simd's `hash_many` runs one
/// input per SIMD lane, about twice the throughput of hashing them in turn on AVX2 (it is
/// the implementation behind `sp_crypto_hashing::blake2_256`). `bufs` are reused buffers.
fn leaf_hashes<'a>(
	bufs: &mut Vec<Vec<u8>>,
	tag: u8,
	first: usize,
	leaves: impl ExactSizeIterator<Item = &'a [f32]>,
) -> Vec<H256> {
	let count = leaves.len();
	if bufs.len() < count {
		bufs.resize_with(count, Vec::new);
	}
	for ((i, values), buf) in leaves.enumerate().zip(bufs.iter_mut()) {
		encode_leaf(buf, tag, (first + i) as u32, values);
	}
	let mut params = blake2b_simd::Params::new();
	params.hash_length(32);
	let mut jobs: Vec<blake2b_simd::many::HashManyJob> = bufs[..count]
		.iter()
		.map(|buf| blake2b_simd::many::HashManyJob::new(&params, buf))
		.collect();
	blake2b_simd::many::hash_many(jobs.iter_mut());
	jobs.iter().map(|job| H256::from_slice(job.to_hash().as_bytes())).collect()
}

fn merkle_root(leaves: Vec<H256>) -> H256 {
	// `Blake2Hasher` is the chain's `BlakeTwo256` as a `hash_db::Hasher`.
	binary_merkle_tree::merkle_root_raw::<sp_core::Blake2Hasher, _>(leaves)
}

/// A tensor's hash, equal to `trainet_primitives::commit::tensor_hash`.
pub fn tensor_hash(m: &Matrix) -> H256 {
	let cols = m.cols as usize;
	let rows = m.rows as usize;
	if rows == 0 || cols == 0 || m.data.len() != rows * cols {
		// Nothing to split (or a malformed tensor): the definition itself.
		return trainet_primitives::commit::tensor_hash(m);
	}
	let (row_leaves, col_leaves) = rayon::join(
		|| {
			m.data
				.par_chunks(cols * LEAF_GROUP)
				.enumerate()
				.map_init(Vec::new, |bufs, (g, group)| {
					leaf_hashes(bufs, ROW, g * LEAF_GROUP, group.chunks_exact(cols))
				})
				.flatten()
				.collect::<Vec<H256>>()
		},
		|| {
			(0..cols.div_ceil(COL_BLOCK))
				.into_par_iter()
				.map_init(
					|| (Vec::new(), Vec::new()),
					|(bufs, block), b| {
						let first = b * COL_BLOCK;
						let width = COL_BLOCK.min(cols - first);
						// The block transposed: column `first + c` is block[c * rows ..][.. rows].
						block.clear();
						block.resize(width * rows, 0.0f32);
						for (i, row) in m.data.chunks_exact(cols).enumerate() {
							for (c, v) in row[first..first + width].iter().enumerate() {
								block[c * rows + i] = *v;
							}
						}
						leaf_hashes(bufs, COL, first, block.chunks_exact(rows))
					},
				)
				.flatten()
				.collect::<Vec<H256>>()
		},
	);
	tensor_hash_of(m.rows, m.cols, &merkle_root(row_leaves), &merkle_root(col_leaves))
}

/// A state's hash `h_t`, equal to `trainet_primitives::commit::state_hash`.
pub fn state_hash(state: &[Matrix]) -> H256 {
	let tensors: Vec<H256> = state.par_iter().map(tensor_hash).collect();
	state_hash_of(&tensors)
}

#[cfg(test)]
mod tests {
	use super::*;
	use trainet_primitives::commit;

	fn matrix(rows: u32, cols: u32, seed: u32) -> Matrix {
		let data = (0..rows * cols)
			.map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 2))
			.collect();
		Matrix::new(rows, cols, data).unwrap()
	}

	#[test]
	fn tensor_hashes_equal_the_definition_for_every_shape() {
		// One row, one column, fewer and more columns than a block, not a multiple of it.
		for (rows, cols) in [(1, 1), (1, 7), (7, 1), (3, 64), (5, 65), (64, 200), (130, 129)] {
			let m = matrix(rows, cols, rows * 31 + cols);
			assert_eq!(tensor_hash(&m), commit::tensor_hash(&m), "{rows} x {cols}");
		}
	}

	#[test]
	fn state_hashes_equal_the_definition_on_any_pool() {
		let state: Vec<Matrix> = [(64, 32), (1, 32), (32, 10), (1, 10), (64, 32), (1, 32)]
			.iter()
			.enumerate()
			.map(|(s, &(r, c))| matrix(r, c, s as u32))
			.collect();
		let want = commit::state_hash(&state);
		for threads in [1, 2, 3] {
			let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
			assert_eq!(pool.install(|| state_hash(&state)), want, "{threads} threads");
		}
	}
}
