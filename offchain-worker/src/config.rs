//! The worker's TOML configuration file (`--config`), for what an operator sets once rather
//! than on every command line. Flags and environment variables override it; every key is
//! optional.
//!
//! ```toml
//! node = "ws://127.0.0.1:9944"      # the node's WebSocket JSON-RPC address
//! suri = "//Dave"                    # the account's secret URI (or suri_file = "path")
//! data_dir = "/var/lib/trainet"      # datasets, checkpoints, journals, the peer key
//! checkpoint_every = 100             # steps between checkpoints
//!
//! [p2p]
//! listen = ["/ip4/0.0.0.0/tcp/30444"]
//! peers = ["/ip4/10.0.0.7/tcp/30444/p2p/12D3KooW..."]
//! mdns = true
//! relays = []                        # relays to listen through, behind NAT (else AutoNAT picks)
//! private_network = false            # count LAN/loopback addresses as reachable
//! relay_service = true               # relay for peers that cannot be dialled
//!
//! [metrics]
//! listen = "127.0.0.1:9616"          # Prometheus metrics at http://<listen>/metrics
//!
//! [verify]
//! sample = 8                         # transitions sampled per task
//!
//! [solve]
//! max_memory_mib = 4096              # claim only tasks that fit (default: the machine's)
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// Why a configuration file was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
	/// It could not be read.
	#[error("reading the config file {path}: {source}")]
	Io {
		/// The file.
		path: PathBuf,
		/// Why.
		#[source]
		source: std::io::Error,
	},
	/// It is not valid (TOML syntax, an unknown key, a value of the wrong type).
	#[error("in the config file {path}: {reason}")]
	Invalid {
		/// The file.
		path: PathBuf,
		/// What is wrong, and where.
		reason: String,
	},
}

/// The configuration file's contents.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
	/// The node's WebSocket JSON-RPC address.
	pub node: Option<String>,
	/// The account's secret URI.
	pub suri: Option<String>,
	/// A file holding the account's secret URI (kept out of the config itself).
	pub suri_file: Option<PathBuf>,
	/// Where datasets, checkpoints, journals and the peer key live.
	pub data_dir: Option<PathBuf>,
	/// Steps between checkpoints.
	pub checkpoint_every: Option<u32>,
	/// Peer-to-peer.
	#[serde(default)]
	pub p2p: P2pSection,
	/// Prometheus metrics.
	#[serde(default)]
	pub metrics: MetricsSection,
	/// The verifier.
	#[serde(default)]
	pub verify: VerifySection,
	/// The solver.
	#[serde(default)]
	pub solve: SolveSection,
}

/// `[solve]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SolveSection {
	/// Claim only tasks whose training needs at most this many MiB (default: the machine's
	/// memory).
	pub max_memory_mib: Option<u64>,
}

/// `[p2p]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct P2pSection {
	/// Multiaddresses to listen on.
	#[serde(default)]
	pub listen: Vec<String>,
	/// Peers to dial at start.
	#[serde(default)]
	pub peers: Vec<String>,
	/// mDNS discovery on the local network.
	pub mdns: Option<bool>,
	/// Relays to listen through (peer addresses).
	#[serde(default)]
	pub relays: Vec<String>,
	/// Count private and loopback addresses as reachable.
	pub private_network: Option<bool>,
	/// Relay for peers that cannot be dialled (default true).
	pub relay_service: Option<bool>,
}

/// `[metrics]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
	/// `host:port` to serve `/metrics` on.
	pub listen: Option<String>,
}

/// `[verify]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VerifySection {
	/// Transitions sampled per task.
	pub sample: Option<u32>,
}

impl WorkerConfig {
	/// Parses a configuration; `path` names it in errors.
	pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
		let config: Self = toml::from_str(text)
			.map_err(|e| ConfigError::Invalid { path: path.into(), reason: e.to_string() })?;
		if config.suri.is_some() && config.suri_file.is_some() {
			return Err(ConfigError::Invalid {
				path: path.into(),
				reason: "give suri or suri_file, not both".into(),
			});
		}
		if config.checkpoint_every == Some(0) {
			return Err(ConfigError::Invalid {
				path: path.into(),
				reason: "checkpoint_every must be at least 1".into(),
			});
		}
		Ok(config)
	}

	/// Reads and parses the file at `path`.
	pub fn load(path: &Path) -> Result<Self, ConfigError> {
		let text = std::fs::read_to_string(path)
			.map_err(|source| ConfigError::Io { path: path.into(), source })?;
		Self::parse(&text, path)
	}

	/// The secret URI: `suri`, or the first line of `suri_file`.
	pub fn secret(&self) -> Result<Option<String>, ConfigError> {
		match (&self.suri, &self.suri_file) {
			(Some(s), _) => Ok(Some(s.clone())),
			(None, Some(path)) => {
				let text = std::fs::read_to_string(path)
					.map_err(|source| ConfigError::Io { path: path.clone(), source })?;
				Ok(text.lines().next().map(|l| l.trim().to_string()))
			}
			(None, None) => Ok(None),
		}
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn a_full_config_parses_and_mistakes_are_named() {
		let path = Path::new("worker.toml");
		let c = WorkerConfig::parse(
			"node = \"ws://10.0.0.1:9944\"\nsuri = \"//Dave\"\ncheckpoint_every = 50\n\
			 [p2p]\nlisten = [\"/ip4/0.0.0.0/tcp/30444\"]\nmdns = false\n\
			 relays = [\"/ip4/10.0.0.7/tcp/30444/p2p/12D3KooWRelay\"]\nprivate_network = true\n\
			 relay_service = false\n\
			 [metrics]\nlisten = \"127.0.0.1:9616\"\n[verify]\nsample = 8\n",
			path,
		)
		.unwrap();
		assert_eq!(c.node.as_deref(), Some("ws://10.0.0.1:9944"));
		assert_eq!(c.secret().unwrap().as_deref(), Some("//Dave"));
		assert_eq!(
			(c.checkpoint_every, c.p2p.mdns, c.verify.sample),
			(Some(50), Some(false), Some(8))
		);
		assert_eq!(c.metrics.listen.as_deref(), Some("127.0.0.1:9616"));
		assert_eq!(c.p2p.relays, ["/ip4/10.0.0.7/tcp/30444/p2p/12D3KooWRelay"]);
		assert_eq!((c.p2p.private_network, c.p2p.relay_service), (Some(true), Some(false)));
		assert_eq!(WorkerConfig::parse("", path).unwrap(), WorkerConfig::default());

		let err = WorkerConfig::parse("nodes = \"x\"\n", path).unwrap_err().to_string();
		assert!(
			err.starts_with("in the config file worker.toml:") && err.contains("nodes"),
			"{err}"
		);
		let err = WorkerConfig::parse("checkpoint_every = \"ten\"\n", path).unwrap_err();
		assert!(err.to_string().contains("checkpoint_every"), "{err}");
		let err = WorkerConfig::parse("checkpoint_every = 0\n", path).unwrap_err();
		assert!(err.to_string().contains("at least 1"), "{err}");
		let err = WorkerConfig::parse("suri = \"//A\"\nsuri_file = \"f\"\n", path).unwrap_err();
		assert!(err.to_string().contains("not both"), "{err}");
		let err = WorkerConfig::load(Path::new("/nonexistent/worker.toml")).unwrap_err();
		assert!(err.to_string().starts_with("reading the config file /nonexistent"), "{err}");
	}
}
