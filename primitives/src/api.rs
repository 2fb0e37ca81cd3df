//! The runtime API through which the node's JSON-RPC (and any client) reads the market's
//! state without decoding storage by hand.

use crate::{
	market::{Dispute, DisputeId, Task, TaskId},
	program::Op,
	repops::{ShapeError, TensorBits},
	task::TrainingSpec,
};
use alloc::vec::Vec;
use codec::Codec;

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

		/// The disputes still open, with their ids: all of them, or only those against `task`.
		fn open_disputes(task: Option<TaskId>) -> Vec<(DisputeId, Dispute<AccountId, Balance, BlockNumber>)>;

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
