#!/usr/bin/env bash
# Every hot path of Tessera, each figure as a ratio to a baseline measured in
# the same run on the same machine (absolute numbers on a shared machine are
# noise), printed as one table:
#   healthz, JWKS, client_credentials, introspection: wrk req/s vs /healthz;
#   refresh: examples/refresh_load.rs (each worker spends only its own token)
#     vs `pgbench -N` TPS at the same concurrency on the same Postgres;
#   password logins vs raw argon2id (examples/argon2_rate.rs), same cost/threads;
#   JWKS and refresh p99 and 5xx count during a login flood;
#   server RSS idle and peak (VmHWM);
#   DPoP (RFC 9449): client_credentials and password logins with a fresh
#     proof per request vs the same requests without one, both driven by
#     examples/dpop_load.rs; server RSS peak under a flood of distinct
#     proofs, and the replay cache's entries after it (admin /metrics);
#   logins with a second factor (password + TOTP through the challenge
#     endpoint, 3 requests) vs password-grant logins, both driven by
#     examples/dpop_load.rs at the same concurrency; users m0.. get TOTP
#     (enough for one login per user and 30 s step; MFA_USERS overrides);
#   tokens for an API (RFC 8707 resource, two user attributes in each
#     token): password logins and refreshes of client `api` vs the same of
#     `app`, by the same tools, each between two halves of its baseline;
#   the verifier kit's DPoP/bearer ratio, from its own bench (cargo bench
#     -p tessera-verifier --bench verify), when that bench prints one.
#
# Needs wrk (apt-get install wrk), pgbench, psql, curl, python3, and a
# Postgres reachable as PGHOST/PGPORT/PGUSER (default postgres@127.0.0.1:5432,
# trust auth). Creates and drops its own scratch databases.
#   bench/run.sh                  # builds and measures this tree
#   BIN=/path/to/tessera CONFIG_DIR=/path/to/its/config bench/run.sh
# Knobs: DURATION (10 s per row), CONNECTIONS (32, wrk rows and logins),
# REFRESH_WORKERS (16), FLOOD_CONNECTIONS (256), PROBE_WORKERS (2),
# CONCURRENT (password.max_concurrent and argon2 threads; CPUs),
# DPOP_FLOOD_WORKERS (256), DPOP_FLOOD_SECONDS (5), VERIFIER_BENCH (1; 0 skips it),
# MFA_USERS (users with TOTP; by default from the password row's rate).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
REFRESH_WORKERS=${REFRESH_WORKERS:-16}
FLOOD_CONNECTIONS=${FLOOD_CONNECTIONS:-256}
PROBE_WORKERS=${PROBE_WORKERS:-2}
CONCURRENT=${CONCURRENT:-$(nproc)}
DPOP_FLOOD_WORKERS=${DPOP_FLOOD_WORKERS:-256}
DPOP_FLOOD_SECONDS=${DPOP_FLOOD_SECONDS:-5}
VERIFIER_BENCH=${VERIFIER_BENCH:-1}
# dpop.replay_capacity (config/base.yaml's default unless overridden).
REPLAY_CAPACITY=${TESSERA__DPOP__REPLAY_CAPACITY:-1000000}
# One user per refresh worker: refresh_load logs in as u0..u(USERS-1).
USERS=$((REFRESH_WORKERS > PROBE_WORKERS ? REFRESH_WORKERS : PROBE_WORKERS))
# config/base.yaml's password cost, which is also the enforced minimum.
MEMORY_KIB=19456 ITERATIONS=2
PASSWORD='bench password 123'
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
for tool in wrk pgbench psql curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is required (wrk: apt-get install wrk)" >&2; exit 1; }
done
START=$SECONDS

export SQLX_OFFLINE=true # sqlx's query macros check against the committed .sqlx/
TARGET=${CARGO_TARGET_DIR:-target}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin tessera --example refresh_load --example argon2_rate --example dpop_load
  BIN=$TARGET/release/tessera
else
  cargo build --release --quiet --example refresh_load --example argon2_rate --example dpop_load
fi
# The verifier kit's bench, built now so that its row times only itself
# (a failure here is reported in that row, not fatal).
[ "${VERIFIER_BENCH:-1}" != 1 ] || cargo bench --quiet --no-run -p tessera-verifier --bench verify >/dev/null 2>&1 || true
EX=$TARGET/release/examples

DB=tessera_bench_$$ PGB_DB=tessera_pgbench_$$
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port) ADMIN_PORT=$(free_port)
BASE=http://127.0.0.1:$PORT
export TESSERA_ENV=local TESSERA_CONFIG_DIR=${CONFIG_DIR:-config}
export TESSERA__DATABASE__URL=postgres://$PGUSER@$PGHOST:$PGPORT/$DB
export TESSERA__HTTP__PUBLIC_ADDR=127.0.0.1:$PORT TESSERA__HTTP__ADMIN_ADDR=127.0.0.1:$ADMIN_PORT
export TESSERA__LOG__LEVEL=warn TESSERA__PASSWORD__MAX_CONCURRENT=$CONCURRENT
WORK=$(mktemp -d)
cleanup() {
  # Background loads first (they may still hold connections), then the server.
  for pid in ${BG:-} ${SERVER:-}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for db in "$DB" "$PGB_DB"; do
    psql -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every bench login succeeds, but each counts as an attempt until decided:
# hundreds in flight per username, or from the one address all bench load
# comes from, would trip limits meant for guessing (429s, not logins).
# The per-username threshold must be at least the per-source one, and
# the floods open more connections than one address may hold by default.
# Unknown keys are refused at startup: older builds have fewer of these
# keys (or no login.* keys at all), so each smaller set is tried in turn.
LIMITS_NOW=(TESSERA__LOGIN__LOCKOUT_THRESHOLD=1000000 TESSERA__LOGIN__USERNAME_LOCKOUT_THRESHOLD=1000000
  TESSERA__LOGIN__ADDRESS_BURST=1000000 TESSERA__HTTP__MAX_CONNECTIONS_PER_ADDRESS=0)
LIMITS_OLD=(TESSERA__LOGIN__LOCKOUT_THRESHOLD=1000000 TESSERA__LOGIN__ADDRESS_BURST=1000000)
if env "${LIMITS_NOW[@]}" "$BIN" migrate >/dev/null 2>&1; then
  export "${LIMITS_NOW[@]}"
elif env "${LIMITS_OLD[@]}" "$BIN" migrate >/dev/null 2>&1; then
  export "${LIMITS_OLD[@]}"
else
  "$BIN" migrate >/dev/null
fi
for i in $(seq 0 $((USERS - 1))); do # each hashes a password: one per CPU at a time
  echo "$PASSWORD" | "$BIN" user create "u$i" --password-stdin --scope read >/dev/null &
  if [ $(((i + 1) % $(nproc))) -eq 0 ]; then wait; fi
done
wait
"$BIN" client create app --public --grant password,refresh_token --scope read >/dev/null
# The challenge endpoint's client (issue 20); a build without one skips its row.
MFA=1
"$BIN" client create native --public --grant authorization_code,refresh_token --scope read >/dev/null 2>&1 || MFA=0
SECRET=$("$BIN" client create svc --grant client_credentials --scope "read introspect" 2>/dev/null | sed -n 's/^client_secret: //p')
# Tokens for an API (issue 21): client `api` asks for a resource, and its
# tokens carry two attributes of each user; a build without them skips
# those rows.
SHAPED=1 RESOURCE=https://api.bench.example/
{ "$BIN" client create api --public --grant password,refresh_token --scope read &&
  "$BIN" resource create "$RESOURCE" --scope read --access-ttl 5m &&
  "$BIN" client set-resources api "$RESOURCE" &&
  "$BIN" client set-claims api roles tenant; } >/dev/null 2>&1 || SHAPED=0
if [ "$SHAPED" = 1 ]; then
  for i in $(seq 0 $((USERS - 1))); do
    echo '{"roles": ["support", "billing"], "tenant": "acme"}' |
      "$BIN" user set-claims "u$i" >/dev/null || SHAPED=0
  done
fi
"$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 300); do
  curl -sf "$BASE/readyz" >/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.2
done
sleep 2 # let startup allocations settle before reading idle RSS
rss_kib() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$SERVER/status"; }
RSS_IDLE=$(rss_kib VmRSS)
BASIC=$(printf 'svc:%s' "$SECRET" | base64 -w0)
ACCESS=$(curl -sf -u "svc:$SECRET" "$BASE/auth/token" -d grant_type=client_credentials |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

# --- lua for wrk ------------------------------------------------------------
post_lua() { # file, body, Authorization header or ""
  printf 'wrk.method="POST"\nwrk.body="%s"\nwrk.headers["Content-Type"]="application/x-www-form-urlencoded"\n' "$2" >"$1"
  [ -z "$3" ] || printf 'wrk.headers["Authorization"]="%s"\n' "$3" >>"$1"
}
# wrk's "Non-2xx or 3xx" lumps 429 with 5xx: count statuses per thread, sum in done().
status_lua() {
  cat <<'LUA'
local threads = {}
function setup(thread) table.insert(threads, thread) end
s5xx, s503, s429, sother = 0, 0, 0, 0
function response(status)
  if status >= 500 then s5xx = s5xx + 1; if status == 503 then s503 = s503 + 1 end
  elseif status == 429 then s429 = s429 + 1
  elseif status ~= 200 then sother = sother + 1 end
end
function done()
  local t = { s5xx = 0, s503 = 0, s429 = 0, sother = 0 }
  for _, th in ipairs(threads) do for k in pairs(t) do t[k] = t[k] + th:get(k) end end
  io.write(string.format("status 5xx=%d 503=%d 429=%d other=%d\n", t.s5xx, t.s503, t.s429, t.sother))
end
LUA
}
{
  status_lua
  cat <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local n = math.random(0, $USERS - 1)
function request()
  n = (n + 1) % $USERS
  return wrk.format(nil, nil, nil, "grant_type=password&client_id=app&username=u" .. n .. "&password=bench+password+123")
end
LUA
} >"$WORK/login.lua"
# A paced probe (each connection waits 10 ms between requests): it measures
# latency without itself taking the CPU the flood competes for.
{ status_lua; echo 'function delay() return 10 end'; } >"$WORK/probe.lua"
post_lua "$WORK/cc.lua" grant_type=client_credentials "Basic $BASIC"
post_lua "$WORK/introspect.lua" "token=$ACCESS" "Basic $BASIC"
export BENCH_CLIENT_SECRET=$SECRET BENCH_PASSWORD=$PASSWORD BENCH_TOTP_FILE=$WORK/totp # for dpop_load

# --- measurements -----------------------------------------------------------
# CPU time (clock ticks, user + system) of the server, and of the Postgres
# backends serving its database, for the "CPU per request" line (sizing).
TICK_US=$((1000000 / $(getconf CLK_TCK)))
ticks_of() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
server_ticks() { ticks_of "$SERVER"; }
pg_ticks() {
  local total=0 pid
  for pid in $(psql -At -d postgres -c "SELECT pid FROM pg_stat_activity WHERE datname = '$DB'"); do
    total=$((total + $(ticks_of "$pid")))
  done
  echo "$total"
}
declare -A CPU_S CPU_PG
wrk_run() { # name, wrk args... -> $WORK/name.out, and CPU ticks in CPU_S/CPU_PG
  local name=$1 s0 p0; shift
  echo "  $name" >&2
  s0=$(server_ticks) p0=$(pg_ticks)
  wrk "$@" >"$WORK/$name.out" 2>&1 || true
  CPU_S[$name]=$(($(server_ticks) - s0)) CPU_PG[$name]=$(($(pg_ticks) - p0))
}
requests_of() { awk '/requests in/ {print $1}' "$WORK/$1.out"; }
per_request_us() { # ticks, requests
  awk -v t="$1" -v n="$2" -v u="$TICK_US" 'BEGIN { if (n > 0) printf "%.0f", t * u / n; else print "-" }'
}
rps_of() { awk '/Requests\/sec/ {print $2}' "$WORK/$1.out"; }
# Failed requests in a wrk run: non-2xx/3xx responses plus socket errors.
errors_of() {
  awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' "$WORK/$1.out"
}
status_of() { sed -n "s/^status .*$2=\([0-9]*\).*/\1/p" "$WORK/$1.out"; }
p99_ms_of() { # wrk --latency prints e.g. "99%   12.34ms"
  awk '$1 == "99%" { v = $2; u = v; sub(/^[0-9.]+/, "", u); f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : 60000; printf "%.2f", v * f }' "$WORK/$1.out"
}
field() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" "$WORK/$1.out"; }
# examples/dpop_load.rs: a fresh proof per request (dpop) or none, so both
# sides of a DPoP ratio are driven by the same tool on the same connections.
dpop_run() { # name, grant, dpop|none, seconds, [workers] -> $WORK/name.out, CPU ticks
  local name=$1 s0 p0
  echo "  $name" >&2
  s0=$(server_ticks) p0=$(pg_ticks)
  "$EX/dpop_load" "$BASE" "$2" "$3" "${5:-$CONNECTIONS}" "$4" "$USERS" >"$WORK/$name.out" 2>&1 || true
  CPU_S[$name]=$(($(server_ticks) - s0)) CPU_PG[$name]=$(($(pg_ticks) - p0))
}

# Other tenants' load drifts within a run: each baseline is measured for half
# a row's time just before and just after the row it divides (healthz runs
# between the wrk rows), and the ratio uses the mean of the two.
HALF=$((DURATION > 1 ? DURATION / 2 : 1))
mean() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "") printf "%.1f", (a + b) / 2 }'; }
echo "measuring (${DURATION}s per row)..." >&2
W=(-t2 -c"$CONNECTIONS")
wrk_run healthz0 "${W[@]}" -d"${HALF}s" "$BASE/healthz"
wrk_run jwks "${W[@]}" -d"${DURATION}s" "$BASE/.well-known/jwks.json"
wrk_run healthz1 "${W[@]}" -d"${HALF}s" "$BASE/healthz"
wrk_run cc "${W[@]}" -d"${DURATION}s" -s "$WORK/cc.lua" "$BASE/auth/token"
wrk_run healthz2 "${W[@]}" -d"${HALF}s" "$BASE/healthz"
wrk_run introspect "${W[@]}" -d"${DURATION}s" -s "$WORK/introspect.lua" "$BASE/auth/introspect"
wrk_run healthz3 "${W[@]}" -d"${HALF}s" "$BASE/healthz"
HWM_WRK=$(rss_kib VmHWM) # VmHWM only grows: read after each phase, it says which one set the peak
dpop_run cc_plain0 client_credentials none "$HALF"
dpop_run cc_dpop client_credentials dpop "$DURATION"
dpop_run cc_plain1 client_credentials none "$HALF"

psql -q -d postgres -c "CREATE DATABASE $PGB_DB" >/dev/null
pgbench -i -q -s 1 "$PGB_DB" >/dev/null 2>&1
pgbench_tps() {
  echo "  pgbench -N" >&2
  pgbench -N -c "$REFRESH_WORKERS" -j 2 -T "$HALF" "$PGB_DB" 2>&1 | awk '/^tps = / {v = $3} END {print v}'
}
PGB_BEFORE=$(pgbench_tps)
echo "  refresh" >&2
S0=$(server_ticks) P0=$(pg_ticks)
"$EX/refresh_load" "$BASE" "$REFRESH_WORKERS" "$DURATION" "$USERS" >"$WORK/refresh.out" 2>&1 || true
CPU_S[refresh]=$(($(server_ticks) - S0)) CPU_PG[refresh]=$(($(pg_ticks) - P0))
HWM_REFRESH=$(rss_kib VmHWM)
PGB_TPS=$(mean "$PGB_BEFORE" "$(pgbench_tps)")
psql -q -d postgres -c "DROP DATABASE $PGB_DB WITH (FORCE)" >/dev/null
# Refreshes for an API, between the refresh row and one more half of it.
refresh_run() { # name, seconds
  echo "  $1" >&2
  local s0 p0
  s0=$(server_ticks) p0=$(pg_ticks)
  "$EX/refresh_load" "$BASE" "$REFRESH_WORKERS" "$2" "$USERS" >"$WORK/$1.out" 2>&1 || true
  CPU_S[$1]=$(($(server_ticks) - s0)) CPU_PG[$1]=$(($(pg_ticks) - p0))
}
if [ "$SHAPED" = 1 ]; then
  export BENCH_PUBLIC_CLIENT_ID=api BENCH_RESOURCE=$RESOURCE
  refresh_run refresh_shaped "$DURATION"
  unset BENCH_PUBLIC_CLIENT_ID BENCH_RESOURCE
  refresh_run refresh_plain2 "$HALF"
fi

argon2_rate() {
  echo "  raw argon2" >&2
  # At the server's hashing priority (its slot threads run at nice 19), so
  # both compete alike with whatever else the machine runs.
  nice -n 19 "$EX/argon2_rate" "$CONCURRENT" "$HALF" "$MEMORY_KIB" "$ITERATIONS"
}
ARGON_BEFORE=$(argon2_rate)
# Logins long outlast wrk's 2 s default timeout while queued for a hashing slot.
wrk_run password -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 60s -s "$WORK/login.lua" "$BASE/auth/token"
HWM_LOGINS=$(rss_kib VmHWM)
ARGON=$(mean "$ARGON_BEFORE" "$(argon2_rate)")

# Users with TOTP for the second-factor row. The server accepts a code for
# the step before, of and after "now", each step once per user and in
# order, so a user gives about two logins over a row, plus one per step
# boundary it crosses: a login needs a (user, step) of its own. Created
# (one argon2 hash each, one per CPU at a time) and enrolled (a password
# login each) now, well before that row: spending a step at enrollment
# leaves the row two of its own.
if [ "$MFA" = 1 ]; then
  MFA_USERS=${MFA_USERS:-$(awk -v r="$(rps_of password)" -v d="$DURATION" -v c="$CONNECTIONS" \
    'BEGIN { n = int(r * d * 1.3 / 2) + c; print (n < 2 * c) ? 2 * c : n }')}
  echo "  $MFA_USERS users with TOTP" >&2
  seq 0 $((MFA_USERS - 1)) | xargs -P "$(nproc)" -I{} sh -c \
    'printf "%s\n" "$1" | "$2" user create "m$3" --password-stdin --scope read >/dev/null' _ "$PASSWORD" "$BIN" {}
  "$EX/dpop_load" "$BASE" enroll "$BENCH_TOTP_FILE" "$CONNECTIONS" "$MFA_USERS" >"$WORK/enroll.out" 2>&1 || MFA=0
fi
# The same logins with a proof each, between two halves without.
dpop_run login_plain0 password none "$HALF"
dpop_run login_dpop password dpop "$DURATION"
dpop_run login_plain1 password none "$HALF"
# Password + TOTP through the challenge endpoint (3 requests, a fresh PKCE
# verifier each), between login_plain1 and one more half without.
if [ "$MFA" = 1 ]; then
  dpop_run challenge challenge none "$DURATION"
  dpop_run login_plain2 password none "$HALF"
fi
# Password logins for an API, between the last half above and one more.
LOGIN_BEFORE=login_plain1
[ "$MFA" != 1 ] || LOGIN_BEFORE=login_plain2
if [ "$SHAPED" = 1 ]; then
  export BENCH_PUBLIC_CLIENT_ID=api BENCH_RESOURCE=$RESOURCE
  dpop_run login_shaped password none "$DURATION"
  unset BENCH_PUBLIC_CLIENT_ID BENCH_RESOURCE
  dpop_run login_plain3 password none "$HALF"
fi

# The flood outlasts both probes: refresh workers log in before it starts and
# begin 2 s later; the JWKS probe starts 2 s into the flood.
echo "  login flood at $FLOOD_CONNECTIONS connections, with JWKS and refresh probes" >&2
"$EX/refresh_load" "$BASE" "$PROBE_WORKERS" "$DURATION" "$USERS" 2 >"$WORK/probe_refresh.out" 2>&1 &
BG=$!
sleep 1
wrk -t2 -c"$FLOOD_CONNECTIONS" -d"$((DURATION + 4))s" --timeout 60s -s "$WORK/login.lua" "$BASE/auth/token" >"$WORK/flood.out" 2>&1 &
BG="$BG $!"
sleep 2
wrk_run probe_jwks -t1 -c4 -d"${DURATION}s" --latency -s "$WORK/probe.lua" "$BASE/.well-known/jwks.json"
# shellcheck disable=SC2086 # two pids
wait $BG || true
BG=
RSS_PEAK=$(rss_kib VmHWM)

# A flood of distinct valid proofs, each remembered by the replay cache
# until its iat leaves the window. VmHWM is reset first (clear_refs 5), so
# the peak is this phase's own; where that is refused it is the whole run's.
metric() { # value of a sample on the admin listener's /metrics, or ""
  curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null | awk -v m="$1" '$1 == m { print $2 }'
}
RSS_PRE_DPOP=$(rss_kib VmRSS) ENTRIES_BEFORE=$(metric tessera_dpop_replay_cache_entries)
HWM_SCOPE='DPoP flood'
echo 5 2>/dev/null >"/proc/$SERVER/clear_refs" || HWM_SCOPE='whole run (VmHWM reset refused)'
dpop_run dpop_flood client_credentials dpop "$DPOP_FLOOD_SECONDS" "$DPOP_FLOOD_WORKERS"
RSS_DPOP=$(rss_kib VmHWM)
FLOOD_END=$SECONDS ENTRIES_AT_END=$(metric tessera_dpop_replay_cache_entries)

# The verifier kit's bench (its own process, pinned to one core when
# taskset is there) runs while housekeeping samples the replay gauge.
VERIFIER_NOTE=
if [ "$VERIFIER_BENCH" = 1 ]; then
  echo "  verifier kit bench" >&2
  PIN=() && command -v taskset >/dev/null && PIN=(taskset -c 0)
  "${PIN[@]}" cargo bench --quiet -p tessera-verifier --bench verify >"$WORK/verifier.out" 2>&1 ||
    VERIFIER_NOTE="cargo bench -p tessera-verifier --bench verify failed: $(tail -n 3 "$WORK/verifier.out" | tr '\n' ' ')"
else
  : >"$WORK/verifier.out"
  VERIFIER_NOTE='skipped (VERIFIER_BENCH=0)'
fi
# Housekeeping samples the gauge once a minute: wait (up to 55 s after the
# flood, while its proofs are all still in the window) for a new sample.
ENTRIES=
while [ $((SECONDS - FLOOD_END)) -lt 55 ]; do
  v=$(metric tessera_dpop_replay_cache_entries)
  if [ -n "$v" ] && [ "$v" != "${ENTRIES_AT_END:-}" ]; then ENTRIES=$v; break; fi
  sleep 1
done

# --- table ------------------------------------------------------------------
ROWS=()
row() { # name, value, baseline name, baseline value, target op, target, [failures]
  local ratio='-' met cmp=$2
  if [ "$4" != - ]; then ratio=$(awk -v a="$2" -v b="$4" 'BEGIN { if (b > 0 && a != "") printf "%.3f", a / b; else print "-" }'); cmp=$ratio; fi
  met=$(awk -v v="$cmp" -v op="$5" -v t="$6" -v f="${7:-0}" 'BEGIN {
    if (op == "") { print "-"; exit }
    ok = v != "" && v != "-" && f == 0 && ((op == ">=") ? v + 0 >= t : (op == "<") ? v + 0 < t : (op == "<=") ? v + 0 <= t : v + 0 == t)
    print ok ? "yes" : "no" }')
  ROWS+=("$(printf '%-30s %12s  %-26s %12s %7s %9s  %s' "$1" "${2:--}" "$3" "$4" "$ratio" "${5:+$5 $6}" "$met")")
}
H01=$(mean "$(rps_of healthz0)" "$(rps_of healthz1)")
H12=$(mean "$(rps_of healthz1)" "$(rps_of healthz2)")
H23=$(mean "$(rps_of healthz2)" "$(rps_of healthz3)")
H=$(mean "$H01" "$H23")
HEALTHZ_ERRORS=0
for i in 0 1 2 3; do HEALTHZ_ERRORS=$((HEALTHZ_ERRORS + $(errors_of healthz$i))); done
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# Empty (not 0) if either wrk printed no status line: that row then fails.
FLOOD_5XX=$(awk -v a="$(status_of flood 5xx)" -v b="$(status_of probe_jwks 5xx)" 'BEGIN { if (a != "" && b != "") print a + b }')

row "healthz req/s" "$H" - - "" "" "$HEALTHZ_ERRORS"
row "jwks req/s" "$(rps_of jwks)" "healthz req/s" "$H01" ">=" 0.95 "$(errors_of jwks)"
row "client_credentials req/s" "$(rps_of cc)" "healthz req/s" "$H12" ">=" 0.3 "$(errors_of cc)"
row "introspect req/s" "$(rps_of introspect)" "healthz req/s" "$H23" ">=" 0.3 "$(errors_of introspect)"
row "refresh req/s (c=$REFRESH_WORKERS)" "$(field refresh rps)" "pgbench -N tps (c=$REFRESH_WORKERS)" "$PGB_TPS" ">=" 0.8 "$(field refresh errors)"
row "password logins/s (c=$CONNECTIONS)" "$(rps_of password)" "raw argon2/s ($CONCURRENT thr)" "$ARGON" ">=" 0.95 "$(errors_of password)"
row "flood: jwks p99 ms" "$(p99_ms_of probe_jwks)" - - "<" 20 "$(errors_of probe_jwks)"
row "flood: refresh p99 ms" "$(field probe_refresh p99_ms)" - - "<" 20 "$(field probe_refresh errors)"
row "flood: 5xx responses" "$FLOOD_5XX" - - "=" 0
row "RSS idle MiB" "$(mib "$RSS_IDLE")" - - "<=" 32
LIMIT=$((CONCURRENT * MEMORY_KIB + 48 * 1024))
row "RSS peak (VmHWM) MiB" "$(mib "$RSS_PEAK")" - - "<=" "$(mib "$LIMIT")"
errors_sum() { local n=0 name; for name; do n=$((n + $(field "$name" errors | grep . || echo 1))); done; echo "$n"; }
CC_PLAIN=$(mean "$(field cc_plain0 rps)" "$(field cc_plain1 rps)")
LOGIN_PLAIN=$(mean "$(field login_plain0 rps)" "$(field login_plain1 rps)")
row "client_credentials+DPoP req/s" "$(field cc_dpop rps)" "client_credentials req/s" "$CC_PLAIN" ">=" 0.6 "$(errors_sum cc_dpop cc_plain0 cc_plain1)"
row "password+DPoP logins/s (c=$CONNECTIONS)" "$(field login_dpop rps)" "password logins/s (c=$CONNECTIONS)" "$LOGIN_PLAIN" ">=" 0.95 "$(errors_sum login_dpop login_plain0 login_plain1)"
# Target 1.1 x the cost of a password-grant login: a rate ratio of 0.91.
# A login that found no (user, step) free (starved) voids the row.
if [ "$MFA" = 1 ]; then
  MFA_FAILURES=$(($(errors_sum challenge login_plain1 login_plain2) + $(field challenge starved | grep . || echo 1)))
  row "password+TOTP logins/s (c=$CONNECTIONS)" "$(field challenge rps)" "password logins/s (c=$CONNECTIONS)" \
    "$(mean "$(field login_plain1 rps)" "$(field login_plain2 rps)")" ">=" 0.91 "$MFA_FAILURES"
else
  row "password+TOTP logins/s (c=$CONNECTIONS)" - "password logins/s (c=$CONNECTIONS)" - ">=" 0.91
fi
# The peak's limit: the login flood's, plus a full replay cache (about 40 bytes an entry).
DPOP_LIMIT=$((LIMIT + REPLAY_CAPACITY * 40 / 1024))
if [ "$SHAPED" = 1 ]; then
  row "password for an API logins/s" "$(field login_shaped rps)" "password logins/s (c=$CONNECTIONS)" \
    "$(mean "$(field "$LOGIN_BEFORE" rps)" "$(field login_plain3 rps)")" ">=" 0.95 "$(errors_sum login_shaped login_plain3)"
  row "refresh for an API req/s" "$(field refresh_shaped rps)" "refresh req/s (c=$REFRESH_WORKERS)" \
    "$(mean "$(field refresh rps)" "$(field refresh_plain2 rps)")" ">=" 0.95 "$(errors_sum refresh_shaped refresh_plain2)"
else
  row "password for an API logins/s" - "password logins/s (c=$CONNECTIONS)" - ">=" 0.95
  row "refresh for an API req/s" - "refresh req/s (c=$REFRESH_WORKERS)" - ">=" 0.95
fi
row "DPoP flood: RSS peak MiB" "$(mib "$RSS_DPOP")" - - "<=" "$(mib "$DPOP_LIMIT")" "$(errors_sum dpop_flood)"
# In memory are client_credentials proofs (password proofs are recorded in
# Postgres with the session): the row's and the flood's, those still in the window.
CC_PROOFS=$(awk -v a="$(field cc_dpop ok)" -v b="$(field dpop_flood ok)" 'BEGIN { print a + b }')
row "DPoP flood: replay entries" "${ENTRIES:--}" "cc proofs accepted" "$CC_PROOFS" "" ""
# Figures the kit's bench prints as "<label>   <rate> /s ...", if it prints them.
bench_rate() { awk -v l="$1" 'index($0, l) == 1 { for (i = 2; i <= NF; i++) if ($i == "/s") print $(i - 1) }' "$WORK/verifier.out" | head -n 1; }
V_BEARER=$(bench_rate "ES256 through the VerifiedToken extractor")
V_DPOP=$(bench_rate "ES256 + ES256 DPoP proof through the extractor")
if [ -z "$VERIFIER_NOTE" ] && [ -z "$V_DPOP" ]; then VERIFIER_NOTE='its bench prints no DPoP figure yet'; fi
row "verifier: DPoP checks/s" "${V_DPOP:--}" "verifier: bearer checks/s" "${V_BEARER:--}" "" ""

echo
echo "binary: $BIN   ${DURATION}s per row, $CONNECTIONS connections, $(nproc) CPUs, password.max_concurrent=$CONCURRENT"
printf '%-30s %12s  %-26s %12s %7s %9s  %s\n' row measured baseline "baseline value" ratio target met
printf '%s\n' "${ROWS[@]}"
echo
echo "refresh (c=$REFRESH_WORKERS): $(cat "$WORK/refresh.out")"
[ "$SHAPED" != 1 ] || echo "refresh for an API (c=$REFRESH_WORKERS): $(cat "$WORK/refresh_shaped.out"); then without: $(cat "$WORK/refresh_plain2.out")"
echo "refresh probe during flood (c=$PROBE_WORKERS): $(cat "$WORK/probe_refresh.out")"
echo "flood ($FLOOD_CONNECTIONS connections): $(rps_of flood) logins/s; $(grep '^status' "$WORK/flood.out"); jwks probe $(rps_of probe_jwks) req/s, $(grep '^status' "$WORK/probe_jwks.out")"
for name in healthz0 healthz1 healthz2 healthz3 jwks cc introspect password; do
  [ "$(errors_of $name)" -eq 0 ] || echo "$name: $(errors_of $name) failed requests (see wrk: non-2xx or socket errors)"
done
for name in cc_plain0 cc_dpop cc_plain1 login_plain0 login_dpop login_plain1 challenge login_plain2 login_shaped login_plain3 dpop_flood; do
  [ ! -e "$WORK/$name.out" ] || echo "dpop_load $name: $(cat "$WORK/$name.out" | tr '\n' ' ')"
done
if [ -e "$WORK/enroll.out" ]; then
  echo "TOTP users m0..m$((MFA_USERS - 1)): $(tr '\n' ' ' <"$WORK/enroll.out")"
else
  echo "TOTP users: none (this build's CLI refused a client with authorization_code: no challenge endpoint)"
fi
echo "DPoP flood ($DPOP_FLOOD_WORKERS workers, ${DPOP_FLOOD_SECONDS}s): RSS $(mib "$RSS_PRE_DPOP") MiB before, peak $(mib "$RSS_DPOP") MiB ($HWM_SCOPE) for $(field dpop_flood ok) accepted proofs; replay entries ${ENTRIES_BEFORE:-?} before, ${ENTRIES:-not sampled again within 55 s} after; a full cache ($REPLAY_CAPACITY) is about $(mib $((REPLAY_CAPACITY * 40 / 1024))) MiB"
echo "verifier kit: $(grep '^DPoP / bearer' "$WORK/verifier.out" || true)${VERIFIER_NOTE}"
cpu_line() { # name, requests
  echo "$1 $(per_request_us "${CPU_S[$1]}" "$2") + $(per_request_us "${CPU_PG[$1]}" "$2")"
}
echo "CPU per request, µs (Tessera + its Postgres backends; includes each worker's login for refresh):"
echo "  $(cpu_line healthz1 "$(requests_of healthz1)"); $(cpu_line jwks "$(requests_of jwks)"); $(cpu_line cc "$(requests_of cc)")"
echo "  $(cpu_line introspect "$(requests_of introspect)"); $(cpu_line refresh "$(field refresh ok)"); $(cpu_line password "$(requests_of password)")"
echo "  $(cpu_line cc_plain0 "$(field cc_plain0 ok)"); $(cpu_line cc_dpop "$(field cc_dpop ok)"); $(cpu_line login_dpop "$(field login_dpop ok)"); $(cpu_line dpop_flood "$(field dpop_flood ok)")"
[ "$MFA" != 1 ] || echo "  $(cpu_line login_plain1 "$(field login_plain1 ok)"); $(cpu_line challenge "$(field challenge ok)") (a whole 3-request login); $(cpu_line login_plain2 "$(field login_plain2 ok)")"
[ "$SHAPED" != 1 ] || echo "  $(cpu_line refresh_shaped "$(field refresh_shaped ok)"); $(cpu_line refresh_plain2 "$(field refresh_plain2 ok)"); $(cpu_line login_shaped "$(field login_shaped ok)"); $(cpu_line login_plain3 "$(field login_plain3 ok)")"
echo "VmHWM after each phase (MiB): wrk rows $(mib "$HWM_WRK"), refresh $(mib "$HWM_REFRESH"), logins $(mib "$HWM_LOGINS"), flood $(mib "$RSS_PEAK"), DPoP flood $(mib "$RSS_DPOP")"
echo "total: $((SECONDS - START)) s"
