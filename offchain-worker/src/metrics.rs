//! Prometheus metrics of the worker (`--metrics host:port`, then `GET /metrics`): training
//! speed, tasks, disputes and peer-to-peer traffic.
//!
//! The metrics are process-wide ([`metrics`]), as with Prometheus' usual default registry, so
//! that the training loop, the verifier and the libp2p node count without a handle being
//! passed through every call.

use std::{
	sync::{atomic::AtomicU64, OnceLock},
	time::Instant,
};

use prometheus_client::{
	encoding::text::encode,
	metrics::{counter::Counter, gauge::Gauge},
	registry::Registry,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every metric the worker exports.
pub struct Metrics {
	registry: Registry,
	/// Training steps run (solving, verifying, recomputing for peers and disputes).
	pub steps: Counter,
	/// Training speed over the last few hundred steps.
	pub steps_per_second: Gauge<f64, AtomicU64>,
	/// Tasks this worker committed.
	pub tasks_committed: Counter,
	/// Tasks this worker checked as a verifier.
	pub tasks_verified: Counter,
	/// Challenges this worker opened.
	pub challenges_opened: Counter,
	/// Disputes this worker fought (either side).
	pub disputes: Counter,
	/// Chunks served to peers.
	pub chunks_served: Counter,
	/// Chunks fetched from peers and accepted.
	pub chunks_fetched: Counter,
	/// Chunks fetched from peers and rejected (hash not the manifest's).
	pub chunks_rejected: Counter,
}

/// The worker's metrics.
pub fn metrics() -> &'static Metrics {
	static METRICS: OnceLock<Metrics> = OnceLock::new();
	METRICS.get_or_init(|| {
		let mut registry = Registry::with_prefix("trainet_worker");
		let m = Metrics {
			steps: Counter::default(),
			steps_per_second: Gauge::default(),
			tasks_committed: Counter::default(),
			tasks_verified: Counter::default(),
			challenges_opened: Counter::default(),
			disputes: Counter::default(),
			chunks_served: Counter::default(),
			chunks_fetched: Counter::default(),
			chunks_rejected: Counter::default(),
			registry: Registry::default(),
		};
		registry.register("training_steps", "Training steps run", m.steps.clone());
		registry.register(
			"training_steps_per_second",
			"Training speed over the last stretch of steps",
			m.steps_per_second.clone(),
		);
		registry.register("tasks_committed", "Tasks committed", m.tasks_committed.clone());
		registry.register(
			"tasks_verified",
			"Tasks checked as a verifier",
			m.tasks_verified.clone(),
		);
		registry.register("challenges_opened", "Challenges opened", m.challenges_opened.clone());
		registry.register("disputes", "Disputes fought, on either side", m.disputes.clone());
		registry.register("chunks_served", "Chunks served to peers", m.chunks_served.clone());
		registry.register(
			"chunks_fetched",
			"Chunks fetched and accepted",
			m.chunks_fetched.clone(),
		);
		registry.register(
			"chunks_rejected",
			"Chunks fetched and rejected for a wrong hash",
			m.chunks_rejected.clone(),
		);
		Metrics { registry, ..m }
	})
}

impl Metrics {
	/// The metrics in Prometheus' text format.
	pub fn render(&self) -> String {
		let mut text = String::new();
		// Writing into a String cannot fail.
		let _ = encode(&mut text, &self.registry);
		text
	}
}

/// Measures training speed: call [`Speed::step`] after every step.
pub struct Speed {
	since: Instant,
	steps: u32,
}

impl Default for Speed {
	fn default() -> Self {
		Self { since: Instant::now(), steps: 0 }
	}
}

impl Speed {
	/// Counts one step; every 100 steps, updates the steps/s gauge.
	pub fn step(&mut self) {
		let m = metrics();
		m.steps.inc();
		self.steps = self.steps.saturating_add(1);
		if self.steps >= 100 {
			let secs = self.since.elapsed().as_secs_f64();
			if secs > 0.0 {
				m.steps_per_second.set(f64::from(self.steps) / secs);
			}
			*self = Self::default();
		}
	}
}

/// Serves `GET /metrics` on `address` until the process ends.
///
/// A plain HTTP/1.1 responder on tokio: one read-only page does not need a web framework.
pub async fn serve(address: &str) -> std::io::Result<std::net::SocketAddr> {
	let listener = tokio::net::TcpListener::bind(address).await?;
	let bound = listener.local_addr()?;
	tokio::spawn(async move {
		loop {
			let Ok((mut socket, _)) = listener.accept().await else { continue };
			tokio::spawn(async move {
				let mut request = [0u8; 1024];
				let n = socket.read(&mut request).await.unwrap_or(0);
				let head = String::from_utf8_lossy(request.get(..n).unwrap_or_default());
				let response = if head.starts_with("GET /metrics") {
					let body = metrics().render();
					format!(
						"HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; \
						 version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: \
						 close\r\n\r\n{body}",
						body.len()
					)
				} else {
					"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
						.to_string()
				};
				let _ = socket.write_all(response.as_bytes()).await;
				let _ = socket.shutdown().await;
			});
		}
	});
	Ok(bound)
}

#[cfg(test)]
mod tests {
	use super::*;

	#[tokio::test]
	async fn metrics_are_served_in_prometheus_text_format() {
		let address = serve("127.0.0.1:0").await.unwrap();
		metrics().tasks_committed.inc();
		let mut speed = Speed::default();
		for _ in 0..100 {
			speed.step();
		}
		let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
		socket.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
		let mut page = String::new();
		socket.read_to_string(&mut page).await.unwrap();
		assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
		assert!(page.contains("# TYPE trainet_worker_training_steps counter"), "{page}");
		let steps = page
			.lines()
			.find_map(|l| l.strip_prefix("trainet_worker_training_steps_total "))
			.and_then(|v| v.parse::<f64>().ok())
			.unwrap();
		assert!(steps >= 100.0, "{page}");
		assert!(page.contains("trainet_worker_tasks_committed_total"), "{page}");
		assert!(page.contains("trainet_worker_training_steps_per_second "), "{page}");
		assert!(page.trim_end().ends_with("# EOF"), "{page}");
	}
}
