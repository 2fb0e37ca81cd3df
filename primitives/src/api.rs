//! The runtime API through which the node's JSON-RPC (and any client) reads the market's
//! state without decoding storage by hand.

use crate::{
	market::{Dispute, DisputeId, Receipt, Task, TaskId},
	program::Op,
	repops::{ShapeError, TensorBits},
	task::TrainingSpec,
};
use alloc::vec::Vec;
use codec::Codec;

/// The most disputes one call of [`TrainetApi::open_disputes`] returns.
pub const MAX_DISPUTE_PAGE: u32 = 256;

sp_api::decl_runtime_apis! {
	/// Reads tasks and disputes.
	pub trait TrainetApi<AccountId, Balance, BlockNumber>
	where
		AccountId: Codec,
		Balance: Codec,
		BlockNumber: Codec,
	{
		/// A task still in the market (open, claimed or committed), or `None`.
		fn task(id: TaskId) -> Option<Task<AccountId, Balance, BlockNumber>>;

		/// The receipt of a task paid not long ago (its model's hash and spec), or `None`.
		fn receipt(id: TaskId) -> Option<Receipt<AccountId, BlockNumber>>;

		/// The disputes still open, with their ids: those against `task` (a few, by id), or,
		/// without a task, one page of at most `limit` (and [`MAX_DISPUTE_PAGE`]) in storage
		/// order, starting after dispute `after` (the last id of the page before). A call reads
		/// at most one page, however many disputes are open.
		fn open_disputes(
			task: Option<TaskId>,
			after: Option<DisputeId>,
			limit: u32,
		) -> Vec<(DisputeId, Dispute<AccountId, Balance, BlockNumber>)>;

		/// Runs one operation of a step program with the runtime's own RepOps (the code that
		/// referees disputes), on inputs of at most `MAX_CHAIN_ELEMENTS` values in all.
		/// Workers use it to check that their engine agrees with the chain bit for bit.
		fn execute_op(
			spec: TrainingSpec,
			op: Op,
			inputs: Vec<TensorBits>,
			labels: Vec<u32>,
			step: u32,
		) -> Result<TensorBits, ShapeError>;
	}
}
