//! Element descent: narrowing a disputed operation whose inputs are too large for one leaf
//! ([`crate::referee::fits_leaf`]) down to one output element (PROTOCOL.md, "Dispute game",
//! steps 4 and 5).
//!
//! 1. Both sides open their output hash `o_j = H(rows, cols, row_root, col_root)`
//!    ([`TensorOpening`]). A side whose shape is not the program's loses. Otherwise their row
//!    roots differ (or, if not, their column roots), and the descent walks that tree.
//! 2. Round by round, both reveal the two children of the node they dispute; the chain checks
//!    each pair against the side's node and goes to the first child on which they differ
//!    ([`Cursor`]). A node with one child (the last of an odd level, which
//!    `binary-merkle-tree` promotes unhashed) is the same as its child and is skipped.
//! 3. At a leaf, both reveal that row (or column): the chain checks it against the side's leaf
//!    hash and takes the first position where the two differ: the disputed element `(r, c)`.
//! 4. Anyone hands the chain the one row or column of each input that element reads
//!    ([`ElementEvidence`]), each proven against the input's opening, whose hash must be the
//!    agreed one; [`element_value`] computes the element with the same RepOps as the whole
//!    operation. The leaf costs `O(K)` values, whatever the tensor sizes (except that a column
//!    of the batch reads every sample of the batch).

use crate::{
	commit::{col_leaf_bits, row_leaf_bits, tensor_commitment, tensor_hash_of, SampleProof},
	program::{self, Op, OpKind, Pointwise, Source},
	referee::{check_agreed, check_sample, reads_samples, source_shape, RefereeError},
	repops::{
		self, clip, image, layers,
		sequence::{self, token_position},
		Matrix,
	},
	task::TrainingSpec,
	trace::ProofItems,
};
use alloc::vec::Vec;
use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;
use sp_core::H256;
use sp_runtime::traits::{BlakeTwo256, Hash};

/// The longest row or column a tensor of a valid spec has (widths and batch are at most 4096).
pub const MAX_LINE: u32 = 4096;

/// The most values one element leaf reads (about 1.2 MB of call data). Only a column of the
/// batch comes near it: it reads every sample of the batch (`256 x 1024` is 262 144 values).
pub const MAX_ELEMENT_VALUES: u64 = 300_000;

/// The most Merkle proofs one element leaf checks (its input lines and batch samples): what
/// `settle_element`'s benchmark checks (a column of a batch of 256 samples, each with its
/// proof, and two lines), so its weight bounds the hashing. An element reading more (a
/// convolution's weight gradient reads every row of two tensors) is no leaf.
pub const MAX_ELEMENT_PROOFS: u64 = 258;

/// The Merkle proofs element `(r, c)` of `op` comes with: one per input line and per batch
/// sample it reads.
pub fn element_proofs(
	spec: &TrainingSpec,
	program: &program::StepProgram,
	op: &Op,
	r: u32,
	c: u32,
) -> u64 {
	let lines = op
		.inputs
		.iter()
		.zip(element_lines(spec, program, op, r, c))
		.filter(|(s, _)| **s != Source::Batch)
		.fold(0u64, |acc, (_, lines)| acc.saturating_add(lines.len() as u64));
	lines.saturating_add(batch_rows(spec, program, op, r, c).len() as u64)
}

/// A side's answer in the element descent; which one is due depends on the stage.
#[derive(Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, Debug)]
pub enum DescentAnswer {
	/// The opening of the side's output hash.
	Opening(TensorOpening),
	/// The two children of the disputed node.
	Children(H256, H256),
	/// The disputed line's values, as bits.
	Line(sp_runtime::BoundedVec<u32, sp_core::ConstU32<MAX_LINE>>),
	/// The partial sums of the disputed element of a product, as bits ([`partials`]).
	Partials(sp_runtime::BoundedVec<u32, sp_core::ConstU32<MAX_LINE>>),
}

/// Which of a tensor's two trees a descent walks.
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
pub enum Axis {
	/// The tree over the rows.
	Rows,
	/// The tree over the columns.
	Columns,
}

/// The preimage of a tensor's hash.
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
pub struct TensorOpening {
	/// Rows.
	pub rows: u32,
	/// Columns.
	pub cols: u32,
	/// Merkle root over the rows.
	pub row_root: H256,
	/// Merkle root over the columns.
	pub col_root: H256,
}

impl TensorOpening {
	/// The opening of `m`'s hash.
	pub fn of(m: &Matrix) -> Self {
		let c = tensor_commitment(m);
		Self { rows: m.rows, cols: m.cols, row_root: c.row_root, col_root: c.col_root }
	}

	/// The tensor hash this opens.
	pub fn hash(&self) -> H256 {
		tensor_hash_of(self.rows, self.cols, &self.row_root, &self.col_root)
	}

	/// The root of the tree along `axis`.
	pub fn root(&self, axis: Axis) -> H256 {
		match axis {
			Axis::Rows => self.row_root,
			Axis::Columns => self.col_root,
		}
	}

	/// The number of lines (leaves) along `axis`, and the length of each.
	pub fn lines(&self, axis: Axis) -> (u32, u32) {
		match axis {
			Axis::Rows => (self.rows, self.cols),
			Axis::Columns => (self.cols, self.rows),
		}
	}
}

/// The leaf of line `i` along `axis` (a row or a column) with values `bits`.
pub fn line_leaf(axis: Axis, i: u32, bits: &[u32]) -> Vec<u8> {
	match axis {
		Axis::Rows => row_leaf_bits(i, bits),
		Axis::Columns => col_leaf_bits(i, bits),
	}
}

/// Line `i` of `m` along `axis`, as bits.
pub fn line(m: &Matrix, axis: Axis, i: u32) -> Vec<u32> {
	match axis {
		Axis::Rows => m.row(i).unwrap_or_default().iter().map(|v| v.to_bits()).collect(),
		Axis::Columns => m.col(i).map(|v| v.to_bits()).collect(),
	}
}

/// An inner node of `binary-merkle-tree`: the hash of the two children's concatenation.
pub fn inner_node(left: &H256, right: &H256) -> H256 {
	let mut both = [0u8; 64];
	let (l, r) = both.split_at_mut(32);
	l.copy_from_slice(left.as_bytes());
	r.copy_from_slice(right.as_bytes());
	BlakeTwo256::hash(&both)
}

/// The number of nodes at `level` (0: the leaves) of a tree over `leaves` leaves.
fn level_width(leaves: u32, level: u32) -> u64 {
	let n = u64::from(leaves);
	let shift = level.min(63);
	// ceil(n / 2^level)
	n.saturating_add((1u64 << shift).saturating_sub(1)) >> shift
}

/// A node of a tree over `leaves` leaves, in `binary-merkle-tree`'s layout.
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
pub struct Cursor {
	/// The level, 0 at the leaves.
	pub level: u32,
	/// The index within the level.
	pub index: u32,
}

impl Cursor {
	/// The root of a tree over `leaves` leaves, moved down past single-child nodes.
	pub fn root(leaves: u32) -> Self {
		let mut level = 0;
		while level_width(leaves, level) > 1 {
			level = level.saturating_add(1);
		}
		Self { level, index: 0 }.skip_single(leaves)
	}

	/// Whether this node has two children.
	pub fn has_two_children(&self, leaves: u32) -> bool {
		let Some(below) = self.level.checked_sub(1) else { return false };
		u64::from(self.index).saturating_mul(2).saturating_add(1) < level_width(leaves, below)
	}

	/// Moves down through nodes with one child (each equal to its child).
	pub fn skip_single(mut self, leaves: u32) -> Self {
		while self.level > 0 && !self.has_two_children(leaves) {
			self =
				Self { level: self.level.saturating_sub(1), index: self.index.saturating_mul(2) };
		}
		self
	}

	/// The left (`right = false`) or right child, moved past single-child nodes.
	pub fn child(&self, right: bool, leaves: u32) -> Self {
		let index = self.index.saturating_mul(2).saturating_add(u32::from(right));
		Self { level: self.level.saturating_sub(1), index }.skip_single(leaves)
	}

	/// Whether this is a leaf.
	pub fn is_leaf(&self) -> bool {
		self.level == 0
	}
}

/// Every level of a tensor's tree along `axis` (the answering side keeps it for a descent).
#[derive(Clone, Debug)]
pub struct LineTree {
	levels: Vec<Vec<H256>>,
}

impl LineTree {
	/// The tree of `m` along `axis`.
	pub fn new(m: &Matrix, axis: Axis) -> Self {
		let count = match axis {
			Axis::Rows => m.rows,
			Axis::Columns => m.cols,
		};
		let leaves: Vec<H256> =
			(0..count).map(|i| BlakeTwo256::hash(&line_leaf(axis, i, &line(m, axis, i)))).collect();
		let mut levels = alloc::vec![leaves];
		while levels.last().is_some_and(|l| l.len() > 1) {
			let below = levels.last().cloned().unwrap_or_default();
			let up = below
				.chunks(2)
				.map(|pair| match pair {
					[l, r] => inner_node(l, r),
					[single] => *single,
					_ => H256::zero(),
				})
				.collect();
			levels.push(up);
		}
		Self { levels }
	}

	/// The root.
	pub fn root(&self) -> H256 {
		self.levels.last().and_then(|l| l.first()).copied().unwrap_or_default()
	}

	/// The node at `c`.
	pub fn node(&self, c: Cursor) -> Option<H256> {
		self.levels.get(c.level as usize)?.get(c.index as usize).copied()
	}

	/// The two children of the node at `c`.
	pub fn children(&self, c: Cursor) -> Option<(H256, H256)> {
		let below = self.levels.get(c.level.checked_sub(1)? as usize)?;
		let left = c.index.checked_mul(2)? as usize;
		Some((*below.get(left)?, *below.get(left.checked_add(1)?)?))
	}
}

/// One row or column of an input tensor, proven against the input's opening.
#[derive(Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, Debug)]
pub struct InputLine {
	/// The opening of the input's hash.
	pub opening: TensorOpening,
	/// The line's values, as bits.
	pub values: Vec<u32>,
	/// Its Merkle proof against the opening's root along the line's axis.
	pub items: ProofItems,
}

impl InputLine {
	/// Line `index` along `axis` of `m`, with its opening and proof.
	pub fn of(m: &Matrix, axis: Axis, index: u32) -> Option<Self> {
		let count = match axis {
			Axis::Rows => m.rows,
			Axis::Columns => m.cols,
		};
		let leaves = (0..count).map(|i| line_leaf(axis, i, &line(m, axis, i)));
		let proof = binary_merkle_tree::merkle_proof::<BlakeTwo256, _, _>(leaves, index);
		Some(Self {
			opening: TensorOpening::of(m),
			values: line(m, axis, index),
			items: ProofItems::try_from(proof.proof).ok()?,
		})
	}
}

/// What a party hands the chain to settle one disputed element of operation `j`.
#[derive(Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, TypeInfo, Debug, Default)]
pub struct ElementEvidence {
	/// `o_0 .. o_{j-1}`.
	pub outputs: Vec<H256>,
	/// The pre-state's tensor hashes (empty unless the operation reads a state tensor).
	pub state: Vec<H256>,
	/// For each input other than the batch, in input order, the line the element reads.
	pub inputs: Vec<InputLine>,
	/// The batch samples the element reads ([`batch_rows`]), in that order.
	pub samples: Vec<SampleProof>,
}

/// The lines (axis and index) of each input that element `(r, c)` of `op` reads, input by
/// input. Most elements read one line of each input; a convolution's weight and bias
/// gradients read every row of theirs (every sample's image), and its input gradient every
/// filter.
pub fn element_lines(
	spec: &TrainingSpec,
	program: &program::StepProgram,
	op: &Op,
	r: u32,
	c: u32,
) -> Vec<Vec<(Axis, u32)>> {
	use Axis::*;
	let one = |axis: Axis, i: u32| alloc::vec![(axis, i)];
	let all_rows = |n: usize| -> Vec<(Axis, u32)> {
		let rows = op.inputs.get(n).map(|s| source_shape(spec, program, s).0).unwrap_or(0);
		(0..rows).map(|i| (Rows, i)).collect()
	};
	match op.kind {
		OpKind::BiasAdd => alloc::vec![one(Rows, r), one(Columns, c)],
		OpKind::MatMul | OpKind::MatMulTn | OpKind::MatMulNt => {
			product_lines(op, r, c).map(|l| l.map(|(a, i)| one(a, i)).to_vec()).unwrap_or_default()
		}
		OpKind::Mean => alloc::vec![one(Columns, 0)],
		OpKind::ColSum => alloc::vec![one(Columns, c)],
		OpKind::Conv2d(g) => {
			let filter = g.output().position(c).0;
			alloc::vec![one(Rows, r), one(Rows, filter), one(Rows, 0)]
		}
		OpKind::Conv2dInputGrad(_) => alloc::vec![one(Rows, r), all_rows(1)],
		OpKind::Conv2dWeightGrad(_) => alloc::vec![all_rows(0), all_rows(1)],
		OpKind::ConvBiasGrad(_) => alloc::vec![all_rows(0)],
		OpKind::LayerNorm => alloc::vec![one(Rows, r), one(Rows, 0), one(Rows, 0)],
		OpKind::LayerNormInputGrad => alloc::vec![one(Rows, r), one(Rows, 0), one(Rows, r)],
		OpKind::LayerNormGammaGrad => alloc::vec![all_rows(0), one(Columns, c)],
		// A token's row reads its sample's features (its tokens and its targets).
		OpKind::Embed(g) => {
			let (sample, t) = token_position(g.context, r);
			alloc::vec![one(Rows, sample), one(Columns, c), one(Rows, t)]
		}
		OpKind::EmbedGrad(_) => alloc::vec![all_rows(0), one(Columns, c)],
		OpKind::PositionGrad(_) => alloc::vec![one(Columns, c)],
		OpKind::TokenXent(g) | OpKind::TokenXentBackward(g) => {
			alloc::vec![one(Rows, r), one(Rows, token_position(g.context, r).0)]
		}
		// Every row of the element's sequence (uniform, so element `(0, 0)` is the worst).
		OpKind::Attention(g) => alloc::vec![sequence_rows(g.context, r)],
		OpKind::AttentionGrad(g) => {
			alloc::vec![sequence_rows(g.context, r), sequence_rows(g.context, r)]
		}
		// Every gradient's column of row sums; the factor's one value.
		OpKind::ClipCoefficient(_) => op.inputs.iter().map(|_| one(Columns, 0)).collect(),
		OpKind::ClipScale => alloc::vec![one(Rows, r), one(Rows, 0)],
		_ => op.inputs.iter().map(|_| one(Rows, r)).collect(),
	}
}

/// The rows of the sequence token row `r` belongs to.
fn sequence_rows(context: u32, r: u32) -> Vec<(Axis, u32)> {
	let start = token_position(context, r).0.saturating_mul(context);
	(start..start.saturating_add(context)).map(|i| (Axis::Rows, i)).collect()
}

/// The line of each input that element `(r, c)` of a product reads (`None` for an operation
/// that is not a product): a row of `A` and a column of `B` for `A·B`, two columns for `Aᵀ·B`,
/// two rows for `A·Bᵀ`.
pub fn product_lines(op: &Op, r: u32, c: u32) -> Option<[(Axis, u32); 2]> {
	use Axis::*;
	match op.kind {
		OpKind::MatMul => Some([(Rows, r), (Columns, c)]),
		OpKind::MatMulTn => Some([(Columns, r), (Columns, c)]),
		OpKind::MatMulNt => Some([(Rows, r), (Rows, c)]),
		_ => None,
	}
}

/// The batch rows element `(r, c)` of `op` reads: the sample of row `r` for a row of the
/// batch or its label, every sample for a column of the batch or every row of it.
pub fn batch_rows(
	spec: &TrainingSpec,
	program: &program::StepProgram,
	op: &Op,
	r: u32,
	c: u32,
) -> Vec<u32> {
	if !reads_samples(op) {
		return Vec::new();
	}
	let mut rows = Vec::new();
	for (s, lines) in op.inputs.iter().zip(element_lines(spec, program, op, r, c)) {
		if *s != Source::Batch {
			continue;
		}
		for (axis, i) in lines {
			match axis {
				Axis::Columns => return (0..spec.batch_size).collect(),
				Axis::Rows if !rows.contains(&i) => rows.push(i),
				Axis::Rows => {}
			}
		}
	}
	if rows.is_empty() {
		rows.push(r);
	}
	rows
}

/// The values the chain handles to settle element `(r, c)` of `op` (every input line and
/// every sample's features), or the terms it computes if more, to hold against
/// [`MAX_ELEMENT_VALUES`].
pub fn element_cost(
	spec: &TrainingSpec,
	program: &program::StepProgram,
	op: &Op,
	r: u32,
	c: u32,
) -> u64 {
	let lines = op.inputs.iter().zip(element_lines(spec, program, op, r, c)).fold(
		0u64,
		|acc, (s, lines)| {
			let (rows, cols) = source_shape(spec, program, s);
			lines.iter().fold(acc, |acc, (axis, _)| {
				acc.saturating_add(u64::from(if *axis == Axis::Rows { cols } else { rows }))
			})
		},
	);
	let samples = batch_rows(spec, program, op, r, c).len() as u64;
	let values = lines.saturating_add(samples.saturating_mul(u64::from(spec.dataset.features)));
	// An image operator's element may take more terms than it reads values (a max pool's
	// gradient re-finds the pick of every window holding the position): the leaf bounds both.
	let terms = op.kind.element_terms(u64::from(spec.batch_size)).map_or(0, |(_, t)| t);
	values.max(terms)
}

/// The element of each input that term `k` of element `(r, c)` of a product multiplies
/// (`None` for an operation that is not a product).
pub fn term_positions(op: &Op, r: u32, c: u32, k: u32) -> Option<[(u32, u32); 2]> {
	match op.kind {
		OpKind::MatMul => Some([(r, k), (k, c)]),
		OpKind::MatMulTn => Some([(k, r), (k, c)]),
		OpKind::MatMulNt => Some([(r, k), (c, k)]),
		_ => None,
	}
}

/// The number of terms of each element of a product: its contraction length.
pub fn terms(spec: &TrainingSpec, program: &program::StepProgram, op: &Op) -> u32 {
	let first = op.inputs.first().map(|s| source_shape(spec, program, s)).unwrap_or((0, 0));
	match op.kind {
		OpKind::MatMul | OpKind::MatMulNt => first.1,
		OpKind::MatMulTn => first.0,
		_ => 0,
	}
}

/// The values the chain handles to settle one term of a product (a row of each input, a
/// whole sample for the batch), to hold against [`MAX_ELEMENT_VALUES`].
pub fn term_cost(spec: &TrainingSpec, program: &program::StepProgram, op: &Op) -> u64 {
	op.inputs.iter().fold(0u64, |acc, s| {
		let length = match s {
			Source::Batch => spec.dataset.features,
			_ => source_shape(spec, program, s).1,
		};
		acc.saturating_add(u64::from(length))
	})
}

/// The partial sums of `dot(a, b)` ([`repops::dot`]): `acc_k` as bits for each `k`, the last
/// the element's value ([`repops::fma`] canonicalizes every one).
pub fn partials(a: &[f32], b: &[f32]) -> Vec<u32> {
	let mut acc = 0.0f32;
	a.iter()
		.zip(b)
		.map(|(x, y)| {
			acc = repops::fma(*x, *y, acc);
			acc.to_bits()
		})
		.collect()
}

/// The partial sums of element `(r, c)` of product `j` in a run of the step, from the same
/// lines [`element_value`] reads, the last being the run's own output value (the sum itself
/// for an honest run; a run with a fault in that operation answers consistently with it).
pub fn element_partials(
	run: &crate::referee::StepRun,
	j: u32,
	(r, c): (u32, u32),
) -> Option<Vec<u32>> {
	let op = run.program.ops.get(j as usize)?;
	let mut lines = Vec::with_capacity(2);
	for (source, (axis, index)) in op.inputs.iter().zip(product_lines(op, r, c)?) {
		let values: Vec<f32> = match source {
			Source::Batch => {
				let features = |row: u32| run.samples.get(row as usize).map(|s| &s.features);
				match axis {
					Axis::Rows => features(index)?.iter().map(|v| f32::from_bits(*v)).collect(),
					Axis::Columns => (0..run.samples.len() as u32)
						.map(|row| features(row)?.get(index as usize).map(|v| f32::from_bits(*v)))
						.collect::<Option<_>>()?,
				}
			}
			Source::State(i) => line(run.state.get(*i as usize)?, axis, index)
				.into_iter()
				.map(f32::from_bits)
				.collect(),
			Source::Op(k) => line(run.outputs.get(*k as usize)?, axis, index)
				.into_iter()
				.map(f32::from_bits)
				.collect(),
		};
		lines.push(values);
	}
	let mut sums = partials(lines.first()?, lines.get(1)?);
	let out = run.outputs.get(j as usize)?;
	let own =
		out.data.get((r as usize).checked_mul(out.cols as usize)?.checked_add(c as usize)?)?;
	*sums.last_mut()? = own.to_bits();
	Some(sums)
}

/// The evidence for term `k` of element `(r, c)` of product `j` from a run of the step: the
/// row of each input holding the value the term multiplies (the batch's sample).
pub fn term_evidence(
	run: &crate::referee::StepRun,
	j: u32,
	(r, c): (u32, u32),
	k: u32,
) -> Option<ElementEvidence> {
	let op = run.program.ops.get(j as usize)?;
	let earlier = run.outputs.get(..j as usize)?;
	let mut inputs = Vec::new();
	let mut samples = Vec::new();
	for (source, (i, _)) in op.inputs.iter().zip(term_positions(op, r, c, k)?) {
		let m = match source {
			Source::Batch => {
				samples.push(run.samples.get(i as usize)?.clone());
				continue;
			}
			Source::State(s) => run.state.get(*s as usize)?,
			Source::Op(o) => earlier.get(*o as usize)?,
		};
		inputs.push(InputLine::of(m, Axis::Rows, i)?);
	}
	Some(with_agreed(run, op, earlier, inputs, samples))
}

/// Element evidence of `inputs` and `samples` with the agreed hashes it carries: `o_0 ..
/// o_{j-1}` (`earlier`), and the pre-state's tensor hashes when `op` reads the state.
fn with_agreed(
	run: &crate::referee::StepRun,
	op: &Op,
	earlier: &[crate::repops::Matrix],
	inputs: Vec<InputLine>,
	samples: Vec<SampleProof>,
) -> ElementEvidence {
	let reads_state = op.inputs.iter().any(|s| matches!(s, Source::State(_)));
	ElementEvidence {
		outputs: earlier.iter().map(crate::commit::tensor_hash).collect(),
		state: if reads_state {
			run.state.iter().map(crate::commit::tensor_hash).collect()
		} else {
			Vec::new()
		},
		inputs,
		samples,
	}
}

/// The values of `line`, given as line `index` along `axis` of input `source` (a state tensor
/// or an earlier output), once checked: its opening hashes to the input's agreed hash in
/// `evidence` with the program's shape, and the line has that shape's length and a Merkle
/// proof against the opening's root along `axis`.
fn agreed_line<'a>(
	spec: &TrainingSpec,
	program: &program::StepProgram,
	source: &Source,
	evidence: &ElementEvidence,
	line: Option<&'a InputLine>,
	(axis, index): (Axis, u32),
) -> Result<&'a [u32], RefereeError> {
	let expected = match source {
		Source::State(i) => evidence.state.get(*i as usize),
		Source::Op(k) => evidence.outputs.get(*k as usize),
		Source::Batch => None,
	}
	.ok_or(RefereeError::WrongInput)?;
	let l = line.ok_or(RefereeError::WrongInput)?;
	let o = &l.opening;
	let (count, length) = o.lines(axis);
	if o.hash() != *expected
		|| (o.rows, o.cols) != source_shape(spec, program, source)
		|| index >= count
		|| l.values.len() != length as usize
		|| !binary_merkle_tree::verify_proof::<BlakeTwo256, _, _>(
			&o.root(axis),
			l.items.iter().copied(),
			count,
			index,
			&line_leaf(axis, index, &l.values),
		) {
		return Err(RefereeError::WrongInput);
	}
	Ok(&l.values)
}

/// The true bits of partial sum `k` of element `(r, c)` of product `j` of step `step`, given
/// the agreed partial sum `prev` before it: `fma(a_k, b_k, prev)` (canonical, [`repops::fma`]), with `a_k` and `b_k`
/// from `evidence` (the row of each input holding them, proven against the input's opening
/// whose hash must be the agreed one; the batch's sample, proven against the dataset root).
#[allow(clippy::too_many_arguments)]
pub fn term_value(
	spec: &TrainingSpec,
	step: u32,
	j: u32,
	(r, c): (u32, u32),
	k: u32,
	prev: u32,
	(pre_state, link): (&H256, &H256),
	evidence: &ElementEvidence,
) -> Result<u32, RefereeError> {
	let program = program::step_program(spec).map_err(|_| RefereeError::BadSpec)?;
	let op = program.ops.get(j as usize).ok_or(RefereeError::NoSuchOperation)?;
	let positions = term_positions(op, r, c, k).ok_or(RefereeError::NoSuchOperation)?;
	if r >= op.rows || c >= op.cols || k >= terms(spec, &program, op) {
		return Err(RefereeError::NoSuchOperation);
	}
	if term_cost(spec, &program, op) > MAX_ELEMENT_VALUES {
		return Err(RefereeError::TooLarge);
	}
	check_agreed(&program, op, j, pre_state, link, &evidence.outputs, &evidence.state)?;
	let indices = repops::batch_indices(spec.seed, step, spec.batch_size, spec.dataset.samples);
	let mut given = evidence.inputs.iter();
	let mut samples = evidence.samples.iter();
	let mut values = [0.0f32; 2];
	for ((source, (i, col)), slot) in op.inputs.iter().zip(positions).zip(values.iter_mut()) {
		let bits = match source {
			Source::Batch => {
				let s = samples.next().ok_or(RefereeError::WrongBatch)?;
				check_sample(spec, *indices.get(i as usize).ok_or(RefereeError::WrongBatch)?, s)?;
				s.features.get(col as usize).copied().ok_or(RefereeError::WrongBatch)?
			}
			Source::State(_) | Source::Op(_) => {
				let row =
					agreed_line(spec, &program, source, evidence, given.next(), (Axis::Rows, i))?;
				row.get(col as usize).copied().ok_or(RefereeError::WrongInput)?
			}
		};
		*slot = f32::from_bits(bits);
	}
	if given.next().is_some() || samples.next().is_some() {
		return Err(RefereeError::WrongInput);
	}
	let [a, b] = values;
	Ok(repops::fma(a, b, f32::from_bits(prev)).to_bits())
}

/// The true bits of element `(r, c)` of operation `j` of step `step`, from `evidence` checked
/// against the agreed pre-state `pre_state` and link `link` (as [`crate::referee`] does for a
/// whole operation).
pub fn element_value(
	spec: &TrainingSpec,
	step: u32,
	j: u32,
	(r, c): (u32, u32),
	pre_state: &H256,
	link: &H256,
	evidence: &ElementEvidence,
) -> Result<u32, RefereeError> {
	let program = program::step_program(spec).map_err(|_| RefereeError::BadSpec)?;
	let op = program.ops.get(j as usize).ok_or(RefereeError::NoSuchOperation)?;
	if r >= op.rows || c >= op.cols {
		return Err(RefereeError::NoSuchOperation);
	}
	if element_cost(spec, &program, op, r, c) > MAX_ELEMENT_VALUES
		|| element_proofs(spec, &program, op, r, c) > MAX_ELEMENT_PROOFS
	{
		return Err(RefereeError::TooLarge);
	}
	check_agreed(&program, op, j, pre_state, link, &evidence.outputs, &evidence.state)?;

	// The batch samples the element reads, each at the index the seed draws for its row.
	let rows = batch_rows(spec, &program, op, r, c);
	if evidence.samples.len() != rows.len() {
		return Err(RefereeError::WrongBatch);
	}
	let indices = repops::batch_indices(spec.seed, step, spec.batch_size, spec.dataset.samples);
	for (row, s) in rows.iter().zip(&evidence.samples) {
		check_sample(spec, *indices.get(*row as usize).ok_or(RefereeError::WrongBatch)?, s)?;
	}
	let sample =
		|row: u32| rows.iter().position(|x| *x == row).and_then(|p| evidence.samples.get(p));

	// Every line, checked against the agreed hash of its tensor; the lines an element reads
	// of one input, one after the other.
	let mut given = evidence.inputs.iter();
	let mut lines: Vec<Vec<f32>> = Vec::with_capacity(op.inputs.len());
	for (source, reads) in op.inputs.iter().zip(element_lines(spec, &program, op, r, c)) {
		let mut values: Vec<f32> = Vec::new();
		for (axis, index) in reads {
			let bits: Vec<u32> = match source {
				Source::Batch => match axis {
					Axis::Rows => sample(index).ok_or(RefereeError::WrongBatch)?.features.clone(),
					Axis::Columns => rows
						.iter()
						.map(|row| {
							sample(*row).and_then(|s| s.features.get(index as usize).copied())
						})
						.collect::<Option<Vec<u32>>>()
						.ok_or(RefereeError::WrongBatch)?,
				},
				Source::State(_) | Source::Op(_) => {
					agreed_line(spec, &program, source, evidence, given.next(), (axis, index))?
						.to_vec()
				}
			};
			let (_, expected) = source_shape(spec, &program, source);
			if axis == Axis::Rows && bits.len() != expected as usize {
				return Err(RefereeError::WrongBatch);
			}
			values.extend(bits.into_iter().map(f32::from_bits));
		}
		lines.push(values);
	}
	if given.next().is_some() {
		return Err(RefereeError::WrongInput);
	}
	let label = || sample(r).map(|s| s.label).ok_or(RefereeError::WrongBatch);
	let arg = |n: usize| lines.get(n).map(Vec::as_slice).ok_or(RefereeError::WrongInput);
	let at = |n: usize, k: u32| arg(n)?.get(k as usize).copied().ok_or(RefereeError::WrongInput);
	let value = match op.kind {
		OpKind::MatMul | OpKind::MatMulTn | OpKind::MatMulNt => {
			let (a, b) = (arg(0)?, arg(1)?);
			if a.len() != b.len() {
				return Err(RefereeError::WrongInput);
			}
			repops::dot(a.iter().copied(), b.iter().copied())
		}
		OpKind::BiasAdd => repops::add(at(0, c)?, at(1, 0)?),
		OpKind::Relu => repops::relu(at(0, c)?),
		OpKind::ReluBackward => repops::relu_backward(at(0, c)?, at(1, c)?),
		OpKind::SoftmaxXent => repops::softmax_xent_row(arg(0)?, label()?)?,
		OpKind::SoftmaxXentBackward => {
			let row = repops::softmax_xent_backward_row(arg(0)?, label()?, spec.batch_size)?;
			row.get(c as usize).copied().ok_or(RefereeError::WrongInput)?
		}
		OpKind::SquaredError => repops::squared_error_row(arg(0)?, label()?)?,
		OpKind::SquaredErrorBackward => {
			repops::squared_error_backward_row(arg(0)?, label()?, spec.batch_size)?
		}
		OpKind::Mean => repops::mean(arg(0)?),
		OpKind::ColSum => repops::sum(arg(0)?.iter().copied()),
		OpKind::Conv2d(g) => {
			let (o, oy, ox) = g.output().position(c);
			image::conv2d_at(&g, arg(0)?, arg(1)?, at(2, o)?, (oy, ox))
		}
		OpKind::Conv2dInputGrad(g) => {
			image::conv2d_input_grad_at(&g, arg(0)?, arg(1)?, g.input.position(c))
		}
		OpKind::Conv2dWeightGrad(g) => {
			image::conv2d_weight_grad_at(&g, arg(0)?, arg(1)?, spec.batch_size, r, c)
		}
		OpKind::ConvBiasGrad(g) => image::conv_bias_grad_at(&g, arg(0)?, spec.batch_size, c),
		OpKind::MaxPool2d(g) => image::max_pool_at(&g, arg(0)?, g.output().position(c)),
		OpKind::MaxPool2dGrad(g) => {
			image::max_pool_grad_at(&g, arg(0)?, arg(1)?, g.input.position(c))
		}
		OpKind::AvgPool2d(g) => image::avg_pool_at(&g, arg(0)?, g.output().position(c)),
		OpKind::AvgPool2dGrad(g) => image::avg_pool_grad_at(&g, arg(0)?, g.input.position(c)),
		OpKind::Add => repops::add(at(0, c)?, at(1, c)?),
		OpKind::Gelu => layers::gelu(at(0, c)?),
		OpKind::GeluBackward => layers::gelu_backward(at(0, c)?, at(1, c)?),
		OpKind::LayerNorm => {
			let row = layers::layer_norm_row(arg(0)?, arg(1)?, arg(2)?);
			row.get(c as usize).copied().ok_or(RefereeError::WrongInput)?
		}
		OpKind::LayerNormInputGrad => {
			let row = layers::layer_norm_input_grad_row(arg(0)?, arg(1)?, arg(2)?);
			row.get(c as usize).copied().ok_or(RefereeError::WrongInput)?
		}
		OpKind::LayerNormGammaGrad => {
			layers::layer_norm_gamma_grad_at(arg(0)?, op.cols, arg(1)?, c)
		}
		OpKind::Dropout(m) | OpKind::DropoutGrad(m) => {
			layers::dropout_at(spec.seed, step, m.layer, m.p.to_f32(), op.cols, (r, c), at(0, c)?)
		}
		OpKind::Embed(g) => sequence::embed_at(&g, arg(0)?, arg(1)?, arg(2)?, r, c),
		OpKind::EmbedGrad(g) => sequence::embed_grad_at(&g, arg(0)?, arg(1)?, r),
		OpKind::PositionGrad(g) => sequence::position_grad_at(&g, arg(0)?, r),
		OpKind::TokenXent(g) => sequence::token_xent_at(&g, arg(0)?, arg(1)?, r)?,
		OpKind::TokenXentBackward(g) => {
			let row = sequence::token_xent_backward_row(&g, arg(0)?, arg(1)?, r, op.rows)?;
			row.get(c as usize).copied().ok_or(RefereeError::WrongInput)?
		}
		OpKind::Attention(g) => {
			sequence::attention_at(&g, arg(0)?, token_position(g.context, r).1, c)
		}
		OpKind::AttentionGrad(g) => {
			sequence::attention_grad_at(&g, arg(0)?, arg(1)?, token_position(g.context, r).1, c)
		}
		OpKind::SumSquares => clip::sum_squares(arg(0)?),
		OpKind::ClipCoefficient(max_norm) => {
			clip::clip_coefficient(lines.iter().flatten().copied(), max_norm.to_f32())
		}
		OpKind::ClipScale => clip::clip_scale(at(0, c)?, at(1, 0)?),
		_ => {
			let f = Pointwise::new(spec, op.kind, step)?;
			let mut args = [0.0f32; 3];
			for (n, slot) in args.iter_mut().enumerate().take(op.inputs.len()) {
				*slot = at(n, c)?;
			}
			f.apply(&args)
		}
	};
	Ok(repops::canon(value).to_bits())
}

/// The evidence for element `(r, c)` of operation `j` from a run of the step
/// ([`crate::referee::StepRun`]).
pub fn element_evidence(
	run: &crate::referee::StepRun,
	spec: &TrainingSpec,
	j: u32,
	(r, c): (u32, u32),
) -> Option<ElementEvidence> {
	let op = run.program.ops.get(j as usize)?;
	let earlier = run.outputs.get(..j as usize)?;
	let mut inputs = Vec::new();
	for (source, reads) in op.inputs.iter().zip(element_lines(spec, &run.program, op, r, c)) {
		let m = match source {
			Source::Batch => continue,
			Source::State(i) => run.state.get(*i as usize)?,
			Source::Op(k) => earlier.get(*k as usize)?,
		};
		for (axis, index) in reads {
			inputs.push(InputLine::of(m, axis, index)?);
		}
	}
	let samples = batch_rows(spec, &run.program, op, r, c)
		.iter()
		.map(|row| run.samples.get(*row as usize).cloned())
		.collect::<Option<Vec<_>>>()?;
	Some(with_agreed(run, op, earlier, inputs, samples))
}

#[cfg(test)]
#[path = "descent_tests.rs"]
mod tests;
