//! Deadline queues: items (tasks, disputes) whose current stage ends at the start of a block,
//! stored by block in a bounded list so that `on_initialize` has a bounded amount of work.
//!
//! Shared by the escrow and challenge pallets. When a block's list is full, an item slides to
//! the next block with room, at most [`MAX_DEADLINE_SLIDE`] blocks later; the caller stores
//! the block actually used as the item's deadline, so the queue and the item always agree.

use frame_support::{storage::StorageMap, traits::Get, BoundedVec};
use sp_runtime::traits::{One, Saturating};

/// How many blocks past its asked-for block a deadline may slide when that block's queue is
/// full. With `S` slots a block, this many full blocks in a row are needed before queuing
/// fails.
pub const MAX_DEADLINE_SLIDE: u32 = 16;

/// The block an item due at `at` would be queued at: `at`, or the first block after it with
/// room; `None` when every block in reach is full. Reads only, so calls check it before their
/// first write and [`insert`] later.
pub fn slot<Q, B, I, S>(at: B) -> Option<B>
where
	Q: StorageMap<B, BoundedVec<I, S>, Query = BoundedVec<I, S>>,
	B: codec::FullCodec + Copy + Saturating + One,
	I: codec::FullCodec,
	S: Get<u32>,
{
	let mut block = at;
	for _ in 0..=MAX_DEADLINE_SLIDE {
		if (Q::decode_len(block).unwrap_or(0) as u32) < S::get() {
			return Some(block);
		}
		block = block.saturating_add(One::one());
	}
	None
}

/// Queues `item` at `block`, a block [`slot`] returned in the same call. Returns whether it
/// fit (it always does after `slot`).
pub fn insert<Q, B, I, S>(item: I, block: B) -> bool
where
	Q: StorageMap<B, BoundedVec<I, S>, Query = BoundedVec<I, S>>,
	B: codec::FullCodec,
	I: codec::FullCodec,
	S: Get<u32>,
{
	Q::mutate(block, |q| q.try_push(item).is_ok())
}

/// Queues `item` at `at` or the first block after it with room; returns the block used, or
/// `None` (and queues nothing) when every block in reach is full.
pub fn schedule<Q, B, I, S>(item: I, at: B) -> Option<B>
where
	Q: StorageMap<B, BoundedVec<I, S>, Query = BoundedVec<I, S>>,
	B: codec::FullCodec + Copy + Saturating + One,
	I: codec::FullCodec,
	S: Get<u32>,
{
	let block = slot::<Q, B, I, S>(at)?;
	insert::<Q, B, I, S>(item, block).then_some(block)
}

/// Removes `item` from the queue of block `at` (dropping the list once empty).
pub fn unschedule<Q, B, I, S>(item: &I, at: B)
where
	Q: StorageMap<B, BoundedVec<I, S>, Query = BoundedVec<I, S>>,
	B: codec::FullCodec,
	I: codec::FullCodec + PartialEq,
	S: Get<u32>,
{
	Q::mutate_exists(at, |q| {
		if let Some(queue) = q {
			queue.retain(|i| i != item);
			if queue.is_empty() {
				*q = None;
			}
		}
	});
}
