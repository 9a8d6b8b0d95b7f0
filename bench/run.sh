#!/usr/bin/env bash
# Every hot path of Tessera, each figure as a ratio to a baseline measured in
# the same run on the same machine (absolute numbers on a shared machine are
# noise), printed as one table:
#   healthz, JWKS, client_credentials, introspection: wrk req/s vs /healthz;
#   refresh: examples/refresh_load.rs (each worker spends only its own token)
#     vs `pgbench -N` TPS at the same concurrency on the same Postgres;
#   password logins vs raw argon2id (examples/argon2_rate.rs), same cost/threads;
#   JWKS and refresh p99 and 5xx count during a login flood;
#   server RSS idle and peak (VmHWM).
#
# Needs wrk (apt-get install wrk), pgbench, psql, curl, python3, and a
# Postgres reachable as PGHOST/PGPORT/PGUSER (default postgres@127.0.0.1:5432,
# trust auth). Creates and drops its own scratch databases.
#   bench/run.sh                  # builds and measures this tree
#   BIN=/path/to/tessera CONFIG_DIR=/path/to/its/config bench/run.sh
# Knobs: DURATION (10 s per row), CONNECTIONS (32, wrk rows and logins),
# REFRESH_WORKERS (16), FLOOD_CONNECTIONS (256), PROBE_WORKERS (2),
# CONCURRENT (password.max_concurrent and argon2 threads; CPUs).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
REFRESH_WORKERS=${REFRESH_WORKERS:-16}
FLOOD_CONNECTIONS=${FLOOD_CONNECTIONS:-256}
PROBE_WORKERS=${PROBE_WORKERS:-2}
CONCURRENT=${CONCURRENT:-$(nproc)}
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
  cargo build --release --quiet --bin tessera --example refresh_load --example argon2_rate
  BIN=$TARGET/release/tessera
else
  cargo build --release --quiet --example refresh_load --example argon2_rate
fi
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
# Unknown keys are refused at startup: older builds have no login.* keys.
LIMITS=(TESSERA__LOGIN__LOCKOUT_THRESHOLD=1000000 TESSERA__LOGIN__ADDRESS_BURST=1000000)
if env "${LIMITS[@]}" "$BIN" migrate >/dev/null 2>&1; then
  export "${LIMITS[@]}"
else
  "$BIN" migrate >/dev/null
fi
for i in $(seq 0 $((USERS - 1))); do # each hashes a password: one per CPU at a time
  echo "$PASSWORD" | "$BIN" user create "u$i" --password-stdin --scope read >/dev/null &
  if [ $(((i + 1) % $(nproc))) -eq 0 ]; then wait; fi
done
wait
"$BIN" client create app --public --grant password,refresh_token --scope read >/dev/null
SECRET=$("$BIN" client create svc --grant client_credentials --scope "read introspect" 2>/dev/null | sed -n 's/^client_secret: //p')
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

echo
echo "binary: $BIN   ${DURATION}s per row, $CONNECTIONS connections, $(nproc) CPUs, password.max_concurrent=$CONCURRENT"
printf '%-30s %12s  %-26s %12s %7s %9s  %s\n' row measured baseline "baseline value" ratio target met
printf '%s\n' "${ROWS[@]}"
echo
echo "refresh (c=$REFRESH_WORKERS): $(cat "$WORK/refresh.out")"
echo "refresh probe during flood (c=$PROBE_WORKERS): $(cat "$WORK/probe_refresh.out")"
echo "flood ($FLOOD_CONNECTIONS connections): $(rps_of flood) logins/s; $(grep '^status' "$WORK/flood.out"); jwks probe $(rps_of probe_jwks) req/s, $(grep '^status' "$WORK/probe_jwks.out")"
for name in healthz0 healthz1 healthz2 healthz3 jwks cc introspect password; do
  [ "$(errors_of $name)" -eq 0 ] || echo "$name: $(errors_of $name) failed requests (see wrk: non-2xx or socket errors)"
done
cpu_line() { # name, requests
  echo "$1 $(per_request_us "${CPU_S[$1]}" "$2") + $(per_request_us "${CPU_PG[$1]}" "$2")"
}
echo "CPU per request, µs (Tessera + its Postgres backends; includes each worker's login for refresh):"
echo "  $(cpu_line healthz1 "$(requests_of healthz1)"); $(cpu_line jwks "$(requests_of jwks)"); $(cpu_line cc "$(requests_of cc)")"
echo "  $(cpu_line introspect "$(requests_of introspect)"); $(cpu_line refresh "$(field refresh ok)"); $(cpu_line password "$(requests_of password)")"
echo "VmHWM after each phase (MiB): wrk rows $(mib "$HWM_WRK"), refresh $(mib "$HWM_REFRESH"), logins $(mib "$HWM_LOGINS"), flood $(mib "$RSS_PEAK")"
echo "total: $((SECONDS - START)) s"
