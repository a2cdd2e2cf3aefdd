#!/usr/bin/env bash
# The benchmarks of issue #6, run by hand (not by CI):
#
#   bench/run.sh [--write] [--no-build]
#
# It builds the release binary, creates a fresh PostgreSQL database, seeds it
# (200 published events with banners, 2,000 members, a 200-seat free event
# for the booking rush, 333 Stripe payments awaiting their webhook), starts
# the server as its own process in production mode, and drives it with wrk
# (bench/wrk.lua) through each scenario. It prints one Markdown table with
# the machine; --write also appends it to docs/benchmarks.md. The database,
# its pgbench copy and the temporary folder are removed at the end, however
# the script ends. It exits non-zero when a correctness check fails (the rush
# sold other than exactly 200 seats, the webhooks applied other than once
# each).
#
# Settings (environment):
#   BENCH_POSTGRES_URL   a database to connect to for CREATE/DROP DATABASE
#                        (default postgres://postgres@127.0.0.1:5432/postgres)
#   BENCH_DURATION       seconds of the events and event scenarios (15)
#   BENCH_LOGIN_DURATION seconds of each login scenario (10)
#   BENCH_CONNECTIONS    connections of the concurrent scenarios (64)
#   BENCH_THREADS        wrk threads (2)
#   BENCH_RUST_LOG       the server's RUST_LOG (info, as in production)
#   BENCH_DB_CONNECTIONS the server's DATABASE_MAX_CONNECTIONS (its default)
#   BENCH_ANSWER_CACHE_MS the server's GRAPHQL_ANSWER_CACHE_MS (its default;
#                        0 measures every anonymous query executed afresh)
#   BENCH_PERF           1: sample the server with `perf record` during the
#                        events list and print where its CPU time went
#   CARGO_TARGET_DIR     where the release build goes (~/target-spanglish-release)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

WRITE=0
BUILD=1
for arg in "$@"; do
  case $arg in
    --write) WRITE=1 ;;
    --no-build) BUILD=0 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "unknown argument: $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

POSTGRES_URL=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DURATION=${BENCH_DURATION:-15}
LOGIN_DURATION=${BENCH_LOGIN_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/target-spanglish-release}
BIN=$CARGO_TARGET_DIR/release/spanglish

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
MEMBERS=2000
EVENTS=200
RUSH_MEMBERS=1000
RUSH_SEATS=200
PAYMENTS=333 # webhooks: 333 first deliveries and 167 repeats make 500
REPEATS=167
PASSWORD=bench-password-1234

say() { printf '\n== %s\n' "$*" >&2; }
die() {
  echo "bench: $*" >&2
  exit 1
}

# ---------------------------------------------------------------- tools

for tool in psql pgbench openssl curl; do
  command -v "$tool" >/dev/null || die "$tool is needed (Debian: postgresql-client, openssl, curl)"
done
if ! command -v wrk >/dev/null; then
  say "installing wrk"
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
  else
    die "wrk is needed: sudo apt-get install wrk"
  fi
fi

if [ "$BUILD" = 1 ]; then
  say "building the release binary in $CARGO_TARGET_DIR"
  cargo build --release --bin spanglish
fi
[ -x "$BIN" ] || die "no binary at $BIN"

# ---------------------------------------------------------------- database, folders, clean-up

DB=spanglish_bench_$(openssl rand -hex 6)
PGBENCH_DB=${DB}_pgbench
SERVER_URL=${POSTGRES_URL%/*}
DB_URL=$SERVER_URL/$DB
PGBENCH_URL=$SERVER_URL/$PGBENCH_DB
WORK=$(mktemp -d /tmp/spanglish-bench.XXXXXX)
SERVER_PID=

cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  for name in "$DB" "$PGBENCH_DB"; do
    psql "$POSTGRES_URL" -qAt -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sql() { psql "$DB_URL" -qAtX -v ON_ERROR_STOP=1 "$@"; }

say "creating database $DB"
psql "$POSTGRES_URL" -qAtX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $DB" >/dev/null

# A free port on the loopback.
while :; do
  PORT=$((20000 + RANDOM % 20000))
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || break
done
BASE=http://127.0.0.1:$PORT
JWT_SECRET=$(openssl rand -hex 32)
WEBHOOK_SECRET=whsec_$(openssl rand -hex 24)
mkdir -p "$WORK/media/media" "$WORK/data"

# Production mode, as deployed, with these differences, each said here:
# - the auth rate limits are raised so far that they never answer
#   RATE_LIMITED: every request of the login scenario comes from 127.0.0.1,
#   where a real deployment sees many addresses;
# - BACKGROUND_JOBS=false: no sweeper, email worker or reconciler competes
#   with the load (they run every 15 s to 5 min in production);
# - Stripe's API base points at a closed local port, so nothing leaves the
#   machine (the webhooks here never need Stripe's API).
SERVER_ENV=(
  APP_ENV=production
  HOST=127.0.0.1
  PORT="$PORT"
  PUBLIC_URL="$BASE"
  DATABASE_URL="$DB_URL"
  JWT_SECRET="$JWT_SECRET"
  DATA_DIR="$WORK/data"
  MEDIA_STORAGE=local
  MEDIA_DIR="$WORK/media"
  BACKGROUND_JOBS=false
  RATE_LIMIT_AUTH_PER_IP=1000000000
  RATE_LIMIT_LOGIN_PER_EMAIL=1000000000
  STRIPE_SECRET_KEY=sk_test_bench
  STRIPE_WEBHOOK_SECRET="$WEBHOOK_SECRET"
  STRIPE_API_BASE=http://127.0.0.1:9
  EMAIL_TRANSPORT=log
  RUST_LOG="${BENCH_RUST_LOG:-info}"
)
if [ -n "${BENCH_DB_CONNECTIONS:-}" ]; then
  SERVER_ENV+=(DATABASE_MAX_CONNECTIONS="$BENCH_DB_CONNECTIONS")
fi
if [ -n "${BENCH_ANSWER_CACHE_MS:-}" ]; then
  SERVER_ENV+=(GRAPHQL_ANSWER_CACHE_MS="$BENCH_ANSWER_CACHE_MS")
fi
spanglish() { env "${SERVER_ENV[@]}" "$BIN" "$@"; }

say "migrating"
spanglish migrate >/dev/null

# ---------------------------------------------------------------- seed

say "seeding $EVENTS events with banners, $MEMBERS members, the rush event and $PAYMENTS payments"

# One real argon2id hash, made by the server itself (create-admin), is given
# to every member: hashing 2,000 passwords one by one would take minutes and
# measure nothing. Every member's password is therefore $PASSWORD.
ADMIN_PASSWORD=$PASSWORD spanglish create-admin --email admin@bench.example --name "Bench Admin" >/dev/null
HASH=$(sql -c "SELECT password_hash FROM users WHERE email_key = 'admin@bench.example'")
[ -n "$HASH" ] || die "create-admin made no account"

# The banner: a real 64x36 PNG, one file per event (the thumbnail of so small
# a picture is the picture itself).
PNG_BASE64='iVBORw0KGgoAAAANSUhEUgAAAEAAAAAkCAIAAAC2bqvFAAAAnklEQVR42tXCkXoCAACF0fs49yGCIBgEQTAIgmAQDAZBEAyCIAiCIAiCIAgGQTD4H6vn+M93wqDqYVj1MKp6+Kh6GFc9TKoeplUPn1UPs6qHedXDourhq+phWfXwXfXwU/WwqnpYVz1sqh5+qx62VQ+7qod91cOh6uFY9XCqejhXPVyqHq5VD7eqh3vVw6Pq4a/q4Vn18Kp6+K96oOpvnzECxE4JEzEAAAAASUVORK5CYII='
echo "$PNG_BASE64" | base64 -d >"$WORK/banner.png"
PNG_SIZE=$(stat -c %s "$WORK/banner.png")

# Seeded ids are readable: the last group numbers the row, the one before
# says what it is (8000 members, 8001 media, 8002 events, 8003 tickets,
# 8004 payments).
id_of() { printf '00000000-0000-7000-%s-%012d' "$1" "$2"; }
for i in $(seq 1 "$EVENTS"); do
  id=$(id_of 8001 "$i")
  cp "$WORK/banner.png" "$WORK/media/media/$id.png"
  cp "$WORK/banner.png" "$WORK/media/media/$id-thumb.png"
done
RUSH_EVENT=$(id_of 8002 9001)
PAID_EVENT=$(id_of 8002 9002)

sql -v hash="$HASH" -v png_size="$PNG_SIZE" -v events="$EVENTS" -v members="$MEMBERS" \
  -v payments="$PAYMENTS" -v rush_seats="$RUSH_SEATS" >/dev/null <<'SQL'
BEGIN;
CREATE FUNCTION pg_temp.seed_id(kind text, n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-7000-' || kind || '-' || lpad(n::text, 12, '0'))::uuid $$;

INSERT INTO users (id, name, email, email_key, search_text, password_hash, phone, locale, role, created_at, updated_at)
SELECT pg_temp.seed_id('8000', i), 'Member ' || i, 'member' || i || '@bench.example',
       'member' || i || '@bench.example', 'member ' || i || ' member' || i || '@bench.example',
       :'hash', NULL, CASE WHEN i % 3 = 0 THEN 'en' ELSE 'es' END, 'MEMBER',
       now() - interval '30 days', now() - interval '30 days'
FROM generate_series(1, :members) AS i;

INSERT INTO media (id, storage_key, thumbnail_key, content_type, size, width, height, related_id, uploaded_by, created_at)
SELECT pg_temp.seed_id('8001', i), 'media/' || pg_temp.seed_id('8001', i) || '.png',
       'media/' || pg_temp.seed_id('8001', i) || '-thumb.png', 'image/png', :png_size, 64, 36,
       pg_temp.seed_id('8002', i), NULL, now() - interval '20 days'
FROM generate_series(1, :events) AS i;

-- 200 published events, one a day from tomorrow; one in three is paid.
INSERT INTO events (id, slug, title, description, starts_at, ends_at, timezone, location, search_text,
                    price_minor, currency, capacity, status, banner_id, cancel_reason, created_by, created_at, updated_at)
SELECT pg_temp.seed_id('8002', i), 'bench-event-' || i, 'Intercambio ' || i,
       repeat('Practice Spanish and English over coffee, half the evening in each language. ', 4),
       date_trunc('hour', now()) + i * interval '1 day', date_trunc('hour', now()) + i * interval '1 day' + interval '3 hours',
       'America/Asuncion', 'Café ' || i || ', Asunción', 'intercambio ' || i || ' practice spanish and english',
       CASE WHEN i % 3 = 0 THEN 1500 END, CASE WHEN i % 3 = 0 THEN 'USD' END,
       40, 'PUBLISHED', pg_temp.seed_id('8001', i), NULL, NULL, now() - interval '20 days', now() - interval '20 days'
FROM generate_series(1, :events) AS i;

-- The rush event (free, 200 seats) and the paid event of the webhooks, a
-- year ahead so that they stay out of the first page of the list.
INSERT INTO events (id, slug, title, description, starts_at, ends_at, timezone, location, search_text,
                    price_minor, currency, capacity, status, banner_id, cancel_reason, created_by, created_at, updated_at)
VALUES
  (pg_temp.seed_id('8002', 9001), 'bench-rush', 'Booking rush', 'Everyone books at once.',
   now() + interval '365 days', now() + interval '365 days 3 hours', 'America/Asuncion', 'Hall',
   'booking rush', NULL, NULL, :rush_seats, 'PUBLISHED', NULL, NULL, NULL, now(), now()),
  (pg_temp.seed_id('8002', 9002), 'bench-paid', 'Paid evening', 'Paid by card.',
   now() + interval '366 days', now() + interval '366 days 3 hours', 'America/Asuncion', 'Hall',
   'paid evening', 1500, 'USD', 1000, 'PUBLISHED', NULL, NULL, NULL, now(), now());

-- Holds on the paid event, each with a Stripe payment awaiting its webhook
-- (members after the rush's thousand).
INSERT INTO tickets (id, event_id, user_id, status, code, price_minor, currency, expires_at,
                     checked_in_at, checked_in_by, created_at, updated_at)
SELECT pg_temp.seed_id('8003', i), pg_temp.seed_id('8002', 9002), pg_temp.seed_id('8000', 1000 + i),
       'PENDING', NULL, 1500, 'USD', now() + interval '1 day', NULL, NULL, now(), now()
FROM generate_series(1, :payments) AS i;

INSERT INTO payments (id, ticket_id, user_id, provider, status, amount_minor, currency, refunded_minor,
                      reference, provider_payment_id, manual_refund_required, created_at, updated_at)
SELECT pg_temp.seed_id('8004', i), pg_temp.seed_id('8003', i), pg_temp.seed_id('8000', 1000 + i),
       'STRIPE', 'PENDING', 1500, 'USD', 0, 'cs_bench_' || i, NULL, false, now(), now()
FROM generate_series(1, :payments) AS i;
COMMIT;
ANALYZE;
SQL

# pgbench books on a copy of this state, made before the server connects
# (a template database must have no other connections).
psql "$POSTGRES_URL" -qAtX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $PGBENCH_DB TEMPLATE $DB" >/dev/null

# ---------------------------------------------------------------- server

say "starting the server on $BASE"
# Started straight from here (not through the function) so that $! is the
# server's own pid: env execs it.
env "${SERVER_ENV[@]}" "$BIN" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
  curl -fsS -o /dev/null "$BASE/readyz" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || {
    tail -20 "$WORK/server.log" >&2
    die "the server stopped during start-up"
  }
  sleep 0.1
done
curl -fsS -o /dev/null "$BASE/readyz" || die "the server is not ready after 30 s"
sleep 2
IDLE_MB=$(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$SERVER_PID/status")

# ---------------------------------------------------------------- measuring

FAILED=0
ROWS=()
fail() {
  echo "bench: CHECK FAILED: $*" >&2
  FAILED=1
}

# Peak memory of one scenario: VmHWM, reset before it starts.
reset_peak() { echo 5 >"/proc/$SERVER_PID/clear_refs"; }
peak_mb() { awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$SERVER_PID/status"; }

# The server's own count of GraphQL operations by outcome, when it exports
# graphql_operations_total: a cross-check of the Lua count, not a source.
operations_by_outcome() {
  curl -fsS "$BASE/metrics" 2>/dev/null | awk '
    /^graphql_operations_total\{/ {
      outcome = "?"
      if (match($0, /outcome="[^"]*"/)) outcome = substr($0, RSTART + 9, RLENGTH - 10)
      sum[outcome] += $NF
    }
    END { for (o in sum) printf "%s %d\n", o, sum[o] }' | sort
}
operations_delta() {
  join -a 2 -e 0 -o 0,1.2,2.2 "$1" "$2" | awk '{ d = $3 - $2; if (d) printf "%s%s=%d", sep, $1, d; sep = " " }'
}

# Where the CPU went during a scenario: the server, PostgreSQL's processes,
# and everything else on the machine (wrk, and whatever else runs), in CPU
# milliseconds per answered request, read from /proc before and after.
TICK_MS=$((1000 / $(getconf CLK_TCK)))
proc_ticks() { awk '{ t += $14 + $15 } END { print t + 0 }' "$@" 2>/dev/null || echo 0; }
postgres_ticks() {
  local pids
  pids=$(pgrep -x postgres | sed 's|.*|/proc/&/stat|')
  # shellcheck disable=SC2086
  [ -n "$pids" ] && proc_ticks $pids || echo 0
}
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
cpu_mark() { CPU_MARK=("$(proc_ticks "/proc/$SERVER_PID/stat")" "$(postgres_ticks)" "$(machine_ticks)" "$(date +%s%N)"); }
cpu_report() {
  local server postgres machine nanos
  server=$(($(proc_ticks "/proc/$SERVER_PID/stat") - CPU_MARK[0]))
  postgres=$(($(postgres_ticks) - CPU_MARK[1]))
  machine=$(($(machine_ticks) - CPU_MARK[2]))
  nanos=$(($(date +%s%N) - CPU_MARK[3]))
  awk -v n="$1" -v name="$2" -v s="$server" -v p="$postgres" -v m="$machine" -v t="$TICK_MS" -v ns="$nanos" -v cores="$(nproc)" '
    BEGIN {
      if (n == 0) n = 1
      # PostgreSQL processes that end during the scenario (autovacuum
      # workers) take their time with them: never below zero.
      if (p < 0) p = 0
      # pgbench'"'"'s backends end with it, their time with them: all of its
      # cost shows under "everything else".
      if (name == "pgbench") {
        printf "| pgbench (with its own PostgreSQL backends) | – | – | %.2f | %.0f%% |\n", m * t / n, 100 * m * t / (ns / 1e6 * cores)
        exit
      }
      printf "| %s | %.2f | %.2f | %.2f | %.0f%% |\n", name, s * t / n, p * t / n, (m - s - p) * t / n, 100 * m * t / (ns / 1e6 * cores)
    }'
}
CPU_ROWS=()

# One line of the requests file: an extra header (or nothing), a tab, a body.
line() { printf '%s\t%s\n' "$1" "$2"; }

# field NAME: a value of the last wrk run's BENCH line.
field() { grep '^BENCH answers' "$LAST_OUT" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

# run_wrk NAME PATH FILE MODE CONNECTIONS SECONDS [EXPECTED_CODE]
run_wrk() {
  local name=$1 path=$2 file=$3 mode=$4 conns=$5 seconds=$6 expected=${7:-}
  local threads=$THREADS
  [ "$conns" -lt "$threads" ] && threads=$conns
  LAST_OUT=$WORK/$name.out
  local err=$WORK/$name.err before=$WORK/$name.metrics-before after=$WORK/$name.metrics-after
  operations_by_outcome >"$before"
  reset_peak
  cpu_mark
  wrk -t "$threads" -c "$conns" -d "${seconds}s" --timeout 30s -s "$ROOT/bench/wrk.lua" "$BASE$path" \
    -- "$file" "$mode" "$threads" ${expected:+"$expected"} >"$LAST_OUT" 2>"$err" &
  local wrk_pid=$!
  if [ "$mode" = once ]; then
    # wrk sleeps for the whole -d; once every thread has all its answers
    # it is woken (SIGINT ends its wait, then it reports as usual).
    while kill -0 "$wrk_pid" 2>/dev/null; do
      local finished
      finished=$(grep -c 'bench: thread finished' "$err" 2>/dev/null) || finished=0
      if [ "$finished" -ge "$threads" ]; then
        sleep 0.2
        kill -INT "$wrk_pid" 2>/dev/null || true
        break
      fi
      sleep 0.05
    done
  fi
  wait "$wrk_pid" || die "wrk failed: $(cat "$err")"
  PEAK=$(peak_mb)
  CPU_ROWS+=("$(cpu_report "$(field answers)" "$name")")
  operations_by_outcome >"$after"
  grep -q '^BENCH answers' "$LAST_OUT" || die "wrk printed no result: $(cat "$LAST_OUT" "$err")"
  grep '^BENCH' "$LAST_OUT" >&2
  local metrics
  metrics=$(operations_delta "$before" "$after")
  [ -n "$metrics" ] && echo "   /metrics graphql_operations_total: $metrics" >&2
  RPS=$(field rps)
  P50=$(field p50_ms)
  P99=$(field p99_ms)
  ERRORS=$(field errors)
  ANSWERS=$(field answers)
}

row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 | $6 | $7 | $8 |"); }

EVENT_FIELDS='id slug title startsAt endsAt location capacity ticketsRemaining price { amount currency } bannerUrl banner { url thumbnailUrl width height }'

# 1. The public list, anonymous, 20 events with their banners.
say "events(first: 20) with banners, $CONNECTIONS connections, ${DURATION}s"
LIST_BODY="{\"query\":\"query Events(\$first: Int!) { events(first: \$first) { edges { cursor node { $EVENT_FIELDS } } pageInfo { hasNextPage endCursor } } }\",\"variables\":{\"first\":20}}"
line "" "$LIST_BODY" >"$WORK/events.txt"
check=$(curl -fsS "$BASE/graphql" -H 'Content-Type: application/json' -d "$LIST_BODY")
[ "$(grep -o '"thumbnailUrl"' <<<"$check" | wc -l)" = 20 ] || die "the list did not answer 20 events with banners: ${check:0:300}"
curl -fsS -o /dev/null "$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' <<<"$check" | head -1)" || die "a banner's file is not served"
if [ "${BENCH_PERF:-0}" = 1 ]; then
  command -v perf >/dev/null || die "BENCH_PERF=1 needs perf (Debian: linux-perf)"
  perf record -q -F 499 -p "$SERVER_PID" -o "$WORK/perf.data" -- sleep "$DURATION" 2>/dev/null &
  PERF_PID=$!
fi
run_wrk events /graphql "$WORK/events.txt" cycle "$CONNECTIONS" "$DURATION"
if [ -n "${PERF_PID:-}" ]; then
  wait "$PERF_PID" || true
  {
    echo "   perf: the server's CPU samples during the events list, by library"
    perf report -i "$WORK/perf.data" --stdio --no-children --sort dso 2>/dev/null | grep -E '^ +[0-9]' | head -8 || true
    echo "   perf: the 30 busiest functions"
    perf report -i "$WORK/perf.data" --stdio --no-children --sort dso,symbol 2>/dev/null |
      grep -E '^ +[0-9]' | head -30 | sed 's/ *[- ]*$//' | cut -c1-160 || true
    echo "   perf: the 30 busiest functions of the server's own binary"
    perf report -i "$WORK/perf.data" --stdio --no-children --dsos spanglish --sort symbol 2>/dev/null |
      grep -E '^ +[0-9]' | head -30 | sed 's/ *[- ]*$//' | cut -c1-160 || true
  } >&2
fi
row "\`events(first: 20)\` with banners, anonymous" "$CONNECTIONS" "$ANSWERS" "$RPS" "$P50" "$P99" "$ERRORS" "$PEAK"

# 2. One event by slug, anonymous, cycling through the 200.
say "event(slug:), $CONNECTIONS connections, ${DURATION}s"
for i in $(seq 1 "$EVENTS"); do
  line "" "{\"query\":\"query Event(\$slug: String!) { event(slug: \$slug) { $EVENT_FIELDS } }\",\"variables\":{\"slug\":\"bench-event-$i\"}}"
done >"$WORK/event.txt"
run_wrk event /graphql "$WORK/event.txt" cycle "$CONNECTIONS" "$DURATION"
row "\`event(slug:)\`, anonymous, 200 slugs in turn" "$CONNECTIONS" "$ANSWERS" "$RPS" "$P50" "$P99" "$ERRORS" "$PEAK"

# Access tokens, minted like the server's (HS256 with its secret, its issuer
# and audience, 15 minutes), outside the measured window.
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
mint_token() {
  local now header payload signature
  now=$(date +%s)
  header=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
  payload=$(printf '{"sub":"%s","iss":"spanglish","aud":"spanglish-api","iat":%d,"exp":%d,"jti":"%s"}' \
    "$1" "$now" $((now + 900)) "$(cat /proc/sys/kernel/random/uuid)" | b64url)
  signature=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -hmac "$JWT_SECRET" -binary | b64url)
  printf '%s.%s.%s' "$header" "$payload" "$signature"
}

# 3. The booking rush: 1,000 members, one bookTicket each, 200 seats.
say "booking rush: $RUSH_MEMBERS members, $RUSH_SEATS seats, $CONNECTIONS connections"
BOOK_BODY="{\"query\":\"mutation Book(\$event: ID!) { bookTicket(eventId: \$event) { id status } }\",\"variables\":{\"event\":\"$RUSH_EVENT\"}}"
for i in $(seq 1 "$RUSH_MEMBERS"); do
  line "Authorization: Bearer $(mint_token "$(id_of 8000 "$i")")" "$BOOK_BODY"
done >"$WORK/rush.txt"
run_wrk rush /graphql "$WORK/rush.txt" once "$CONNECTIONS" 120 SOLD_OUT
RUSH_RPS=$RPS
SOLD=$(sql -c "SELECT count(*) FROM tickets WHERE event_id = '$RUSH_EVENT' AND status IN ('PENDING', 'CONFIRMED')")
SOLD_OUT=$(field expected)
echo "   seats taken: $SOLD of $RUSH_SEATS; SOLD_OUT answers: $SOLD_OUT" >&2
[ "$SOLD" = "$RUSH_SEATS" ] || fail "the rush left $SOLD tickets, not exactly $RUSH_SEATS"
[ "$ANSWERS" = "$RUSH_MEMBERS" ] || fail "the rush got $ANSWERS answers for $RUSH_MEMBERS requests"
[ "$((ANSWERS - ERRORS - SOLD_OUT))" = "$RUSH_SEATS" ] || fail "the rush answered $((ANSWERS - ERRORS - SOLD_OUT)) bookings, not $RUSH_SEATS"
row "booking rush: $RUSH_MEMBERS members, $RUSH_SEATS seats (final count $SOLD)" "$CONNECTIONS" "$ANSWERS" "$RPS" "$P50" "$P99" "$ERRORS (+$SOLD_OUT SOLD_OUT)" "$PEAK"

# The same SQL, straight from pgbench, on the copy of the seeded state.
say "pgbench: the booking's SQL, $CONNECTIONS clients"
PGBENCH_TX=$((RUSH_MEMBERS / CONNECTIONS + (RUSH_MEMBERS % CONNECTIONS > 0)))
cpu_mark
pgbench -n -M prepared -c "$CONNECTIONS" -j "$THREADS" -t "$PGBENCH_TX" -f "$ROOT/bench/booking.pgbench" \
  -D event="$RUSH_EVENT" -D members="$RUSH_MEMBERS" "$PGBENCH_URL" >"$WORK/pgbench.out" 2>&1 ||
  die "pgbench failed: $(cat "$WORK/pgbench.out")"
CPU_ROWS+=("$(cpu_report $((PGBENCH_TX * CONNECTIONS)) pgbench)")
PGBENCH_TPS=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$WORK/pgbench.out")
PGBENCH_TPS=$(printf '%.1f' "$PGBENCH_TPS")
PGBENCH_SOLD=$(psql "$PGBENCH_URL" -qAtX -c "SELECT count(*) FROM tickets WHERE event_id = '$RUSH_EVENT' AND status IN ('PENDING', 'CONFIRMED')")
grep -E '^(number of transactions actually processed|number of failed|latency average|tps)' "$WORK/pgbench.out" >&2 || true
echo "   pgbench seats taken: $PGBENCH_SOLD of $RUSH_SEATS" >&2
[ "$PGBENCH_SOLD" = "$RUSH_SEATS" ] || fail "pgbench's replica of the booking left $PGBENCH_SOLD tickets"
RATIO=$(awk -v a="$RUSH_RPS" -v b="$PGBENCH_TPS" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
row "pgbench, the booking's SQL ($((PGBENCH_TX * CONNECTIONS)) transactions); server / pgbench = **$RATIO**" "$CONNECTIONS" "$((PGBENCH_TX * CONNECTIONS))" "$PGBENCH_TPS" "–" "–" "0" "–"

# 4. The webhook burst: 500 signed deliveries, a third of them repeats.
say "webhook burst: $((PAYMENTS + REPEATS)) Stripe deliveries, $REPEATS of them repeats, $CONNECTIONS connections"
stamp=$(date +%s)
webhook_line() {
  local i=$1 body signature
  body=$(printf '{"id":"evt_bench_%d","object":"event","type":"checkout.session.completed","data":{"object":{"id":"cs_bench_%d","object":"checkout.session","payment_status":"paid","payment_intent":"pi_bench_%d","amount_total":1500,"currency":"usd","metadata":{"payment_id":"%s"}}}}' \
    "$i" "$i" "$i" "$(id_of 8004 "$i")")
  signature=$(printf '%s.%s' "$stamp" "$body" | openssl dgst -sha256 -hmac "$WEBHOOK_SECRET" -r | cut -d' ' -f1)
  line "Stripe-Signature: t=$stamp,v1=$signature" "$body"
}
declare -a deliveries=()
for i in $(seq 1 "$PAYMENTS"); do
  deliveries[i]=$(webhook_line "$i")
done
# Each first delivery in order; after every second one, a repeat of an
# earlier one (the k-th repeat is of delivery k), and the last repeat at the
# end: repeats come from right behind their first delivery to far after it.
{
  k=0
  for i in $(seq 1 "$PAYMENTS"); do
    printf '%s\n' "${deliveries[i]}"
    if [ $((i % 2)) = 0 ] && [ "$k" -lt "$REPEATS" ]; then
      k=$((k + 1))
      printf '%s\n' "${deliveries[k]}"
    fi
  done
  while [ "$k" -lt "$REPEATS" ]; do
    k=$((k + 1))
    printf '%s\n' "${deliveries[k]}"
  done
} >"$WORK/webhooks.txt"
run_wrk webhooks /api/payments/webhook/stripe "$WORK/webhooks.txt" once "$CONNECTIONS" 120
OUTCOMES=$(field outcomes)
PAID=$(sql -c "SELECT count(*) FROM payments WHERE status = 'SUCCEEDED'")
CONFIRMED=$(sql -c "SELECT count(*) FROM tickets WHERE event_id = '$PAID_EVENT' AND status = 'CONFIRMED'")
INBOX=$(sql -c "SELECT count(*) FROM webhook_events")
echo "   outcomes: $OUTCOMES; payments succeeded: $PAID; tickets confirmed: $CONFIRMED; inbox rows: $INBOX" >&2
if [ "$PAID" != "$PAYMENTS" ] || [ "$CONFIRMED" != "$PAYMENTS" ] || [ "$INBOX" != "$PAYMENTS" ]; then
  fail "the webhooks should pay and confirm $PAYMENTS tickets once each"
fi
[ "$OUTCOMES" = "applied:$PAYMENTS,duplicate:$REPEATS" ] || fail "the webhook answers were $OUTCOMES"
row "webhook burst: $((PAYMENTS + REPEATS)) signed deliveries, $REPEATS repeats ($OUTCOMES)" "$CONNECTIONS" "$ANSWERS" "$RPS" "$P50" "$P99" "$ERRORS" "$PEAK"

# 5. login, whose cost argon2 sets; members in turn, all with the right password.
for i in $(seq 1 "$MEMBERS"); do
  line "" "{\"query\":\"mutation Login(\$email: String!, \$password: String!) { login(email: \$email, password: \$password) { accessToken expiresIn } }\",\"variables\":{\"email\":\"member$i@bench.example\",\"password\":\"$PASSWORD\"}}"
done >"$WORK/login.txt"
CORES=$(nproc)
for conns in 2 "$CONNECTIONS"; do
  say "login, $conns connections, ${LOGIN_DURATION}s"
  run_wrk "login-$conns" /graphql "$WORK/login.txt" cycle "$conns" "$LOGIN_DURATION"
  PER_CORE=$(awk -v r="$RPS" -v c="$CORES" 'BEGIN { printf "%.1f", r / c }')
  row "\`login\` (argon2id), $CORES cores: **$PER_CORE per core**" "$conns" "$ANSWERS" "$RPS" "$P50" "$P99" "$ERRORS" "$PEAK"
done

# ---------------------------------------------------------------- report

LOG_LINES=$(wc -l <"$WORK/server.log")
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
REPORT=$(
  cat <<EOF
Run of $(date -u +'%Y-%m-%d %H:%M UTC'), \`bench/run.sh\`:

- $(nproc) CPUs (\`nproc\`), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
- $(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) memory; load average before the run: $LOAD_BEFORE
- PostgreSQL $(psql "$POSTGRES_URL" -qAtX -c 'SHOW server_version'), on 127.0.0.1, with wrk and pgbench on the same machine
- $(rustc -V 2>/dev/null || echo "rustc unknown"), release profile; $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)
- commit \`$commit\`
- server: APP_ENV=production, RUST_LOG=${BENCH_RUST_LOG:-info} (JSON to a file: $LOG_LINES lines in the run), DATABASE_MAX_CONNECTIONS=${BENCH_DB_CONNECTIONS:-default}, GRAPHQL_ANSWER_CACHE_MS=${BENCH_ANSWER_CACHE_MS:-default}, auth rate limits raised, BACKGROUND_JOBS=false
- idle memory (VmRSS after start-up, before any request): **$IDLE_MB MB**

| scenario | connections | requests | requests/s | p50 ms | p99 ms | errors | peak MB |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
$(printf '%s\n' "${ROWS[@]}")

Where the CPU went, in CPU milliseconds per request ("everything else" is
wrk, or pgbench, and any other process on the machine; busy is the share of
all cores in use):

| scenario | server | PostgreSQL | everything else | machine busy |
| --- | ---: | ---: | ---: | ---: |
$(printf '%s\n' "${CPU_ROWS[@]}")
EOF
)
printf '\n%s\n' "$REPORT"

if [ "$WRITE" = 1 ]; then
  printf '\n### %s\n\n%s\n' "$(date -u +'%Y-%m-%d %H:%M UTC')" "$REPORT" >>"$ROOT/docs/benchmarks.md"
  echo "appended to docs/benchmarks.md" >&2
fi

[ "$FAILED" = 0 ] || die "a correctness check failed (see above)"
