//! # trainet-worker
//!
//! The solver and verifier daemon: it trains tasks bit-exactly, commits their traces, keeps
//! its promises across crashes, checks other solvers' work and fights disputes.
//!
//! - [`backend`]: RepOps as a burn backend extension (training's arithmetic in burn);
//! - `cuda` (feature `cuda`): the RepOps kernels on NVIDIA GPUs through burn-cuda, the same
//!   bits as the CPU's;
//! - [`engine`]: the fast, multi-threaded CPU implementation of the RepOps step program,
//!   bit-identical to the reference in `trainet-primitives` for any number of threads;
//! - [`dataset`]: the shipped digits, a synthetic generator, a content-addressed store;
//! - [`spec_file`]: task specs as TOML files;
//! - [`train`]: a task's training run, step by step, with state hashes and accuracy;
//! - [`commit`]: state hashes, the chain's definition computed in parallel;
//! - [`checkpoint`]: checkpoints named by their state hash, and each task's journal;
//! - [`chain`]: JSON-RPC and signed transactions to a node;
//! - [`solver`]: find, claim, train (resuming after a crash) and commit a task; defend it;
//!   verify others' tasks, by sampling transitions or recomputing;
//! - [`dispute`]: one side of a dispute, every stage of the game answered;
//! - [`p2p`]: libp2p announcements, discovery, and fetching content by hash;
//! - [`model`]: the trained model as a burn `Module`, saved as a burn record;
//! - [`config`]: the TOML configuration file;
//! - [`metrics`]: Prometheus metrics.

pub mod backend;
pub mod chain;
pub mod checkpoint;
pub mod commit;
pub mod config;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod dataset;
pub mod dispute;
pub mod engine;
pub mod export;
pub mod files;
pub mod graph_model;
pub mod import;
pub mod metrics;
pub mod model;
pub mod p2p;
pub mod solver;
pub mod spec_file;
pub mod train;
