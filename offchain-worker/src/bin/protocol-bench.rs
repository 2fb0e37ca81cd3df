//! What verification and disputes cost, as tables:
//!
//! 1. the dispute game's rounds for traces of 10^2, 10^4 and 10^6 steps: the step bisection
//!    played with the chain's own arithmetic (`trainet_primitives::bisection`) down to a wrong
//!    step a third of the way in, then the operation bisection over that step's operations and
//!    the one leaf call; with the time that takes at one round per 6-second block (both sides
//!    prompt, as the end-to-end tests and the demo see) and at worst (a side that answers each
//!    round in the last block before the runtime's `RoundTimeout`);
//! 2. how often a sampling verifier catches a cheat: the chance that `k` transitions chosen
//!    uniformly without replacement (as `trainet-worker verify --sample k` does) include one
//!    of the `w` wrong ones among `N`, exactly and by simulation with the same sampler.
//!
//!     cargo run --release -p trainet-worker --bin protocol-bench

use rand::{seq::index::sample, SeedableRng};
use trainet_primitives::{
	bisection::{Bisection, Transition},
	program::step_program,
	task::{Optimizer, TrainingSpec},
};

/// Seconds per block and the runtime's `RoundTimeout` in blocks (`runtime/src/configs.rs`).
const BLOCK_SECONDS: f64 = 6.0;
const ROUND_TIMEOUT_BLOCKS: f64 = 100.0;

/// Rounds of a bisection over `n` items whose first wrong one is item `wrong` (0-based), each
/// round's midpoint compared the way the chain does.
fn step_rounds(steps: u32, wrong_step: u32) -> u32 {
	let mut b = Bisection::new(steps).expect("steps fit");
	let mut rounds = 0;
	while let Some(mid) = b.midpoint() {
		// Both sides agree on every state before the wrong step's output h_{wrong+1}, which
		// sits at position wrong + 2.
		b = b.narrow(mid <= wrong_step + 1);
		rounds += 1;
	}
	assert_eq!(b.transition(), Some(Transition::Step(wrong_step)), "the bisection found it");
	rounds
}

fn human(seconds: f64) -> String {
	if seconds < 120.0 {
		format!("{seconds:.0} s")
	} else if seconds < 7200.0 {
		format!("{:.0} min", seconds / 60.0)
	} else {
		format!("{:.1} h", seconds / 3600.0)
	}
}

fn main() {
	let sgd = Optimizer::sgd(0.05, 0.9);
	println!("Dispute rounds (first wrong step a third of the way in):\n");
	println!(
		"| model | steps N | step rounds | op rounds | calls in all | both sides prompt | a side answering at each deadline |"
	);
	println!("|---|---|---|---|---|---|---|");
	for (name, widths, batch) in [
		("digits 64-32-10", &[64u32, 32, 10][..], 32u32),
		("784-512-512-10", &[784, 512, 512, 10][..], 128),
	] {
		let spec = TrainingSpec::example_mlp(widths, sgd, batch);
		let ops = step_program(&spec).expect("valid spec").ops.len() as u32;
		for steps in [100u32, 10_000, 1_000_000] {
			let s = step_rounds(steps, steps / 3);
			// The operation bisection is the same game over the step's operations.
			let o = step_rounds(ops, ops / 2);
			// Rounds, plus committing the step's operations and the one leaf call.
			let calls = s + 1 + o + 1;
			let online = f64::from(calls) * BLOCK_SECONDS;
			let stalled = f64::from(calls) * ROUND_TIMEOUT_BLOCKS * BLOCK_SECONDS;
			println!(
				"| {name} | {steps} | {s} | {o} ({ops} ops) | {calls} | {} | {} |",
				human(online),
				human(stalled)
			);
		}
	}
	println!(
		"\nStep rounds = ceil(log2(N + 1)) (`Bisection::max_rounds`: {} / {} / {}).",
		Bisection::max_rounds(100),
		Bisection::max_rounds(10_000),
		Bisection::max_rounds(1_000_000)
	);

	println!("\nSampling verifiers: chance of catching a cheat in a 1000-step task:\n");
	println!("| cheat | wrong transitions w | k sampled | exact | simulated | work vs recompute |");
	println!("|---|---|---|---|---|---|");
	let n = 1000usize;
	let trials = 20_000;
	let mut rng = rand::rngs::StdRng::seed_from_u64(7);
	for (cheat, wrong) in [
		("alter one operation of one step", 1usize),
		("skip the last 10% of the work", 100),
		("skip the last half of the work", 500),
	] {
		for k in [1usize, 8, 32, 128] {
			// P(miss) = C(n-w, k) / C(n, k) = prod_{i<k} (n-w-i)/(n-i).
			let miss: f64 =
				(0..k).map(|i| (n.saturating_sub(wrong + i)) as f64 / (n - i) as f64).product();
			// The wrong transitions are the last `wrong` ones (which ones does not matter to a
			// uniform sampler).
			let caught = (0..trials)
				.filter(|_| sample(&mut rng, n, k).into_iter().any(|t| t >= n - wrong))
				.count();
			println!(
				"| {cheat} | {wrong} | {k} | {:.4} | {:.4} | {:.1}% |",
				1.0 - miss,
				caught as f64 / trials as f64,
				100.0 * k as f64 / n as f64
			);
		}
	}
	println!(
		"\nA single altered step is caught by sampling k of N transitions with probability k/N: \
		 sampling is cheap screening; a verifier that must not miss one recomputes the whole \
		 task (the default), and any one honest full verifier suffices."
	);
}
