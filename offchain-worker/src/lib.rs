//! # trainet-worker
//!
//! The solver and verifier daemon (issue 4/7 builds the daemon itself). What exists today is
//! its compute core:
//!
//! - [`engine`]: the fast, multi-threaded CPU implementation of the RepOps step program,
//!   bit-identical to the reference in `trainet-primitives` for any number of threads.

pub mod engine;
