//! The bisection arithmetic of the dispute game, shared by the chain and the worker so both
//! compute the same indices.
//!
//! A trace of `N` training steps has `N + 1` state hashes `h_0 ..= h_N` (`h_0` is the state
//! after initialization). Bisection runs over *positions* `0 ..= N + 1`:
//!
//! - position `0` is the task spec itself, which both sides agree on by construction;
//! - position `p >= 1` is the state hash `h_{p-1}`.
//!
//! The transition into position `p` is therefore initialization for `p = 1` and training step
//! `p - 1` (from `h_{p-2}` to `h_{p-1}`) for `p >= 2`. That is a trace of every step (checkpoint
//! interval 1); with a larger interval the positions are the trace's entries, and
//! [`crate::trace::TracePoints::narrowed`] says what the transition into one spans. A dispute starts with the interval
//! `(agreed = 0, disputed = N + 1)`: the challenger claims a different final hash. Each round
//! both sides reveal the hash at the midpoint; if they reveal the same hash it becomes the new
//! agreed end, otherwise the new disputed end. When `disputed == agreed + 1`, the single
//! transition into `disputed` is what the leaf referee decides.

use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;

/// A bisection interval over trace positions.
///
/// Invariant: `agreed < disputed`. Both parties agree on the hash at `agreed` and disagree at
/// `disputed`.
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
pub struct Bisection {
	/// The highest position known to be agreed.
	pub agreed: u32,
	/// The lowest position known to be disputed.
	pub disputed: u32,
}

/// What a transition in the trace is, for the leaf referee.
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
pub enum Transition {
	/// From the spec to `h_0`: parameter initialization from the seed.
	Initialization,
	/// From `h_{step}` to `h_{step + 1}`: one training step.
	Step(u32),
}

impl Bisection {
	/// The starting interval of a dispute over a trace of `steps` training steps, or `None`
	/// when `steps + 1` positions do not fit a `u32`.
	pub fn new(steps: u32) -> Option<Self> {
		Some(Self { agreed: 0, disputed: steps.checked_add(1)? })
	}

	/// An interval, if `agreed < disputed`.
	pub fn from_ends(agreed: u32, disputed: u32) -> Option<Self> {
		(agreed < disputed).then_some(Self { agreed, disputed })
	}

	/// Whether the interval is one transition wide.
	pub fn is_resolved(&self) -> bool {
		self.disputed.checked_sub(self.agreed) == Some(1)
	}

	/// The position both sides must reveal next, or `None` once resolved.
	pub fn midpoint(&self) -> Option<u32> {
		if self.is_resolved() {
			return None;
		}
		// `disputed - agreed >= 2` here, so the midpoint lies strictly inside.
		let width = self.disputed.checked_sub(self.agreed)?;
		self.agreed.checked_add(width / 2)
	}

	/// The interval after both sides revealed their hashes at the midpoint: `agree` says
	/// whether the hashes were equal. Unchanged once resolved.
	#[must_use]
	pub fn narrow(self, agree: bool) -> Self {
		match self.midpoint() {
			Some(mid) if agree => Self { agreed: mid, ..self },
			Some(mid) => Self { disputed: mid, ..self },
			None => self,
		}
	}

	/// The disputed transition, once resolved.
	pub fn transition(&self) -> Option<Transition> {
		if !self.is_resolved() {
			return None;
		}
		Some(match self.disputed {
			0 | 1 => Transition::Initialization,
			p => Transition::Step(p.checked_sub(2)?),
		})
	}

	/// The trace index `t` of the state hash `h_t` at `position`, or `None` for position 0
	/// (the spec).
	pub fn trace_index(position: u32) -> Option<u32> {
		position.checked_sub(1)
	}

	/// The most rounds a dispute over `steps` steps can take: `ceil(log2(steps + 1))`.
	pub fn max_rounds(steps: u32) -> u32 {
		let positions = u64::from(steps).saturating_add(1);
		// ceil(log2(x)) for x >= 1: the bit length of x - 1.
		u64::BITS.saturating_sub(positions.saturating_sub(1).leading_zeros())
	}
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

	/// Plays a bisection where the liar's trace first differs at position `first_bad`.
	fn play(steps: u32, first_bad: u32) -> (Bisection, u32) {
		let mut b = Bisection::new(steps).unwrap();
		let mut rounds = 0;
		while let Some(mid) = b.midpoint() {
			b = b.narrow(mid < first_bad);
			rounds += 1;
		}
		(b, rounds)
	}

	#[test]
	fn finds_the_first_differing_position_within_the_round_bound() {
		for steps in 1..=70u32 {
			for first_bad in 1..=steps + 1 {
				let (b, rounds) = play(steps, first_bad);
				assert!(b.is_resolved());
				assert_eq!(b.disputed, first_bad, "steps {steps}");
				assert!(rounds <= Bisection::max_rounds(steps), "steps {steps}: {rounds} rounds");
			}
		}
	}

	#[test]
	fn transitions_name_initialization_and_steps() {
		assert_eq!(play(5, 1).0.transition(), Some(Transition::Initialization));
		assert_eq!(play(5, 2).0.transition(), Some(Transition::Step(0)));
		assert_eq!(play(5, 6).0.transition(), Some(Transition::Step(4)));
		assert_eq!(Bisection::new(5).unwrap().transition(), None);
	}

	#[test]
	fn max_rounds_is_ceil_log2_of_positions() {
		assert_eq!(Bisection::max_rounds(0), 0);
		assert_eq!(Bisection::max_rounds(1), 1);
		assert_eq!(Bisection::max_rounds(3), 2);
		assert_eq!(Bisection::max_rounds(4), 3);
		assert_eq!(Bisection::max_rounds(1_000_000), 20);
		assert_eq!(Bisection::max_rounds(u32::MAX), 32);
	}

	#[test]
	fn rejects_impossible_intervals() {
		assert!(Bisection::new(u32::MAX).is_none());
		assert!(Bisection::from_ends(3, 3).is_none());
		assert!(Bisection::from_ends(4, 3).is_none());
		let done = Bisection::from_ends(3, 4).unwrap();
		assert_eq!(done.narrow(true), done);
		assert_eq!(Bisection::trace_index(0), None);
		assert_eq!(Bisection::trace_index(4), Some(3));
	}
}
