//! Bringing a buyer's own data in: CSV files, NumPy `.npy`/`.npz` arrays, folders of images and
//! text corpora (as token ids for next-token prediction), turned into the
//! canonical samples a task's spec commits to, with a manifest that records where they came
//! from, what the classes are called and how the values were preprocessed.
//!
//! Every import is a pure function of the input files and the options: a second import of the
//! same files gives the same samples, manifest and root, on any machine. Nothing is written
//! here; the caller stores the dataset only once the whole import has succeeded, so a
//! malformed input never leaves a partial dataset behind. Errors name the file and the row,
//! column or array at fault.
//!
//! Parsing uses the ecosystem's readers (`csv`, `ndarray-npy`, `zip`, `image`); labels are class ids (integers,
//! or any text, mapped to ids in sorted order and kept as class names in the manifest).

use std::{
	collections::BTreeSet,
	fs::File,
	path::{Path, PathBuf},
};

use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt};
use thiserror::Error;
use trainet_primitives::{
	dataset::{Labels, Manifest, Preprocessing},
	task::F32Bits,
};

use crate::dataset::{Dataset, DatasetError, Samples};

/// What can go wrong with an import.
#[derive(Debug, Error)]
pub enum ImportError {
	/// A file could not be opened or read.
	#[error("{path}: {source}")]
	Io {
		/// The file.
		path: PathBuf,
		/// Why.
		#[source]
		source: std::io::Error,
	},
	/// A CSV row is malformed.
	#[error("{path}: row {row}: {reason}")]
	Row {
		/// The file.
		path: PathBuf,
		/// The row's line number (1 is the first line of the file).
		row: u64,
		/// Why.
		reason: String,
	},
	/// An array is malformed or of a type that cannot be imported.
	#[error("{path}: {entry}: {reason}")]
	Array {
		/// The file.
		path: PathBuf,
		/// The array (`x`, `y`, or a member of an `.npz` archive).
		entry: String,
		/// Why.
		reason: String,
	},
	/// The features and the labels do not have one row each.
	#[error("{features} holds {rows} samples but {labels} holds {count} labels")]
	LabelCount {
		/// The features' file.
		features: PathBuf,
		/// Its sample count.
		rows: usize,
		/// The labels' file.
		labels: PathBuf,
		/// Its label count.
		count: usize,
	},
	/// The input as a whole cannot be a dataset (no samples, one class, too wide).
	#[error("{path}: {reason}")]
	Unusable {
		/// The file.
		path: PathBuf,
		/// Why.
		reason: String,
	},
	/// The samples do not make a dataset.
	#[error(transparent)]
	Dataset(#[from] DatasetError),
}

/// How raw values become features.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scaling {
	/// As they are.
	#[default]
	None,
	/// Each feature mapped onto `[0, 1]` by the data's own smallest and largest values
	/// (recorded in the manifest, to apply to new inputs).
	MinMax,
}

/// Imports a CSV file: one sample a row, numeric features, and a label column (`label`: its
/// header name or 0-based index; the last column by default). A first row whose feature cells
/// are not all numbers is the header, and names the features.
pub fn csv(path: &Path, label: Option<&str>, scaling: Scaling) -> Result<Dataset, ImportError> {
	csv_as(path, label, LabelKind::Classes, scaling)
}

/// [`csv`] with labels of `kind`: class ids or names, or real-valued targets (a regression),
/// each of which must be a finite number (an error names the row otherwise).
pub fn csv_as(
	path: &Path,
	label: Option<&str>,
	kind: LabelKind,
	scaling: Scaling,
) -> Result<Dataset, ImportError> {
	let table = read_csv(path, label)?;
	let mut manifest = kind.manifest("csv", "text".into());
	manifest.feature_names = table.feature_names;
	let labels = match kind {
		LabelKind::Classes => {
			let cells: Vec<String> = table.labels.into_iter().map(|(_, l)| l).collect();
			let (ids, names) = class_ids(&cells);
			manifest.labels = Labels::Classes(names);
			ids
		}
		LabelKind::Targets => {
			let mut targets = Vec::with_capacity(table.labels.len());
			for (row, cell) in &table.labels {
				match cell.parse::<f32>() {
					Ok(v) if v.is_finite() => targets.push(v.to_bits()),
					_ => {
						let reason =
							format!("target {}: {cell:?} is not a finite number", table.label_name);
						return Err(ImportError::Row { path: path.into(), row: *row, reason });
					}
				}
			}
			manifest.labels = Labels::Target(table.label_name);
			targets
		}
	};
	finish(path, table.features, labels, manifest, scaling)
}

/// A CSV file's rows: numeric features, and each row's label cell with its line.
struct CsvTable {
	features: Vec<Vec<f32>>,
	labels: Vec<(u64, String)>,
	feature_names: Vec<String>,
	/// The label column's header name (or its 0-based index).
	label_name: String,
}

fn read_csv(path: &Path, label: Option<&str>) -> Result<CsvTable, ImportError> {
	let io = |source| ImportError::Io { path: path.into(), source };
	let row_error = |row: u64, reason: String| ImportError::Row { path: path.into(), row, reason };
	let mut reader = ::csv::ReaderBuilder::new()
		.has_headers(false)
		.flexible(true)
		.trim(::csv::Trim::All)
		.from_reader(File::open(path).map_err(io)?);
	let mut header: Option<Vec<String>> = None;
	let mut width = None;
	let mut label_at = None;
	let mut rows: Vec<(Vec<f32>, (u64, String))> = Vec::new();
	for record in reader.records() {
		let record = record.map_err(|e| {
			let row = e.position().map_or(0, |p| p.line());
			row_error(row, e.to_string())
		})?;
		let row = record.position().map_or(0, |p| p.line());
		let cells: Vec<&str> = record.iter().collect();
		let columns = *width.get_or_insert(cells.len());
		if cells.len() != columns {
			return Err(row_error(
				row,
				format!("{} fields, the first row has {columns}", cells.len()),
			));
		}
		if columns < 2 {
			return Err(row_error(row, "a row needs at least one feature and a label".into()));
		}
		if label_at.is_none() {
			// The first row: a header if any cell but the label's is not a number.
			let at = label_column(label, None, columns).map_err(|r| row_error(row, r))?;
			let is_header = cells
				.iter()
				.enumerate()
				.any(|(i, c)| i != at.unwrap_or(columns - 1) && c.parse::<f32>().is_err());
			if is_header {
				let names: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
				let at =
					label_column(label, Some(&names), columns).map_err(|r| row_error(row, r))?;
				label_at = at;
				header = Some(names);
				continue;
			}
			label_at = at.or(Some(columns - 1));
		}
		let at = label_at.unwrap_or(columns - 1);
		let mut x = Vec::with_capacity(columns - 1);
		for (i, cell) in cells.iter().enumerate() {
			if i == at {
				continue;
			}
			let column = header.as_ref().and_then(|h| h.get(i)).cloned().unwrap_or(i.to_string());
			let v = cell.parse::<f32>().map_err(|_| {
				row_error(row, format!("column {column}: {cell:?} is not a number"))
			})?;
			if !v.is_finite() {
				return Err(row_error(row, format!("column {column}: {cell:?} is not finite")));
			}
			x.push(v);
		}
		let y = cells.get(at).copied().unwrap_or_default();
		if y.is_empty() {
			return Err(row_error(row, "the label is empty".into()));
		}
		rows.push((x, (row, y.to_string())));
	}
	let at = label_at.unwrap_or(0);
	let label_name =
		header.as_ref().and_then(|h| h.get(at)).cloned().unwrap_or_else(|| at.to_string());
	let feature_names = header
		.map(|h| h.into_iter().enumerate().filter(|(i, _)| *i != at).map(|(_, n)| n).collect())
		.unwrap_or_default();
	let (features, labels) = rows.into_iter().unzip();
	Ok(CsvTable { features, labels, feature_names, label_name })
}

/// The label column: `label` as a header name (when there is a header) or a 0-based index;
/// `None` when not given (the last column).
fn label_column(
	label: Option<&str>,
	header: Option<&[String]>,
	columns: usize,
) -> Result<Option<usize>, String> {
	let Some(label) = label else { return Ok(None) };
	if let Some(i) = header.and_then(|h| h.iter().position(|n| n == label)) {
		return Ok(Some(i));
	}
	match label.parse::<usize>() {
		Ok(i) if i < columns => Ok(Some(i)),
		Ok(i) => Err(format!("label column {i}: the file has {columns} columns")),
		Err(_) if header.is_some() => Err(format!("no column is named {label:?}")),
		// Not a number and no header seen yet: the first row may be the header.
		Err(_) => Ok(None),
	}
}

/// Class ids for text labels: the labels themselves when they are all non-negative integers
/// (no names kept), else each distinct label's place in sorted order (the names kept).
fn class_ids(labels: &[String]) -> (Vec<u32>, Vec<String>) {
	if let Ok(ids) = labels.iter().map(|l| l.parse::<u32>()).collect::<Result<Vec<_>, _>>() {
		return (ids, Vec::new());
	}
	let names: Vec<String> = labels.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
	let ids = labels.iter().map(|l| names.binary_search(l).map_or(0, |i| i as u32)).collect();
	(ids, names)
}

/// Imports a NumPy pair: features `x` (`samples x ...`, any integer or float dtype; trailing
/// dimensions are flattened, so images of `n x 8 x 8` become 64 features) and labels `y`
/// (`samples` class ids: integers, or floats that are whole numbers).
pub fn npy(x: &Path, y: &Path, scaling: Scaling) -> Result<Dataset, ImportError> {
	npy_as(x, y, LabelKind::Classes, scaling)
}

/// [`npy`] with labels of `kind`: class ids, or real-valued targets (a regression).
pub fn npy_as(
	x: &Path,
	y: &Path,
	kind: LabelKind,
	scaling: Scaling,
) -> Result<Dataset, ImportError> {
	let read = |path: &Path| {
		std::fs::read(path).map_err(|source| ImportError::Io { path: path.into(), source })
	};
	let (xs, dtype) = numbers(x, "x", &read(x)?)?;
	let (ys, _) = numbers(y, "y", &read(y)?)?;
	let features = rows_of(x, "x", xs)?;
	let labels = labels_of(y, "y", ys, kind)?;
	pair(x, features, y, labels, kind.manifest("npy", dtype), scaling)
}

/// Imports an `.npz` archive (compressed or not) holding features and labels as [`npy`] reads
/// them, in members named `x_name` and `y_name` (the `.npy` suffix may be left out).
pub fn npz(
	path: &Path,
	x_name: &str,
	y_name: &str,
	scaling: Scaling,
) -> Result<Dataset, ImportError> {
	npz_as(path, x_name, y_name, LabelKind::Classes, scaling)
}

/// [`npz`] with labels of `kind`: class ids, or real-valued targets (a regression).
pub fn npz_as(
	path: &Path,
	x_name: &str,
	y_name: &str,
	kind: LabelKind,
	scaling: Scaling,
) -> Result<Dataset, ImportError> {
	let file = File::open(path).map_err(|source| ImportError::Io { path: path.into(), source })?;
	let archive =
		|reason: String| ImportError::Array { path: path.into(), entry: "archive".into(), reason };
	let mut zip = zip::ZipArchive::new(file).map_err(|e| archive(e.to_string()))?;
	let names: Vec<String> = zip.file_names().map(str::to_string).collect();
	let mut member = |wanted: &str| -> Result<(String, Vec<u8>), ImportError> {
		let name = names
			.iter()
			.find(|n| *n == wanted || n.strip_suffix(".npy") == Some(wanted))
			.ok_or_else(|| archive(format!("no array {wanted:?} (it holds {names:?})")))?;
		let mut entry = zip.by_name(name).map_err(|e| archive(format!("{name}: {e}")))?;
		let mut bytes = Vec::new();
		std::io::Read::read_to_end(&mut entry, &mut bytes)
			.map_err(|e| archive(format!("{name}: {e}")))?;
		Ok((name.clone(), bytes))
	};
	let (xn, xb) = member(x_name)?;
	let (yn, yb) = member(y_name)?;
	let (xs, dtype) = numbers(path, &xn, &xb)?;
	let (ys, _) = numbers(path, &yn, &yb)?;
	let features = rows_of(path, &xn, xs)?;
	let labels = labels_of(path, &yn, ys, kind)?;
	pair(path, features, path, labels, kind.manifest("npz", dtype), scaling)
}

/// Imports a folder of images, one subfolder per class (the class names, in sorted order),
/// each file decoded (PNG or JPEG, by its content), converted to 8-bit grey or RGB, resized to
/// `size` (`width x height`) with a triangle filter, read channel-major (each channel's plane
/// row by row, red then green then blue: the `C x H x W` order a convolution reads) and scaled
/// by `1 / 255` ([`Preprocessing::Image`]). Files are taken in name order; names starting with
/// `.` are skipped.
pub fn images(dir: &Path, size: (u32, u32), grey: bool) -> Result<Dataset, ImportError> {
	use image::imageops::{resize, FilterType};
	let io = |path: &Path, source| ImportError::Io { path: path.into(), source };
	let sorted = |path: &Path| -> Result<Vec<(String, PathBuf)>, ImportError> {
		let mut entries = Vec::new();
		for entry in std::fs::read_dir(path).map_err(|e| io(path, e))? {
			let entry = entry.map_err(|e| io(path, e))?;
			let name = entry.file_name().to_string_lossy().into_owned();
			if !name.starts_with('.') {
				entries.push((name, entry.path()));
			}
		}
		entries.sort();
		Ok(entries)
	};
	let classes: Vec<(String, PathBuf)> =
		sorted(dir)?.into_iter().filter(|(_, p)| p.is_dir()).collect();
	let (width, height) = size;
	let preprocessing = Preprocessing::Image { width, height, grey };
	let mut features = Vec::new();
	let mut labels = Vec::new();
	for (id, (_, folder)) in classes.iter().enumerate() {
		for (_, file) in sorted(folder)? {
			let unreadable = |reason: String| ImportError::Array {
				path: file.clone(),
				entry: "image".into(),
				reason,
			};
			let bytes = std::fs::read(&file).map_err(|e| io(&file, e))?;
			let decoded = image::load_from_memory(&bytes)
				.map_err(|e| unreadable(format!("not an image that can be read: {e}")))?;
			let mut x: Vec<f32> = if grey {
				let img = resize(&decoded.to_luma8(), width, height, FilterType::Triangle);
				img.into_raw().into_iter().map(f32::from).collect()
			} else {
				let img = resize(&decoded.to_rgb8(), width, height, FilterType::Triangle);
				channel_major(&img.into_raw(), 3)
			};
			preprocessing.apply(&mut x);
			features.push(x);
			labels.push(id as u32);
		}
	}
	let manifest = Manifest {
		source: "images".into(),
		dtype: "u8".into(),
		labels: Labels::Classes(classes.into_iter().map(|(name, _)| name).collect()),
		preprocessing,
		..Manifest::default()
	};
	finish(dir, features, labels, manifest, Scaling::None)
}

/// Interleaved pixels (`channels` values a pixel) as planes, one channel after the other.
fn channel_major(pixels: &[u8], channels: usize) -> Vec<f32> {
	(0..channels)
		.flat_map(|c| pixels.iter().skip(c).step_by(channels).map(|v| f32::from(*v)))
		.collect()
}

/// A UTF-8 text file's characters as token ids (Unicode scalar values, numbered in sorted
/// order), with that vocabulary; an error names the line of a bad byte, or a vocabulary wider
/// than a model's output may be.
fn characters(path: &Path) -> Result<(Vec<u32>, Vec<char>), ImportError> {
	let unusable = |reason: String| ImportError::Unusable { path: path.into(), reason };
	let bytes =
		std::fs::read(path).map_err(|source| ImportError::Io { path: path.into(), source })?;
	let text = std::str::from_utf8(&bytes).map_err(|e| {
		let at = e.valid_up_to();
		let line = bytes.get(..at).map_or(0, |b| b.iter().filter(|c| **c == b'\n').count());
		ImportError::Row {
			path: path.into(),
			row: line as u64 + 1,
			reason: format!("byte {at} is not UTF-8 text"),
		}
	})?;
	let tokens: Vec<char> = text.chars().collect();
	let vocabulary: Vec<char> =
		tokens.iter().copied().collect::<BTreeSet<char>>().into_iter().collect();
	if vocabulary.len() > trainet_primitives::task::MAX_WIDTH as usize {
		return Err(unusable(format!(
			"{} distinct characters: a model's output is at most {} wide",
			vocabulary.len(),
			trainet_primitives::task::MAX_WIDTH
		)));
	}
	let id = |c: &char| vocabulary.binary_search(c).unwrap_or(0) as u32;
	Ok((tokens.iter().map(id).collect(), vocabulary))
}

/// Imports a text corpus for next-token prediction by a dense model: the tokens are the
/// text's characters (Unicode scalar values), the vocabulary their distinct values in sorted
/// order (the class names); each position after the first `context` gives a sample whose
/// features are the ids of the `context` tokens before it (`t-context .. t-1`, as numbers) and
/// whose label is the id of the token at it. The file must be UTF-8.
pub fn text(path: &Path, context: u32) -> Result<Dataset, ImportError> {
	let unusable = |reason: String| ImportError::Unusable { path: path.into(), reason };
	let (ids, vocabulary) = characters(path)?;
	if context == 0 || context > trainet_primitives::task::MAX_WIDTH {
		return Err(unusable(format!(
			"a context of {context} tokens: from 1 to {}",
			trainet_primitives::task::MAX_WIDTH
		)));
	}
	let window = context as usize;
	if ids.len() <= window {
		return Err(unusable(format!(
			"{} characters: a context of {context} needs more to make a sample",
			ids.len()
		)));
	}
	let features: Vec<Vec<f32>> =
		ids.windows(window).map(|w| w.iter().map(|t| *t as f32).collect()).collect();
	let labels: Vec<u32> = ids.iter().skip(window).copied().collect();
	let features: Vec<Vec<f32>> = features.into_iter().take(labels.len()).collect();
	let manifest = Manifest {
		source: "text".into(),
		dtype: "char".into(),
		feature_names: (1..=context).rev().map(|k| format!("t-{k}")).collect(),
		labels: Labels::Classes(vocabulary.iter().map(|c| c.to_string()).collect()),
		preprocessing: Preprocessing::None,
	};
	finish(path, features, labels, manifest, Scaling::None)
}

/// Imports a text corpus for a sequence model (a transformer): the tokens are the text's
/// characters as in [`text`]; every `stride` characters from the start, a sample is the ids of
/// the next `context + 1` characters (`t0 ..= t{context}`, as numbers): the model reads the
/// first `context` and predicts each one's successor. Labels are 0; the class names are the
/// vocabulary.
pub fn text_sequences(path: &Path, context: u32, stride: u32) -> Result<Dataset, ImportError> {
	let unusable = |reason: String| ImportError::Unusable { path: path.into(), reason };
	let (ids, vocabulary) = characters(path)?;
	let most = trainet_primitives::repops::sequence::MAX_CONTEXT;
	if context == 0 || context > most {
		return Err(unusable(format!("a context of {context} tokens: from 1 to {most}")));
	}
	if stride == 0 {
		return Err(unusable("a stride of 0 characters: 1 at least".into()));
	}
	let window = context as usize + 1;
	if ids.len() < window {
		return Err(unusable(format!(
			"{} characters: a context of {context} needs {window} to make a sample",
			ids.len()
		)));
	}
	let features: Vec<Vec<f32>> = ids
		.windows(window)
		.step_by(stride as usize)
		.map(|w| w.iter().map(|t| *t as f32).collect())
		.collect();
	let labels = vec![0; features.len()];
	let manifest = Manifest {
		source: "text".into(),
		dtype: "char".into(),
		feature_names: (0..=context).map(|k| format!("t{k}")).collect(),
		labels: Labels::Classes(vocabulary.iter().map(|c| c.to_string()).collect()),
		preprocessing: Preprocessing::None,
	};
	finish(path, features, labels, manifest, Scaling::None)
}

/// An `.npy` array of any integer or float dtype, as `f64` (exact for every dtype but 64-bit
/// integers beyond 2^53, which become features rounded to `f32` anyway, or labels refused),
/// with the dtype's name.
fn numbers(path: &Path, entry: &str, bytes: &[u8]) -> Result<(ArrayD<f64>, String), ImportError> {
	let mut seen = Vec::new();
	// `ndarray-npy` reads an array only as the element type its header names; each try that
	// fails on the type stops at the header.
	macro_rules! attempt {
		($($t:ty => $name:literal),+) => {$(
			match <ArrayD<$t> as ReadNpyExt>::read_npy(bytes) {
				Ok(a) => return Ok((a.mapv(|v| v as f64), $name.to_string())),
				Err(ReadNpyError::WrongDescriptor(d)) => seen.push(d.to_string()),
				Err(e) => {
					let reason = e.to_string();
					return Err(ImportError::Array { path: path.into(), entry: entry.into(), reason });
				}
			}
		)+};
	}
	attempt!(f32 => "f32", f64 => "f64", u8 => "u8", i8 => "i8", u16 => "u16", i16 => "i16",
		u32 => "u32", i32 => "i32", u64 => "u64", i64 => "i64");
	Err(ImportError::Array {
		path: path.into(),
		entry: entry.into(),
		reason: format!(
			"dtype {} cannot be imported: arrays of NumPy integers or floats can",
			seen.pop().unwrap_or_default()
		),
	})
}

/// The samples of a features array: one per index of its first axis, the rest flattened.
fn rows_of(path: &Path, entry: &str, a: ArrayD<f64>) -> Result<Vec<Vec<f32>>, ImportError> {
	let bad =
		|reason: String| ImportError::Array { path: path.into(), entry: entry.into(), reason };
	if a.ndim() < 2 {
		return Err(bad(format!(
			"features need two or more dimensions (samples x features), this array has shape {:?}",
			a.shape()
		)));
	}
	let rows = a.shape().first().copied().unwrap_or(0);
	let width = a.len().checked_div(rows).unwrap_or(0);
	let flat: Vec<f32> = a.iter().map(|v| *v as f32).collect();
	if let Some(i) = flat.iter().position(|v| !v.is_finite()) {
		let (r, c) = (i.checked_div(width).unwrap_or(0), i.checked_rem(width).unwrap_or(0));
		return Err(bad(format!("sample {r}, feature {c} is not finite")));
	}
	Ok(flat.chunks(width.max(1)).map(<[f32]>::to_vec).collect())
}

/// The labels of a labels array (one dimension, or a column): class ids (whole non-negative
/// numbers), or with `kind` [`LabelKind::Targets`] finite real numbers as `f32` bits.
fn labels_of(
	path: &Path,
	entry: &str,
	a: ArrayD<f64>,
	kind: LabelKind,
) -> Result<Vec<u32>, ImportError> {
	let bad =
		|reason: String| ImportError::Array { path: path.into(), entry: entry.into(), reason };
	let shape = a.shape().to_vec();
	if !(shape.len() == 1 || (shape.len() == 2 && shape.get(1) == Some(&1))) {
		return Err(bad(format!("labels need one dimension, this array has shape {shape:?}")));
	}
	a.iter()
		.enumerate()
		.map(|(i, v)| match kind {
			LabelKind::Classes if v.fract() == 0.0 && *v >= 0.0 && *v <= f64::from(u32::MAX) => {
				Ok(*v as u32)
			}
			LabelKind::Classes => Err(bad(format!(
				"label {i} is {v}: labels are class ids (whole numbers from 0); import \
				 real-valued targets with --regression"
			))),
			LabelKind::Targets if (*v as f32).is_finite() => Ok((*v as f32).to_bits()),
			LabelKind::Targets => Err(bad(format!("target {i} is {v}: not a finite f32"))),
		})
		.collect()
}

/// What a dataset's labels are: class ids, or real-valued targets (a regression's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelKind {
	/// Class ids.
	Classes,
	/// Real-valued targets.
	Targets,
}

impl LabelKind {
	/// The manifest of an array import from `source` of element type `dtype`, its labels of
	/// this kind (unnamed).
	fn manifest(self, source: &str, dtype: String) -> Manifest {
		let labels = match self {
			LabelKind::Classes => Labels::Classes(Vec::new()),
			LabelKind::Targets => Labels::Target(String::new()),
		};
		Manifest { source: source.into(), dtype, labels, ..Manifest::default() }
	}
}

fn pair(
	x: &Path,
	features: Vec<Vec<f32>>,
	y: &Path,
	labels: Vec<u32>,
	manifest: Manifest,
	scaling: Scaling,
) -> Result<Dataset, ImportError> {
	if features.len() != labels.len() {
		return Err(ImportError::LabelCount {
			features: x.into(),
			rows: features.len(),
			labels: y.into(),
			count: labels.len(),
		});
	}
	finish(x, features, labels, manifest, scaling)
}

/// The dataset of `features` and `labels`, scaled as asked, with the class count the labels
/// imply.
fn finish(
	path: &Path,
	mut features: Vec<Vec<f32>>,
	labels: Vec<u32>,
	mut manifest: Manifest,
	scaling: Scaling,
) -> Result<Dataset, ImportError> {
	let unusable = |reason: String| ImportError::Unusable { path: path.into(), reason };
	let Some(first) = features.first() else { return Err(unusable("no samples".into())) };
	let width = first.len();
	let classes = match &manifest.labels {
		Labels::Classes(names) if !names.is_empty() => names.len(),
		Labels::Classes(_) => labels.iter().max().map_or(0, |m| *m as usize + 1),
		// Real-valued targets: no classes.
		Labels::Target(_) => 0,
	};
	if classes == 1 {
		return Err(unusable(format!("{classes} class: a classifier needs two or more")));
	}
	let (Ok(w), Ok(c)) = (u32::try_from(width), u32::try_from(classes)) else {
		return Err(unusable(format!("{width} features, {classes} classes: too many")));
	};
	if scaling == Scaling::MinMax {
		let mut min = first.clone();
		let mut max = first.clone();
		for x in &features {
			for ((lo, hi), v) in min.iter_mut().zip(max.iter_mut()).zip(x) {
				*lo = lo.min(*v);
				*hi = hi.max(*v);
			}
		}
		let bits = |v: Vec<f32>| v.into_iter().map(F32Bits::from_f32).collect();
		manifest.preprocessing = Preprocessing::MinMax { min: bits(min), max: bits(max) };
		for x in &mut features {
			manifest.preprocessing.apply(x);
		}
	}
	let samples: Samples = features.into_iter().zip(labels).collect();
	Ok(Dataset::described(w, c, samples, manifest)?)
}
