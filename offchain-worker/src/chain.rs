//! The worker's connection to a Trainet node: JSON-RPC (the node's `trainet_*` methods,
//! account nonces) and signed transactions through subxt.
//!
//! Calls are built dynamically from the runtime's metadata; their arguments are the
//! protocol's own types from `trainet-primitives`, SCALE-encoded with `codec` ([`Args`]), so
//! the worker and the runtime share one definition of every argument.

use std::time::{Duration, Instant};

use codec::Encode;
use jsonrpsee::{
	core::{client::ClientT, params::ArrayParams},
	http_client::{HttpClient, HttpClientBuilder},
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use subxt::{OnlineClient, PolkadotConfig};
use subxt_signer::sr25519::Keypair;
use thiserror::Error;

/// What can go wrong talking to the node.
#[derive(Debug, Error)]
pub enum ChainError {
	/// The node could not be reached in time.
	#[error("cannot reach a Trainet node at {url} (waited {waited:?}): {reason}")]
	Unreachable {
		/// The address tried.
		url: String,
		/// How long.
		waited: Duration,
		/// The last error.
		reason: String,
	},
	/// A JSON-RPC call failed.
	#[error("{method}: {reason}")]
	Rpc {
		/// The method.
		method: String,
		/// Why.
		reason: String,
	},
	/// A transaction was refused or failed.
	#[error("{call}: {reason}")]
	Transaction {
		/// `Pallet.call`.
		call: String,
		/// Why (the dispatch error's name when the runtime gave one).
		reason: String,
	},
	/// A secret URI that is not one.
	#[error("{0:?} is not a secret URI (like //Alice or a 12-word phrase)")]
	BadSecret(String),
}

/// An account's money, in planck.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Money {
	/// Spendable.
	pub free: u128,
	/// Held: solver and verifier stakes, challenge bonds, escrowed rewards.
	pub held: u128,
	/// Bonded as a solver or verifier (the staking ledger's `active`; part of `held`).
	pub staked: u128,
	/// The part of the stake locked by claimed tasks and open disputes.
	pub locked: u128,
}

/// `frame_system::AccountInfo`, the part read here.
#[derive(Debug, subxt::ext::scale_decode::DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
struct AccountInfo {
	data: AccountData,
}

/// `pallet_balances::AccountData`, the part read here.
#[derive(Debug, subxt::ext::scale_decode::DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
struct AccountData {
	free: u128,
	reserved: u128,
}

/// `pallet_compute_staking::Ledger`, the part read here.
#[derive(Debug, subxt::ext::scale_decode::DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
struct Ledger {
	active: u128,
	locked: u128,
}

/// `pallet_slashing::OffenceRecord`, the part read here.
#[derive(Debug, subxt::ext::scale_decode::DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
struct OffenceRecord {
	count: u32,
}

/// Call arguments already SCALE-encoded, in the call's field order: subxt appends them after
/// the pallet and call indices, which is exactly a call's encoding.
pub struct Args(pub Vec<u8>);

impl subxt::ext::scale_encode::EncodeAsFields for Args {
	fn encode_as_fields_to<R: subxt::ext::scale_encode::TypeResolver>(
		&self,
		_fields: &mut dyn subxt::ext::scale_encode::FieldIter<'_, R::TypeId>,
		_types: &R,
		out: &mut Vec<u8>,
	) -> Result<(), subxt::ext::scale_encode::Error> {
		out.extend_from_slice(&self.0);
		Ok(())
	}
}

/// A signer from a secret URI (`//Alice`, a mnemonic, `mnemonic//derivation`).
pub fn signer(suri: &str) -> Result<Keypair, ChainError> {
	let uri: subxt_signer::SecretUri =
		suri.parse().map_err(|_| ChainError::BadSecret(suri.into()))?;
	Keypair::from_uri(&uri).map_err(|_| ChainError::BadSecret(suri.into()))
}

/// The SS58 address of `signer`.
pub fn address(signer: &Keypair) -> String {
	sp_core::crypto::Ss58Codec::to_ss58check(&sp_core::crypto::AccountId32::from(
		signer.public_key().0,
	))
}

/// A connection to one node, that outlives the node's restarts: JSON-RPC calls made while
/// the node is away are retried until it is back (up to the patience given to
/// [`Chain::connect`]), and the WebSocket client that submits transactions is rebuilt when
/// its connection was lost.
pub struct Chain {
	url: String,
	rpc: HttpClient,
	api: tokio::sync::RwLock<OnlineClient<PolkadotConfig>>,
	patience: Duration,
}

/// Whether a failure is the connection's rather than the node's answer.
fn lost_connection(reason: &str) -> bool {
	let r = reason.to_lowercase();
	["connection", "closed", "restart", "background task", "transport", "disconnected"]
		.iter()
		.any(|w| r.contains(w))
}

/// A subxt client for the node at `url`, retrying until `patience` runs out.
async fn connect_ws(
	url: &str,
	patience: Duration,
) -> Result<OnlineClient<PolkadotConfig>, ChainError> {
	let start = Instant::now();
	loop {
		match OnlineClient::<PolkadotConfig>::from_url(url).await {
			Ok(api) => return Ok(api),
			Err(e) if start.elapsed() >= patience => {
				return Err(ChainError::Unreachable {
					url: url.into(),
					waited: start.elapsed(),
					reason: e.to_string(),
				})
			}
			Err(e) => {
				tracing::debug!(url, reason = %e, "node not reachable yet");
				tokio::time::sleep(Duration::from_millis(500)).await;
			}
		}
	}
}

impl Chain {
	/// Connects to the node at `url` (`ws://host:port`), retrying until `patience` runs out
	/// (a node that is still starting); later, the same patience is given to a node that
	/// restarts.
	pub async fn connect(url: &str, patience: Duration) -> Result<Self, ChainError> {
		let http = url.replacen("ws://", "http://", 1).replacen("wss://", "https://", 1);
		let rpc = HttpClientBuilder::default()
			.max_request_size(16 * 1024 * 1024)
			.build(&http)
			.map_err(|e| ChainError::Unreachable {
				url: url.into(),
				waited: Duration::ZERO,
				reason: e.to_string(),
			})?;
		let api = connect_ws(url, patience).await?;
		Ok(Self { url: url.into(), rpc, api: tokio::sync::RwLock::new(api), patience })
	}

	/// The node's address.
	pub fn url(&self) -> &str {
		&self.url
	}

	/// The subxt client (as connected now).
	pub async fn api(&self) -> OnlineClient<PolkadotConfig> {
		self.api.read().await.clone()
	}

	/// Calls JSON-RPC `method` and decodes its result. While the node cannot be reached the
	/// call is retried, for as long as the connection's patience.
	pub async fn rpc<T: DeserializeOwned>(
		&self,
		method: &str,
		params: Vec<Value>,
	) -> Result<T, ChainError> {
		use jsonrpsee::core::ClientError;
		let fail = |reason: String| ChainError::Rpc { method: method.into(), reason };
		let start = Instant::now();
		let mut warned = false;
		loop {
			let mut array = ArrayParams::new();
			for p in params.iter().cloned() {
				array.insert(p).map_err(|e| fail(e.to_string()))?;
			}
			match self.rpc.request::<Value, _>(method, array).await {
				Ok(value) => {
					if warned {
						tracing::info!(url = %self.url, "the node is back");
					}
					return serde_json::from_value(value).map_err(|e| fail(e.to_string()));
				}
				Err(ClientError::Transport(e)) if start.elapsed() < self.patience => {
					if !warned {
						tracing::warn!(url = %self.url, "the node cannot be reached ({e}): retrying");
						warned = true;
					}
					tokio::time::sleep(Duration::from_secs(1)).await;
				}
				Err(e) => return Err(fail(e.to_string())),
			}
		}
	}

	/// The number of the node's best block.
	pub async fn best_number(&self) -> Result<u32, ChainError> {
		let header: Value = self.rpc("chain_getHeader", vec![]).await?;
		let fail = |reason: String| ChainError::Rpc { method: "chain_getHeader".into(), reason };
		let hex = header["number"].as_str().ok_or_else(|| fail("no block number".into()))?;
		u32::from_str_radix(hex.trim_start_matches("0x"), 16).map_err(|e| fail(e.to_string()))
	}

	/// The chain's block time (its Aura slot), from the runtime API.
	pub async fn block_time(&self) -> Result<Duration, ChainError> {
		let hex: String = self
			.rpc("state_call", vec![Value::from("AuraApi_slot_duration"), Value::from("0x")])
			.await?;
		let fail = |reason: String| ChainError::Rpc { method: "state_call".into(), reason };
		let bytes = sp_core::bytes::from_hex(&hex).map_err(|e| fail(format!("{e:?}")))?;
		let millis =
			<u64 as codec::Decode>::decode(&mut &bytes[..]).map_err(|e| fail(e.to_string()))?;
		Ok(Duration::from_millis(millis))
	}

	/// `who`'s money at the latest finalized block: free and held balance, and the staking
	/// ledger.
	pub async fn money(&self, who: [u8; 32]) -> Result<Money, ChainError> {
		let fail = |e: String| ChainError::Rpc { method: "state_getStorage".into(), reason: e };
		let api = self.api().await;
		let at = api.at_current_block().await.map_err(|e| fail(e.to_string()))?;
		let account = subxt::dynamic::storage::<([u8; 32],), AccountInfo>("System", "Account");
		let info = at
			.storage()
			.fetch(account, (who,))
			.await
			.map_err(|e| fail(e.to_string()))?
			.decode()
			.map_err(|e| fail(e.to_string()))?;
		let ledgers = subxt::dynamic::storage::<([u8; 32],), Ledger>("ComputeStaking", "Ledgers");
		let ledger = match at.storage().try_fetch(ledgers, (who,)).await {
			Ok(Some(v)) => v.decode().map_err(|e| fail(e.to_string()))?,
			Ok(None) => Ledger { active: 0, locked: 0 },
			Err(e) => return Err(fail(e.to_string())),
		};
		Ok(Money {
			free: info.data.free,
			held: info.data.reserved,
			staked: ledger.active,
			locked: ledger.locked,
		})
	}

	/// How many offences `who` has on record (lost disputes, missed commitments), at the best
	/// block.
	pub async fn offences(&self, who: [u8; 32]) -> Result<u32, ChainError> {
		let fail = |e: String| ChainError::Rpc { method: "state_getStorage".into(), reason: e };
		let best = self.best_number().await?;
		let api = self.api().await;
		let at = api.at_block(u64::from(best)).await.map_err(|e| fail(e.to_string()))?;
		let records = subxt::dynamic::storage::<([u8; 32],), OffenceRecord>("Slashing", "Offences");
		match at.storage().try_fetch(records, (who,)).await {
			Ok(Some(v)) => Ok(v.decode().map_err(|e| fail(e.to_string()))?.count),
			Ok(None) => Ok(0),
			Err(e) => Err(fail(e.to_string())),
		}
	}

	/// A task as the node's `trainet_task` gives it (JSON), or `None` once it has ended.
	pub async fn task(&self, id: u64) -> Result<Option<Value>, ChainError> {
		self.rpc("trainet_task", vec![Value::from(id)]).await
	}

	/// Signs and submits `pallet.call(args)` and waits until it is in a best block and
	/// succeeded; returns its events.
	///
	/// The nonce comes from `system_accountNextIndex`, which counts the signer's transactions
	/// in the pool and in unfinalized blocks (subxt's default reads the finalized block, which
	/// lags when one transaction follows another quickly). If the WebSocket connection was
	/// lost (the node restarted), the client reconnects and submits once more with a fresh
	/// nonce.
	pub async fn submit(
		&self,
		signer: &Keypair,
		pallet: &str,
		call: &str,
		args: impl Encode,
	) -> Result<subxt::extrinsics::ExtrinsicEvents<PolkadotConfig>, ChainError> {
		let args = args.encode();
		let mut reconnected = false;
		loop {
			let nonce: u64 =
				self.rpc("system_accountNextIndex", vec![Value::from(address(signer))]).await?;
			let api = self.api().await;
			match submit_with_nonce(&api, signer, nonce, pallet, call, Raw(&args)).await {
				Err(ChainError::Transaction { reason, .. })
					if !reconnected && lost_connection(&reason) =>
				{
					tracing::warn!(url = %self.url, %reason, "lost the node: reconnecting");
					*self.api.write().await = connect_ws(&self.url, self.patience).await?;
					reconnected = true;
				}
				other => return other,
			}
		}
	}
}

/// Bytes already SCALE-encoded, encoded as themselves (a call's arguments, or a whole call
/// for `Sudo.sudo`).
pub struct Raw<'a>(pub &'a [u8]);

impl Encode for Raw<'_> {
	fn size_hint(&self) -> usize {
		self.0.len()
	}

	fn encode_to<O: codec::Output + ?Sized>(&self, dest: &mut O) {
		dest.write(self.0);
	}
}

/// Signs `pallet.call(args)` with `nonce`, submits it through `api` and waits until it is in a
/// best block and succeeded; returns its events.
pub async fn submit_with_nonce(
	api: &OnlineClient<PolkadotConfig>,
	signer: &Keypair,
	nonce: u64,
	pallet: &str,
	call: &str,
	args: impl Encode,
) -> Result<subxt::extrinsics::ExtrinsicEvents<PolkadotConfig>, ChainError> {
	use subxt::transactions::TransactionStatus;
	let name = format!("{pallet}.{call}");
	let fail = |reason: String| ChainError::Transaction { call: name.clone(), reason };
	let tx = subxt::dynamic::transaction(pallet, call, Args(args.encode()));
	let params =
		subxt::config::DefaultExtrinsicParamsBuilder::<PolkadotConfig>::new().nonce(nonce).build();
	let mut progress = api
		.at_current_block()
		.await
		.map_err(|e| fail(e.to_string()))?
		.transactions()
		.sign_and_submit_then_watch(&tx, signer, params)
		.await
		.map_err(|e| fail(e.to_string()))?;
	while let Some(status) = progress.next().await {
		match status.map_err(|e| fail(e.to_string()))? {
			TransactionStatus::InBestBlock(in_block)
			| TransactionStatus::InFinalizedBlock(in_block) => {
				return in_block.wait_for_success().await.map_err(|e| fail(e.to_string()));
			}
			TransactionStatus::Error { message }
			| TransactionStatus::Invalid { message }
			| TransactionStatus::Dropped { message } => return Err(fail(message)),
			_ => continue,
		}
	}
	Err(fail("the status stream ended before inclusion".into()))
}
