//! `trainet-node`: the Trainet chain's node (Aura blocks, GRANDPA finality, JSON-RPC).

#![warn(missing_docs)]

mod benchmarking;
mod chain_spec;
mod cli;
mod command;
mod rpc;
mod service;

fn main() -> sc_cli::Result<()> {
	command::run()
}
