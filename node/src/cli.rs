//! The node's command line: `sc-cli`'s standard run options and subcommands.

/// `trainet-node [SUBCOMMAND] [OPTIONS]`; with no subcommand it runs the node.
#[derive(Debug, clap::Parser)]
pub struct Cli {
	/// A maintenance subcommand; omit it to run the node.
	#[command(subcommand)]
	pub subcommand: Option<Subcommand>,

	/// Options of the running node (`--dev`, `--chain`, `--base-path`, `--validator`, ...).
	#[clap(flatten)]
	pub run: sc_cli::RunCmd,
}

/// Maintenance subcommands.
#[derive(Debug, clap::Subcommand)]
#[allow(clippy::large_enum_variant)]
pub enum Subcommand {
	/// Key management: generate, inspect and insert keys.
	#[command(subcommand)]
	Key(sc_cli::KeySubcommand),

	/// Build a chain specification (use `export-chain-spec` in new scripts).
	#[deprecated(note = "build-spec will be removed in favour of export-chain-spec")]
	BuildSpec(sc_cli::BuildSpecCmd),

	/// Export a chain specification as JSON.
	ExportChainSpec(sc_cli::ExportChainSpecCmd),

	/// Validate blocks.
	CheckBlock(sc_cli::CheckBlockCmd),

	/// Export blocks.
	ExportBlocks(sc_cli::ExportBlocksCmd),

	/// Export the state of a given block into a chain spec.
	ExportState(sc_cli::ExportStateCmd),

	/// Import blocks.
	ImportBlocks(sc_cli::ImportBlocksCmd),

	/// Remove the whole chain.
	PurgeChain(sc_cli::PurgeChainCmd),

	/// Revert the chain to a previous state.
	Revert(sc_cli::RevertCmd),

	/// Benchmarks of the runtime and the node (pallet benchmarks need
	/// `--features runtime-benchmarks`).
	#[command(subcommand)]
	Benchmark(frame_benchmarking_cli::BenchmarkCmd),

	/// Database metadata.
	ChainInfo(sc_cli::ChainInfoCmd),
}
