//! Benchmarks of every call at its worst case, and of `on_initialize` with a full queue.

use super::*;
use frame_benchmarking::v2::*;
use frame_support::traits::Hooks;
use frame_system::RawOrigin;
use trainet_primitives::{
	commit::{chain, op_trace},
	market::{Element, TraceCommitment},
	referee::OpEvidence,
	trace::{trace_proof, trace_root, TracePoints},
};

/// Steps of the benchmarked traces for `open`: a proof of 12 levels (proof checks cost one
/// hash per level, at most 24 for the longest task; the weights allow for that).
const STEPS: u32 = 4095;

/// A trace of `steps` steps; `salt` makes different traces.
fn states(steps: u32, salt: u64) -> alloc::vec::Vec<H256> {
	(0..=steps)
		.map(|t| {
			<sp_runtime::traits::BlakeTwo256 as sp_runtime::traits::Hash>::hash(&(salt, t).encode())
		})
		.collect()
}

fn committed<T: Config>(solver: &T::AccountId, steps: u32) -> TaskId {
	committed_with::<T>(solver, steps, None)
}

fn committed_with<T: Config>(
	solver: &T::AccountId,
	steps: u32,
	spec: Option<trainet_primitives::task::TrainingSpec>,
) -> TaskId {
	let s = states(steps, 0);
	let commitment = TraceCommitment {
		trace_root: trace_root(&s),
		steps,
		final_state: s.last().copied().unwrap_or_default(),
		model_hash: H256::zero(),
	};
	T::Tasks::benchmark_committed_task(solver, commitment, spec)
}

fn challenger<T: Config>(i: u32) -> T::AccountId {
	let who: T::AccountId = account("challenger", i, 0);
	T::Stake::benchmark_staker(&who, T::ChallengeBond::get().saturating_mul(4u32.into()));
	who
}

/// Opens a dispute by challenger `i` with a trace that differs from the solver's everywhere.
fn open_dispute<T: Config>(task: TaskId, steps: u32, i: u32) -> Result<DisputeId, BenchmarkError> {
	let who = challenger::<T>(i);
	let s = states(steps, u64::from(i) + 1);
	let id = NextDisputeId::<T>::get();
	let proof = trace_proof(&s, steps).ok_or(BenchmarkError::Stop("no proof"))?;
	Pallet::<T>::open(RawOrigin::Signed(who).into(), task, trace_root(&s), proof)?;
	Ok(id)
}

/// A dispute over one step where the challenger (challenger 0) has revealed and the solver
/// has not, with `v` other disputes against the same task.
fn half_revealed<T: Config>(v: u32) -> Result<(T::AccountId, DisputeId), BenchmarkError> {
	let solver: T::AccountId = account("solver", 0, 0);
	let task = committed::<T>(&solver, 1);
	let id = open_dispute::<T>(task, 1, 0)?;
	for i in 1..=v {
		open_dispute::<T>(task, 1, i)?;
	}
	let challenger: T::AccountId = account("challenger", 0, 0);
	let proof = trace_proof(&states(1, 1), 0).ok_or(BenchmarkError::Stop("no proof"))?;
	Pallet::<T>::reveal(RawOrigin::Signed(challenger).into(), id, 1, proof)?;
	Ok((solver, id))
}

/// Puts dispute `id` (over a one-step trace) into the operator-level game over step 0 from
/// pre-state `pre`, with `game` adjusted by `f`.
fn into_operations<T: Config>(
	id: DisputeId,
	ops: u32,
	pre: H256,
	f: impl FnOnce(&mut OpGame),
) -> Result<(), BenchmarkError> {
	let mut d = Disputes::<T>::get(id).ok_or(BenchmarkError::Stop("no dispute"))?;
	let mut game = OpGame::new(0, ops, pre).ok_or(BenchmarkError::Stop("no game"))?;
	f(&mut game);
	d.bisection = Bisection::from_ends(1, 2).ok_or(BenchmarkError::Stop("no interval"))?;
	d.agreed_state = Some(pre);
	d.phase = DisputePhase::Operations(game);
	Disputes::<T>::insert(id, d);
	Ok(())
}

/// Puts dispute `id` (over a one-step trace) into a segment game over the `len` steps after
/// step 0, with `game` adjusted by `f`.
fn into_segment<T: Config>(
	id: DisputeId,
	len: u32,
	f: impl FnOnce(&mut SegmentGame),
) -> Result<(), BenchmarkError> {
	let mut d = Disputes::<T>::get(id).ok_or(BenchmarkError::Stop("no dispute"))?;
	let mut game = SegmentGame::new(0, len).ok_or(BenchmarkError::Stop("no game"))?;
	f(&mut game);
	d.points = TracePoints::new(len, len).ok_or(BenchmarkError::Stop("no points"))?;
	d.bisection = Bisection::from_ends(1, 2).ok_or(BenchmarkError::Stop("no interval"))?;
	d.agreed_state = Some(H256::repeat_byte(1));
	d.phase = DisputePhase::Segment(game);
	Disputes::<T>::insert(id, d);
	Ok(())
}

/// Outputs of an op trace; `salt` makes different ones.
fn outputs(ops: u32, salt: u64) -> alloc::vec::Vec<H256> {
	states(ops.saturating_sub(1), salt)
}

/// A dispute at the leaf of operation `pick(program)` of step 0 of a model of widths
/// `512, 512, 2` with a batch of 64 (Adam when `adam`, else SGD), and evidence for it: input
/// tensors made up with the program's shapes, the agreed trace made to match them. The
/// solver's output is wrong, so it loses.
fn leaf_case<T: Config>(
	adam: bool,
	pick: impl Fn(&trainet_primitives::program::StepProgram) -> Option<usize>,
) -> Result<(DisputeId, OpEvidence), BenchmarkError> {
	use trainet_primitives::{
		commit::{sample_proof, state_hash_of, tensor_hash},
		program::Source,
		referee::{fits_leaf, reads_samples},
		repops::{batch_indices, init_weights, TensorBits},
		task::{synthetic_dataset, Optimizer, TrainingSpec},
	};
	let data = synthetic_dataset(1, 64, 512, 2);
	let optimizer = if adam { Optimizer::adam(0.01) } else { Optimizer::sgd(0.1, 0.9) };
	let spec = TrainingSpec::example_mlp(&[512, 512, 2], optimizer, 64).on_dataset(&data);
	let program = step_program(&spec).map_err(|_| BenchmarkError::Stop("no program"))?;
	let j = pick(&program).ok_or(BenchmarkError::Stop("no such operation"))?;
	let op = program.ops.get(j).ok_or(BenchmarkError::Stop("no such operation"))?;
	if !fits_leaf(&spec, &program, op) {
		return Err(BenchmarkError::Stop("the operation does not fit a leaf"));
	}
	let hash = |salt: u64, i: usize| {
		let i = i as u64;
		<sp_runtime::traits::BlakeTwo256 as sp_runtime::traits::Hash>::hash(&(salt, i).encode())
	};
	let mut state: alloc::vec::Vec<H256> =
		(0..program.state_shapes.len()).map(|i| hash(7, i)).collect();
	let mut outputs: alloc::vec::Vec<H256> = (0..j).map(|k| hash(8, k)).collect();
	let mut inputs = alloc::vec::Vec::new();
	for (n, source) in op.inputs.iter().enumerate() {
		let (slot, shape) = match source {
			Source::Batch => continue,
			Source::State(i) => (state.get_mut(*i as usize), program.state_shapes.get(*i as usize)),
			Source::Op(k) => (outputs.get_mut(*k as usize), None),
		};
		let (rows, cols) = match (source, shape) {
			(Source::Op(k), _) => program
				.ops
				.get(*k as usize)
				.map(|o| (o.rows, o.cols))
				.ok_or(BenchmarkError::Stop("no input"))?,
			(_, Some(shape)) => *shape,
			_ => return Err(BenchmarkError::Stop("no input")),
		};
		let m = init_weights(spec.seed, n as u32, rows, cols)
			.map_err(|_| BenchmarkError::Stop("no tensor"))?;
		*slot.ok_or(BenchmarkError::Stop("no input"))? = tensor_hash(&m);
		inputs.push(TensorBits::from(&m));
	}
	let pre = state_hash_of(&state);
	let link = outputs.iter().fold(pre, |prev, o| chain(&prev, o));
	let samples = if reads_samples(op) {
		batch_indices(spec.seed, 0, spec.batch_size, spec.dataset.samples)
			.into_iter()
			.map(|i| sample_proof(&spec.dataset, &data, i))
			.collect::<Option<alloc::vec::Vec<_>>>()
			.ok_or(BenchmarkError::Stop("no sample"))?
	} else {
		alloc::vec::Vec::new()
	};
	let evidence = OpEvidence { outputs, state, inputs, samples };

	let solver: T::AccountId = account("solver", 0, 0);
	let task = committed_with::<T>(&solver, 1, Some(spec));
	let id = open_dispute::<T>(task, 1, 0)?;
	let ops = program.ops.len() as u32;
	into_operations::<T>(id, ops, pre, |g| {
		let wrong = H256::repeat_byte(0xee);
		let other = H256::repeat_byte(0xdd);
		g.roots.solver = Some(H256::repeat_byte(2));
		g.roots.challenger = Some(H256::repeat_byte(3));
		g.bisection = Bisection { agreed: j as u32, disputed: (j as u32).saturating_add(1) };
		g.agreed_link = link;
		g.disputed.solver = Some(OpLeaf { output: wrong, link: chain(&link, &wrong) });
		g.disputed.challenger = Some(OpLeaf { output: other, link: chain(&link, &other) });
	})?;
	Ok((id, evidence))
}

#[benchmarks]
mod benchmarks {
	use super::*;

	#[benchmark]
	fn open() -> Result<(), BenchmarkError> {
		let solver: T::AccountId = account("solver", 0, 0);
		let task = committed::<T>(&solver, STEPS);
		let who = challenger::<T>(0);
		let s = states(STEPS, 1);
		let proof = trace_proof(&s, STEPS).ok_or(BenchmarkError::Stop("no proof"))?;
		#[extrinsic_call]
		_(RawOrigin::Signed(who), task, trace_root(&s), proof);
		assert_eq!(DisputeCount::<T>::get(task), 1);
		Ok(())
	}

	/// The last reveal of the last round: bisection resolves and the leaf referee is asked,
	/// with `v` other disputes on the task (voided should the solver lose).
	#[benchmark]
	fn reveal(
		v: Linear<0, { T::MaxDisputesPerTask::get().saturating_sub(1) }>,
	) -> Result<(), BenchmarkError> {
		let (solver, id) = half_revealed::<T>(v)?;
		let proof = trace_proof(&states(1, 0), 0).ok_or(BenchmarkError::Stop("no proof"))?;
		#[extrinsic_call]
		_(RawOrigin::Signed(solver), id, 1, proof);
		Ok(())
	}

	/// The solver missed a round: it loses, `v` other disputes are voided, its stake is
	/// slashed and the task reopened.
	#[benchmark]
	fn timeout(
		v: Linear<0, { T::MaxDisputesPerTask::get().saturating_sub(1) }>,
	) -> Result<(), BenchmarkError> {
		let (_, id) = half_revealed::<T>(v)?;
		let deadline = Disputes::<T>::get(id).ok_or(BenchmarkError::Stop("no dispute"))?.deadline;
		frame_system::Pallet::<T>::set_block_number(deadline);
		#[extrinsic_call]
		_(RawOrigin::Signed(account("caller", 0, 0)), id);
		assert!(!Disputes::<T>::contains_key(id));
		Ok(())
	}

	/// `n` disputes time out in one block, each with the solver losing (at most
	/// `MaxTimeoutsPerBlock`, what one block ends).
	#[benchmark]
	fn on_initialize(
		n: Linear<0, { T::MaxTimeoutsPerBlock::get().min(T::MaxDeadlinesPerBlock::get()) }>,
	) -> Result<(), BenchmarkError> {
		for i in 0..n {
			let solver: T::AccountId = account("solver", i, 0);
			let task = committed::<T>(&solver, 1);
			let id = open_dispute::<T>(task, 1, i)?;
			let challenger: T::AccountId = account("challenger", i, 0);
			let proof = trace_proof(&states(1, u64::from(i) + 1), 0)
				.ok_or(BenchmarkError::Stop("no proof"))?;
			Pallet::<T>::reveal(RawOrigin::Signed(challenger).into(), id, 1, proof)?;
		}
		let deadline =
			frame_system::Pallet::<T>::block_number().saturating_add(T::RoundTimeout::get());
		frame_system::Pallet::<T>::set_block_number(deadline);
		#[block]
		{
			Pallet::<T>::on_initialize(deadline);
		}
		assert_eq!(Disputes::<T>::iter().count(), 0);
		Ok(())
	}

	/// The second op-trace root: the operator bisection's first round is scheduled.
	#[benchmark]
	fn commit_ops() -> Result<(), BenchmarkError> {
		let solver: T::AccountId = account("solver", 0, 0);
		let task = committed::<T>(&solver, 1);
		let id = open_dispute::<T>(task, 1, 0)?;
		into_operations::<T>(id, 64, H256::repeat_byte(1), |g| {
			g.roots.challenger = Some(H256::repeat_byte(2));
		})?;
		#[extrinsic_call]
		_(RawOrigin::Signed(solver), id, H256::repeat_byte(3));
		Ok(())
	}

	/// The second segment root: the first round inside the segment is scheduled.
	#[benchmark]
	fn commit_segment() -> Result<(), BenchmarkError> {
		let solver: T::AccountId = account("solver", 0, 0);
		let task = committed::<T>(&solver, 1);
		let id = open_dispute::<T>(task, 1, 0)?;
		into_segment::<T>(id, 1024, |g| g.roots.challenger = Some(H256::repeat_byte(2)))?;
		#[extrinsic_call]
		_(RawOrigin::Signed(solver), id, H256::repeat_byte(3));
		Ok(())
	}

	/// The last reveal inside a segment of 1 024 steps, against a 10-level proof: the sides
	/// disagree on the state after its first step, so that step goes to the leaf referee
	/// (with `v` other disputes on the task, voided should the solver lose there).
	#[benchmark]
	fn reveal_segment(
		v: Linear<0, { T::MaxDisputesPerTask::get().saturating_sub(1) }>,
	) -> Result<(), BenchmarkError> {
		const LEN: u32 = 1024;
		let solver: T::AccountId = account("solver", 0, 0);
		let task = committed::<T>(&solver, 1);
		let id = open_dispute::<T>(task, 1, 0)?;
		for i in 1..=v {
			open_dispute::<T>(task, 1, i)?;
		}
		let (honest, liar) = (states(LEN, 1), states(LEN, 2));
		into_segment::<T>(id, LEN, |g| {
			g.roots.solver = Some(trace_root(&liar));
			g.roots.challenger = Some(trace_root(&honest));
			g.bisection = Bisection { agreed: 0, disputed: 2 };
		})?;
		let challenger: T::AccountId = account("challenger", 0, 0);
		let proof = trace_proof(&honest, 1).ok_or(BenchmarkError::Stop("no proof"))?;
		Pallet::<T>::reveal_segment(RawOrigin::Signed(challenger).into(), id, 1, proof)?;
		let proof = trace_proof(&liar, 1).ok_or(BenchmarkError::Stop("no proof"))?;
		#[extrinsic_call]
		_(RawOrigin::Signed(solver), id, 1, proof);
		assert!(!matches!(Disputes::<T>::get(id).map(|d| d.phase), Some(DisputePhase::Segment(_))));
		Ok(())
	}

	/// The last reveal of the operator bisection: it ends at an operation where the solver's
	/// leaf does not chain from the agreed one, so the solver loses at once and `v` other
	/// disputes on the task are voided.
	#[benchmark]
	fn reveal_op(
		v: Linear<0, { T::MaxDisputesPerTask::get().saturating_sub(1) }>,
	) -> Result<(), BenchmarkError> {
		const OPS: u32 = 1024;
		let solver: T::AccountId = account("solver", 0, 0);
		let task = committed::<T>(&solver, 1);
		let id = open_dispute::<T>(task, 1, 0)?;
		for i in 1..=v {
			open_dispute::<T>(task, 1, i)?;
		}
		let pre = H256::repeat_byte(1);
		let honest = op_trace(&pre, outputs(OPS, 1));
		let liar = op_trace(&H256::repeat_byte(9), outputs(OPS, 2));
		let challenger: T::AccountId = account("challenger", 0, 0);
		into_operations::<T>(id, OPS, pre, |g| {
			g.roots.solver = Some(liar.root);
			g.roots.challenger = Some(honest.root);
			g.bisection = Bisection { agreed: 0, disputed: 2 };
		})?;
		let proof = honest.proof(0).ok_or(BenchmarkError::Stop("no proof"))?;
		Pallet::<T>::reveal_op(RawOrigin::Signed(challenger).into(), id, 1, proof)?;
		let proof = liar.proof(0).ok_or(BenchmarkError::Stop("no proof"))?;
		#[extrinsic_call]
		_(RawOrigin::Signed(solver), id, 1, proof);
		assert!(!Disputes::<T>::contains_key(id));
		Ok(())
	}

	/// The most multiply-adds one leaf executes: the first matmul of a model of widths
	/// `512, 512, 2` with a batch of 64 (`64 x 512` times `512 x 512`: `2^24` multiply-adds,
	/// 360 448 values with the batch's samples), which the solver got wrong: it loses.
	#[benchmark]
	fn settle_op_matmul() -> Result<(), BenchmarkError> {
		let (id, evidence) = leaf_case::<T>(false, |p| {
			p.ops.iter().position(|o| o.kind == trainet_primitives::program::OpKind::MatMul)
		})?;
		#[extrinsic_call]
		settle_op(RawOrigin::Signed(account("caller", 0, 0)), id, evidence);
		assert!(!Disputes::<T>::contains_key(id));
		Ok(())
	}

	/// The most values one leaf hashes: Adam's step of that model's `512 x 512` weights
	/// (three `2^18`-value inputs and the output: `2^20` values), which the solver got wrong.
	#[benchmark]
	fn settle_op_elementwise() -> Result<(), BenchmarkError> {
		let (id, evidence) = leaf_case::<T>(true, |p| {
			p.ops.iter().position(|o| o.kind == trainet_primitives::program::OpKind::AdamStep)
		})?;
		#[extrinsic_call]
		settle_op(RawOrigin::Signed(account("caller", 0, 0)), id, evidence);
		assert!(!Disputes::<T>::contains_key(id));
		Ok(())
	}

	/// The second opening of an element descent, with the solver's shape wrong: it loses,
	/// and `v` other disputes on the task are voided.
	#[benchmark]
	fn descend_opening(
		v: Linear<0, { T::MaxDisputesPerTask::get().saturating_sub(1) }>,
	) -> Result<(), BenchmarkError> {
		use trainet_primitives::descent::{DescentAnswer, TensorOpening};
		let solver: T::AccountId = account("solver", 0, 0);
		let task = committed::<T>(&solver, 1);
		let id = open_dispute::<T>(task, 1, 0)?;
		for i in 1..=v {
			open_dispute::<T>(task, 1, i)?;
		}
		let pre = H256::repeat_byte(1);
		let wrong = TensorOpening {
			rows: 1,
			cols: 1,
			row_root: H256::repeat_byte(4),
			col_root: H256::repeat_byte(5),
		};
		let other = TensorOpening { rows: 2, ..wrong };
		into_operations::<T>(id, 64, pre, |g| {
			g.roots.solver = Some(H256::repeat_byte(2));
			g.roots.challenger = Some(H256::repeat_byte(3));
			g.bisection = Bisection { agreed: 0, disputed: 1 };
			let (s, c) = (wrong.hash(), other.hash());
			g.disputed.solver = Some(OpLeaf { output: s, link: chain(&pre, &s) });
			g.disputed.challenger = Some(OpLeaf { output: c, link: chain(&pre, &c) });
			g.descent =
				Some(Descent { openings: Sides::new(None, Some(other)), ..Default::default() });
		})?;
		#[extrinsic_call]
		descend(RawOrigin::Signed(solver), id, DescentAnswer::Opening(wrong));
		assert!(!Disputes::<T>::contains_key(id));
		Ok(())
	}

	/// The second line of an element descent, of the longest length: the disputed element
	/// is found.
	#[benchmark]
	fn descend_line() -> Result<(), BenchmarkError> {
		use trainet_primitives::{
			descent::{line_leaf, Axis, Cursor, DescentAnswer, MAX_LINE},
			market::Walk,
		};
		let solver: T::AccountId = account("solver", 0, 0);
		let task = committed::<T>(&solver, 1);
		let id = open_dispute::<T>(task, 1, 0)?;
		let pre = H256::repeat_byte(1);
		let ours: alloc::vec::Vec<u32> = (0..MAX_LINE).collect();
		let mut theirs = ours.clone();
		if let Some(last) = theirs.last_mut() {
			*last = 0;
		}
		let node = |values: &[u32]| {
			<sp_runtime::traits::BlakeTwo256 as sp_runtime::traits::Hash>::hash(&line_leaf(
				Axis::Rows,
				0,
				values,
			))
		};
		let (s_node, c_node) = (node(&ours), node(&theirs));
		into_operations::<T>(id, 64, pre, |g| {
			g.roots.solver = Some(H256::repeat_byte(2));
			g.roots.challenger = Some(H256::repeat_byte(3));
			g.bisection = Bisection { agreed: 0, disputed: 1 };
			let (s, c) = (H256::repeat_byte(6), H256::repeat_byte(7));
			g.disputed.solver = Some(OpLeaf { output: s, link: chain(&pre, &s) });
			g.disputed.challenger = Some(OpLeaf { output: c, link: chain(&pre, &c) });
			// Both opened a one-row output of `MAX_LINE` columns: the line's length.
			let opening = |root: H256| trainet_primitives::descent::TensorOpening {
				rows: 1,
				cols: MAX_LINE,
				row_root: root,
				col_root: H256::zero(),
			};
			g.descent = Some(Descent {
				openings: Sides::new(Some(opening(s_node)), Some(opening(c_node))),
				walk: Some(Walk {
					axis: Axis::Rows,
					leaves: 1,
					cursor: Cursor { level: 0, index: 0 },
					nodes: Sides::new(s_node, c_node),
					reveals: Sides::none(),
				}),
				..Default::default()
			});
		})?;
		Lines::<T>::insert(
			id,
			Party::Challenger,
			BoundedVec::try_from(theirs).map_err(|_| BenchmarkError::Stop("line"))?,
		);
		let answer = DescentAnswer::Line(
			BoundedVec::try_from(ours).map_err(|_| BenchmarkError::Stop("line"))?,
		);
		#[extrinsic_call]
		descend(RawOrigin::Signed(solver), id, answer);
		assert!(matches!(
			Disputes::<T>::get(id).map(|d| d.phase),
			Some(DisputePhase::Operations(OpGame {
				descent: Some(Descent { element: Some(_), .. }),
				..
			}))
		));
		Ok(())
	}

	/// The costliest element leaf: an element of `Xᵀ · dZ` in the first layer, which reads a
	/// column of the batch, so every sample of a batch of 256 with 1024 features (with its
	/// proof); the solver's value is wrong, so it loses.
	#[benchmark]
	fn settle_element() -> Result<(), BenchmarkError> {
		use trainet_primitives::{
			commit::{sample_proof, tensor_hash},
			descent::{element_cost, Axis, ElementEvidence, InputLine, MAX_ELEMENT_VALUES},
			program::Source,
			repops::init_weights,
			task::{synthetic_dataset, Optimizer, TrainingSpec},
		};
		let data = synthetic_dataset(1, 256, 1024, 2);
		let sgd = Optimizer::sgd(0.1, 0.9);
		let spec = TrainingSpec::example_mlp(&[1024, 4, 2], sgd, 256).on_dataset(&data);
		let program = step_program(&spec).map_err(|_| BenchmarkError::Stop("no program"))?;
		let j = program
			.batch_column_product()
			.ok_or(BenchmarkError::Stop("no first-layer weight gradient"))? as usize;
		let op = program.ops.get(j).ok_or(BenchmarkError::Stop("no op"))?;
		let cost = element_cost(&spec, &program, op, 0, 0);
		assert!(cost <= MAX_ELEMENT_VALUES && cost > MAX_ELEMENT_VALUES / 2);
		let Some(Source::Op(k)) = op.inputs.get(1).copied() else {
			return Err(BenchmarkError::Stop("no gradient input"));
		};
		let dz_op = program.ops.get(k as usize).ok_or(BenchmarkError::Stop("no op"))?;
		let dz = init_weights(spec.seed, 9, dz_op.rows, dz_op.cols)
			.map_err(|_| BenchmarkError::Stop("no tensor"))?;
		let mut outputs: alloc::vec::Vec<H256> = (0..j)
			.map(|n| {
				<sp_runtime::traits::BlakeTwo256 as sp_runtime::traits::Hash>::hash(
					&(9u64, n as u64).encode(),
				)
			})
			.collect();
		if let Some(o) = outputs.get_mut(k as usize) {
			*o = tensor_hash(&dz);
		}
		let samples = (0..spec.batch_size)
			.map(|r| {
				let i = trainet_primitives::repops::batch_indices(spec.seed, 0, 256, 256)
					.get(r as usize)
					.copied()?;
				sample_proof(&spec.dataset, &data, i)
			})
			.collect::<Option<alloc::vec::Vec<_>>>()
			.ok_or(BenchmarkError::Stop("no sample"))?;
		let pre = H256::repeat_byte(1);
		let link = outputs.iter().fold(pre, |prev, o| chain(&prev, o));
		let evidence = ElementEvidence {
			outputs,
			state: alloc::vec::Vec::new(),
			inputs: alloc::vec![
				InputLine::of(&dz, Axis::Columns, 0).ok_or(BenchmarkError::Stop("no line"))?
			],
			samples,
		};
		let solver: T::AccountId = account("solver", 0, 0);
		let task = committed_with::<T>(&solver, 1, Some(spec));
		let id = open_dispute::<T>(task, 1, 0)?;
		let ops = program.ops.len() as u32;
		into_operations::<T>(id, ops, pre, |g| {
			let (s, c) = (H256::repeat_byte(6), H256::repeat_byte(7));
			g.roots.solver = Some(H256::repeat_byte(2));
			g.roots.challenger = Some(H256::repeat_byte(3));
			g.bisection = Bisection { agreed: j as u32, disputed: (j as u32).saturating_add(1) };
			g.agreed_link = link;
			g.disputed.solver = Some(OpLeaf { output: s, link: chain(&link, &s) });
			g.disputed.challenger = Some(OpLeaf { output: c, link: chain(&link, &c) });
			g.descent = Some(Descent {
				element: Some(Element { row: 0, col: 0, values: Sides::new(1, 2) }),
				..Default::default()
			});
		})?;
		#[extrinsic_call]
		settle_element(RawOrigin::Signed(account("caller", 0, 0)), id, evidence);
		assert!(!Disputes::<T>::contains_key(id));
		Ok(())
	}

	/// The second reveal of the initialization game, on the state with the most tensors
	/// (the deepest model, Adam: 96), differing only in the last: the state hash of 96 tensor
	/// hashes, the program's construction and the scan for the first difference.
	#[benchmark]
	fn reveal_state() -> Result<(), BenchmarkError> {
		use trainet_primitives::{
			commit::state_hash_of, market::InitGame, program::MAX_STATE_TENSORS, task::TrainingSpec,
		};
		let spec = TrainingSpec::example_deepest(H256::zero());
		let program = step_program(&spec).map_err(|_| BenchmarkError::Stop("no program"))?;
		assert_eq!(program.state_shapes.len() as u32, MAX_STATE_TENSORS);
		let theirs = outputs(MAX_STATE_TENSORS, 1);
		let mut ours = theirs.clone();
		if let Some(last) = ours.last_mut() {
			*last = H256::repeat_byte(9);
		}
		let solver: T::AccountId = account("solver", 0, 0);
		let task = committed_with::<T>(&solver, 1, Some(spec));
		let id = open_dispute::<T>(task, 1, 0)?;
		let mut d = Disputes::<T>::get(id).ok_or(BenchmarkError::Stop("no dispute"))?;
		d.bisection = Bisection::from_ends(0, 1).ok_or(BenchmarkError::Stop("no interval"))?;
		d.agreed_state = None;
		d.disputed.solver = state_hash_of(&ours);
		d.disputed.challenger = state_hash_of(&theirs);
		d.phase = DisputePhase::Initialization(InitGame {
			tensors: Sides::new(
				None,
				Some(BoundedVec::try_from(theirs).map_err(|_| BenchmarkError::Stop("tensors"))?),
			),
			..Default::default()
		});
		Disputes::<T>::insert(id, d);
		let ours = BoundedVec::try_from(ours).map_err(|_| BenchmarkError::Stop("tensors"))?;
		#[extrinsic_call]
		reveal_state(RawOrigin::Signed(solver), id, ours);
		assert!(matches!(
			Disputes::<T>::get(id).map(|d| d.phase),
			Some(DisputePhase::Initialization(InitGame { disputed: Some(_), .. }))
		));
		Ok(())
	}

	/// The second partial sums of an element split term by term, of the longest length (a
	/// batch of `MAX_LINE` samples), differing only in the last: the term is found.
	#[benchmark]
	fn descend_partials() -> Result<(), BenchmarkError> {
		use trainet_primitives::{
			descent::{DescentAnswer, MAX_LINE},
			market::TermGame,
			task::{Optimizer, TrainingSpec},
		};
		let sgd = Optimizer::sgd(0.1, 0.0);
		let spec = TrainingSpec::example_mlp(&[4, 4, 2], sgd, MAX_LINE);
		let program = step_program(&spec).map_err(|_| BenchmarkError::Stop("no program"))?;
		let j = program
			.batch_column_product()
			.ok_or(BenchmarkError::Stop("no first-layer weight gradient"))?;
		let theirs: alloc::vec::Vec<u32> = (0..MAX_LINE).collect();
		let mut ours = theirs.clone();
		if let Some(last) = ours.last_mut() {
			*last = 0;
		}
		let solver: T::AccountId = account("solver", 0, 0);
		let task = committed_with::<T>(&solver, 1, Some(spec));
		let id = open_dispute::<T>(task, 1, 0)?;
		let pre = H256::repeat_byte(1);
		let ops = program.ops.len() as u32;
		let (element_s, element_c) = (0, MAX_LINE.saturating_sub(1));
		into_operations::<T>(id, ops, pre, |g| {
			let (s, c) = (H256::repeat_byte(6), H256::repeat_byte(7));
			g.roots.solver = Some(H256::repeat_byte(2));
			g.roots.challenger = Some(H256::repeat_byte(3));
			g.bisection = Bisection { agreed: j, disputed: j.saturating_add(1) };
			g.disputed.solver = Some(OpLeaf { output: s, link: chain(&pre, &s) });
			g.disputed.challenger = Some(OpLeaf { output: c, link: chain(&pre, &c) });
			g.descent = Some(Descent {
				element: Some(Element { row: 0, col: 0, values: Sides::new(element_s, element_c) }),
				term: Some(TermGame::default()),
				..Default::default()
			});
		})?;
		Lines::<T>::insert(
			id,
			Party::Challenger,
			BoundedVec::try_from(theirs).map_err(|_| BenchmarkError::Stop("sums"))?,
		);
		let answer = DescentAnswer::Partials(
			BoundedVec::try_from(ours).map_err(|_| BenchmarkError::Stop("sums"))?,
		);
		#[extrinsic_call]
		descend(RawOrigin::Signed(solver), id, answer);
		assert!(matches!(
			Disputes::<T>::get(id).map(|d| d.phase),
			Some(DisputePhase::Operations(OpGame {
				descent: Some(Descent { term: Some(TermGame { k: Some(_), .. }), .. }),
				..
			}))
		));
		Ok(())
	}

	/// A request against the task whose program is the longest to build and whose state has
	/// the most tensors to draw rows over (the deepest model, Adam: 96 tensors): the spec's
	/// read, the program's construction, the draw of the rows, and the bond's lock.
	#[benchmark]
	fn request_availability() -> Result<(), BenchmarkError> {
		use trainet_primitives::task::TrainingSpec;
		let spec = TrainingSpec::example_deepest(H256::zero());
		let solver: T::AccountId = account("solver", 0, 0);
		let task = committed_with::<T>(&solver, STEPS, Some(spec));
		let who = challenger::<T>(0);
		let id = NextDisputeId::<T>::get();
		#[extrinsic_call]
		_(RawOrigin::Signed(who), task, STEPS);
		assert!(matches!(
			Disputes::<T>::get(id).map(|d| d.phase),
			Some(DisputePhase::Availability(_))
		));
		Ok(())
	}

	/// An answer whose every row is as long as a row may be (`MAX_WIDTH` values), on a task
	/// whose window has closed, so that the solver's win pays it too.
	#[benchmark]
	fn prove_availability() -> Result<(), BenchmarkError> {
		use trainet_primitives::{
			availability::{answer, Chunk},
			commit::state_hash,
			program::initial_state,
			task::{Optimizer, TrainingSpec, MAX_WIDTH},
		};
		let mut spec = TrainingSpec::example_mlp(&[2, MAX_WIDTH, 2], Optimizer::adam(0.01), 4);
		spec.steps = 1;
		let program = step_program(&spec).map_err(|_| BenchmarkError::Stop("no program"))?;
		let state = initial_state(&spec, &program).map_err(|_| BenchmarkError::Stop("state"))?;
		let last = state_hash(&state);
		let trace = alloc::vec![H256::repeat_byte(1), last];
		let commitment = TraceCommitment {
			trace_root: trace_root(&trace),
			steps: 1,
			final_state: last,
			model_hash: H256::zero(),
		};
		let solver: T::AccountId = account("solver", 0, 0);
		let task = T::Tasks::benchmark_committed_task(&solver, commitment, Some(spec));
		let who = challenger::<T>(0);
		let id = NextDisputeId::<T>::get();
		Pallet::<T>::request_availability(RawOrigin::Signed(who).into(), task, 1)?;
		// The rows of the first layer's weight and bias: `MAX_WIDTH` values each.
		let mut d = Disputes::<T>::get(id).ok_or(BenchmarkError::Stop("no challenge"))?;
		let chunks: alloc::vec::Vec<Chunk> = [(0, 0), (0, 1), (1, 0), (0, 1)]
			.into_iter()
			.map(|(tensor, row)| Chunk { tensor, row })
			.collect();
		let chunks = BoundedVec::try_from(chunks).map_err(|_| BenchmarkError::Stop("chunks"))?;
		d.phase = DisputePhase::Availability(trainet_primitives::availability::AvailabilityGame {
			point: 1,
			chunks: chunks.clone(),
		});
		// The window closes before the answer's deadline.
		let until = match T::Tasks::challengeable(task) {
			Ok(_) => {
				frame_system::Pallet::<T>::block_number().saturating_add(T::RoundTimeout::get())
			}
			Err(_) => return Err(BenchmarkError::Stop("not challengeable")),
		};
		let window_end: BlockNumberFor<T> =
			sp_runtime::traits::UniqueSaturatedInto::unique_saturated_into(
				T::Tasks::benchmark_window_end(task).ok_or(BenchmarkError::Stop("no window"))?,
			);
		let deadline = until.max(window_end.saturating_add(One::one()));
		Pallet::<T>::reschedule(id, &mut d, deadline);
		Disputes::<T>::insert(id, d);
		frame_system::Pallet::<T>::set_block_number(window_end);
		let proof = answer(&trace, 1, &state, &chunks).ok_or(BenchmarkError::Stop("answer"))?;
		#[extrinsic_call]
		_(RawOrigin::Signed(solver), id, proof);
		assert!(Disputes::<T>::get(id).is_none());
		assert!(T::Tasks::spec(task).is_none(), "the task was paid");
		Ok(())
	}

	impl_benchmark_test_suite!(Pallet, crate::mock::new_test_ext(), crate::mock::Test);
}
