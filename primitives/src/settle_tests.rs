#![allow(
	clippy::unwrap_used,
	clippy::expect_used,
	clippy::arithmetic_side_effects,
	clippy::indexing_slicing
)]

use super::*;
use crate::{
	descent::element_evidence,
	program::initial_state,
	program::OpKind,
	referee::StepRun,
	task::{synthetic_dataset, Optimizer},
};
use codec::Encode;

fn sgd(momentum: f32) -> Optimizer {
	Optimizer::sgd(0.1, momentum)
}

fn adam() -> Optimizer {
	Optimizer::adam(0.01)
}

/// A spec of these widths on a dataset of `samples` samples (the root is not needed here).
fn spec(widths: &[u32], optimizer: Optimizer, batch: u32, samples: u32) -> TrainingSpec {
	let mut s = TrainingSpec::example_mlp(widths, optimizer, batch);
	s.dataset.samples = samples;
	s
}

/// Every operation's whole and element evidence, built by an honest side for step 1 of `s`
/// on `data`, is within the bounds the rule computes.
fn assert_bounds_cover(s: &TrainingSpec, data: &[(Vec<f32>, u32)]) {
	let program = step_program(s).unwrap();
	let state = initial_state(s, &program).unwrap();
	let run = StepRun::new(s, 1, state, data).unwrap();
	for j in 0..program.ops.len() as u32 {
		let op = &program.ops[j as usize];
		let whole = run.evidence(j).unwrap().encode().len() as u64 + 2 * 8;
		assert!(whole + EXTRINSIC_OVERHEAD / 2 <= whole_bytes(s, &program, j), "op {j}");
		for (r, c) in [(0, 0), (op.rows - 1, op.cols - 1), (op.rows / 2, op.cols / 2)] {
			let ev = element_evidence(&run, s, j, (r, c)).unwrap().encode().len() as u64;
			assert!(
				ev + 2 * 8 + EXTRINSIC_OVERHEAD / 2 <= element_bytes(s, &program, j),
				"op {j} {:?} ({r}, {c}): {ev} bytes",
				op.kind
			);
		}
	}
}

#[test]
fn the_bounds_cover_the_evidence_an_honest_side_builds() {
	for (widths, optimizer, batch) in [
		(&[6u32, 5, 4, 3][..], adam(), 8u32),
		(&[7, 9, 3][..], sgd(0.9), 5),
		(&[4, 2][..], sgd(0.0), 3),
	] {
		let data = synthetic_dataset(3, 37, widths[0], *widths.last().unwrap());
		let mut s = TrainingSpec::example_mlp(widths, optimizer, batch).on_dataset(&data);
		s.steps = 2;
		assert_bounds_cover(&s, &data);
	}
	// A net of every image operation, whose weight gradients read every row.
	let data = synthetic_dataset(3, 37, 50, 3);
	let s = crate::program::tests::small_cnn(crate::task::Loss::SoftmaxCrossEntropy, adam(), 4)
		.on_dataset(&data);
	assert_bounds_cover(&s, &data);
	// Layer normalization (whose scale's gradient reads every row), GELU, a residual block,
	// dropout, AdamW.
	let data = synthetic_dataset(3, 37, 6, 3);
	let adamw = Optimizer::adamw(0.01, 0.05);
	let s = crate::program::tests::small_mixed(crate::task::Loss::SoftmaxCrossEntropy, adamw, 5)
		.on_dataset(&data);
	assert_bounds_cover(&s, &data);
	// A transformer: embeddings (the token table's gradient reads every sample), attention
	// (an element reads every row of its sequence), the per-token loss.
	let data = crate::task::synthetic_tokens(3, 37, 4, 5);
	let mut s = crate::program::tests::small_transformer(adamw, 3).on_dataset(&data);
	assert_bounds_cover(&s, &data);
	// Gradient clipping: the factor reads every gradient's column of row sums.
	s.max_grad_norm = Some(crate::task::F32Bits::from_f32(0.01));
	assert_bounds_cover(&s, &data);
	let data = synthetic_dataset(3, 37, 6, 3);
	let mut s = TrainingSpec::example_mlp(&[6, 5, 4, 3], sgd(0.9), 8).on_dataset(&data);
	s.max_grad_norm = Some(crate::task::F32Bits::from_f32(0.01));
	assert_bounds_cover(&s, &data);
}

/// Attack: an element of an attention's gradient (a key's or a value's) recomputes the scores
/// of every later position against every earlier one. With a long context and wide heads that
/// is millions of multiply-adds for one element, far above what `settle_element` is weighed
/// at: such a spec is refused; a small transformer's attention is settled.
#[test]
fn an_attention_too_wide_to_settle_one_element_is_refused() {
	use crate::{
		repops::image::ImageShape,
		task::{Layer, Layers, Loss, Model},
	};
	let spec = |context: u32, dim: u32, heads: u32| {
		let model = Model::Graph {
			input: ImageShape::flat(context + 1),
			layers: Layers::truncate_from(vec![
				Layer::Embedding { vocab: 64, dim },
				Layer::Linear { out: 3 * dim },
				Layer::Attention { heads },
				Layer::Linear { out: 64 },
			]),
		};
		let mut s = TrainingSpec::example_graph(model, Loss::SoftmaxCrossEntropy, adam(), 32);
		s.dataset.samples = 10_000;
		s
	};
	let refused = check(&spec(128, 512, 1), &LeafBudget::CHAIN);
	let Err(Unsettleable::Element { op, values, .. }) = refused else { panic!("{refused:?}") };
	let program = step_program(&spec(128, 512, 1)).unwrap();
	assert!(matches!(program.ops[op as usize].kind, OpKind::AttentionGrad(_)));
	assert_eq!(values, 128 * 129 * 514);
	let small = check(&spec(64, 64, 4), &LeafBudget::CHAIN);
	assert!(small.is_ok(), "{small:?}");
}

/// The reference transformer (two blocks, four heads, context 64, on characters) can be
/// settled: within the bounds on state tensors and layers, and every operation a whole or an
/// element leaf.
#[test]
fn the_reference_transformer_is_settleable() {
	let mut s = TrainingSpec::example_transformer(Default::default(), 86, 64);
	s.dataset.samples = 3285;
	let program = step_program(&s).unwrap();
	assert_eq!(program.params, 30);
	let report = check(&s, &LeafBudget::CHAIN).unwrap();
	assert_eq!(report.terms, 0);
	assert!(report.elements > 0, "{report:?}");
	assert_eq!((report.whole + report.elements) as usize, program.ops.len());
}

/// The reference CNN (LeNet-style, on the 8x8 digits) can be settled, every operation whole.
#[test]
fn the_reference_cnn_is_settleable() {
	let data = synthetic_dataset(3, 1797, 64, 10);
	let s = TrainingSpec::example_cnn(Default::default()).on_dataset(&data);
	let report = check(&s, &LeafBudget::CHAIN).unwrap();
	assert_eq!((report.elements, report.terms), (0, 0));
	assert_eq!(report.whole as usize, step_program(&s).unwrap().ops.len());
}

#[test]
fn a_small_spec_is_settled_whole() {
	let data = synthetic_dataset(3, 1797, 64, 10);
	let s = TrainingSpec::example_digits(Default::default()).on_dataset(&data);
	let report = check(&s, &LeafBudget::CHAIN).unwrap();
	assert_eq!(report.elements, 0);
	assert!(report.whole > 0);
}

/// Issue item 3: widths 784-1000-1000-10, batch 16. `A1·W2` handles 1.0 M values, inside the
/// whole-operation value bound, but its evidence is over 4 MB, more than an extrinsic may
/// carry: it must go to the element descent, whose leaf is small.
#[test]
fn evidence_that_fits_the_value_bound_but_not_a_block_goes_element_by_element() {
	let s = spec(&[784, 1000, 1000, 10], sgd(0.0), 16, 60_000);
	let program = step_program(&s).unwrap();
	let j = program
		.ops
		.iter()
		.position(|o| {
			o.kind == crate::program::OpKind::MatMul && (o.rows, o.cols) == (16, 1000) && {
				let (v, _) = op_cost(&s, &program, o);
				v > 1_000_000
			}
		})
		.unwrap() as u32;
	let op = &program.ops[j as usize];
	assert!(LeafBound::CHAIN.admits(op_cost(&s, &program, op)));
	assert!(whole_bytes(&s, &program, j) > 4_000_000);
	assert_eq!(plan(&s, &program, j, &LeafBudget::CHAIN), Ok(Plan::Elements));
	assert!(element_bytes(&s, &program, j) < 100_000);
}

/// Issue item 2: the chain recomputed the initial state whole, so on a larger state a dispute
/// over `h_0` voided (and a solver committing random hashes was paid). Such a state is now
/// decided element by element, so these specs are accepted.
#[test]
fn a_large_initial_state_is_settled_element_by_element() {
	// 784-512-512-10 with momentum: 1.34 M values of state, beyond a whole recomputation.
	let s = spec(&[784, 512, 512, 10], sgd(0.9), 64, 60_000);
	let report = check(&s, &LeafBudget::CHAIN).unwrap();
	assert_eq!(report.initial_values, 1_339_412);
	assert!(report.initial_values > u64::from(crate::repops::MAX_CHAIN_ELEMENTS));
	// Half the width: its larger products element by element.
	let s = spec(&[784, 256, 256, 10], sgd(0.9), 64, 60_000);
	let report = check(&s, &LeafBudget::CHAIN).unwrap();
	assert_eq!(report.initial_values, 2 * (784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10));
	assert!(report.elements > 0);
	assert!(report.element_worst.1 <= LeafBudget::CHAIN.bytes);
}

/// Issue item 4: the checkpoint interval makes one segment the whole run when it is as long;
/// its recomputation must fit the time a dispute gives it.
#[test]
fn a_segment_too_long_to_recompute_in_time_is_refused() {
	let mut s = spec(&[512, 512, 256, 10], sgd(0.0), 256, 60_000);
	s.steps = 1_000_000;
	let program = step_program(&s).unwrap();
	let work = step_work(&s, &program);
	// Two products of 256 x 512 x 512 multiply-adds (forward and weight gradient), and more.
	assert!(work > 2 * 256 * 512 * 512);
	s.checkpoint_interval = 1_000_000;
	let Err(Unsettleable::Recomputation { steps: 1_000_000, blocks }) =
		check(&s, &LeafBudget::CHAIN)
	else {
		panic!("accepted")
	};
	assert_eq!(blocks, work * 1_000_000 / LeafBudget::CHAIN.work_per_block);
	s.checkpoint_interval = 64;
	let report = check(&s, &LeafBudget::CHAIN).unwrap();
	assert_eq!(report.segment_blocks, work * 64 / LeafBudget::CHAIN.work_per_block);
}

/// Issue item 2: an element of the first layer's weight gradient reads a column of the batch,
/// every sample of it; with 1024 samples of 784 features that is 0.8 M values, more than one
/// element leaf handles, so such specs were refused. The element's sum is now split term by
/// term: one term reads one sample and one row of the other input.
#[test]
fn an_element_too_large_for_a_leaf_is_settled_term_by_term() {
	let s = spec(&[784, 16, 10], sgd(0.0), 1024, 60_000);
	let program = step_program(&s).unwrap();
	let j = program.batch_column_product().unwrap();
	let op = &program.ops[j as usize];
	assert!(element_cost(&s, &program, op, 0, 0) > MAX_ELEMENT_VALUES);
	assert_eq!(plan(&s, &program, j, &LeafBudget::CHAIN), Ok(Plan::Terms));
	assert_eq!(descent::term_cost(&s, &program, op), 784 + 16);
	assert!(term_bytes(&s, &program, j) < 20_000);
	let report = check(&s, &LeafBudget::CHAIN).unwrap();
	assert_eq!(report.terms, 1);
}

/// The target: every model up to widths of 4096 and batch 1024 (here up to the
/// spec's own limits: nine layer widths, batch 4096) is accepted, each leaf within one
/// block's budget, with a checkpoint interval of 1.
#[test]
fn every_model_up_to_the_largest_a_spec_allows_is_settleable() {
	for layers in [2usize, 3, 9] {
		for width in [1u32, 10, 4096] {
			for batch in [1u32, 1024, 4096] {
				for optimizer in [sgd(0.9), adam()] {
					let mut widths = vec![width; layers];
					widths[layers - 1] = width.max(2);
					let mut s = spec(&widths, optimizer, batch, 60_000);
					s.checkpoint_interval = 1;
					// With Adam, clipping too (its factor reads every gradient's row sums).
					if optimizer == adam() {
						s.max_grad_norm = Some(crate::task::F32Bits::from_f32(1.0));
					}
					let r = check(&s, &LeafBudget::CHAIN).unwrap_or_else(|e| {
						panic!("{widths:?}, batch {batch}, {optimizer:?}: {e:?}")
					});
					assert!(r.whole_worst.2 <= LeafBudget::CHAIN.bytes);
					assert!(r.element_worst.0 <= MAX_ELEMENT_VALUES);
					assert!(r.element_worst.1 <= LeafBudget::CHAIN.bytes);
				}
			}
		}
	}
}

/// The table of docs/protocol.md: what the rule says of models of several sizes
/// (`cargo test -p trainet-primitives settle::tests::leaf_table -- --nocapture`).
#[test]
fn leaf_table() {
	let rows: [(&[u32], Optimizer, u32); 10] = [
		(&[64, 32, 10], sgd(0.9), 32),
		(&[784, 128, 10], sgd(0.9), 64),
		(&[512, 512, 2], adam(), 256),
		(&[784, 512, 512, 10], sgd(0.0), 64),
		(&[784, 512, 512, 10], sgd(0.9), 64),
		(&[784, 256, 256, 10], adam(), 256),
		(&[1024, 1024, 1024, 10], sgd(0.0), 256),
		(&[4096, 4096, 10], sgd(0.0), 1024),
		(&[4096, 4096, 4096, 10], adam(), 1024),
		(&[784, 16, 10], sgd(0.0), 1024),
	];
	println!("| model | optimizer | batch | state values | whole / element / term leaves | worst whole leaf (values, MACs, bytes) | worst element or term leaf (values, bytes) | C = 64 recompute blocks |");
	println!("|---|---|---|---|---|---|---|---|");
	for (widths, optimizer, batch) in rows {
		let mut s = spec(widths, optimizer, batch, 60_000);
		s.steps = 100_000;
		s.checkpoint_interval = 64;
		let name = widths.iter().map(u32::to_string).collect::<Vec<_>>().join("-");
		let opt = match optimizer {
			Optimizer::Sgd { momentum, .. } if momentum.to_f32() == 0.0 => "SGD",
			Optimizer::Sgd { .. } => "SGD + momentum",
			Optimizer::Adam { .. } => "Adam",
			Optimizer::AdamW { .. } => "AdamW",
		};
		match check(&s, &LeafBudget::CHAIN) {
			Ok(r) => println!(
				"| {name} | {opt} | {batch} | {} | {} / {} / {} | {}, {}, {} | {}, {} | {} |",
				r.initial_values,
				r.whole,
				r.elements,
				r.terms,
				r.whole_worst.0,
				r.whole_worst.1,
				r.whole_worst.2,
				r.element_worst.0,
				r.element_worst.1,
				r.segment_blocks
			),
			Err(e) => println!("| {name} | {opt} | {batch} | refused: {e:?} | | | | |"),
		}
	}
}

/// Attack: a max pool of a large window moved by one reads two rows per element of its
/// gradient, but re-finds the pick of every window holding the position, each over the whole
/// window (a million comparisons for a 32-wide window on a 64-wide image): counted in values
/// read alone, that element leaf passed the rule and cost the chain far more than its weight.
#[test]
fn an_element_that_computes_more_than_a_leaf_may_is_refused() {
	use crate::{
		repops::image::ImageShape,
		task::{Layer, Layers, Loss, Model},
	};
	let model = |kernel| Model::Graph {
		input: ImageShape { channels: 1, height: 64, width: 64 },
		layers: Layers::truncate_from(vec![
			Layer::Conv2d { out_channels: 1, kernel: 1, stride: 1, padding: 0 },
			Layer::MaxPool2d { kernel, stride: 1 },
			Layer::Flatten,
			Layer::Linear { out: 2 },
		]),
	};
	let spec = |kernel| {
		let s = TrainingSpec::example_graph(model(kernel), Loss::SoftmaxCrossEntropy, adam(), 16);
		let mut s = s;
		s.dataset.samples = 1000;
		s
	};
	let program = step_program(&spec(32)).unwrap();
	let grad = program.ops.iter().position(|o| matches!(o.kind, OpKind::MaxPool2dGrad(_)));
	let refused = check(&spec(32), &LeafBudget::CHAIN);
	let Err(Unsettleable::Element { op, values, .. }) = refused else { panic!("{refused:?}") };
	// A million comparisons: every window holding the position, each over 32 x 32 values.
	assert_eq!((Some(op as usize), values), (grad, 32 * 32 * 32 * 32));
	// A small window is settled.
	let small = check(&spec(2), &LeafBudget::CHAIN);
	assert!(small.is_ok(), "{small:?}");
}

/// Attack: a convolution's weight gradient reads every row of its input and of its output
/// gradient, one Merkle proof each. On a large batch an element of it fits the value bound
/// but checks more proofs than `settle_element`'s weight was benchmarked at: such an operation
/// is no element leaf, and a spec whose operation is too large to be a whole one is refused.
#[test]
fn an_element_that_checks_more_proofs_than_a_leaf_may_is_refused() {
	use crate::{
		repops::image::ImageShape,
		task::{Layer, Layers, Loss, Model},
	};
	let model = Model::Graph {
		input: ImageShape { channels: 1, height: 16, width: 16 },
		layers: Layers::truncate_from(vec![
			Layer::Conv2d { out_channels: 4, kernel: 3, stride: 1, padding: 1 },
			Layer::Flatten,
			Layer::Linear { out: 2 },
		]),
	};
	let spec = |batch| {
		let mut s =
			TrainingSpec::example_graph(model.clone(), Loss::SoftmaxCrossEntropy, adam(), batch);
		s.dataset.samples = 5000;
		s
	};
	// 512 samples: the filters' gradient reads 512 samples and 512 rows of the output gradient.
	let refused = check(&spec(512), &LeafBudget::CHAIN);
	let Err(Unsettleable::Element { proofs, .. }) = refused else { panic!("{refused:?}") };
	assert_eq!(proofs, 1024);
	// 64 samples: every operation is a whole leaf or an element one.
	let small = check(&spec(64), &LeafBudget::CHAIN);
	assert!(small.is_ok(), "{small:?}");
}
