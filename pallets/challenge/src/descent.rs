//! The element descent ([`trainet_primitives::descent`]) inside a tensor the sides dispute:
//! the output of an operation too large for one leaf ([`OpGame`]), or a state tensor of a
//! disputed initialization ([`InitGame`]). Both open their hash of the tensor, walk its row or
//! column tree to the first line they differ on, and reveal that line: the first value on
//! which the lines differ is the disputed element. An operation's element then waits for its
//! evidence ([`Pallet::settle_element`]); an initial value the chain computes at once.

use crate::*;
use trainet_primitives::{descent::terms, market::TermGame, program::initial_value};

/// Where two revealed sequences (lines, partial sums) first differ.
struct Difference {
	/// The position.
	k: u32,
	/// Each side's value there.
	values: Sides<u32>,
	/// The solver's value before it (`0.0` before the first).
	before: u32,
}

/// The tensor a descent is inside.
#[derive(Clone, Copy)]
enum Target {
	/// The output of operation `j` of the disputed step.
	Operation(u32),
	/// State tensor `i` of `h_0`.
	Tensor(u32),
}

impl<T: Config> Pallet<T> {
	/// Whether each side has answered the descent's current stage.
	pub(crate) fn answered(dispute: DisputeId, descent: &Descent) -> Sides<bool> {
		match descent.stage() {
			DescentStage::Opening => descent.openings.given(),
			DescentStage::Descending(_) => {
				descent.walk.as_ref().map(|w| w.reveals.given()).unwrap_or_default()
			}
			DescentStage::Line { .. } | DescentStage::Partials { .. } => Sides::new(
				Lines::<T>::contains_key(dispute, Party::Solver),
				Lines::<T>::contains_key(dispute, Party::Challenger),
			),
			// Nothing is due from the sides: the evidence is anyone's to give.
			DescentStage::Element { .. } | DescentStage::Term { .. } => Sides::new(true, true),
		}
	}

	/// Keeps `party`'s revealed line (or partial sums) until the other side's comes; then
	/// (the kept one taken out of storage) where the two first differ.
	fn exchange(
		dispute: DisputeId,
		party: Party,
		values: BoundedVec<u32, ConstU32<MAX_LINE>>,
	) -> Result<Option<Difference>, Error<T>> {
		let Some(other) = Lines::<T>::take(dispute, party.other()) else {
			Lines::<T>::insert(dispute, party, values);
			return Ok(None);
		};
		let mut both = Sides::new(other.clone(), other);
		*both.of_mut(party) = values;
		let (s, c) = (&both.solver, &both.challenger);
		// Both checked against different hashes, with the lengths the program fixes: they
		// differ somewhere.
		let k = s.iter().zip(c.iter()).position(|(a, b)| a != b).ok_or(Error::<T>::BadProof)?;
		let at = |v: &BoundedVec<u32, ConstU32<MAX_LINE>>, i: usize| v.get(i).copied();
		let values = Sides::new(at(s, k).unwrap_or_default(), at(c, k).unwrap_or_default());
		let before = k.checked_sub(1).and_then(|b| at(s, b)).unwrap_or(0.0f32.to_bits());
		Ok(Some(Difference {
			k: u32::try_from(k).map_err(|_| Error::<T>::Overflow)?,
			values,
			before,
		}))
	}

	/// [`Pallet::descend`] by `party`, once the caller is known to be one.
	pub(crate) fn do_descend(
		dispute: DisputeId,
		mut d: DisputeOf<T>,
		party: Party,
		answer: DescentAnswer,
	) -> DispatchResult {
		let (mut descent, own_hash, target) = match &d.phase {
			DisputePhase::Operations(game) => {
				let j = match game.stage() {
					OpStage::Opening(j) => j,
					OpStage::Descending { op, .. }
					| OpStage::Line { op, .. }
					| OpStage::Partials { op, .. } => op,
					_ => return Err(Error::<T>::WrongStage.into()),
				};
				let own_leaf = game.disputed.of(party).ok_or(Error::<T>::WrongStage)?;
				let descent = game.descent.clone().ok_or(Error::<T>::WrongStage)?;
				(descent, own_leaf.output, Target::Operation(j))
			}
			DisputePhase::Initialization(game) => {
				let t = game.disputed.ok_or(Error::<T>::WrongStage)?;
				(game.descent.clone(), *t.hashes.of(party), Target::Tensor(t.index))
			}
			_ => return Err(Error::<T>::NotDescending.into()),
		};
		// The tensor's shape, as the program fixes it.
		let shape = |spec: &trainet_primitives::task::TrainingSpec| -> Result<_, Error<T>> {
			let program = step_program(spec).map_err(|_| Error::<T>::WrongStage)?;
			let shape = match target {
				Target::Operation(j) => program.ops.get(j as usize).map(|op| (op.rows, op.cols)),
				Target::Tensor(i) => program.state_shapes.get(i as usize).copied(),
			};
			shape.ok_or(Error::<T>::WrongStage)
		};
		let now = frame_system::Pallet::<T>::block_number();
		// What the answer completes: `Some(winner)` ends the dispute, `Some(timeout)` starts
		// the next stage.
		let mut winner = None;
		let mut next_stage = None;
		let mut settled = None;
		match (descent.stage(), answer) {
			(DescentStage::Opening, DescentAnswer::Opening(opening)) => {
				ensure!(opening.hash() == own_hash, Error::<T>::BadProof);
				let own = descent.openings.of_mut(party);
				ensure!(own.is_none(), Error::<T>::AlreadyRevealed);
				*own = Some(opening);
				if let Some(Sides { solver: &s, challenger: &c }) = descent.openings.both() {
					let spec = T::Tasks::spec(d.task).ok_or(Error::<T>::TaskNotFound)?;
					let shape = shape(&spec)?;
					if (s.rows, s.cols) != shape {
						winner = Some(Party::Challenger);
					} else if (c.rows, c.cols) != shape {
						winner = Some(Party::Solver);
					} else {
						let axis =
							if s.row_root != c.row_root { Axis::Rows } else { Axis::Columns };
						let leaves = s.lines(axis).0;
						descent.walk = Some(trainet_primitives::market::Walk {
							axis,
							leaves,
							cursor: Cursor::root(leaves),
							nodes: Sides::new(s.root(axis), c.root(axis)),
							reveals: Sides::none(),
						});
						next_stage = Some(T::RoundTimeout::get());
					}
				}
			}
			(DescentStage::Descending(_), DescentAnswer::Children(left, right)) => {
				let w = descent.walk.as_mut().ok_or(Error::<T>::WrongStage)?;
				ensure!(w.reveals.of(party).is_none(), Error::<T>::AlreadyRevealed);
				ensure!(inner_node(&left, &right) == *w.nodes.of(party), Error::<T>::BadProof);
				*w.reveals.of_mut(party) = Some((left, right));
				if let Some(Sides { solver: &s, challenger: &c }) = w.reveals.both() {
					// The first child on which they differ.
					let right = s.0 == c.0;
					w.cursor = w.cursor.child(right, w.leaves);
					w.nodes = if right { Sides::new(s.1, c.1) } else { Sides::new(s.0, c.0) };
					w.reveals = Sides::none();
					next_stage = Some(T::RoundTimeout::get());
				}
			}
			(DescentStage::Line { axis, index }, DescentAnswer::Line(values)) => {
				let w = descent.walk.as_ref().ok_or(Error::<T>::WrongStage)?;
				let node = *w.nodes.of(party);
				ensure!(!Lines::<T>::contains_key(dispute, party), Error::<T>::AlreadyRevealed);
				// Both openings have the program's shape (checked when both were in), so this
				// is the length the program fixes. A shorter line (a liar's tree may hold any
				// leaves) would leave nothing to compare the other side's against.
				let opening = descent.openings.of(party).ok_or(Error::<T>::WrongStage)?;
				ensure!(
					u32::try_from(values.len()).ok() == Some(opening.lines(axis).1),
					Error::<T>::WrongLineLength
				);
				let leaf = line_leaf(axis, index, &values);
				ensure!(
					<sp_runtime::traits::BlakeTwo256 as sp_runtime::traits::Hash>::hash(&leaf)
						== node,
					Error::<T>::BadProof
				);
				if let Some(Difference { k, values, .. }) = Self::exchange(dispute, party, values)?
				{
					let (row, col) = match axis {
						Axis::Rows => (index, k),
						Axis::Columns => (k, index),
					};
					match target {
						Target::Operation(j) => {
							descent.element =
								Some(trainet_primitives::market::Element { row, col, values });
							// One element too large for a leaf: its sum, term by term.
							if Self::plan(d.task, j) == Some(Plan::Terms) {
								descent.term = Some(TermGame::default());
								next_stage = Some(T::RoundTimeout::get());
							} else {
								next_stage = Some(T::LeafTimeout::get());
							}
						}
						Target::Tensor(i) => {
							// One initial value: the chain computes it from the seed.
							let spec = T::Tasks::spec(d.task).ok_or(Error::<T>::TaskNotFound)?;
							let program =
								step_program(&spec).map_err(|_| Error::<T>::WrongStage)?;
							let truth = initial_value(&spec, &program, i, (row, col))
								.ok_or(Error::<T>::WrongStage)?;
							winner = Some(if values.solver == truth {
								Party::Solver
							} else {
								Party::Challenger
							});
							settled = Some((i, row, col, truth));
						}
					}
				}
			}
			(DescentStage::Partials { .. }, DescentAnswer::Partials(values)) => {
				let Target::Operation(j) = target else {
					return Err(Error::<T>::WrongStage.into());
				};
				ensure!(!Lines::<T>::contains_key(dispute, party), Error::<T>::AlreadyRevealed);
				let element = descent.element.ok_or(Error::<T>::WrongStage)?;
				let spec = T::Tasks::spec(d.task).ok_or(Error::<T>::TaskNotFound)?;
				let program = step_program(&spec).map_err(|_| Error::<T>::WrongStage)?;
				let op = program.ops.get(j as usize).ok_or(Error::<T>::WrongStage)?;
				// One partial sum per term, the last the side's value of the element.
				ensure!(
					u32::try_from(values.len()).ok() == Some(terms(&spec, &program, op)),
					Error::<T>::WrongLineLength
				);
				ensure!(values.last() == Some(element.values.of(party)), Error::<T>::BadProof);
				// Their last sums differ (their values of the element do).
				if let Some(Difference { k, values, before }) =
					Self::exchange(dispute, party, values)?
				{
					descent.term = Some(TermGame { k: Some(k), prev: before, sums: values });
					next_stage = Some(T::LeafTimeout::get());
				}
			}
			_ => return Err(Error::<T>::WrongStage.into()),
		}
		Self::deposit_event(Event::DescentAnswered { dispute, party });
		match &mut d.phase {
			DisputePhase::Operations(game) => game.descent = Some(descent),
			DisputePhase::Initialization(game) => game.descent = descent,
			_ => {}
		}
		if let Some((tensor, row, col, truth)) = settled {
			Self::deposit_event(Event::InitialValueSettled { dispute, tensor, row, col, truth });
		}
		if let Some(winner) = winner {
			Disputes::<T>::insert(dispute, d);
			Self::conclude(dispute, winner, Resolution::Ruling);
			return Ok(());
		}
		if let Some(timeout) = next_stage {
			let deadline = Self::slot(now.saturating_add(timeout));
			Self::reschedule(dispute, &mut d, deadline);
			Self::deposit_event(Event::DescentMoved { dispute, deadline });
		}
		Disputes::<T>::insert(dispute, d);
		Ok(())
	}
}
