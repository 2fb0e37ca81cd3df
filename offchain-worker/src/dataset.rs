//! Training data: the shipped 8x8 handwritten digits, a synthetic generator, and a
//! content-addressed local store.
//!
//! A dataset is named by its root (`trainet_primitives::commit::dataset_commitment`, the
//! Merkle root a task's spec commits to, over the samples and the shape). The store keeps each
//! dataset in a file named by that root and checks the root again on every read, so a
//! corrupted or substituted file is refused, never trained on. Writes go to a temporary file first and are renamed into place, so a crash
//! never leaves a half-written dataset under a valid name.

use std::{
	fs,
	io::Read,
	path::{Path, PathBuf},
};

use codec::{Decode, Encode};
use sp_core::H256;
use thiserror::Error;
use trainet_primitives::{
	commit::dataset_commitment,
	dataset::{Labels, Manifest, Preprocessing},
	task::{synthetic_dataset, DatasetCommitment, F32Bits},
};

use crate::files::{read_if_present, write_atomically, FileError};

/// Samples as `(features, label)`.
pub type Samples = Vec<(Vec<f32>, u32)>;

/// The shipped digits, gzip-compressed CSV (see `data/README.md`).
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");

/// A classification dataset, or a regression's (0 classes: each label holds a real-valued
/// target's `f32` bits).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
	/// Features per sample.
	pub features: u32,
	/// The number of classes (labels are `0 .. classes`); 0 for real-valued targets.
	pub classes: u32,
	/// The samples, in order.
	pub samples: Samples,
	/// Where they came from and what they mean (its hash is in the spec and the root).
	pub manifest: Manifest,
}

/// What can go wrong with datasets.
#[derive(Debug, Error)]
pub enum DatasetError {
	/// A file could not be read or written.
	#[error("{path}: {source}")]
	Io {
		/// The file.
		path: PathBuf,
		/// Why.
		#[source]
		source: std::io::Error,
	},
	/// A file is not a dataset.
	#[error("{path} is not a dataset file: {reason}")]
	Malformed {
		/// The file.
		path: PathBuf,
		/// Why.
		reason: String,
	},
	/// The store has no dataset with that root.
	#[error(
		"dataset {root:?} is not in the store at {dir} (import it with `trainet-worker dataset`)"
	)]
	NotFound {
		/// The root looked for.
		root: H256,
		/// The store.
		dir: PathBuf,
	},
	/// A stored file's contents do not hash to its name.
	#[error("{path} should hold dataset {expected:?} but its contents hash to {actual:?}")]
	HashMismatch {
		/// The file.
		path: PathBuf,
		/// The root it is named by.
		expected: H256,
		/// The root of what it holds.
		actual: H256,
	},
	/// A manifest does not fit its dataset.
	#[error("the manifest does not fit the dataset: {0}")]
	BadManifest(String),
	/// A sample does not fit the dataset's shape.
	#[error("sample {index}: {reason}")]
	BadSample {
		/// The sample.
		index: usize,
		/// Why.
		reason: String,
	},
	/// A task's spec declares another shape than its dataset has: training it would fail (a
	/// count above the real one) or no sample proof would verify on chain (a count below it,
	/// or labels beyond the declared classes), so neither solving nor challenging it is safe.
	#[error(
		"the spec declares {declared:?} (samples, features, classes), its dataset has {actual:?}"
	)]
	ShapeMismatch {
		/// What the spec declares.
		declared: (u32, u32, u32),
		/// What the dataset has.
		actual: (u32, u32, u32),
	},
	/// A task's spec names another manifest than its dataset's.
	#[error("the spec names manifest {declared:?}, its dataset's is {actual:?}")]
	ManifestMismatch {
		/// What the spec declares.
		declared: H256,
		/// The dataset's.
		actual: H256,
	},
}

/// The SCALE form of a dataset on disk: shape, then each sample's bits and label, then the
/// manifest.
#[derive(Encode, Decode)]
struct Stored {
	features: u32,
	classes: u32,
	samples: Vec<(Vec<u32>, u32)>,
	manifest: Manifest,
}

impl Dataset {
	/// A dataset of samples made by a program (an empty manifest), checked: every sample has
	/// `features` values and a label below `classes` (or, with 0 classes, a finite target).
	pub fn new(features: u32, classes: u32, samples: Samples) -> Result<Self, DatasetError> {
		Self::described(features, classes, samples, Manifest::default())
	}

	/// A dataset described by `manifest`, checked like [`Dataset::new`] (and its class names,
	/// if any, one per class).
	pub fn described(
		features: u32,
		classes: u32,
		samples: Samples,
		manifest: Manifest,
	) -> Result<Self, DatasetError> {
		if let Some(names) = manifest.class_names() {
			if names.len() != classes as usize {
				return Err(DatasetError::BadManifest(format!(
					"{} class names for {classes} classes",
					names.len()
				)));
			}
		}
		for (index, (x, y)) in samples.iter().enumerate() {
			if x.len() != features as usize {
				let reason = format!("{} features, the dataset has {features}", x.len());
				return Err(DatasetError::BadSample { index, reason });
			}
			if classes == 0 && !f32::from_bits(*y).is_finite() {
				let reason = format!("target {}, not a finite number", f32::from_bits(*y));
				return Err(DatasetError::BadSample { index, reason });
			}
			if classes > 0 && *y >= classes {
				let reason = format!("label {y}, the dataset has {classes} classes");
				return Err(DatasetError::BadSample { index, reason });
			}
		}
		Ok(Self { features, classes, samples, manifest })
	}

	/// Checks that a spec's declared dataset shape (samples, features, classes) is this
	/// dataset's. The root commits to the shape, so a spec that misstates it names no dataset
	/// and no sample of it can be proven on chain: a worker checks before it claims or
	/// challenges a task (the store finds datasets by root alone).
	pub fn matches(&self, declared: &DatasetCommitment) -> Result<(), DatasetError> {
		let actual =
			(u32::try_from(self.samples.len()).unwrap_or(u32::MAX), self.features, self.classes);
		let manifest = (declared.manifest, self.manifest.hash());
		let declared = (declared.samples, declared.features, declared.classes);
		if declared != actual {
			return Err(DatasetError::ShapeMismatch { declared, actual });
		}
		if manifest.0 != manifest.1 {
			return Err(DatasetError::ManifestMismatch {
				declared: manifest.0,
				actual: manifest.1,
			});
		}
		Ok(())
	}

	/// The 1 797 shipped 8x8 handwritten digits: 64 pixels scaled from `0..=16` to `[0, 1]`,
	/// labels `0..=9`.
	pub fn digits() -> Result<Self, DatasetError> {
		let path = PathBuf::from("<shipped digits.csv.gz>");
		let malformed = |reason: String| DatasetError::Malformed { path: path.clone(), reason };
		let mut csv = String::new();
		flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
			.read_to_string(&mut csv)
			.map_err(|e| malformed(e.to_string()))?;
		let mut samples = Vec::new();
		// `p / 16.0` and `p * 0.0625` are the same bits: 0.0625 is a power of two.
		let scale = Preprocessing::Scale(F32Bits::from_f32(0.0625));
		for (n, line) in csv.lines().enumerate() {
			let values = line
				.split(',')
				.map(|v| v.trim().parse::<u8>())
				.collect::<Result<Vec<u8>, _>>()
				.map_err(|e| malformed(format!("line {}: {e}", n + 1)))?;
			let Some((label, pixels)) = values.split_last() else { continue };
			let mut x: Vec<f32> = pixels.iter().map(|p| f32::from(*p)).collect();
			scale.apply(&mut x);
			samples.push((x, u32::from(*label)));
		}
		let manifest = Manifest {
			source: "digits".into(),
			dtype: "u8".into(),
			preprocessing: scale,
			..Manifest::default()
		};
		Self::described(64, 10, samples, manifest)
	}

	/// [`trainet_primitives::task::synthetic_dataset`] as a dataset.
	pub fn synthetic(seed: u64, samples: u32, features: u32, classes: u32) -> Self {
		Self {
			features,
			classes,
			samples: synthetic_dataset(seed, samples, features, classes),
			manifest: Manifest::default(),
		}
	}

	/// [`trainet_primitives::task::synthetic_tokens`] as a dataset: sequences of `context + 1`
	/// token ids below `vocab`, for a sequence model.
	pub fn synthetic_tokens(seed: u64, samples: u32, context: u32, vocab: u32) -> Self {
		Self {
			features: context.saturating_add(1),
			classes: vocab,
			samples: trainet_primitives::task::synthetic_tokens(seed, samples, context, vocab),
			manifest: Manifest::default(),
		}
	}

	/// [`trainet_primitives::task::synthetic_regression`] as a dataset (its targets unnamed).
	pub fn synthetic_regression(seed: u64, samples: u32, features: u32) -> Self {
		Self {
			features,
			classes: 0,
			samples: trainet_primitives::task::synthetic_regression(seed, samples, features),
			manifest: Manifest { labels: Labels::Target(String::new()), ..Manifest::default() },
		}
	}

	/// Whether its labels are real-valued targets (a regression's) rather than classes.
	pub fn is_regression(&self) -> bool {
		self.classes == 0
	}

	/// The commitment a task's spec makes to this dataset: its shape, manifest and root.
	pub fn commitment(&self) -> DatasetCommitment {
		dataset_commitment(self.features, self.classes, self.manifest.hash(), &self.samples)
	}

	/// The root a task's spec commits to (over the samples and the shape).
	pub fn root(&self) -> H256 {
		self.commitment().root
	}

	/// Splits off every `every`-th sample (the 0th, the `every`-th, ...) as held-out data:
	/// `(training, held_out)`.
	pub fn split(&self, every: usize) -> (Dataset, Dataset) {
		let every = every.max(2);
		let (held, train): (Vec<_>, Vec<_>) =
			self.samples.iter().cloned().enumerate().partition(|(i, _)| i % every == 0);
		let strip = |v: Vec<(usize, (Vec<f32>, u32))>| v.into_iter().map(|(_, s)| s).collect();
		(
			Dataset { samples: strip(train), ..self.clone() },
			Dataset { samples: strip(held), ..self.clone() },
		)
	}

	fn encode(&self) -> Vec<u8> {
		Stored {
			features: self.features,
			classes: self.classes,
			samples: self
				.samples
				.iter()
				.map(|(x, y)| (x.iter().map(|v| v.to_bits()).collect(), *y))
				.collect(),
			manifest: self.manifest.clone(),
		}
		.encode()
	}

	fn decode(bytes: &[u8], path: &Path) -> Result<Self, DatasetError> {
		let malformed = |reason: String| DatasetError::Malformed { path: path.into(), reason };
		let s = Stored::decode(&mut &bytes[..]).map_err(|e| malformed(e.to_string()))?;
		let samples = s
			.samples
			.into_iter()
			.map(|(x, y)| (x.into_iter().map(f32::from_bits).collect(), y))
			.collect();
		Self::described(s.features, s.classes, samples, s.manifest)
			.map_err(|e| malformed(e.to_string()))
	}
}

impl From<FileError> for DatasetError {
	fn from(FileError { path, source }: FileError) -> Self {
		Self::Io { path, source }
	}
}

/// A directory of datasets, each in a file named by its root.
#[derive(Clone, Debug)]
pub struct DatasetStore {
	dir: PathBuf,
}

impl DatasetStore {
	/// The store in `dir` (created if missing).
	pub fn open(dir: impl Into<PathBuf>) -> Result<Self, DatasetError> {
		let dir = dir.into();
		fs::create_dir_all(&dir)
			.map_err(|source| DatasetError::Io { path: dir.clone(), source })?;
		Ok(Self { dir })
	}

	/// The file of dataset `root`.
	pub fn path(&self, root: &H256) -> PathBuf {
		self.dir.join(format!("{root:x}.dataset"))
	}

	/// Stores `dataset`; returns its root.
	pub fn put(&self, dataset: &Dataset) -> Result<H256, DatasetError> {
		let root = dataset.root();
		write_atomically(&self.path(&root), &dataset.encode())?;
		Ok(root)
	}

	/// The stored bytes of dataset `root` (for serving to peers), `None` if not stored.
	pub fn bytes(&self, root: &H256) -> Result<Option<Vec<u8>>, DatasetError> {
		Ok(read_if_present(&self.path(root))?)
	}

	/// Checks that `bytes` (fetched from a peer) are dataset `root` and stores it.
	pub fn put_bytes(&self, root: &H256, bytes: &[u8]) -> Result<Dataset, DatasetError> {
		let path = self.path(root);
		let dataset = Dataset::decode(bytes, &path)?;
		let actual = dataset.root();
		if actual != *root {
			return Err(DatasetError::HashMismatch { path, expected: *root, actual });
		}
		self.put(&dataset)?;
		Ok(dataset)
	}

	/// The roots of every stored dataset.
	pub fn roots(&self) -> Vec<H256> {
		let Ok(entries) = fs::read_dir(&self.dir) else { return Vec::new() };
		entries
			.filter_map(|e| e.ok())
			.filter_map(|e| {
				let name = e.file_name().into_string().ok()?;
				let hex = name.strip_suffix(".dataset")?;
				let bytes = sp_core::bytes::from_hex(hex).ok().filter(|b| b.len() == 32)?;
				Some(H256::from_slice(&bytes))
			})
			.collect()
	}

	/// Dataset `root`, checked against its root.
	pub fn get(&self, root: &H256) -> Result<Dataset, DatasetError> {
		let path = self.path(root);
		let Some(bytes) = self.bytes(root)? else {
			return Err(DatasetError::NotFound { root: *root, dir: self.dir.clone() });
		};
		let dataset = Dataset::decode(&bytes, &path)?;
		let actual = dataset.root();
		if actual != *root {
			return Err(DatasetError::HashMismatch { path, expected: *root, actual });
		}
		Ok(dataset)
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	/// A spec whose declared count, features or classes are not its dataset's is caught
	/// before a worker claims or challenges it.
	#[test]
	fn a_spec_that_misstates_its_dataset_is_caught() {
		let d = Dataset::synthetic(3, 40, 6, 3);
		let right = d.commitment();
		assert_eq!((right.samples, right.features, right.classes), (40, 6, 3));
		assert!(d.matches(&right).is_ok());
		for wrong in [
			DatasetCommitment { samples: 41, ..right },
			DatasetCommitment { samples: 39, ..right },
			DatasetCommitment { features: 5, ..right },
			DatasetCommitment { classes: 2, ..right },
		] {
			let Err(DatasetError::ShapeMismatch { declared, actual }) = d.matches(&wrong) else {
				panic!("{wrong:?} accepted")
			};
			assert_eq!(actual, (40, 6, 3));
			assert_eq!(declared, (wrong.samples, wrong.features, wrong.classes));
		}
	}

	#[test]
	fn the_shipped_digits_load() {
		let d = Dataset::digits().unwrap();
		assert_eq!(d.samples.len(), 1797);
		assert!(d.samples.iter().all(|(x, y)| x.len() == 64 && *y < 10));
		assert!(d.samples.iter().flat_map(|(x, _)| x).all(|v| (0.0..=1.0).contains(v)));
		// Every digit is there, about evenly.
		for digit in 0..10 {
			let n = d.samples.iter().filter(|(_, y)| *y == digit).count();
			assert!((170..=190).contains(&n), "digit {digit}: {n}");
		}
		let (train, held) = d.split(5);
		assert_eq!(train.samples.len() + held.samples.len(), 1797);
		assert_eq!(held.samples.len(), 360);
	}

	#[test]
	fn the_store_returns_what_it_was_given_and_refuses_tampering() {
		let dir = tempfile::tempdir().unwrap();
		let store = DatasetStore::open(dir.path().join("data")).unwrap();
		let d = Dataset::synthetic(1, 20, 4, 3);
		let root = store.put(&d).unwrap();
		assert_eq!(root, d.root());
		assert_eq!(store.get(&root).unwrap(), d);
		// Unknown root.
		let other = H256::repeat_byte(7);
		assert!(matches!(store.get(&other), Err(DatasetError::NotFound { .. })));
		// Another dataset's bytes under this root's name.
		fs::write(store.path(&root), Dataset::synthetic(2, 20, 4, 3).encode()).unwrap();
		assert!(matches!(store.get(&root), Err(DatasetError::HashMismatch { .. })));
		// Garbage.
		fs::write(store.path(&root), b"not a dataset").unwrap();
		let err = store.get(&root).unwrap_err();
		assert!(matches!(err, DatasetError::Malformed { .. }), "{err}");
	}

	#[test]
	fn bad_samples_are_named() {
		let err = Dataset::new(2, 2, vec![(vec![0.0, 1.0], 0), (vec![0.0], 1)]).unwrap_err();
		assert_eq!(err.to_string(), "sample 1: 1 features, the dataset has 2");
		let err = Dataset::new(1, 2, vec![(vec![0.0], 2)]).unwrap_err();
		assert_eq!(err.to_string(), "sample 0: label 2, the dataset has 2 classes");
	}
}
