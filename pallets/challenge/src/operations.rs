//! The operator-level game ([`OpGame`]) inside a disputed training step: the op-trace
//! commitments, the bisection over the step's operations, and the settlement of one
//! operation (whole), one element or one term of its output.

use crate::*;

impl<T: Config> Pallet<T> {
	/// [`Pallet::commit_ops`], once the caller is known to be a party.
	pub(crate) fn do_commit_ops(
		dispute: DisputeId,
		mut d: DisputeOf<T>,
		party: Party,
		root: H256,
	) -> DispatchResult {
		let DisputePhase::Operations(mut game) = d.phase.clone() else {
			return Err(Error::<T>::NotInOperations.into());
		};
		ensure!(game.stage() == OpStage::Committing, Error::<T>::WrongStage);
		let own = game.roots.of_mut(party);
		ensure!(own.is_none(), Error::<T>::AlreadyCommitted);
		*own = Some(root);
		let first_round = match game.stage() {
			OpStage::Revealing(position) => {
				let now = frame_system::Pallet::<T>::block_number();
				Some((position, Self::slot(now.saturating_add(T::RoundTimeout::get()))))
			}
			_ => None,
		};
		Self::deposit_event(Event::OpsCommitted { dispute, party, root });
		if let Some((position, deadline)) = first_round {
			Self::reschedule(dispute, &mut d, deadline);
			Self::deposit_event(Event::OpRound {
				dispute,
				agreed: game.bisection.agreed,
				disputed: game.bisection.disputed,
				position,
				deadline,
			});
		}
		d.phase = DisputePhase::Operations(game);
		Disputes::<T>::insert(dispute, d);
		Ok(())
	}

	/// [`Pallet::reveal_op`], once the caller is known to be a party.
	pub(crate) fn do_reveal_op(
		dispute: DisputeId,
		mut d: DisputeOf<T>,
		party: Party,
		position: u32,
		proof: OpProof,
	) -> DispatchResult {
		let DisputePhase::Operations(mut game) = d.phase.clone() else {
			return Err(Error::<T>::NotInOperations.into());
		};
		let OpStage::Revealing(mid) = game.stage() else {
			return Err(Error::<T>::WrongStage.into());
		};
		ensure!(position == mid, Error::<T>::WrongPosition);
		ensure!(game.reveals.of(party).is_none(), Error::<T>::AlreadyRevealed);
		let root = game.roots.of(party).ok_or(Error::<T>::WrongStage)?;
		let leaf = mid.checked_sub(1).ok_or(Error::<T>::Overflow)?;
		ensure!(verify_op_proof(&root, game.ops, leaf, &proof), Error::<T>::BadProof);
		*game.reveals.of_mut(party) = Some(proof.leaf);
		let Some((s, c)) = game.reveals.both().map(|b| (*b.solver, *b.challenger)) else {
			Self::deposit_event(Event::OpRevealed { dispute, party, position, leaf: proof.leaf });
			d.phase = DisputePhase::Operations(game);
			Disputes::<T>::insert(dispute, d);
			return Ok(());
		};

		// Both revealed: narrow, with the next deadline's slot found before any write.
		let agree = s == c;
		game.bisection = game.bisection.narrow(agree);
		game.round = game.round.saturating_add(1);
		game.reveals = Sides::none();
		if agree {
			game.agreed_link = s.link;
		} else {
			game.disputed = Sides::new(Some(s), Some(c));
		}
		let stage = game.stage();
		// At an operation, a leaf that does not chain from the agreed link is a lie.
		let forfeit = match stage {
			OpStage::Operation(_) => {
				let follows = |l: Option<OpLeaf>| l.is_some_and(|l| l.follows(&game.agreed_link));
				if !follows(game.disputed.solver) {
					Some(Party::Challenger)
				} else if !follows(game.disputed.challenger) {
					Some(Party::Solver)
				} else {
					None
				}
			}
			_ => None,
		};
		// An operation too large for one leaf goes on to the element descent.
		let stage = match stage {
			OpStage::Operation(j) if forfeit.is_none() && !Self::settleable(d.task, j) => {
				game.descent = Some(Descent::default());
				game.stage()
			}
			s => s,
		};
		let now = frame_system::Pallet::<T>::block_number();
		let timeout = match stage {
			OpStage::Revealing(_) | OpStage::Opening(_) => T::RoundTimeout::get(),
			_ => T::LeafTimeout::get(),
		};
		let deadline = match forfeit {
			Some(_) => d.deadline,
			None => Self::slot(now.saturating_add(timeout)),
		};

		Self::deposit_event(Event::OpRevealed { dispute, party, position, leaf: proof.leaf });
		if let Some(winner) = forfeit {
			d.phase = DisputePhase::Operations(game);
			Disputes::<T>::insert(dispute, d);
			Self::conclude(dispute, winner, Resolution::Ruling);
			return Ok(());
		}
		Self::reschedule(dispute, &mut d, deadline);
		Self::deposit_event(match stage {
			OpStage::Revealing(position) => Event::OpRound {
				dispute,
				agreed: game.bisection.agreed,
				disputed: game.bisection.disputed,
				position,
				deadline,
			},
			OpStage::Operation(operation) => {
				Event::OperationDisputed { dispute, operation, deadline }
			}
			OpStage::Opening(operation) => Event::DescentStarted { dispute, operation, deadline },
			_ => Event::AssemblyDisputed { dispute, deadline },
		});
		d.phase = DisputePhase::Operations(game);
		Disputes::<T>::insert(dispute, d);
		Ok(())
	}

	/// [`Pallet::settle_op`], once the caller is known.
	pub(crate) fn do_settle_op(
		dispute: DisputeId,
		d: DisputeOf<T>,
		evidence: OpEvidence,
	) -> DispatchResult {
		let DisputePhase::Operations(game) = &d.phase else {
			return Err(Error::<T>::NotInOperations.into());
		};
		let spec = T::Tasks::spec(d.task).ok_or(Error::<T>::TaskNotFound)?;
		let pre_state = d.agreed_state.ok_or(Error::<T>::WrongStage)?;
		let (truth, solver_claim) = match game.stage() {
			OpStage::Operation(j) => (
				referee::operation_output(
					&spec,
					game.step,
					j,
					&pre_state,
					&game.agreed_link,
					&evidence,
				)
				.map_err(Self::evidence_error)?,
				game.disputed.solver.map(|l| l.output),
			),
			OpStage::Assembly => (
				referee::post_state(&spec, &pre_state, &game.agreed_link, &evidence.outputs)
					.map_err(Self::evidence_error)?,
				Some(d.disputed.solver),
			),
			_ => return Err(Error::<T>::WrongStage.into()),
		};
		let winner = if solver_claim == Some(truth) { Party::Solver } else { Party::Challenger };
		Self::deposit_event(Event::OperationSettled { dispute, truth });
		Self::conclude(dispute, winner, Resolution::Ruling);
		Ok(())
	}

	/// [`Pallet::settle_element`], once the caller is known.
	pub(crate) fn do_settle_element(
		dispute: DisputeId,
		d: DisputeOf<T>,
		evidence: ElementEvidence,
	) -> DispatchResult {
		let DisputePhase::Operations(game) = &d.phase else {
			return Err(Error::<T>::NotInOperations.into());
		};
		let descent = game.descent.as_ref().ok_or(Error::<T>::WrongStage)?;
		let element = descent.element.ok_or(Error::<T>::WrongStage)?;
		let spec = T::Tasks::spec(d.task).ok_or(Error::<T>::TaskNotFound)?;
		let pre_state = d.agreed_state.ok_or(Error::<T>::WrongStage)?;
		let winner = match game.stage() {
			OpStage::Element { op, row, col } => {
				let truth = element_value(
					&spec,
					game.step,
					op,
					(row, col),
					&pre_state,
					&game.agreed_link,
					&evidence,
				)
				.map_err(Self::evidence_error)?;
				Self::deposit_event(Event::ElementSettled { dispute, row, col, truth });
				if element.values.solver == truth {
					Party::Solver
				} else {
					Party::Challenger
				}
			}
			OpStage::Term { op, row, col, k } => {
				let term = descent.term.ok_or(Error::<T>::WrongStage)?;
				let truth = term_value(
					&spec,
					game.step,
					op,
					(row, col),
					k,
					term.prev,
					(&pre_state, &game.agreed_link),
					&evidence,
				)
				.map_err(Self::evidence_error)?;
				Self::deposit_event(Event::TermSettled { dispute, row, col, k, truth });
				if term.sums.solver == truth {
					Party::Solver
				} else {
					Party::Challenger
				}
			}
			_ => return Err(Error::<T>::WrongStage.into()),
		};
		Self::conclude(dispute, winner, Resolution::Ruling);
		Ok(())
	}

	/// How the chain settles operation `j` of the task's step ([`settle::plan`]), if it can.
	pub(crate) fn plan(task: TaskId, j: u32) -> Option<Plan> {
		let spec = T::Tasks::spec(task)?;
		let program = step_program(&spec).ok()?;
		settle::plan(&spec, &program, j, &T::LeafBudget::get()).ok()
	}

	/// Whether the chain executes operation `j` of the task's step whole, in one leaf (its
	/// values, multiply-adds and evidence bytes inside the budget).
	pub(crate) fn settleable(task: TaskId, j: u32) -> bool {
		Self::plan(task, j) == Some(Plan::Whole)
	}

	pub(crate) fn evidence_error(e: RefereeError) -> Error<T> {
		match e {
			RefereeError::BadSpec | RefereeError::NoSuchOperation => Error::<T>::WrongStage,
			RefereeError::BrokenChain => Error::<T>::EvidenceBrokenChain,
			RefereeError::WrongState => Error::<T>::EvidenceWrongState,
			RefereeError::WrongInput => Error::<T>::EvidenceWrongInput,
			RefereeError::WrongBatch => Error::<T>::EvidenceWrongBatch,
			RefereeError::TooLarge => Error::<T>::OperationTooLarge,
			RefereeError::Execution(_) => Error::<T>::ExecutionFailed,
		}
	}
}
