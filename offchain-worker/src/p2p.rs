//! Peer-to-peer between workers, on libp2p (TCP, Noise, Yamux, tokio).
//!
//! - **Announcements** (gossipsub, topic [`ANNOUNCE_TOPIC`]): every few seconds each worker
//!   publishes its hardware, the content it serves and the tasks it holds ([`Announce`]).
//! - **Discovery**: mDNS on the local network, bootstrap addresses given by the user, and a
//!   Kademlia DHT (protocol [`KAD_PROTOCOL`]) over every peer reached. `identify` tells each
//!   peer the others' listen addresses, which fill the DHT's routing table.
//! - **Finding content by its hash**: each worker puts a DHT provider record under every
//!   [`Key`] it serves (its datasets and traces), and looks the providers of a key up before
//!   fetching it. A solver that knows only a bootstrap peer thus finds the worker holding a
//!   task's dataset from the dataset's root alone, and dials it with the addresses the lookup
//!   returned. A provider record is only a hint: what it serves is checked like anyone's.
//! - **Workers others cannot dial** (behind NAT or a firewall, or not listening at all): AutoNAT
//!   asks peers to dial this worker back at the addresses it listens on and is seen at; when
//!   none can, the worker is *private* and listens through a relay (circuit relay v2): a peer
//!   that offers the relay service ([`P2pConfig::relay_service`], on by default, with bounded
//!   circuits), or those given ([`P2pConfig::relays`]). Its relayed address reaches the DHT
//!   and identify like any other, so a solver that looks up a dataset's providers dials the
//!   private worker through the relay; DCUtR then tries to punch a direct connection.
//! - **Fetching by hash** (request-response, protocol [`FETCH_PROTOCOL`]): content is named by
//!   the hash it is checked against ([`Key`]: a dataset by its Merkle root, a checkpoint by its
//!   state hash `h_t`, a trace by its trace root). A peer answers a [`Request::Manifest`] with
//!   the content's length and the BLAKE2-256 hash of every 64 KiB chunk, and a
//!   [`Request::Chunk`] with the chunk of that hash. The fetcher checks every chunk against
//!   the manifest as it arrives (a peer serving a bad one is dropped and the chunk fetched from
//!   another), then the whole content against its key (a lying manifest is caught there, and
//!   the next peer's used).
//!
//! The wire format is SCALE, length-prefixed: the codec every other piece of the protocol
//! uses (libp2p ships CBOR and JSON codecs, which would need a second serialization of the
//! same types).

use std::{
	collections::{HashMap, HashSet},
	io,
	path::Path,
	sync::Arc,
	time::Duration,
};

use codec::{Decode, Encode};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{
	autonat, dcutr, gossipsub, identify, identity, kad, mdns,
	multiaddr::Protocol,
	noise, relay,
	request_response::{self, OutboundRequestId, ProtocolSupport},
	swarm::{behaviour::toggle::Toggle, dial_opts::DialOpts, NetworkBehaviour, SwarmEvent},
	tcp, yamux, Multiaddr, PeerId, StreamProtocol,
};
use sp_core::H256;
use sp_crypto_hashing::blake2_256;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use trainet_primitives::trace::trace_root;

use crate::{
	checkpoint::{encode_state, Journal},
	metrics::metrics,
	solver::Local,
	train::Training,
};

/// The gossipsub topic of announcements.
pub const ANNOUNCE_TOPIC: &str = "trainet/announce/1";
/// The request-response protocol of fetching.
pub const FETCH_PROTOCOL: &str = "/trainet/fetch/1";
/// The Kademlia protocol of the workers' DHT (its own, so that it never mixes with another
/// network's).
pub const KAD_PROTOCOL: &str = "/trainet/kad/1";
/// The identify protocol's version string.
const IDENTIFY_PROTOCOL: &str = "/trainet/id/1";
/// The longest a DHT lookup of a key's providers may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(20);
/// The least time between two re-publications of every provider record prompted by new
/// peers (records are also re-published by Kademlia itself, every 12 hours).
const REPROVIDE_EVERY: Duration = Duration::from_secs(30);
/// The size of a chunk (the last one may be shorter).
pub const CHUNK: usize = 64 * 1024;
/// The most chunks one piece of content may have (4 GiB).
pub const MAX_CHUNKS: usize = 1 << 16;
/// The largest message accepted on the wire (a full manifest, with room to spare).
const MAX_MESSAGE: usize = 4 << 20;
/// The longest one fetch may take, over every peer asked: a peer that serves slowly (or
/// serves a cheat's trace slowly) cannot hold a verifier past a challenge window.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(600);
/// The most peers whose announcements are kept (more are ignored until some disconnect).
const MAX_ANNOUNCED: usize = 1024;
/// The most bytes of chunks kept to be served; past it the oldest manifests' are dropped
/// (a peer asks for a manifest again).
const MAX_SERVED_BYTES: usize = 256 << 20;
/// The relay service's bounds: a circuit carries at most this many bytes (a dataset or a
/// model fetched from a private worker when no direct connection could be punched; libp2p's
/// default, 128 KiB, is meant for the hole punch alone)...
const RELAY_CIRCUIT_BYTES: u64 = 1 << 30;
/// ...for at most this long,
const RELAY_CIRCUIT_TIME: Duration = Duration::from_secs(3600);
/// ...and at most this many circuits at once, 4 a peer (libp2p's defaults).
const RELAY_CIRCUITS: usize = 16;
/// AutoNAT's first probe, this long after start (libp2p's default is 15 s)...
const AUTONAT_BOOT: Duration = Duration::from_secs(3);
/// ...and the next, this long after one that could not decide (libp2p's default is 90 s).
const AUTONAT_RETRY: Duration = Duration::from_secs(20);
/// A relay that refused a reservation is not chosen again for this long.
const RELAY_RETRY: Duration = Duration::from_secs(60);

/// A piece of content, named by the hash it is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum Key {
	/// A dataset, by its Merkle root (what task specs commit to).
	Dataset(H256),
	/// A checkpoint, by its state hash `h_t`.
	State(H256),
	/// A trace `h_0 ..= h_N`, by its trace root (what commitments hold).
	Trace(H256),
}

impl std::fmt::Display for Key {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		match self {
			Key::Dataset(h) => write!(f, "dataset {h:?}"),
			Key::State(h) => write!(f, "checkpoint {h:?}"),
			Key::Trace(h) => write!(f, "trace {h:?}"),
		}
	}
}

/// How a piece of content splits into chunks.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Manifest {
	/// Its length in bytes.
	pub len: u64,
	/// The BLAKE2-256 hash of each chunk, in order.
	pub chunks: Vec<H256>,
}

/// A question to a peer.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Request {
	/// How is this content chunked?
	Manifest(Key),
	/// The chunk with this hash.
	Chunk(H256),
}

/// A peer's answer.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Response {
	/// The manifest, if the peer has the content.
	Manifest(Option<Manifest>),
	/// The chunk, if the peer has it.
	Chunk(Option<Vec<u8>>),
}

/// What a worker tells its peers about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct Announce {
	/// Logical CPUs.
	pub cpus: u32,
	/// Its training device (`cpu`, or a GPU's name).
	pub device: String,
	/// Content it serves.
	pub serves: Vec<Key>,
	/// Tasks it holds journals of (it trained them, and serves their checkpoints).
	pub tasks: Vec<u64>,
}

/// What can go wrong between peers.
#[derive(Debug, Error)]
pub enum P2pError {
	/// Starting the peer failed.
	#[error("starting the peer-to-peer node: {0}")]
	Setup(String),
	/// An address that is not a libp2p multiaddress.
	#[error("{0:?} is not a peer address (like /ip4/127.0.0.1/tcp/30444/p2p/12D3KooW...)")]
	BadAddress(String),
	/// The node's task stopped (a bug).
	#[error("the peer-to-peer node stopped")]
	Stopped,
	/// The peers asked did not serve the content within the fetch deadline.
	#[error("{key} was not served within {deadline:?}")]
	TooSlow {
		/// The content.
		key: Key,
		/// The deadline.
		deadline: Duration,
	},
	/// No peer connected in time.
	#[error("no peer connected within {0:?} (check the --peer addresses)")]
	NoPeers(Duration),
	/// No connected peer gave the content intact.
	#[error("no peer served {key} intact (asked {asked} peers{rejected})")]
	NotFound {
		/// The content.
		key: Key,
		/// How many peers were asked.
		asked: usize,
		/// Those rejected for bad data, as `; rejected: ...`.
		rejected: String,
	},
	/// A fetched piece of content could not be stored.
	#[error("storing {key}: {reason}")]
	Store {
		/// The content.
		key: Key,
		/// Why.
		reason: String,
	},
}

/// The content a worker serves and accepts: its datasets, checkpoints and task traces, as
/// kept by [`Local`].
pub struct Library {
	local: Local,
	/// Serve corrupted chunks (for the tests that show they are rejected).
	corrupt: bool,
	/// Chunks of content whose manifest was asked for, by hash, with the order they came in
	/// (bounded by [`MAX_SERVED_BYTES`]).
	chunks: std::sync::Mutex<ChunkCache>,
}

/// The chunks a worker serves, oldest first out.
#[derive(Default)]
struct ChunkCache {
	by_hash: HashMap<H256, Vec<u8>>,
	order: std::collections::VecDeque<H256>,
	bytes: usize,
}

impl ChunkCache {
	fn insert(&mut self, h: H256, chunk: &[u8]) {
		if self.by_hash.contains_key(&h) {
			return;
		}
		while self.bytes.saturating_add(chunk.len()) > MAX_SERVED_BYTES {
			let Some(old) = self.order.pop_front() else { break };
			if let Some(c) = self.by_hash.remove(&old) {
				self.bytes = self.bytes.saturating_sub(c.len());
			}
		}
		self.bytes = self.bytes.saturating_add(chunk.len());
		self.order.push_back(h);
		self.by_hash.insert(h, chunk.to_vec());
	}

	fn get(&self, h: &H256) -> Option<&Vec<u8>> {
		self.by_hash.get(h)
	}
}

impl Library {
	/// Serves and accepts into `local`; with `corrupt`, every chunk served has a byte flipped.
	pub fn new(local: Local, corrupt: bool) -> Self {
		Self { local, corrupt, chunks: Default::default() }
	}

	/// The traces of this worker's journals, by trace root.
	fn traces(&self) -> HashMap<H256, Vec<H256>> {
		Journal::tasks(&self.local.journals)
			.into_iter()
			.filter_map(|task| Journal::open(&self.local.journals, task).ok())
			.map(|j| j.states().to_vec())
			.filter(|states| !states.is_empty())
			.map(|states| (trace_root(&states), states))
			.collect()
	}

	/// The bytes of `key`, if this worker has them.
	pub fn bytes(&self, key: &Key) -> Option<Vec<u8>> {
		match key {
			Key::Dataset(root) => self.local.datasets.bytes(root).ok().flatten(),
			Key::State(h) => match self.local.checkpoints.bytes(h).ok().flatten() {
				Some(b) => Some(b),
				None => self.recompute(h).map(|state| encode_state(&state)),
			},
			Key::Trace(root) => {
				self.traces().remove(root).map(|states| states.iter().flat_map(|h| h.0).collect())
			}
		}
	}

	/// State `h` of one of this worker's traces, recomputed from the nearest checkpoint
	/// before it (any entry of the trace on demand, though checkpoints are kept every K steps
	/// only).
	fn recompute(&self, h: &H256) -> Option<Vec<trainet_primitives::repops::Matrix>> {
		let dir = &self.local.journals;
		for task in Journal::tasks(dir) {
			let Ok(journal) = Journal::open(dir, task) else { continue };
			let states = journal.states();
			let Some(k) = states.iter().position(|s| s == h) else { continue };
			let spec = Journal::spec(dir, task)?;
			let points = spec.trace_points()?;
			let t = points.step(k as u32)?;
			let data = self.local.datasets.get(&spec.dataset.root).ok()?;
			let (from, state) = self.local.checkpoints.latest(states, k).ok()??;
			let c = points.step(from)?;
			tracing::debug!(task, from = c, to = t, "recomputing a state asked for");
			let mut run = Training::resume(spec, data, c, state).ok()?;
			while run.steps_done() < t {
				run.step().ok()?;
			}
			// Only ever serve the state asked for (a run that cheated on purpose cannot be
			// reproduced past its fault).
			return (run.state_hash() == *h).then(|| run.state().to_vec());
		}
		None
	}

	/// The manifest of `key` (its chunks kept to be served).
	fn manifest(&self, key: &Key) -> Option<Manifest> {
		let bytes = self.bytes(key)?;
		let mut chunks = Vec::new();
		let mut cache = self.chunks.lock().ok()?;
		for chunk in bytes.chunks(CHUNK) {
			let h = H256(blake2_256(chunk));
			cache.insert(h, chunk);
			chunks.push(h);
		}
		Some(Manifest { len: bytes.len() as u64, chunks })
	}

	fn answer(&self, request: Request) -> Response {
		match request {
			Request::Manifest(key) => Response::Manifest(self.manifest(&key)),
			Request::Chunk(h) => {
				let chunk = self.chunks.lock().ok().and_then(|c| c.get(&h).cloned());
				if chunk.is_some() {
					metrics().chunks_served.inc();
				}
				Response::Chunk(chunk.map(|mut c| {
					if self.corrupt {
						if let Some(b) = c.first_mut() {
							*b ^= 0x5a;
						}
					}
					c
				}))
			}
		}
	}

	/// Checks that `bytes` are the content `key` names and stores them.
	pub fn accept(&self, key: &Key, bytes: &[u8]) -> Result<(), String> {
		match key {
			Key::Dataset(root) => {
				self.local.datasets.put_bytes(root, bytes).map(drop).map_err(|e| e.to_string())
			}
			Key::State(h) => {
				self.local.checkpoints.put_bytes(h, bytes).map(drop).map_err(|e| e.to_string())
			}
			Key::Trace(root) => {
				let states = decode_trace(bytes)?;
				if trace_root(&states) != *root {
					return Err("the hashes are not the trace with that root".into());
				}
				Ok(())
			}
		}
	}

	/// What this worker announces.
	pub fn announcement(&self) -> Announce {
		let mut serves: Vec<Key> =
			self.local.datasets.roots().into_iter().map(Key::Dataset).collect();
		serves.extend(self.traces().into_keys().map(Key::Trace));
		Announce {
			cpus: std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1),
			device: "cpu".into(),
			serves,
			tasks: Journal::tasks(&self.local.journals),
		}
	}
}

/// Whether `address` can be dialled by another machine (not an unspecified address like
/// `0.0.0.0`).
fn routable(address: &Multiaddr) -> bool {
	address.iter().all(|p| match p {
		Protocol::Ip4(ip) => !ip.is_unspecified(),
		Protocol::Ip6(ip) => !ip.is_unspecified(),
		_ => true,
	})
}

/// A trace's bytes as state hashes (32 bytes each).
pub fn decode_trace(bytes: &[u8]) -> Result<Vec<H256>, String> {
	if !bytes.len().is_multiple_of(32) {
		return Err(format!("{} bytes is not a list of 32-byte hashes", bytes.len()));
	}
	Ok(bytes.chunks_exact(32).map(H256::from_slice).collect())
}

/// The fetch protocol's codec: SCALE, each message prefixed by its length (u32, little-endian).
#[derive(Clone, Default)]
pub struct FetchCodec;

async fn read_message<M: Decode, T: futures::AsyncRead + Unpin + Send>(
	io: &mut T,
) -> io::Result<M> {
	let mut len = [0u8; 4];
	io.read_exact(&mut len).await?;
	let len = u32::from_le_bytes(len) as usize;
	if len > MAX_MESSAGE {
		return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{len}-byte message")));
	}
	let mut buf = vec![0u8; len];
	io.read_exact(&mut buf).await?;
	M::decode(&mut &buf[..]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

async fn write_message<M: Encode, T: futures::AsyncWrite + Unpin + Send>(
	io: &mut T,
	message: &M,
) -> io::Result<()> {
	let bytes = message.encode();
	let len = u32::try_from(bytes.len())
		.map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too large"))?;
	io.write_all(&len.to_le_bytes()).await?;
	io.write_all(&bytes).await?;
	io.close().await
}

#[async_trait::async_trait]
impl request_response::Codec for FetchCodec {
	type Protocol = StreamProtocol;
	type Request = Request;
	type Response = Response;

	async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
	where
		T: futures::AsyncRead + Unpin + Send,
	{
		read_message(io).await
	}

	async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
	where
		T: futures::AsyncRead + Unpin + Send,
	{
		read_message(io).await
	}

	async fn write_request<T>(
		&mut self,
		_: &StreamProtocol,
		io: &mut T,
		request: Request,
	) -> io::Result<()>
	where
		T: futures::AsyncWrite + Unpin + Send,
	{
		write_message(io, &request).await
	}

	async fn write_response<T>(
		&mut self,
		_: &StreamProtocol,
		io: &mut T,
		response: Response,
	) -> io::Result<()>
	where
		T: futures::AsyncWrite + Unpin + Send,
	{
		write_message(io, &response).await
	}
}

#[derive(NetworkBehaviour)]
struct Behaviour {
	gossip: gossipsub::Behaviour,
	mdns: Toggle<mdns::tokio::Behaviour>,
	fetch: request_response::Behaviour<FetchCodec>,
	kad: kad::Behaviour<kad::store::MemoryStore>,
	identify: identify::Behaviour,
	autonat: autonat::Behaviour,
	relay: Toggle<relay::Behaviour>,
	relay_client: relay::client::Behaviour,
	dcutr: dcutr::Behaviour,
}

/// A record key of the DHT for a piece of content: its SCALE encoding.
fn record_key(key: &Key) -> kad::RecordKey {
	kad::RecordKey::new(&key.encode())
}

/// How to start a peer.
#[derive(Clone, Debug)]
pub struct P2pConfig {
	/// Addresses to listen on.
	pub listen: Vec<Multiaddr>,
	/// Peers to dial at start.
	pub bootstrap: Vec<Multiaddr>,
	/// Find peers on the local network with mDNS.
	pub mdns: bool,
	/// How often to announce.
	pub announce_every: Duration,
	/// Relays to listen through (peer addresses), whatever AutoNAT finds: for a worker that
	/// knows it cannot be dialled. A private worker also picks a relay by itself.
	pub relays: Vec<Multiaddr>,
	/// Offer the relay service to private peers (bounded circuits).
	pub relay_service: bool,
	/// Count private and loopback addresses as reachable (a cluster on one network): AutoNAT
	/// otherwise tests only global addresses, and a worker on a LAN never learns it is
	/// reachable there.
	pub private_network: bool,
}

impl P2pConfig {
	/// A peer listening on `listen`, dialling `bootstrap` at start, with the relay service,
	/// no mDNS and no relays of its own.
	pub fn new(listen: Vec<Multiaddr>, bootstrap: Vec<Multiaddr>) -> Self {
		Self {
			listen,
			bootstrap,
			mdns: false,
			announce_every: Duration::from_secs(5),
			relays: Vec::new(),
			relay_service: true,
			private_network: false,
		}
	}
}

/// The address of listening through the relay at `relay` (a peer address ending in
/// `/p2p/<id>`).
fn circuit(relay: &Multiaddr) -> Multiaddr {
	relay.clone().with(Protocol::P2pCircuit)
}

/// Whether `address` goes through a relay.
fn relayed(address: &Multiaddr) -> bool {
	address.iter().any(|p| p == Protocol::P2pCircuit)
}

/// Parses a multiaddress, with an error that says what one looks like.
pub fn parse_address(text: &str) -> Result<Multiaddr, P2pError> {
	text.parse().map_err(|_| P2pError::BadAddress(text.into()))
}

/// The peer id at the end of `address` (`/p2p/<id>`), if any.
pub fn peer_of(address: &Multiaddr) -> Option<PeerId> {
	address.iter().find_map(|p| match p {
		libp2p::multiaddr::Protocol::P2p(id) => Some(id),
		_ => None,
	})
}

/// This worker's libp2p identity, kept in `dir/p2p.key` (created on first use), so its peer
/// id survives restarts.
pub fn identity(dir: &Path) -> Result<identity::Keypair, P2pError> {
	let path = dir.join("p2p.key");
	let fail = |e: String| P2pError::Setup(format!("{}: {e}", path.display()));
	match crate::files::read_if_present(&path).map_err(|e| fail(e.to_string()))? {
		Some(bytes) => {
			identity::Keypair::from_protobuf_encoding(&bytes).map_err(|e| fail(e.to_string()))
		}
		None => {
			let key = identity::Keypair::generate_ed25519();
			let bytes = key.to_protobuf_encoding().map_err(|e| fail(e.to_string()))?;
			crate::files::write_atomically(&path, &bytes).map_err(|e| fail(e.to_string()))?;
			Ok(key)
		}
	}
}

enum Command {
	Request { peer: PeerId, request: Request, reply: oneshot::Sender<Result<Response, String>> },
	Connected { reply: oneshot::Sender<Vec<PeerId>> },
	Providers { key: Key, reply: oneshot::Sender<Vec<PeerId>> },
	Lookup { key: Key, reply: oneshot::Sender<Vec<PeerId>> },
	Listening { reply: oneshot::Sender<Vec<Multiaddr>> },
	Reachability { reply: oneshot::Sender<Reachability> },
}

/// What this worker knows of how others reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reachability {
	/// AutoNAT's finding: `Some(true)` public, `Some(false)` private, `None` not known yet.
	pub public: Option<bool>,
	/// The relayed addresses it listens on.
	pub relayed: Vec<Multiaddr>,
	/// The peers it holds a connection through a relay with.
	pub relayed_peers: Vec<PeerId>,
	/// The peers a hole punch (DCUtR) reached directly.
	pub punched: Vec<PeerId>,
}

/// A running peer: a handle to the libp2p node's task.
#[derive(Clone)]
pub struct P2p {
	commands: mpsc::Sender<Command>,
	peer_id: PeerId,
	library: Arc<Library>,
}

impl P2p {
	/// Starts a peer with identity `key`, serving and accepting `library`.
	pub async fn start(
		key: identity::Keypair,
		config: P2pConfig,
		library: Arc<Library>,
	) -> Result<Self, P2pError> {
		let setup = |e: &dyn std::fmt::Display| P2pError::Setup(e.to_string());
		let peer_id = key.public().to_peer_id();
		let mdns_on = config.mdns;
		let (relay_service, private_network) = (config.relay_service, config.private_network);
		let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
			.with_tokio()
			.with_tcp(
				tcp::Config::default().nodelay(true),
				noise::Config::new,
				yamux::Config::default,
			)
			.map_err(|e| setup(&e))?
			.with_dns()
			.map_err(|e| setup(&e))?
			.with_relay_client(noise::Config::new, yamux::Config::default)
			.map_err(|e| setup(&e))?
			.with_behaviour(|key, relay_client| {
				let gossip_config = gossipsub::ConfigBuilder::default()
					.heartbeat_interval(Duration::from_secs(1))
					.validation_mode(gossipsub::ValidationMode::Strict)
					.build()?;
				let gossip = gossipsub::Behaviour::new(
					gossipsub::MessageAuthenticity::Signed(key.clone()),
					gossip_config,
				)?;
				let mdns = match mdns_on {
					true => Some(mdns::tokio::Behaviour::new(
						mdns::Config::default(),
						key.public().to_peer_id(),
					)?),
					false => None,
				};
				let fetch = request_response::Behaviour::with_codec(
					FetchCodec,
					[(StreamProtocol::new(FETCH_PROTOCOL), ProtocolSupport::Full)],
					request_response::Config::default()
						.with_request_timeout(Duration::from_secs(30)),
				);
				let kad = {
					let mut config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
					config.set_query_timeout(LOOKUP_TIMEOUT);
					let id = key.public().to_peer_id();
					let mut kad =
						kad::Behaviour::with_config(id, kad::store::MemoryStore::new(id), config);
					// Every worker answers DHT queries (a worker that listens is reachable;
					// Kademlia would otherwise wait for an address confirmed by AutoNAT).
					kad.set_mode(Some(kad::Mode::Server));
					kad
				};
				// Peers learn a new (relayed) listen address at once, not at the next
				// periodic identify.
				let identify = identify::Behaviour::new(
					identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
						.with_push_listen_addr_updates(true),
				);
				let id = key.public().to_peer_id();
				let autonat = autonat::Behaviour::new(
					id,
					autonat::Config {
						boot_delay: AUTONAT_BOOT,
						retry_interval: AUTONAT_RETRY,
						only_global_ips: !private_network,
						..Default::default()
					},
				);
				let relay = relay_service.then(|| {
					relay::Behaviour::new(
						id,
						relay::Config {
							max_circuits: RELAY_CIRCUITS,
							max_circuit_bytes: RELAY_CIRCUIT_BYTES,
							max_circuit_duration: RELAY_CIRCUIT_TIME,
							..Default::default()
						},
					)
				});
				Ok(Behaviour {
					gossip,
					mdns: mdns.into(),
					fetch,
					kad,
					identify,
					autonat,
					relay: relay.into(),
					relay_client,
					dcutr: dcutr::Behaviour::new(id),
				})
			})
			.map_err(|e| setup(&e))?
			.with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
			.build();
		let topic = gossipsub::IdentTopic::new(ANNOUNCE_TOPIC);
		swarm.behaviour_mut().gossip.subscribe(&topic).map_err(|e| setup(&e))?;
		for address in &config.listen {
			swarm.listen_on(address.clone()).map_err(|e| setup(&e))?;
		}
		for address in &config.bootstrap {
			if let Some(peer) = peer_of(address) {
				swarm.behaviour_mut().kad.add_address(&peer, address.clone());
			}
			if let Err(e) = swarm.dial(address.clone()) {
				tracing::warn!(%address, "cannot dial: {e}");
			}
		}
		// The relays given are listened through from the node's first tick on (and again
		// whenever a reservation ends).
		if let Some(relay) = config.relays.iter().find(|r| peer_of(r).is_none()) {
			return Err(P2pError::BadAddress(relay.to_string()));
		}
		let (commands, rx) = mpsc::channel(64);
		let node = Node {
			bootstrap: config.bootstrap.clone(),
			swarm,
			topic,
			library: library.clone(),
			announce_every: config.announce_every,
			pending: HashMap::new(),
			announced: HashMap::new(),
			listening: Vec::new(),
			serving: HashMap::new(),
			lookups: HashMap::new(),
			provided: HashSet::new(),
			reprovide: false,
			reprovided: None,
			relays: HashMap::new(),
			relays_given: config.relays.clone(),
			through: HashMap::new(),
			refused: HashMap::new(),
			public: None,
			relayed_connections: HashMap::new(),
			punched: HashSet::new(),
			private_network: config.private_network,
			answers: {
				let (tx, rx) = mpsc::channel(64);
				(tx, Some(rx))
			},
		};
		tokio::spawn(node.run(rx));
		Ok(Self { commands, peer_id, library })
	}

	/// This peer's id.
	pub fn peer_id(&self) -> PeerId {
		self.peer_id
	}

	async fn ask<T>(
		&self,
		make: impl FnOnce(oneshot::Sender<T>) -> Command,
	) -> Result<T, P2pError> {
		let (reply, rx) = oneshot::channel();
		self.commands.send(make(reply)).await.map_err(|_| P2pError::Stopped)?;
		rx.await.map_err(|_| P2pError::Stopped)
	}

	/// The addresses this peer listens on (once bound), each ending in `/p2p/<id>`.
	pub async fn listening(&self, patience: Duration) -> Result<Vec<Multiaddr>, P2pError> {
		let start = std::time::Instant::now();
		loop {
			let addrs = self.ask(|reply| Command::Listening { reply }).await?;
			if !addrs.is_empty() || start.elapsed() > patience {
				let me = Protocol::P2p(self.peer_id);
				return Ok(addrs.into_iter().map(|a| a.with(me.clone())).collect());
			}
			tokio::time::sleep(Duration::from_millis(50)).await;
		}
	}

	/// How others reach this worker: AutoNAT's finding, its relayed addresses, and the peers
	/// it reaches through a relay or directly after a hole punch.
	pub async fn reachability(&self) -> Result<Reachability, P2pError> {
		self.ask(|reply| Command::Reachability { reply }).await
	}

	/// The peers connected now.
	pub async fn connected(&self) -> Result<Vec<PeerId>, P2pError> {
		self.ask(|reply| Command::Connected { reply }).await
	}

	/// Waits until at least one peer is connected.
	pub async fn wait_for_peers(&self, patience: Duration) -> Result<Vec<PeerId>, P2pError> {
		let start = std::time::Instant::now();
		loop {
			let peers = self.connected().await?;
			if !peers.is_empty() {
				return Ok(peers);
			}
			if start.elapsed() > patience {
				return Err(P2pError::NoPeers(patience));
			}
			tokio::time::sleep(Duration::from_millis(100)).await;
		}
	}

	/// The peers known to serve `key`: those the DHT names as its providers (looked up now,
	/// and dialled), then those that announced it.
	pub async fn providers(&self, key: Key) -> Result<Vec<PeerId>, P2pError> {
		let mut peers = self.lookup(key).await?;
		for p in self.ask(|reply| Command::Providers { key, reply }).await? {
			if !peers.contains(&p) {
				peers.push(p);
			}
		}
		Ok(peers)
	}

	/// The providers of `key` the DHT names (never this peer), each dialled as it is found
	/// with the addresses the lookup returned; within [`LOOKUP_TIMEOUT`].
	pub async fn lookup(&self, key: Key) -> Result<Vec<PeerId>, P2pError> {
		self.ask(|reply| Command::Lookup { key, reply }).await
	}

	/// Asks `peer` one question.
	pub async fn request(&self, peer: PeerId, request: Request) -> Result<Response, P2pError> {
		self.ask(|reply| Command::Request { peer, request, reply })
			.await?
			.map_err(|reason| P2pError::Setup(format!("asking {peer}: {reason}")))
	}

	/// Fetches `key` from the network, checking every chunk and the whole, and stores it in
	/// the library. Peers in `prefer` are asked first (in order), then those that announced
	/// the content, then every other connected peer. `progress(done, total)` is called with
	/// bytes. Returns the content and the peers whose chunks made it up, in order of first use.
	pub async fn fetch(
		&self,
		key: Key,
		prefer: &[PeerId],
		progress: impl FnMut(u64, u64),
	) -> Result<(Vec<u8>, Vec<PeerId>), P2pError> {
		self.fetch_bounded(key, u64::MAX, prefer, progress).await
	}

	/// [`Self::fetch`] of content known to be at most `max_len` bytes (a trace or a state,
	/// whose size the spec implies): a peer whose manifest announces more is rejected before
	/// any chunk is asked for.
	pub async fn fetch_bounded(
		&self,
		key: Key,
		max_len: u64,
		prefer: &[PeerId],
		progress: impl FnMut(u64, u64),
	) -> Result<(Vec<u8>, Vec<PeerId>), P2pError> {
		tokio::time::timeout(FETCH_DEADLINE, self.fetch_within(key, max_len, prefer, progress))
			.await
			.map_err(|_| P2pError::TooSlow { key, deadline: FETCH_DEADLINE })?
	}

	/// [`Self::fetch_bounded`] without its deadline.
	async fn fetch_within(
		&self,
		key: Key,
		max_len: u64,
		prefer: &[PeerId],
		mut progress: impl FnMut(u64, u64),
	) -> Result<(Vec<u8>, Vec<PeerId>), P2pError> {
		let mut candidates: Vec<PeerId> = prefer.to_vec();
		for p in self.providers(key).await?.into_iter().chain(self.connected().await?) {
			if !candidates.contains(&p) {
				candidates.push(p);
			}
		}
		let mut rejected: HashSet<PeerId> = HashSet::new();
		for source in candidates.clone() {
			if rejected.contains(&source) {
				continue;
			}
			let manifest = match self.request(source, Request::Manifest(key)).await {
				Ok(Response::Manifest(Some(m))) => m,
				Ok(_) => {
					tracing::debug!(peer = %source, %key, "does not have it");
					continue;
				}
				Err(e) => {
					tracing::debug!(peer = %source, %key, "no answer: {e}");
					continue;
				}
			};
			if manifest.chunks.len() > MAX_CHUNKS
				|| manifest.len > (manifest.chunks.len() * CHUNK) as u64
				|| manifest.len > max_len
			{
				tracing::warn!(peer = %source, %key, "an impossible manifest: peer rejected");
				rejected.insert(source);
				continue;
			}
			let mut bytes = Vec::with_capacity(manifest.len as usize);
			let mut served: Vec<PeerId> = Vec::new();
			let mut complete = true;
			for (i, h) in manifest.chunks.iter().enumerate() {
				let order: Vec<PeerId> =
					std::iter::once(source).chain(candidates.iter().copied()).collect();
				let mut got = None;
				for peer in order {
					if rejected.contains(&peer) {
						continue;
					}
					match self.request(peer, Request::Chunk(*h)).await {
						Ok(Response::Chunk(Some(c))) if H256(blake2_256(&c)) == *h => {
							metrics().chunks_fetched.inc();
							if !served.contains(&peer) {
								served.push(peer);
							}
							got = Some(c);
							break;
						}
						Ok(Response::Chunk(Some(_))) => {
							tracing::warn!(
								%peer, %key, chunk = i,
								"served a chunk whose hash is not the manifest's: rejected, \
								 asking another peer"
							);
							metrics().chunks_rejected.inc();
							rejected.insert(peer);
						}
						_ => {}
					}
				}
				let Some(c) = got else {
					complete = false;
					break;
				};
				bytes.extend_from_slice(&c);
				progress(bytes.len() as u64, manifest.len);
			}
			if !complete {
				continue;
			}
			match self.library.accept(&key, &bytes) {
				Ok(()) => return Ok((bytes, served)),
				Err(reason) => {
					tracing::warn!(peer = %source, %key, "its content is not what the key names: {reason}");
					rejected.insert(source);
				}
			}
		}
		let mut names: Vec<String> = rejected.iter().map(|p| p.to_string()).collect();
		names.sort();
		Err(P2pError::NotFound {
			key,
			asked: candidates.len(),
			rejected: if names.is_empty() {
				String::new()
			} else {
				format!("; rejected: {}", names.join(", "))
			},
		})
	}
}

struct Node {
	/// Dialled again while not connected (a peer that started later, or restarted).
	bootstrap: Vec<Multiaddr>,
	swarm: libp2p::Swarm<Behaviour>,
	topic: gossipsub::IdentTopic,
	library: Arc<Library>,
	announce_every: Duration,
	pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Response, String>>>,
	announced: HashMap<PeerId, Announce>,
	listening: Vec<Multiaddr>,
	/// Manifests being prepared off the network loop (a state may be recomputed), by peer.
	serving: HashMap<PeerId, usize>,
	/// Where those answers come back.
	answers: (mpsc::Sender<Answer>, Option<mpsc::Receiver<Answer>>),
	/// DHT lookups of providers under way: the providers found so far, and who waits.
	lookups: HashMap<kad::QueryId, (Vec<PeerId>, oneshot::Sender<Vec<PeerId>>)>,
	/// The keys this worker has put provider records under.
	provided: HashSet<Key>,
	/// New peers joined the routing table since the records were last published.
	reprovide: bool,
	/// When every record was last re-published.
	reprovided: Option<std::time::Instant>,
	/// Peers that offer the relay service, at an address of theirs (from identify).
	relays: HashMap<PeerId, Multiaddr>,
	/// The relays given to listen through, whatever AutoNAT finds.
	relays_given: Vec<Multiaddr>,
	/// The relays listened through (or being reserved), by listener.
	through: HashMap<libp2p::core::transport::ListenerId, PeerId>,
	/// Relays a reservation failed with, and when: not chosen again for [`RELAY_RETRY`].
	refused: HashMap<PeerId, std::time::Instant>,
	/// AutoNAT's finding: public, private, or not known yet.
	public: Option<bool>,
	/// Connections through a relay, by peer.
	relayed_connections: HashMap<PeerId, HashSet<libp2p::swarm::ConnectionId>>,
	/// Peers a hole punch reached directly.
	punched: HashSet<PeerId>,
	/// Count this worker's private (LAN, loopback) listen addresses as reachable.
	private_network: bool,
}

/// A manifest prepared off the network loop, for the peer that asked.
type Answer = (PeerId, request_response::ResponseChannel<Response>, Response);

/// The most manifests prepared for one peer at once; a peer asking for more is answered that
/// the content is not here (it may ask again later).
const MAX_SERVING_PER_PEER: usize = 2;

impl Node {
	async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
		let mut tick = tokio::time::interval(self.announce_every);
		let Some(mut answers) = self.answers.1.take() else { return };
		loop {
			tokio::select! {
				command = commands.recv() => match command {
					Some(c) => self.command(c),
					// Every handle is gone: stop.
					None => return,
				},
				Some((peer, channel, response)) = answers.recv() => {
					if let Some(n) = self.serving.get_mut(&peer) {
						*n = n.saturating_sub(1);
						if *n == 0 {
							self.serving.remove(&peer);
						}
					}
					let _ = self.swarm.behaviour_mut().fetch.send_response(channel, response);
				}
				event = self.swarm.select_next_some() => self.event(event),
				_ = tick.tick() => {
					self.redial();
					self.listen_through_relays();
					let announcement = self.library.announcement();
					self.provide(&announcement.serves);
					self.announce(&announcement);
				}
			}
		}
	}

	fn redial(&mut self) {
		let nobody = self.swarm.connected_peers().next().is_none();
		for address in self.bootstrap.clone() {
			let absent = match peer_of(&address) {
				Some(peer) => !self.swarm.is_connected(&peer),
				None => nobody,
			};
			if absent {
				tracing::debug!(%address, "dialling again");
				let _ = self.swarm.dial(address);
			}
		}
	}

	/// Listens through the relays given that are connected and not listened through now
	/// (dialling those not connected: listened through once they are); and, when AutoNAT
	/// found this worker private and it listens through no relay, through one of its peers
	/// that offer the service (one that refused a reservation is left alone for
	/// [`RELAY_RETRY`]).
	fn listen_through_relays(&mut self) {
		let through: HashSet<PeerId> = self.through.values().copied().collect();
		let mut chosen: Vec<(PeerId, Multiaddr)> = Vec::new();
		for relay in self.relays_given.clone() {
			let Some(peer) = peer_of(&relay) else { continue };
			if through.contains(&peer) || chosen.iter().any(|(p, _)| *p == peer) {
				continue;
			}
			if self.swarm.is_connected(&peer) {
				chosen.push((peer, relay));
				continue;
			}
			let dial = DialOpts::peer_id(peer)
				.addresses(vec![relay.clone()])
				.condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
				.build();
			if let Err(e) = self.swarm.dial(dial) {
				tracing::debug!(%relay, "dialling the relay: {e}");
			}
		}
		self.refused.retain(|_, since| since.elapsed() < RELAY_RETRY);
		if self.public == Some(false) && through.is_empty() && chosen.is_empty() {
			let mut offered: Vec<(&PeerId, &Multiaddr)> = self
				.relays
				.iter()
				.filter(|(p, _)| !self.refused.contains_key(*p) && self.swarm.is_connected(p))
				.collect();
			offered.sort();
			if let Some((peer, address)) = offered.first() {
				chosen.push((**peer, (*address).clone()));
			}
		}
		for (peer, relay) in chosen {
			match self.swarm.listen_on(circuit(&relay)) {
				Ok(id) => {
					tracing::info!(relay = %peer, "listening through a relay");
					self.through.insert(id, peer);
				}
				Err(e) => tracing::warn!(%relay, "cannot listen through the relay: {e}"),
			}
		}
	}

	/// A peer told who it is: a DHT peer joins the routing table at the addresses it listens
	/// on; a relay is remembered.
	fn identified(&mut self, peer: PeerId, info: identify::Info) {
		let speaks = |name: &str| info.protocols.iter().any(|p| p.as_ref() == name);
		if speaks(KAD_PROTOCOL) {
			for address in info.listen_addrs.iter().filter(|a| routable(a)) {
				self.swarm.behaviour_mut().kad.add_address(&peer, address.clone());
			}
		}
		if speaks(relay::HOP_PROTOCOL_NAME.as_ref()) {
			// A relay is reached directly: an address of its own, not through another relay.
			let direct = info.listen_addrs.iter().find(|a| routable(a) && !relayed(a));
			if let Some(address) = direct {
				let address = match peer_of(address) {
					Some(_) => address.clone(),
					None => address.clone().with(Protocol::P2p(peer)),
				};
				if self.relays.insert(peer, address).is_none() {
					tracing::debug!(%peer, "offers the relay service");
				}
				if self.public == Some(false) && self.through.is_empty() {
					self.listen_through_relays();
				}
			}
		}
	}

	/// Puts provider records under the keys not yet provided; and under every key again when
	/// new peers joined the routing table (at most every [`REPROVIDE_EVERY`]), so that a
	/// record published before this worker knew anyone reaches the peers it met since.
	fn provide(&mut self, serves: &[Key]) {
		let again =
			self.reprovide && self.reprovided.is_none_or(|t| t.elapsed() >= REPROVIDE_EVERY);
		if again {
			self.reprovide = false;
			self.reprovided = Some(std::time::Instant::now());
		}
		for key in serves {
			if !again && self.provided.contains(key) {
				continue;
			}
			match self.swarm.behaviour_mut().kad.start_providing(record_key(key)) {
				Ok(_) => {
					tracing::debug!(%key, "providing");
					self.provided.insert(*key);
				}
				Err(e) => tracing::warn!(%key, "cannot put a provider record: {e}"),
			}
		}
	}

	fn announce(&mut self, announcement: &Announce) {
		let message = announcement.encode();
		match self.swarm.behaviour_mut().gossip.publish(self.topic.clone(), message) {
			Ok(_) | Err(gossipsub::PublishError::InsufficientPeers) => {}
			Err(e) => tracing::debug!("announcing: {e}"),
		}
	}

	fn command(&mut self, command: Command) {
		match command {
			Command::Request { peer, request, reply } => {
				let id = self.swarm.behaviour_mut().fetch.send_request(&peer, request);
				self.pending.insert(id, reply);
			}
			Command::Connected { reply } => {
				let _ = reply.send(self.swarm.connected_peers().copied().collect());
			}
			Command::Providers { key, reply } => {
				let mut peers: Vec<PeerId> = self
					.announced
					.iter()
					.filter(|(_, a)| a.serves.contains(&key))
					.map(|(p, _)| *p)
					.collect();
				peers.sort();
				let _ = reply.send(peers);
			}
			Command::Listening { reply } => {
				let _ = reply.send(self.listening.clone());
			}
			Command::Reachability { reply } => {
				let mut relayed_peers: Vec<PeerId> = self
					.relayed_connections
					.iter()
					.filter(|(_, c)| !c.is_empty())
					.map(|(p, _)| *p)
					.collect();
				relayed_peers.sort();
				let mut punched: Vec<PeerId> = self.punched.iter().copied().collect();
				punched.sort();
				let _ = reply.send(Reachability {
					public: self.public,
					relayed: self.listening.iter().filter(|a| relayed(a)).cloned().collect(),
					relayed_peers,
					punched,
				});
			}
			Command::Lookup { key, reply } => {
				let id = self.swarm.behaviour_mut().kad.get_providers(record_key(&key));
				self.lookups.insert(id, (Vec::new(), reply));
			}
		}
	}

	fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
		match event {
			SwarmEvent::NewListenAddr { address, .. } => {
				tracing::info!(%address, "listening");
				// On a private network, an address there is how peers reach this worker (AutoNAT
				// confirms only global ones); a relayed address is confirmed by the relay.
				if self.private_network && routable(&address) && !relayed(&address) {
					self.swarm.add_external_address(address.clone());
				}
				self.listening.push(address);
			}
			SwarmEvent::ExpiredListenAddr { address, .. } => {
				tracing::info!(%address, "no longer listening");
				self.listening.retain(|a| a != &address);
			}
			SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
				if let Some(relay) = self.through.remove(&listener_id) {
					match reason {
						Ok(()) => tracing::info!(%relay, "no longer listening through the relay"),
						Err(e) => {
							tracing::warn!(%relay, "listening through the relay failed: {e}");
							self.refused.insert(relay, std::time::Instant::now());
						}
					}
				}
			}
			SwarmEvent::ExternalAddrConfirmed { address } => {
				tracing::info!(%address, "reachable at");
				// Provider records carry the addresses to dial: published again at once.
				self.reprovide = true;
				self.reprovided = None;
			}
			SwarmEvent::ConnectionEstablished { peer_id, endpoint, connection_id, .. } => {
				let address = endpoint.get_remote_address();
				match endpoint.is_relayed() {
					true => {
						tracing::info!(peer = %peer_id, %address, "connected through a relay");
						self.relayed_connections.entry(peer_id).or_default().insert(connection_id);
					}
					false => tracing::info!(peer = %peer_id, %address, "connected"),
				}
				self.swarm.behaviour_mut().gossip.add_explicit_peer(&peer_id);
				if self.relays_given.iter().any(|r| peer_of(r) == Some(peer_id)) {
					self.listen_through_relays();
				}
			}
			SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } => {
				if let Some(relayed) = self.relayed_connections.get_mut(&peer_id) {
					relayed.remove(&connection_id);
					if relayed.is_empty() {
						self.relayed_connections.remove(&peer_id);
					}
				}
				if num_established == 0 {
					tracing::debug!(peer = %peer_id, "disconnected");
					self.announced.remove(&peer_id);
				}
			}
			SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
				tracing::warn!(peer = ?peer_id, "cannot connect: {error}");
			}
			SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
				for (peer, address) in found {
					if !self.swarm.is_connected(&peer) {
						tracing::debug!(%peer, %address, "found on the local network");
						let _ = self.swarm.dial(address);
					}
				}
			}
			SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
				message,
				..
			})) => {
				let Some(source) = message.source else { return };
				match Announce::decode(&mut &message.data[..]) {
					Ok(a) => {
						if self.announced.get(&source) != Some(&a) {
							tracing::debug!(
								peer = %source, cpus = a.cpus, device = %a.device,
								serves = a.serves.len(), tasks = ?a.tasks, "announced"
							);
						}
						if self.announced.len() < MAX_ANNOUNCED
							|| self.announced.contains_key(&source)
						{
							self.announced.insert(source, a);
						}
					}
					Err(e) => tracing::debug!(peer = %source, "not an announcement: {e}"),
				}
			}
			SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Subscribed {
				..
			})) => {
				let announcement = self.library.announcement();
				self.announce(&announcement);
			}
			SwarmEvent::Behaviour(BehaviourEvent::Fetch(event)) => self.fetch_event(event),
			SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.kad_event(event),
			SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
				peer_id,
				info,
				..
			})) => self.identified(peer_id, info),
			SwarmEvent::Behaviour(BehaviourEvent::Autonat(autonat::Event::StatusChanged {
				new,
				..
			})) => {
				self.public = match &new {
					autonat::NatStatus::Public(address) => {
						tracing::info!(%address, "reachable from outside (AutoNAT)");
						Some(true)
					}
					autonat::NatStatus::Private => {
						tracing::info!("not reachable from outside (AutoNAT): using a relay");
						Some(false)
					}
					autonat::NatStatus::Unknown => None,
				};
				self.listen_through_relays();
			}
			SwarmEvent::Behaviour(BehaviourEvent::RelayClient(
				relay::client::Event::ReservationReqAccepted {
					relay_peer_id, renewal: false, ..
				},
			)) => tracing::info!(relay = %relay_peer_id, "the relay reserved a slot"),
			SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => {
				tracing::debug!(?event, "relay service");
			}
			SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event {
				remote_peer_id,
				result,
			})) => match result {
				Ok(_) => {
					tracing::info!(peer = %remote_peer_id, "hole punched: connected directly");
					self.punched.insert(remote_peer_id);
				}
				Err(e) => tracing::info!(peer = %remote_peer_id, "no direct connection: {e}"),
			},
			_ => {}
		}
	}

	fn kad_event(&mut self, event: kad::Event) {
		use kad::{Event, GetProvidersOk, QueryResult};
		match event {
			Event::OutboundQueryProgressed {
				id,
				result: QueryResult::GetProviders(result),
				step,
				..
			} => {
				let me = *self.swarm.local_peer_id();
				if let Ok(GetProvidersOk::FoundProviders { providers, .. }) = &result {
					for &peer in providers.iter().filter(|&&p| p != me) {
						// Dialled now, while the lookup still holds the addresses it was told.
						if !self.swarm.is_connected(&peer) {
							let _ = self.swarm.dial(DialOpts::peer_id(peer).build());
						}
						if let Some((found, _)) = self.lookups.get_mut(&id) {
							if !found.contains(&peer) {
								found.push(peer);
							}
						}
					}
				}
				let finished =
					step.last || !matches!(result, Ok(GetProvidersOk::FoundProviders { .. }));
				if finished {
					if let Some((found, reply)) = self.lookups.remove(&id) {
						tracing::debug!(providers = ?found, "lookup finished");
						let _ = reply.send(found);
					}
				}
			}
			Event::OutboundQueryProgressed {
				result: QueryResult::StartProviding(Err(e)), ..
			} => tracing::debug!("a provider record reached no peer: {e}"),
			Event::InboundRequest { request: kad::InboundRequest::AddProvider { .. } } => {
				tracing::debug!("a provider record arrived");
			}
			Event::RoutingUpdated { peer, is_new_peer: true, .. } => {
				tracing::debug!(%peer, "in the routing table");
				self.reprovide = true;
			}
			_ => {}
		}
	}

	fn fetch_event(&mut self, event: request_response::Event<Request, Response>) {
		use request_response::{Event, Message};
		match event {
			Event::Message { message: Message::Request { request, channel, .. }, peer } => {
				tracing::debug!(%peer, ?request, "serving");
				match request {
					// A chunk is a lookup: answered here.
					Request::Chunk(_) => {
						let response = self.library.answer(request);
						let _ = self.swarm.behaviour_mut().fetch.send_response(channel, response);
					}
					// A manifest may read a file or recompute a state: off the network loop,
					// a bounded number per peer.
					Request::Manifest(_) => {
						let busy = self.serving.entry(peer).or_insert(0);
						if *busy >= MAX_SERVING_PER_PEER {
							tracing::debug!(%peer, "too many requests at once: refused");
							let none = Response::Manifest(None);
							let _ = self.swarm.behaviour_mut().fetch.send_response(channel, none);
							return;
						}
						*busy = busy.saturating_add(1);
						let library = self.library.clone();
						let back = self.answers.0.clone();
						tokio::task::spawn_blocking(move || {
							let response = library.answer(request);
							let _ = back.blocking_send((peer, channel, response));
						});
					}
				}
			}
			Event::Message { message: Message::Response { request_id, response }, .. } => {
				if let Some(reply) = self.pending.remove(&request_id) {
					let _ = reply.send(Ok(response));
				}
			}
			Event::OutboundFailure { request_id, error, .. } => {
				if let Some(reply) = self.pending.remove(&request_id) {
					let _ = reply.send(Err(error.to_string()));
				}
			}
			_ => {}
		}
	}
}
