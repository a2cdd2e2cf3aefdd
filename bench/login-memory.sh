#!/usr/bin/env bash
# What a burst of sign-ins leaves in the server's memory, run by hand:
#
#   bench/login-memory.sh [PARALLEL] [NAME=VALUE ...]
#
# Starts the release binary (from $CARGO_TARGET_DIR, by default
# ~/target-spanglish-release; build it first) on a throwaway SQLite database,
# signs one account in 80 times, PARALLEL at a time (2), and prints the
# server's resident memory idle, at its peak, just after the burst and three
# seconds later. NAME=VALUE pairs go to the server's environment only, to
# compare allocator settings (MIMALLOC_PURGE_DELAY=0, say).
set -euo pipefail
cd "$(dirname "$0")/.."

PARALLEL=${1:-2}
shift || true
BIN="${CARGO_TARGET_DIR:-$HOME/target-spanglish-release}/release/spanglish"
[ -x "$BIN" ] || { echo "no release binary at $BIN: cargo build --release" >&2; exit 1; }

DIR=$(mktemp -d)
SERVER=
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export DATABASE_URL="sqlite://$DIR/db.sqlite?mode=rwc" MEDIA_DIR="$DIR/media" \
  HOST=127.0.0.1 PORT="$PORT" RUST_LOG=warn BACKGROUND_JOBS=false \
  RATE_LIMIT_AUTH_PER_IP=100000 RATE_LIMIT_LOGIN_PER_EMAIL=100000
PASSWORD=$(openssl rand -hex 16)
ADMIN_PASSWORD=$PASSWORD "$BIN" create-admin --email bench@spanglish.example --name Bench >/dev/null

env "$@" "$BIN" serve >"$DIR/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { cat "$DIR/server.log" >&2; exit 1; }

kb() { awk -v key="$1:" '$1 == key { print $2 }' "/proc/$SERVER/status"; }
mb() { awk -v kb="$1" 'BEGIN { printf "%.1f MB", kb / 1024 }'; }

sleep 2
echo "idle:               $(mb "$(kb VmRSS)")"

BODY=$(printf '{"query":"mutation { login(email: \\"bench@spanglish.example\\", password: \\"%s\\") { accessToken } }"}' "$PASSWORD")
FAILED=$(seq 80 | xargs -P "$PARALLEL" -I{} curl -s -H 'content-type: application/json' \
  -d "$BODY" "http://127.0.0.1:$PORT/graphql" | { grep -o '"errors"' || true; } | wc -l)
[ "$FAILED" = 0 ] || { echo "$FAILED logins failed" >&2; exit 1; }

echo "peak:               $(mb "$(kb VmHWM)")"
echo "after 80 logins:    $(mb "$(kb VmRSS)") ($PARALLEL at a time${*:+; $*})"
sleep 3
echo "three seconds on:   $(mb "$(kb VmRSS)")"
