#!/usr/bin/env bash
# Memory and throughput under a password-login flood (a script, not a timed
# test). Prints:
#   - RSS idle (after startup, before any login), and peak RSS (VmHWM) during
#     a login flood at CONNECTIONS connections for DURATION seconds;
#   - login throughput as a ratio to the raw argon2id rate measured in the
#     same run on the same machine (absolute numbers on shared machines are
#     noise);
#   - whether the targets hold: idle <= 32 MiB, peak <= max_concurrent x
#     memory_kib + 48 MiB.
# Logins use USERS accounts with the right password, round-robin, and a high
# lockout threshold: with the defaults, every login counts against its
# username until it succeeds, so hundreds of concurrent logins of one account
# would be (correctly) locked out and the flood would measure the lockout.
#
# Needs wrk (apt-get install wrk), python3, psql, and a Postgres at
# postgres://postgres@127.0.0.1:5432. Usage:
#   bench/login_flood.sh                 # builds and measures this tree
#   BIN=/path/to/tessera CONFIG_DIR=/path/to/its/config bench/login_flood.sh
#                                        # measures another build (e.g. an older commit)
# Knobs: DURATION (30), CONNECTIONS (256), USERS (64), CONCURRENT (password.max_concurrent; CPUs).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-30}
CONNECTIONS=${CONNECTIONS:-256}
USERS=${USERS:-64}
CONCURRENT=${CONCURRENT:-$(nproc)}
MEMORY_KIB=19456
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)"; exit 1; }

export SQLX_OFFLINE=true # sqlx's query macros check against the committed .sqlx/
cargo build --release --quiet --example argon2_rate
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/tessera
fi
DB=tessera_flood_$$
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
ADMIN_PORT=$(free_port)
export TESSERA_ENV=local TESSERA_CONFIG_DIR=${CONFIG_DIR:-config}
export TESSERA__DATABASE__URL=postgres://postgres@127.0.0.1:5432/$DB
export TESSERA__HTTP__PUBLIC_ADDR=127.0.0.1:$PORT TESSERA__HTTP__ADMIN_ADDR=127.0.0.1:$ADMIN_PORT
export TESSERA__LOG__LEVEL=warn
export TESSERA__PASSWORD__MAX_CONCURRENT=$CONCURRENT TESSERA__PASSWORD__MAX_QUEUE=100000
WORK=$(mktemp -d)
cleanup() {
  [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Unknown keys are refused at startup: older builds have no login.* keys.
# All logins come from one address: lift its in-flight attempt limit too,
# or the flood measures 429s.
LIMITS=(TESSERA__LOGIN__LOCKOUT_THRESHOLD=1000000 TESSERA__LOGIN__ADDRESS_BURST=1000000)
if env "${LIMITS[@]}" "$BIN" migrate >/dev/null 2>&1; then
  export "${LIMITS[@]}"
else
  "$BIN" migrate >/dev/null
fi
for i in $(seq 0 $((USERS - 1))); do
  echo 'bench password 123' | "$BIN" user create "u$i" --password-stdin --scope read >/dev/null
done
"$BIN" client create app --public --grant password,refresh_token --scope read >/dev/null
"$BIN" serve >"$WORK/server.log" 2>&1 & SERVER=$!
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.2; done
sleep 2
rss_kib() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$SERVER/status"; }
IDLE=$(rss_kib VmRSS)

cat >"$WORK/login.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local n = math.random(0, $USERS - 1)
request = function()
  n = (n + 1) % $USERS
  return wrk.format(nil, nil, nil, "grant_type=password&client_id=app&username=u" .. n .. "&password=bench+password+123")
end
LUA
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 60s -s "$WORK/login.lua" "http://127.0.0.1:$PORT/auth/token" >"$WORK/wrk.out"
PEAK=$(rss_kib VmHWM)
sleep 5
AFTER=$(rss_kib VmRSS)
LOGINS=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out")
NON2XX=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.out")
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=
# At the server's hashing priority (nice 19), so both compete alike with other load.
RAW=$(nice -n 19 target/release/examples/argon2_rate "$CONCURRENT" 10 "$MEMORY_KIB" 2)

mib() { python3 -c "print(f'{$1/1024:.1f}')"; }
LIMIT=$(( CONCURRENT * MEMORY_KIB + 48 * 1024 ))
echo "binary:               $BIN"
echo "flood:                ${DURATION}s, $CONNECTIONS connections, $USERS users, max_concurrent=$CONCURRENT"
echo "RSS idle:             $(mib "$IDLE") MiB (target <= 32)"
echo "RSS peak (flood):     $(mib "$PEAK") MiB (target <= $(mib "$LIMIT") = $CONCURRENT x $MEMORY_KIB KiB + 48 MiB)"
echo "RSS 5 s after flood:  $(mib "$AFTER") MiB"
echo "logins/s:             $LOGINS (non-2xx: ${NON2XX:-0})"
echo "raw argon2/s:         $RAW ($CONCURRENT threads)"
echo "logins / raw argon2:  $(python3 -c "print(f'{$LOGINS/$RAW:.3f}')")"
[ "$IDLE" -le $((32 * 1024)) ] && [ "$PEAK" -le "$LIMIT" ] && echo "targets: met" || echo "targets: NOT met"
