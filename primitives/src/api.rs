//! The runtime API through which the node's JSON-RPC (and any client) reads the market's
//! state without decoding storage by hand.

use crate::market::{Dispute, DisputeId, Task, TaskId};
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
	}
}
