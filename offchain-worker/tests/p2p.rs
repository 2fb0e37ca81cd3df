//! Peer-to-peer between worker processes on loopback: announcements over gossipsub, providers
//! found through the Kademlia DHT, and fetching datasets, traces and checkpoints by hash with
//! every chunk checked, including from a peer that serves corrupted bytes (rejected, and the
//! content fetched from another); and workers nobody can dial, reached through a relay, one
//! given and one AutoNAT made the worker pick.

use std::{
	path::Path,
	process::{Child, Command},
	time::{Duration, Instant},
};

use trainet_primitives::trace::trace_root;
use trainet_worker::{
	dataset::Dataset,
	p2p::{self, Key, Library, P2p, P2pConfig},
	solver::Local,
	spec_file::SpecFile,
};

const WORKER: &str = env!("CARGO_BIN_EXE_trainet-worker");

fn worker(dir: &Path, args: &[&str]) -> Command {
	let mut c = Command::new(WORKER);
	c.arg("--data-dir")
		.arg(dir)
		.args(["--no-mdns"])
		.args(args)
		.env("RUST_LOG", "info,trainet_worker::p2p=debug");
	c
}

/// A `serve` process, killed when dropped; its address and its log file.
struct Server {
	child: Child,
	address: String,
	log: std::path::PathBuf,
}

impl Drop for Server {
	fn drop(&mut self) {
		let _ = self.child.kill();
		let _ = self.child.wait();
	}
}

impl Server {
	fn start(dir: &Path, extra: &[&str]) -> Server {
		let mut args = vec!["serve", "--listen", "/ip4/127.0.0.1/tcp/0"];
		args.extend_from_slice(extra);
		Self::start_with(dir, &args)
	}

	/// A worker run with `args`, which says where it listens.
	fn start_with(dir: &Path, args: &[&str]) -> Server {
		let out = dir.join("serve.out");
		let log = dir.join("serve.log");
		let child = worker(dir, args)
			.stdout(std::fs::File::create(&out).unwrap())
			.stderr(std::fs::File::create(&log).unwrap())
			.spawn()
			.unwrap();
		// Dropped (the process killed) if it never says where it listens.
		let mut server = Server { child, address: String::new(), log };
		let start = Instant::now();
		loop {
			let text = std::fs::read_to_string(&out).unwrap_or_default();
			if let Some(line) = text.lines().find(|l| l.starts_with("peer listening on ")) {
				server.address = line.trim_start_matches("peer listening on ").to_string();
				return server;
			}
			assert!(start.elapsed() < Duration::from_secs(30), "the server did not start: {text}");
			std::thread::sleep(Duration::from_millis(50));
		}
	}

	fn log(&self) -> String {
		std::fs::read_to_string(&self.log).unwrap_or_default()
	}
}

#[test]
fn workers_fetch_content_by_hash_and_reject_a_corrupting_peer() {
	let dir = tempfile::tempdir().unwrap();
	let (a, b, c, d) =
		(dir.path().join("a"), dir.path().join("b"), dir.path().join("c"), dir.path().join("d"));

	// Alice's worker has the digits and a trained task (journal and checkpoints); Bob's has
	// the digits and serves them corrupted.
	let data = Dataset::digits().unwrap();
	let local = Local::open(&a, 10).unwrap();
	let root = local.datasets.put(&data).unwrap();
	Local::open(&b, 10).unwrap().datasets.put(&data).unwrap();
	let spec = SpecFile::parse(&format!(
		"[model]\nwidths = [64, 16, 10]\n[optimizer]\nkind = \"sgd\"\nlearning_rate = 0.05\n\
		 momentum = 0.9\n[training]\nbatch_size = 16\nsteps = 30\nseed = 2\n[dataset]\nroot = \
		 \"{root:?}\"\n"
	))
	.unwrap()
	.to_spec(&data)
	.unwrap();
	let states = trainet_worker::solver::train_task(
		&local,
		0,
		&spec,
		None,
		trainet_worker::train::Engine::Burn,
		false,
		|_, _| {},
	)
	.unwrap();

	let metrics = {
		let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
		l.local_addr().unwrap().to_string()
	};
	let alice = Server::start(&a, &["--metrics", &metrics]);
	let bob = Server::start(&b, &["--corrupt", "--peer", &alice.address]);

	// Bob hears Alice's announcement: her hardware and the task she holds.
	let start = Instant::now();
	while !bob.log().contains("tasks=[0]") {
		assert!(start.elapsed() < Duration::from_secs(30), "no announcement: {}", bob.log());
		std::thread::sleep(Duration::from_millis(100));
	}

	// Carol asks Bob first: his chunks are rejected, and the dataset comes from Alice.
	let root_hex = format!("{root:?}");
	let out = worker(&c, &["fetch", "dataset", &root_hex, "--peer", &bob.address])
		.args(["--peer", &alice.address])
		.output()
		.unwrap();
	let (stdout, stderr) =
		(String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
	assert!(out.status.success(), "{stderr}");
	let alice_id = alice.address.rsplit('/').next().unwrap();
	let bob_id = bob.address.rsplit('/').next().unwrap();
	assert!(stdout.contains(&format!("from {alice_id} in")), "{stdout}");
	assert!(
		stderr.contains("whose hash is not the manifest's: rejected") && stderr.contains(bob_id),
		"bob's chunks were not rejected: {stderr}"
	);
	assert_eq!(Local::open(&c, 10).unwrap().datasets.get(&root).unwrap(), data);

	// Dave knows only Bob, who corrupts. Bob knows Alice: Dave's DHT lookup of the root names
	// her as a provider, with her address, and the dataset comes intact from her.
	let out =
		worker(&d, &["fetch", "dataset", &root_hex, "--peer", &bob.address]).output().unwrap();
	let (stdout, stderr) =
		(String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
	assert!(out.status.success(), "{stderr}");
	assert!(stdout.contains(&format!("from {alice_id} in")), "{stdout}");
	assert!(
		stderr.lines().any(|l| l.contains("lookup finished") && l.contains(alice_id)),
		"the DHT did not name Alice: {stderr}"
	);
	assert_eq!(Local::open(&d, 10).unwrap().datasets.get(&root).unwrap(), data);

	// The trace by its root, and a checkpoint by its state hash, from Alice.
	let trace = format!("{:?}", trace_root(&states));
	let out = worker(&c, &["fetch", "trace", &trace, "--peer", &alice.address]).output().unwrap();
	assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
	assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("({} bytes)", 31 * 32)));
	let h20 = format!("{:?}", states[20]);
	let out =
		worker(&c, &["fetch", "checkpoint", &h20, "--peer", &alice.address]).output().unwrap();
	assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
	let fetched = Local::open(&c, 10).unwrap().checkpoints.get(&states[20]).unwrap();
	assert!(fetched.is_some(), "the checkpoint was not stored");

	// Alice's metrics count what she served.
	let page = {
		use std::io::{Read, Write};
		let mut socket = std::net::TcpStream::connect(&metrics).unwrap();
		socket.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
		let mut page = String::new();
		socket.read_to_string(&mut page).unwrap();
		page
	};
	let served: f64 = page
		.lines()
		.find_map(|l| l.strip_prefix("trainet_worker_chunks_served_total "))
		.and_then(|v| v.parse().ok())
		.unwrap_or_else(|| panic!("no chunks_served in {page}"));
	assert!(served >= 9.0, "the dataset alone is 8 chunks: {page}");

	// A state Alice kept no checkpoint of (she keeps every 10th): she recomputes it from h_20.
	assert!(!Local::open(&a, 10).unwrap().checkpoints.has(&states[23]));
	let h23 = format!("{:?}", states[23]);
	let out =
		worker(&c, &["fetch", "checkpoint", &h23, "--peer", &alice.address]).output().unwrap();
	assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
	assert!(Local::open(&c, 10).unwrap().checkpoints.get(&states[23]).unwrap().is_some());

	// Content nobody has.
	let out = worker(&c, &["fetch", "checkpoint", &format!("{:?}", sp_core::H256::repeat_byte(3))])
		.args(["--peer", &alice.address])
		.output()
		.unwrap();
	assert_eq!(out.status.code(), Some(1));
	assert!(String::from_utf8_lossy(&out.stderr).contains("no peer served checkpoint"));

	// Alice gone, Erin knows only Bob: the DHT still names Alice, who cannot be reached, and
	// Bob's chunks are rejected: nothing intact to fetch, a clear error, exit code 1.
	drop(alice);
	let e = dir.path().join("e");
	let out =
		worker(&e, &["fetch", "dataset", &root_hex, "--peer", &bob.address]).output().unwrap();
	let stderr = String::from_utf8_lossy(&out.stderr);
	assert_eq!(out.status.code(), Some(1), "{stderr}");
	assert!(
		stderr.contains(&format!("error: no peer served dataset {root_hex} intact"))
			&& stderr.contains(&format!("rejected: {bob_id}")),
		"{stderr}"
	);
	assert!(Local::open(&e, 10).unwrap().datasets.get(&root).is_err());
}

#[test]
fn bad_peer_addresses_and_hashes_are_clear_errors() {
	let dir = tempfile::tempdir().unwrap();
	let out = worker(dir.path(), &["fetch", "dataset", "0x12", "--peer", "/ip4/127.0.0.1/tcp/1"])
		.output()
		.unwrap();
	assert_eq!(out.status.code(), Some(1));
	assert!(String::from_utf8_lossy(&out.stderr).contains("is not a 0x-prefixed 32-byte hex hash"));
	let hash = format!("{:?}", sp_core::H256::repeat_byte(1));
	let out = worker(dir.path(), &["fetch", "dataset", &hash, "--peer", "not-an-address"])
		.output()
		.unwrap();
	assert_eq!(out.status.code(), Some(1));
	assert!(
		String::from_utf8_lossy(&out.stderr).contains("\"not-an-address\" is not a peer address")
	);
	// Nobody listens there.
	let out = worker(dir.path(), &["fetch", "dataset", &hash, "--wait", "2"])
		.args(["--peer", "/ip4/127.0.0.1/tcp/1"])
		.output()
		.unwrap();
	assert_eq!(out.status.code(), Some(1));
	assert!(String::from_utf8_lossy(&out.stderr).contains("error: no peer connected within 2s"));
}

#[test]
fn a_worker_behind_a_relay_is_found_and_fetched_from_with_its_root_alone() {
	let dir = tempfile::tempdir().unwrap();
	let (r, p, s) = (dir.path().join("r"), dir.path().join("p"), dir.path().join("s"));
	let data = Dataset::digits().unwrap();
	let root = Local::open(&p, 10).unwrap().datasets.put(&data).unwrap();
	std::fs::create_dir_all(&r).unwrap();

	// Rita relays; Pat, who has the data, listens on no port of his own (as behind a NAT):
	// only through Rita.
	let rita = Server::start(&r, &["--private-network"]);
	let pat = Server::start_with(
		&p,
		&["serve", "--relay", &rita.address, "--peer", &rita.address, "--private-network"],
	);
	let rita_id = rita.address.rsplit('/').next().unwrap();
	assert!(
		pat.address.contains(&format!("/p2p/{rita_id}/p2p-circuit/p2p/")),
		"Pat does not listen through Rita: {}",
		pat.address
	);
	let pat_id = pat.address.rsplit('/').next().unwrap().to_string();
	// Pat's provider record reaches Rita (within a few seconds: he publishes it on his next
	// tick), the only record she can get.
	let start = Instant::now();
	while !rita.log().contains("a provider record arrived") {
		assert!(start.elapsed() < Duration::from_secs(30), "no record: {}", rita.log());
		std::thread::sleep(Duration::from_millis(100));
	}

	// Sam knows only Rita, and the root: the DHT names Pat, at his relayed address, and the
	// digits come from him through Rita (more bytes than libp2p's default circuit allows).
	let out = worker(&s, &["fetch", "dataset", &format!("{root:?}"), "--peer", &rita.address])
		.output()
		.unwrap();
	let (stdout, stderr) =
		(String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
	assert!(out.status.success(), "{stderr}\n{}", pat.log());
	assert!(stdout.contains(&format!("from {pat_id} in")), "{stdout}");
	assert!(
		stderr.lines().any(|l| l.contains("connected through a relay") && l.contains(&pat_id)),
		"Sam did not reach Pat through the relay: {stderr}"
	);
	assert_eq!(Local::open(&s, 10).unwrap().datasets.get(&root).unwrap(), data);
	let size = Local::open(&p, 10).unwrap().datasets.bytes(&root).unwrap().unwrap().len();
	assert!(size > 1 << 17, "the digits ({size} bytes) fit libp2p's default circuit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autonat_finds_a_worker_unreachable_and_it_picks_a_relay_by_itself() {
	let dir = tempfile::tempdir().unwrap();
	let start = |name: &str, listen: &[&str], bootstrap: Vec<libp2p::Multiaddr>| {
		let path = dir.path().join(name);
		let local = Local::open(&path, 10).unwrap();
		let listen = listen.iter().map(|a| a.parse().unwrap()).collect();
		let mut config = P2pConfig::new(listen, bootstrap);
		config.private_network = true;
		let library = std::sync::Arc::new(Library::new(local, false));
		async move { P2p::start(p2p::identity(&path).unwrap(), config, library).await.unwrap() }
	};
	let data = Dataset::digits().unwrap();
	let root = Local::open(&dir.path().join("q"), 10).unwrap().datasets.put(&data).unwrap();

	let rita = start("r", &["/ip4/127.0.0.1/tcp/0"], vec![]).await;
	let at = rita.listening(Duration::from_secs(5)).await.unwrap();
	// Quinn listens nowhere and is given no relay: AutoNAT's dial-back to where Rita sees
	// him fails, he is private, and listens through the relay he knows, Rita.
	let quinn = start("q", &[], at.clone()).await;
	let begin = Instant::now();
	let seen = loop {
		let seen = quinn.reachability().await.unwrap();
		if !seen.relayed.is_empty() {
			break seen;
		}
		assert!(begin.elapsed() < Duration::from_secs(60), "Quinn never used a relay: {seen:?}");
		tokio::time::sleep(Duration::from_millis(200)).await;
	};
	assert_eq!(seen.public, Some(false));
	assert!(seen.relayed[0].to_string().contains(&format!("/p2p/{}/p2p-circuit", rita.peer_id())));

	// Sam, who knows only Rita, finds Quinn by the root and fetches through the relay.
	let sam = start("s", &["/ip4/127.0.0.1/tcp/0"], at).await;
	sam.wait_for_peers(Duration::from_secs(10)).await.unwrap();
	let key = Key::Dataset(root);
	let begin = Instant::now();
	while !sam.lookup(key).await.unwrap().contains(&quinn.peer_id()) {
		assert!(begin.elapsed() < Duration::from_secs(60), "the DHT never named Quinn");
		tokio::time::sleep(Duration::from_millis(500)).await;
	}
	let (bytes, from) = sam.fetch(key, &[quinn.peer_id()], |_, _| {}).await.unwrap();
	assert_eq!(from.first(), Some(&quinn.peer_id()));
	let held = Local::open(&dir.path().join("q"), 10).unwrap().datasets.bytes(&root).unwrap();
	assert_eq!(Some(bytes), held);
	let sam_sees = sam.reachability().await.unwrap();
	assert!(
		sam_sees.relayed_peers.contains(&quinn.peer_id())
			|| sam_sees.punched.contains(&quinn.peer_id()),
		"{sam_sees:?}"
	);
}
