//! The worker's file handling, shared by its stores: durable writes (a temporary file, synced,
//! renamed into place, so a crash never leaves a half-written file under a valid name) and
//! reads of files that may not exist yet.

use std::{
	fs,
	io::{self, Write},
	path::{Path, PathBuf},
};

/// An I/O failure on one file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FileError {
	/// The file.
	pub path: PathBuf,
	/// Why.
	#[source]
	pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
	move |source| FileError { path: path.into(), source }
}

/// Writes `bytes` to `path` durably: a temporary file, synced, renamed into place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
	let tmp = path.with_extension("partial");
	let mut f = fs::File::create(&tmp).map_err(at(&tmp))?;
	f.write_all(bytes).map_err(at(&tmp))?;
	f.sync_all().map_err(at(&tmp))?;
	fs::rename(&tmp, path).map_err(at(path))
}

/// The contents of `path`, or `None` if there is no such file.
pub fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, FileError> {
	match fs::read(path) {
		Ok(bytes) => Ok(Some(bytes)),
		Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
		Err(e) => Err(at(path)(e)),
	}
}
