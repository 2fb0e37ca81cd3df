//! Importing a buyer's own data: CSV files and NumPy arrays become the same samples, manifest
//! and root on every import, and malformed inputs are refused with an error naming the file and
//! the row or array, before anything is stored.

use std::{io::Write, path::Path, process::Command};

use ndarray::{Array1, Array3};
use ndarray_npy::WriteNpyExt;
use trainet_primitives::dataset::{Labels, Preprocessing};
use trainet_worker::{
	dataset::DatasetStore,
	import::{self, ImportError, LabelKind, Scaling},
};

const IRIS: &str = "sepal_length,sepal_width,petal_length,species\n\
	5.1,3.5,1.4,setosa\n\
	7.0,3.2,4.7,versicolor\n\
	6.3,3.3,6.0,virginica\n\
	4.9,3.0,1.4,setosa\n\
	6.4,3.2,4.5,versicolor\n";

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
	let path = dir.join(name);
	std::fs::write(&path, text).unwrap();
	path
}

fn npy_bytes<A: WriteNpyExt>(a: &A) -> Vec<u8> {
	let mut bytes = Vec::new();
	a.write_npy(&mut bytes).unwrap();
	bytes
}

#[test]
fn a_csv_with_a_header_and_named_classes_imports_the_same_every_time() {
	let dir = tempfile::tempdir().unwrap();
	let path = write(dir.path(), "iris.csv", IRIS);
	let d = import::csv(&path, None, Scaling::None).unwrap();
	assert_eq!((d.samples.len(), d.features, d.classes), (5, 3, 3));
	assert_eq!(d.samples[1], (vec![7.0, 3.2, 4.7], 1));
	assert_eq!(d.manifest.feature_names, ["sepal_length", "sepal_width", "petal_length"]);
	assert_eq!(
		d.manifest.labels,
		Labels::Classes(vec!["setosa".into(), "versicolor".into(), "virginica".into()])
	);
	assert_eq!(d.manifest.source, "csv");
	// A second import of the same file: the same root; stored and read back: the same dataset.
	let again = import::csv(&path, None, Scaling::None).unwrap();
	assert_eq!(again.root(), d.root());
	let store = DatasetStore::open(dir.path().join("store")).unwrap();
	let root = store.put(&d).unwrap();
	assert_eq!(store.get(&root).unwrap(), d);
	assert_eq!(d.commitment().manifest, d.manifest.hash());

	// The label column by name, elsewhere than last; min-max scaling recorded.
	let moved = "species,a,b\nx,0,10\ny,2,20\nx,4,15\n";
	let path = write(dir.path(), "moved.csv", moved);
	let d = import::csv(&path, Some("species"), Scaling::MinMax).unwrap();
	assert_eq!(d.samples, vec![(vec![0.0, 0.0], 0), (vec![0.5, 1.0], 1), (vec![1.0, 0.5], 0)]);
	let Preprocessing::MinMax { min, max } = &d.manifest.preprocessing else { panic!() };
	assert_eq!((min[1].to_f32(), max[1].to_f32()), (10.0, 20.0));
	// Scaling changes the manifest, so the root.
	assert_ne!(import::csv(&path, Some("species"), Scaling::None).unwrap().root(), d.root());
}

#[test]
fn a_csv_without_a_header_takes_class_ids_and_a_label_column_by_index() {
	let dir = tempfile::tempdir().unwrap();
	let path = write(dir.path(), "ids.csv", "2,0.5,1.5\n0,1.0,-2.0\n1,3.0,0.0\n");
	let d = import::csv(&path, Some("0"), Scaling::None).unwrap();
	assert_eq!((d.features, d.classes), (2, 3));
	assert_eq!(d.samples[0], (vec![0.5, 1.5], 2));
	assert!(d.manifest.feature_names.is_empty());
	assert!(d.manifest.class_names().is_none());
}

#[test]
fn a_numpy_pair_and_an_npz_archive_import_the_same_every_time() {
	let dir = tempfile::tempdir().unwrap();
	// 6 images of 2 x 3 pixels as u8, labels as i64.
	let x = Array3::from_shape_fn((6, 2, 3), |(n, r, c)| (n * 10 + r * 3 + c) as u8);
	let y = Array1::from(vec![0i64, 1, 2, 0, 1, 2]);
	let (xp, yp) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
	std::fs::write(&xp, npy_bytes(&x)).unwrap();
	std::fs::write(&yp, npy_bytes(&y)).unwrap();
	let d = import::npy(&xp, &yp, Scaling::None).unwrap();
	assert_eq!((d.samples.len(), d.features, d.classes), (6, 6, 3));
	assert_eq!(d.samples[1], (vec![10.0, 11.0, 12.0, 13.0, 14.0, 15.0], 1));
	assert_eq!(d.manifest.dtype, "u8");
	assert_eq!(import::npy(&xp, &yp, Scaling::None).unwrap().root(), d.root());

	// The same arrays in an archive, one member compressed (numpy.savez_compressed), and
	// float labels that are whole numbers.
	let yf = Array1::from(vec![0.0f64, 1.0, 2.0, 0.0, 1.0, 2.0]);
	let zp = dir.path().join("data.npz");
	let mut zip = zip::ZipWriter::new(std::fs::File::create(&zp).unwrap());
	let deflated = zip::write::SimpleFileOptions::default()
		.compression_method(zip::CompressionMethod::Deflated);
	zip.start_file("images.npy", deflated).unwrap();
	zip.write_all(&npy_bytes(&x)).unwrap();
	zip.start_file("labels.npy", zip::write::SimpleFileOptions::default()).unwrap();
	zip.write_all(&npy_bytes(&yf)).unwrap();
	zip.finish().unwrap();
	let z = import::npz(&zp, "images", "labels.npy", Scaling::None).unwrap();
	assert_eq!(z.samples, d.samples);
	assert_eq!(z.manifest.source, "npz");
	assert_eq!(import::npz(&zp, "images", "labels", Scaling::None).unwrap().root(), z.root());
	let Err(ImportError::Array { entry, reason, .. }) =
		import::npz(&zp, "x", "labels", Scaling::None)
	else {
		panic!("a missing member was accepted")
	};
	assert_eq!(entry, "archive");
	assert!(reason.contains("no array \"x\""), "{reason}");
}

/// Each malformed input gets an error that names the file and the row, column or array.
#[test]
fn malformed_inputs_are_refused_with_the_place_at_fault() {
	let dir = tempfile::tempdir().unwrap();
	let error = |text: &str| {
		let path = write(dir.path(), "bad.csv", text);
		import::csv(&path, None, Scaling::None).unwrap_err().to_string()
	};
	let e = error("a,b,label\n1,2,x\n3,oops,y\n");
	assert!(e.contains("bad.csv: row 3: column b: \"oops\" is not a number"), "{e}");
	let e = error("1,2,0\n3,4\n");
	assert!(e.contains("bad.csv: row 2: 2 fields, the first row has 3"), "{e}");
	let e = error("1,2,0\n3,inf,1\n");
	assert!(e.contains("row 2: column 1: \"inf\" is not finite"), "{e}");
	let e = error("1,2,0\n3,4,0\n");
	assert!(e.contains("1 class: a classifier needs two or more"), "{e}");
	let e = error("a,b,label\n");
	assert!(e.contains("no samples"), "{e}");
	let path = write(dir.path(), "named.csv", "a,b,label\n1,2,x\n");
	let e = import::csv(&path, Some("class"), Scaling::None).unwrap_err().to_string();
	assert!(e.contains("named.csv: row 1: no column is named \"class\""), "{e}");

	let x = Array3::<f32>::zeros((4, 2, 2));
	let (xp, yp) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
	std::fs::write(&xp, npy_bytes(&x)).unwrap();
	let npy_error = |y: Vec<u8>| {
		std::fs::write(&yp, y).unwrap();
		import::npy(&xp, &yp, Scaling::None).unwrap_err().to_string()
	};
	// A label count that is not the sample count.
	let e = npy_error(npy_bytes(&Array1::from(vec![0u8, 1, 1])));
	assert!(e.contains("x.npy holds 4 samples but") && e.contains("y.npy holds 3 labels"), "{e}");
	// A dtype that is not a number.
	let e = npy_error(npy_bytes(&Array1::from(vec![true, false, true, false])));
	assert!(e.contains("y.npy: y: dtype") && e.contains("cannot be imported"), "{e}");
	// Labels that are not class ids.
	let e = npy_error(npy_bytes(&Array1::from(vec![0.0f32, 1.5, 1.0, 0.0])));
	assert!(e.contains("y.npy: y: label 1 is 1.5") && e.contains("--regression"), "{e}");
	// A truncated file.
	let mut cut = npy_bytes(&Array1::from(vec![0u8, 1, 1, 0]));
	cut.truncate(cut.len() - 2);
	let e = npy_error(cut);
	assert!(e.starts_with(&format!("{}: y: ", yp.display())), "{e}");
	// Not an array file at all.
	let e = npy_error(b"label\n0\n1\n".to_vec());
	assert!(e.starts_with(&format!("{}: y: ", yp.display())), "{e}");
}

/// Regression data: a CSV whose label column holds real-valued targets, and a NumPy pair of
/// float targets, import as datasets of targets (0 classes, each label the target's `f32`
/// bits), the same on every import; a target that is not a finite number is refused by row.
#[test]
fn real_valued_targets_import_as_a_regression_the_same_every_time() {
	let dir = tempfile::tempdir().unwrap();
	let text = "rooms,area,price\n3,75.5,210.25\n1,30,-4.5\n5,180.25,512\n";
	let path = write(dir.path(), "houses.csv", text);
	let d = import::csv_as(&path, Some("price"), LabelKind::Targets, Scaling::None).unwrap();
	assert!(d.is_regression());
	assert_eq!((d.samples.len(), d.features, d.classes), (3, 2, 0));
	assert_eq!(d.samples[1], (vec![1.0, 30.0], (-4.5f32).to_bits()));
	assert_eq!(d.manifest.labels, Labels::Target("price".into()));
	assert_eq!(d.manifest.feature_names, ["rooms", "area"]);
	assert_eq!(
		import::csv_as(&path, Some("price"), LabelKind::Targets, Scaling::None).unwrap().root(),
		d.root()
	);
	// The same file as classes is another dataset (another manifest and shape).
	let classes = import::csv(&path, Some("price"), Scaling::None).unwrap();
	assert_ne!(classes.root(), d.root());
	let store = DatasetStore::open(dir.path().join("store")).unwrap();
	assert_eq!(store.get(&store.put(&d).unwrap()).unwrap(), d);

	let bad = write(dir.path(), "bad.csv", "a,t\n1,2.5\n2,cheap\n");
	let e = import::csv_as(&bad, None, LabelKind::Targets, Scaling::None).unwrap_err().to_string();
	assert!(e.contains("bad.csv: row 3: target t: \"cheap\" is not a finite number"), "{e}");
	let bad = write(dir.path(), "inf.csv", "1,2.5\n2,inf\n");
	let e = import::csv_as(&bad, None, LabelKind::Targets, Scaling::None).unwrap_err().to_string();
	assert!(e.contains("inf.csv: row 2: target 1: \"inf\" is not a finite number"), "{e}");

	let x = Array3::<f32>::from_shape_fn((4, 1, 2), |(i, _, j)| (i * 2 + j) as f32);
	let (xp, yp) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
	std::fs::write(&xp, npy_bytes(&x)).unwrap();
	std::fs::write(&yp, npy_bytes(&Array1::from(vec![0.5f64, -1.25, 3.0, 1e3]))).unwrap();
	let d = import::npy_as(&xp, &yp, LabelKind::Targets, Scaling::None).unwrap();
	assert_eq!((d.features, d.classes), (2, 0));
	assert_eq!(d.samples[1], (vec![2.0, 3.0], (-1.25f32).to_bits()));
	let again = import::npy_as(&xp, &yp, LabelKind::Targets, Scaling::None).unwrap();
	assert_eq!(again.root(), d.root());
	std::fs::write(&yp, npy_bytes(&Array1::from(vec![0.5f64, f64::NAN, 3.0, 1e3]))).unwrap();
	let e = import::npy_as(&xp, &yp, LabelKind::Targets, Scaling::None).unwrap_err();
	assert!(e.to_string().contains("y.npy: y: target 1 is NaN: not a finite f32"), "{e}");
}

/// Through the command line: a good import prints the root the library computes; a bad one
/// fails, names the row, and leaves the store empty.
#[test]
fn the_command_line_stores_a_good_import_and_nothing_of_a_bad_one() {
	let dir = tempfile::tempdir().unwrap();
	let data = dir.path().join("data");
	let worker = |file: &Path| {
		Command::new(env!("CARGO_BIN_EXE_trainet-worker"))
			.arg("--data-dir")
			.arg(&data)
			.args(["dataset", "import", "csv"])
			.arg(file)
			.args(["--held-out", "5"])
			.output()
			.unwrap()
	};
	let bad = write(dir.path(), "bad.csv", &IRIS.replace("6.3,3.3", "6.3,?"));
	let out = worker(&bad);
	assert!(!out.status.success());
	let stderr = String::from_utf8_lossy(&out.stderr);
	assert!(
		stderr.contains("bad.csv: row 4: column sepal_width: \"?\" is not a number"),
		"{stderr}"
	);
	// Anything at all in the data directory (a dataset, a temporary file).
	let files = |dir: &Path| std::fs::read_dir(dir).map_or(0, |d| d.count());
	assert_eq!(files(&data), 0, "a failed import wrote something");

	let good = write(dir.path(), "iris.csv", IRIS);
	let out = worker(&good);
	assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
	let stdout = String::from_utf8_lossy(&out.stdout);
	let (train, held) = import::csv(&good, None, Scaling::None).unwrap().split(5);
	assert!(
		stdout.contains(&format!("dataset {:?} (4 samples, 3 features, 3 classes)", train.root())),
		"{stdout}"
	);
	assert!(stdout.contains(&format!("manifest {:?}", train.manifest.hash())), "{stdout}");
	assert!(stdout.contains(&format!("held-out {:?} (1 samples)", held.root())), "{stdout}");
	assert_eq!(files(&data), 2);
	let store = DatasetStore::open(&data).unwrap();
	assert_eq!(store.get(&train.root()).unwrap(), train);
}

/// A folder of PNG and JPEG images, one subfolder per class, of mixed sizes and colour modes:
/// resized and scaled the same on every import; an unreadable file is refused by name.
#[test]
fn an_image_folder_imports_the_same_every_time() {
	use image::{GrayImage, ImageFormat, Luma, Rgb, RgbImage};
	let dir = tempfile::tempdir().unwrap();
	let root = dir.path().join("pictures");
	for class in ["dog", "cat"] {
		std::fs::create_dir_all(root.join(class)).unwrap();
	}
	// White and black squares of several sizes, as grey PNGs, RGB PNGs and JPEGs.
	GrayImage::from_pixel(6, 4, Luma([255])).save(root.join("cat/a.png")).unwrap();
	RgbImage::from_pixel(10, 10, Rgb([255, 255, 255])).save(root.join("cat/b.png")).unwrap();
	RgbImage::from_pixel(3, 5, Rgb([0, 0, 0])).save(root.join("dog/a.png")).unwrap();
	RgbImage::from_pixel(16, 16, Rgb([0, 0, 0]))
		.save_with_format(root.join("dog/b.jpg"), ImageFormat::Jpeg)
		.unwrap();
	std::fs::write(root.join("dog/.DS_Store"), b"not an image, and skipped").unwrap();

	let d = import::images(&root, (4, 3), true).unwrap();
	assert_eq!((d.samples.len(), d.features, d.classes), (4, 12, 2));
	assert_eq!(d.manifest.labels, Labels::Classes(vec!["cat".into(), "dog".into()]));
	assert_eq!(d.manifest.preprocessing, Preprocessing::Image { width: 4, height: 3, grey: true });
	// cat (0) is white, dog (1) is black, whatever the size or format.
	for (x, y) in &d.samples {
		let expected = if *y == 0 { 1.0 } else { 0.0 };
		assert!(x.iter().all(|v| *v == expected), "{y}: {x:?}");
	}
	assert_eq!(import::images(&root, (4, 3), true).unwrap().root(), d.root());
	let rgb = import::images(&root, (4, 3), false).unwrap();
	assert_eq!(rgb.features, 36);
	assert_ne!(rgb.root(), d.root());

	std::fs::write(root.join("dog/c.png"), b"\x89PNG broken").unwrap();
	let e = import::images(&root, (4, 3), true).unwrap_err().to_string();
	assert!(e.contains("dog/c.png: image: not an image that can be read"), "{e}");
}

/// A colour image is read channel-major (the red plane row by row, then green, then blue), the
/// `C x H x W` order a convolution reads: a picture whose colours differ by channel and by
/// position shows each value where a `[3, H, W]` input expects it.
#[test]
fn colour_images_import_channel_major() {
	use image::{Rgb, RgbImage};
	let dir = tempfile::tempdir().unwrap();
	let root = dir.path().join("pictures");
	std::fs::create_dir_all(root.join("one")).unwrap();
	std::fs::create_dir_all(root.join("two")).unwrap();
	// 3 x 2 pixels: red 10 * x, green 100 + y, blue 200 (no resize: the size is kept).
	let img = RgbImage::from_fn(3, 2, |x, y| Rgb([10 * x as u8, 100 + y as u8, 200]));
	img.save(root.join("one/a.png")).unwrap();
	img.save(root.join("two/a.png")).unwrap();
	let d = import::images(&root, (3, 2), false).unwrap();
	assert_eq!(d.features, 18);
	let pixels: Vec<u32> = d.samples[0].0.iter().map(|v| (v * 255.0).round() as u32).collect();
	assert_eq!(
		pixels,
		[0, 10, 20, 0, 10, 20, 100, 100, 100, 101, 101, 101, 200, 200, 200, 200, 200, 200]
	);
}

/// A text corpus for next-token prediction: the characters are the classes, each sample the
/// ids of the context before a position and its label the character there; a second import
/// gives the same root; bad text is refused with its line.
#[test]
fn a_text_corpus_imports_the_same_every_time() {
	let dir = tempfile::tempdir().unwrap();
	let path = write(dir.path(), "corpus.txt", "abba cab\nbaca abc\n");
	let data = import::text(&path, 3).unwrap();
	// Vocabulary in sorted order: "\n", " ", "a", "b", "c".
	let Labels::Classes(names) = &data.manifest.labels else { panic!("no classes") };
	assert_eq!(names, &["\n", " ", "a", "b", "c"]);
	assert_eq!((data.features, data.classes), (3, 5));
	assert_eq!(data.samples.len(), 18 - 3);
	// "abb" -> "a", then "bba" -> " ".
	assert_eq!(data.samples[0], (vec![2.0, 3.0, 3.0], 2));
	assert_eq!(data.samples[1], (vec![3.0, 3.0, 2.0], 1));
	assert_eq!(data.manifest.feature_names, ["t-3", "t-2", "t-1"]);
	assert_eq!(data.manifest.source, "text");
	assert_eq!(import::text(&path, 3).unwrap().root(), data.root());
	assert_ne!(import::text(&path, 4).unwrap().root(), data.root());

	// Not UTF-8 on line 2; too short for the context; no context; one character only.
	let bad = dir.path().join("bad.txt");
	std::fs::write(&bad, b"fine\nbro\xffken\n").unwrap();
	let e = import::text(&bad, 2).unwrap_err().to_string();
	assert!(e.contains("bad.txt: row 2: byte 8 is not UTF-8 text"), "{e}");
	let e = import::text(&path, 40).unwrap_err().to_string();
	assert!(e.contains("18 characters: a context of 40 needs more"), "{e}");
	let e = import::text(&path, 0).unwrap_err().to_string();
	assert!(e.contains("a context of 0 tokens"), "{e}");
	let same = write(dir.path(), "same.txt", "aaaaaa");
	let e = import::text(&same, 2).unwrap_err().to_string();
	assert!(e.contains("1 class: a classifier needs two or more"), "{e}");
}

/// A text corpus for a sequence model: each sample is `context + 1` character ids every
/// `stride` characters, the vocabulary the class names; bad contexts and strides are refused.
#[test]
fn a_text_corpus_imports_as_sequences_for_a_transformer() {
	let dir = tempfile::tempdir().unwrap();
	let path = write(dir.path(), "corpus.txt", "abba cab\nbaca abc\n");
	let data = import::text_sequences(&path, 3, 2).unwrap();
	let Labels::Classes(names) = &data.manifest.labels else { panic!("no classes") };
	assert_eq!(names, &["\n", " ", "a", "b", "c"]);
	assert_eq!((data.features, data.classes), (4, 5));
	// 18 characters: windows of 4 start at 0, 2, ..., 14.
	assert_eq!(data.samples.len(), 8);
	// "abba", then "ba c".
	assert_eq!(data.samples[0], (vec![2.0, 3.0, 3.0, 2.0], 0));
	assert_eq!(data.samples[1], (vec![3.0, 2.0, 1.0, 4.0], 0));
	assert_eq!(data.manifest.feature_names, ["t0", "t1", "t2", "t3"]);
	assert_ne!(import::text_sequences(&path, 3, 1).unwrap().root(), data.root());
	assert_ne!(import::text(&path, 4).unwrap().root(), data.root());
	let e = import::text_sequences(&path, 200, 1).unwrap_err().to_string();
	assert!(e.contains("a context of 200 tokens: from 1 to 128"), "{e}");
	let e = import::text_sequences(&path, 3, 0).unwrap_err().to_string();
	assert!(e.contains("a stride of 0"), "{e}");
	let e = import::text_sequences(&path, 20, 1).unwrap_err().to_string();
	assert!(e.contains("18 characters: a context of 20 needs 21"), "{e}");
}
