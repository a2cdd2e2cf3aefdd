#!/usr/bin/env bash
# The booking rush benchmark: 1,000 members book a 200-seat event over 64
# connections, against a release build of the server on PostgreSQL.
# Run by hand; results go in docs/benchmarks.md.
#   BENCH_MEMBERS, BENCH_CAPACITY, BENCH_CONNECTIONS, BENCH_POSTGRES_URL override.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/target-spanglish-release}"
cargo build --release --bin spanglish --example booking_rush
SPANGLISH_BIN="$CARGO_TARGET_DIR/release/spanglish" "$CARGO_TARGET_DIR/release/examples/booking_rush"
