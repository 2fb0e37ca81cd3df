# Shared settings of the project's scripts; sourced, not run.

# The repository root.
TRAINET_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TRAINET_ROOT

# Build outside the checkout so CI runs on fresh clones and later sessions reuse the build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trainet/target}"
# No incremental caches: they are keyed by the checkout's path, so every fresh clone (each CI
# run) would leave several GB of them in the shared target folder until the disk fills (seen:
# 39 GB after a few clones). Dependencies are never incremental, so this costs only the
# workspace's own crates, which a fresh clone recompiles anyway.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Cargo's own progress bars are noise in logs; keep its messages.
export CARGO_TERM_PROGRESS_WHEN="${CARGO_TERM_PROGRESS_WHEN:-never}"

# The node binary built by `cargo build -p trainet-node` (debug profile).
export TRAINET_NODE="${TRAINET_NODE:-$CARGO_TARGET_DIR/debug/trainet-node}"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# Builds every target of the workspace (node, runtime wasm, tests) in one cargo invocation.
# scripts/test and scripts/demo share it so that both see the same feature set and reuse one
# another's build: building only the node (`-p trainet-node`) unifies features differently
# and recompiles hundreds of crates.
build_workspace() {
	cargo build --locked --workspace --all-targets
	[ -x "$TRAINET_NODE" ] || die "the build did not produce $TRAINET_NODE"
}
