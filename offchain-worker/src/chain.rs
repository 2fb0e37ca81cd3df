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

/// A connection to one node.
pub struct Chain {
	url: String,
	rpc: HttpClient,
	api: OnlineClient<PolkadotConfig>,
}

impl Chain {
	/// Connects to the node at `url` (`ws://host:port`), retrying until `patience` runs out
	/// (a node that is still starting).
	pub async fn connect(url: &str, patience: Duration) -> Result<Self, ChainError> {
		let start = Instant::now();
		let http = url.replacen("ws://", "http://", 1).replacen("wss://", "https://", 1);
		loop {
			let attempt = async {
				let rpc = HttpClientBuilder::default()
					.max_request_size(16 * 1024 * 1024)
					.build(&http)
					.map_err(|e| e.to_string())?;
				let api = OnlineClient::<PolkadotConfig>::from_url(url)
					.await
					.map_err(|e| e.to_string())?;
				Ok::<_, String>((rpc, api))
			};
			match attempt.await {
				Ok((rpc, api)) => return Ok(Self { url: url.into(), rpc, api }),
				Err(reason) if start.elapsed() >= patience => {
					return Err(ChainError::Unreachable {
						url: url.into(),
						waited: start.elapsed(),
						reason,
					})
				}
				Err(reason) => {
					tracing::debug!(url, reason, "node not reachable yet");
					tokio::time::sleep(Duration::from_millis(500)).await;
				}
			}
		}
	}

	/// The node's address.
	pub fn url(&self) -> &str {
		&self.url
	}

	/// The subxt client.
	pub fn api(&self) -> &OnlineClient<PolkadotConfig> {
		&self.api
	}

	/// Calls JSON-RPC `method` and decodes its result.
	pub async fn rpc<T: DeserializeOwned>(
		&self,
		method: &str,
		params: Vec<Value>,
	) -> Result<T, ChainError> {
		let fail = |reason: String| ChainError::Rpc { method: method.into(), reason };
		let mut array = ArrayParams::new();
		for p in params {
			array.insert(p).map_err(|e| fail(e.to_string()))?;
		}
		let value: Value =
			self.rpc.request(method, array).await.map_err(|e| fail(e.to_string()))?;
		serde_json::from_value(value).map_err(|e| fail(e.to_string()))
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
	/// lags when one transaction follows another quickly).
	pub async fn submit(
		&self,
		signer: &Keypair,
		pallet: &str,
		call: &str,
		args: impl Encode,
	) -> Result<subxt::extrinsics::ExtrinsicEvents<PolkadotConfig>, ChainError> {
		let nonce: u64 =
			self.rpc("system_accountNextIndex", vec![Value::from(address(signer))]).await?;
		submit_with_nonce(&self.api, signer, nonce, pallet, call, args).await
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
