//! # trainet-worker
//!
//! The solver and verifier daemon (issue 4/7 builds the daemon itself). What exists today is
//! its compute core:
//!
//! - [`engine`]: the fast, multi-threaded CPU implementation of the RepOps step program,
//!   bit-identical to the reference in `trainet-primitives` for any number of threads;
//! - [`dataset`]: the shipped digits, a synthetic generator, a content-addressed store;
//! - [`spec_file`]: task specs as TOML files;
//! - [`train`]: a task's training run, step by step, with state hashes and accuracy;
//! - [`chain`]: JSON-RPC and signed transactions to a node;
//! - [`solver`]: find, claim, train and commit a task.

pub mod chain;
pub mod checkpoint;
pub mod dataset;
pub mod dispute;
pub mod engine;
pub mod p2p;
pub mod solver;
pub mod spec_file;
pub mod train;
