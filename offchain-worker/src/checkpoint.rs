//! What keeps a solver's promises across crashes: checkpoints of the training state and each
//! task's journal of state hashes.
//!
//! - [`CheckpointStore`]: training states (parameters and optimizer tensors) in files named by
//!   their state hash `h_t`, the very hash the trace commits to. A checkpoint is therefore
//!   self-verifying: whoever reads it (this worker after a restart, a verifier that fetched
//!   it from a peer) recomputes its hash and refuses it if it is not the `h_t` expected.
//! - [`Journal`]: per task, the states `h_0 ..= h_t` trained so far, appended step by step and
//!   made durable before every checkpoint, so that a restarted solver resumes from its last
//!   checkpoint and never commits, or defends, a trace it no longer has.
//!
//! Writes go through [`crate::files::write_atomically`] (a crash never leaves a half-written
//! checkpoint under a valid name); a torn last record of a journal is ignored.

use std::{
	fs,
	io::Write,
	path::{Path, PathBuf},
};

use crate::commit::state_hash;
use codec::{Decode, Encode};
use sp_core::H256;
use thiserror::Error;
use trainet_primitives::{repops::Matrix, task::TrainingSpec};

use crate::files::{read_if_present, write_atomically, FileError};

/// What can go wrong with checkpoints and journals.
#[derive(Debug, Error)]
pub enum CheckpointError {
	/// A file could not be read or written.
	#[error("{path}: {source}")]
	Io {
		/// The file.
		path: PathBuf,
		/// Why.
		#[source]
		source: std::io::Error,
	},
	/// A file is not a checkpoint.
	#[error("{path} is not a checkpoint: {reason}")]
	Malformed {
		/// The file.
		path: PathBuf,
		/// Why.
		reason: String,
	},
	/// A checkpoint whose content is not the state its name promises.
	#[error("{path} holds a state whose hash is {actual:?}, not {expected:?}")]
	HashMismatch {
		/// The file.
		path: PathBuf,
		/// The hash it should have.
		expected: H256,
		/// The hash it has.
		actual: H256,
	},
}

/// A state as stored: `(rows, cols, f32 bits)` per tensor, SCALE-encoded.
type Stored = Vec<(u32, u32, Vec<u32>)>;

/// Encodes a training state (the bytes a checkpoint file holds, and a peer serves).
pub fn encode_state(state: &[Matrix]) -> Vec<u8> {
	let stored: Stored = state
		.iter()
		.map(|m| (m.rows, m.cols, m.data.iter().map(|v| v.to_bits()).collect()))
		.collect();
	stored.encode()
}

/// The most bytes [`encode_state`] gives for a state of tensors of these shapes (a fetch
/// of one refuses a peer that announces more).
pub fn encoded_state_len(shapes: &[(u32, u32)]) -> u64 {
	// SCALE: a compact length (at most 5 bytes) before the list and before each tensor's bits.
	shapes.iter().fold(5u64, |acc, (r, c)| {
		acc.saturating_add(8 + 5)
			.saturating_add(u64::from(*r).saturating_mul(u64::from(*c)).saturating_mul(4))
	})
}

/// Decodes a training state; `Err` says why the bytes are not one.
pub fn decode_state(bytes: &[u8]) -> Result<Vec<Matrix>, String> {
	let stored = Stored::decode(&mut &bytes[..]).map_err(|e| e.to_string())?;
	stored
		.into_iter()
		.map(|(rows, cols, bits)| {
			Matrix::new(rows, cols, bits.into_iter().map(f32::from_bits).collect())
				.map_err(|e| format!("a {rows}x{cols} tensor: {e:?}"))
		})
		.collect()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
	move |source| CheckpointError::Io { path: path.into(), source }
}

impl From<FileError> for CheckpointError {
	fn from(FileError { path, source }: FileError) -> Self {
		Self::Io { path, source }
	}
}

/// Training states, each in a file named by its state hash.
#[derive(Clone, Debug)]
pub struct CheckpointStore {
	dir: PathBuf,
}

impl CheckpointStore {
	/// The store in `dir` (created if missing).
	pub fn open(dir: impl Into<PathBuf>) -> Result<Self, CheckpointError> {
		let dir = dir.into();
		fs::create_dir_all(&dir).map_err(io(&dir))?;
		Ok(Self { dir })
	}

	/// The file of the state whose hash is `h`.
	pub fn path(&self, h: &H256) -> PathBuf {
		self.dir.join(format!("{h:x}.state"))
	}

	/// Whether the state `h` is stored (not checked: [`Self::get`] checks).
	pub fn has(&self, h: &H256) -> bool {
		self.path(h).is_file()
	}

	/// Stores `state`; returns its hash.
	pub fn put(&self, state: &[Matrix]) -> Result<H256, CheckpointError> {
		let h = state_hash(state);
		let path = self.path(&h);
		if !path.is_file() {
			write_atomically(&path, &encode_state(state))?;
		}
		Ok(h)
	}

	/// The stored bytes of state `h` (for serving to peers), `None` if not stored.
	pub fn bytes(&self, h: &H256) -> Result<Option<Vec<u8>>, CheckpointError> {
		Ok(read_if_present(&self.path(h))?)
	}

	/// Checks that `bytes` are the state `h` and stores them (what a fetched checkpoint goes
	/// through).
	pub fn put_bytes(&self, h: &H256, bytes: &[u8]) -> Result<Vec<Matrix>, CheckpointError> {
		let path = self.path(h);
		let state = decode_state(bytes)
			.map_err(|reason| CheckpointError::Malformed { path: path.clone(), reason })?;
		let actual = state_hash(&state);
		if actual != *h {
			return Err(CheckpointError::HashMismatch { path, expected: *h, actual });
		}
		write_atomically(&path, bytes)?;
		Ok(state)
	}

	/// State `h`, checked against its hash; `None` if not stored.
	pub fn get(&self, h: &H256) -> Result<Option<Vec<Matrix>>, CheckpointError> {
		let Some(bytes) = self.bytes(h)? else { return Ok(None) };
		let path = self.path(h);
		let state = decode_state(&bytes)
			.map_err(|reason| CheckpointError::Malformed { path: path.clone(), reason })?;
		let actual = state_hash(&state);
		if actual != *h {
			return Err(CheckpointError::HashMismatch { path, expected: *h, actual });
		}
		Ok(Some(state))
	}

	/// The latest state of `states[..=upto]` that is stored and intact: `(k, state)`, `k` its
	/// index in `states` (a trace's entry: the step is `TracePoints::step(k)`).
	/// A damaged checkpoint is skipped (with a warning), never trusted.
	pub fn latest(
		&self,
		states: &[H256],
		upto: usize,
	) -> Result<Option<(u32, Vec<Matrix>)>, CheckpointError> {
		let upto = upto.min(states.len().saturating_sub(1));
		for (t, h) in states.iter().enumerate().take(upto.saturating_add(1)).rev() {
			if !self.has(h) {
				continue;
			}
			match self.get(h) {
				Ok(Some(state)) => return Ok(Some((t as u32, state))),
				Ok(None) => {}
				Err(e) => tracing::warn!("skipping a damaged checkpoint: {e}"),
			}
		}
		Ok(None)
	}
}

/// One task's journal: the trace entries trained so far (the hashes of the states the spec's
/// checkpoint interval names), one 32-byte record each.
#[derive(Debug)]
pub struct Journal {
	path: PathBuf,
	file: fs::File,
	states: Vec<H256>,
}

impl Journal {
	/// The journal of task `task` under `dir`, with what it held (a torn last record, from a
	/// crash in the middle of a write, is dropped).
	pub fn open(dir: &Path, task: u64) -> Result<Self, CheckpointError> {
		fs::create_dir_all(dir).map_err(io(dir))?;
		let path = dir.join(format!("task-{task}.trace"));
		let bytes = read_if_present(&path)?.unwrap_or_default();
		let states: Vec<H256> = bytes.chunks_exact(32).map(H256::from_slice).collect();
		let file =
			fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
		let mut journal = Self { path, file, states };
		if !bytes.len().is_multiple_of(32) {
			let keep = journal.states.len();
			journal.truncate(keep)?;
		}
		Ok(journal)
	}

	/// The tasks that have a journal under `dir`.
	pub fn tasks(dir: &Path) -> Vec<u64> {
		let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
		let mut tasks: Vec<u64> = entries
			.filter_map(|e| e.ok())
			.filter_map(|e| {
				let name = e.file_name().into_string().ok()?;
				name.strip_prefix("task-")?.strip_suffix(".trace")?.parse().ok()
			})
			.collect();
		tasks.sort_unstable();
		tasks
	}

	/// Records the spec of task `task` beside its journal (what a peer needs to recompute any
	/// of its states on demand).
	pub fn save_spec(dir: &Path, task: u64, spec: &TrainingSpec) -> Result<(), CheckpointError> {
		fs::create_dir_all(dir).map_err(io(dir))?;
		Ok(write_atomically(&dir.join(format!("task-{task}.spec")), &spec.encode())?)
	}

	/// The spec recorded for task `task`, if any.
	pub fn spec(dir: &Path, task: u64) -> Option<TrainingSpec> {
		let bytes = fs::read(dir.join(format!("task-{task}.spec"))).ok()?;
		TrainingSpec::decode(&mut &bytes[..]).ok()
	}

	/// Whether task `task` has a journal under `dir`.
	pub fn exists(dir: &Path, task: u64) -> bool {
		dir.join(format!("task-{task}.trace")).is_file()
	}

	/// The states recorded, `h_0 ..= h_t`.
	pub fn states(&self) -> &[H256] {
		&self.states
	}

	/// Records the next state.
	pub fn push(&mut self, h: H256) -> Result<(), CheckpointError> {
		self.file.write_all(h.as_bytes()).map_err(io(&self.path))?;
		self.states.push(h);
		Ok(())
	}

	/// Makes every recorded state durable.
	pub fn sync(&mut self) -> Result<(), CheckpointError> {
		self.file.sync_data().map_err(io(&self.path))
	}

	/// Keeps the first `n` states only (to resume from a checkpoint at `h_{n-1}`, or to
	/// start over with `n = 0`).
	pub fn truncate(&mut self, n: usize) -> Result<(), CheckpointError> {
		self.states.truncate(n);
		self.file.set_len(n as u64 * 32).map_err(io(&self.path))?;
		self.file.sync_data().map_err(io(&self.path))
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	/// The size a fetch of a state accepts covers the state's encoding.
	#[test]
	fn encoded_state_len_bounds_the_encoding() {
		for shapes in [vec![(2u32, 3u32), (1, 3)], vec![(64, 32), (1, 32), (32, 10), (1, 10)]] {
			let state: Vec<Matrix> = shapes
				.iter()
				.map(|(r, c)| Matrix::new(*r, *c, vec![0.5; (*r * *c) as usize]).unwrap())
				.collect();
			let len = encode_state(&state).len() as u64;
			let bound = encoded_state_len(&shapes);
			assert!(len <= bound && bound <= len + 5 * (shapes.len() as u64 + 1), "{len} {bound}");
		}
	}

	fn state(v: f32) -> Vec<Matrix> {
		vec![
			Matrix::new(2, 3, vec![v, -0.0, 1.5, f32::MIN_POSITIVE, 7.0, -2.25]).unwrap(),
			Matrix::new(1, 3, vec![0.5, v, 0.0]).unwrap(),
		]
	}

	#[test]
	fn states_round_trip_bit_for_bit_and_tampering_is_refused() {
		let dir = tempfile::tempdir().unwrap();
		let store = CheckpointStore::open(dir.path().join("ckpt")).unwrap();
		let s = state(0.1);
		let h = store.put(&s).unwrap();
		assert_eq!(h, state_hash(&s));
		let back = store.get(&h).unwrap().unwrap();
		let bits = |s: &[Matrix]| -> Vec<u32> {
			s.iter().flat_map(|m| m.data.iter().map(|v| v.to_bits())).collect()
		};
		assert_eq!(bits(&back), bits(&s));
		assert!(store.get(&H256::repeat_byte(1)).unwrap().is_none());
		// Another state's bytes under this name.
		fs::write(store.path(&h), encode_state(&state(0.2))).unwrap();
		assert!(matches!(store.get(&h), Err(CheckpointError::HashMismatch { .. })));
		fs::write(store.path(&h), b"garbage").unwrap();
		assert!(matches!(store.get(&h), Err(CheckpointError::Malformed { .. })));
		assert!(matches!(
			store.put_bytes(&h, &encode_state(&state(0.3))),
			Err(CheckpointError::HashMismatch { .. })
		));
	}

	#[test]
	fn the_latest_intact_checkpoint_is_found() {
		let dir = tempfile::tempdir().unwrap();
		let store = CheckpointStore::open(dir.path()).unwrap();
		let states: Vec<H256> = (0..6).map(|i| state_hash(&state(i as f32))).collect();
		store.put(&state(0.0)).unwrap();
		store.put(&state(2.0)).unwrap();
		store.put(&state(4.0)).unwrap();
		assert_eq!(store.latest(&states, 5).unwrap().unwrap().0, 4);
		assert_eq!(store.latest(&states, 3).unwrap().unwrap().0, 2);
		// A damaged one is skipped.
		fs::write(store.path(&states[4]), b"torn").unwrap();
		assert_eq!(store.latest(&states, 5).unwrap().unwrap().0, 2);
		assert_eq!(store.latest(&states[1..2], 9).unwrap().map(|c| c.0), None);
	}

	#[test]
	fn a_journal_survives_reopening_and_a_torn_record() {
		let dir = tempfile::tempdir().unwrap();
		let hs: Vec<H256> = (0..4u8).map(H256::repeat_byte).collect();
		{
			let mut j = Journal::open(dir.path(), 7).unwrap();
			for h in &hs {
				j.push(*h).unwrap();
			}
			j.sync().unwrap();
		}
		// A crash in the middle of the fifth record.
		let path = dir.path().join("task-7.trace");
		let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
		f.write_all(&[9u8; 13]).unwrap();
		drop(f);
		let mut j = Journal::open(dir.path(), 7).unwrap();
		assert_eq!(j.states(), &hs[..]);
		j.truncate(2).unwrap();
		j.push(H256::repeat_byte(8)).unwrap();
		drop(j);
		let j = Journal::open(dir.path(), 7).unwrap();
		assert_eq!(j.states(), &[hs[0], hs[1], H256::repeat_byte(8)]);
		assert!(Journal::exists(dir.path(), 7) && !Journal::exists(dir.path(), 8));
	}
}
