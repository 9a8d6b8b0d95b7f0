#!/usr/bin/env bash
# Throughput of the hot endpoints, as ratios to a trivial baseline (/healthz)
# measured in the same run on the same machine (absolute numbers on shared
# machines are noise). Needs wrk (apt-get install wrk) and a Postgres at
# postgres://postgres@127.0.0.1:5432. Usage: bench/run.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNECTIONS=${2:-32}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)"; exit 1; }

cargo build --release --quiet
BIN=target/release/tessera
DB=tessera_bench_$$
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADMIN_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export TESSERA__DATABASE__URL=postgres://postgres@127.0.0.1:5432/$DB
export TESSERA__HTTP__PUBLIC_ADDR=127.0.0.1:$PORT TESSERA__HTTP__ADMIN_ADDR=127.0.0.1:$ADMIN_PORT
export TESSERA__LOG__LEVEL=warn TESSERA__PASSWORD__MAX_QUEUE=100000
cleanup() {
  [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
}
trap cleanup EXIT

$BIN migrate >/dev/null
echo 'bench password 123' | $BIN user create bench --password-stdin --scope read >/dev/null
$BIN client create app --public --grant password,refresh_token --scope read >/dev/null
SECRET=$($BIN client create svc --grant client_credentials --scope "read introspect" | sed -n 's/^client_secret: //p')
$BIN serve >/dev/null 2>&1 & SERVER=$!
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.2; done
BASE=http://127.0.0.1:$PORT
BASIC=$(printf 'svc:%s' "$SECRET" | base64 -w0)
ACCESS=$(curl -s -u "svc:$SECRET" "$BASE/auth/token" -d grant_type=client_credentials | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

post_script() { # body, extra header -> lua file
  local f; f=$(mktemp --suffix=.lua)
  printf 'wrk.method="POST"\nwrk.body="%s"\nwrk.headers["Content-Type"]="application/x-www-form-urlencoded"\n%s\n' "$1" "$2" >"$f"
  echo "$f"
}
rps() { wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "$@" | awk '/Requests\/sec/ {print $2}'; }

declare -A R
R[healthz]=$(rps "$BASE/healthz")
R[jwks]=$(rps "$BASE/.well-known/jwks.json")
R[client_credentials]=$(rps -s "$(post_script 'grant_type=client_credentials' "wrk.headers[\"Authorization\"]=\"Basic $BASIC\"")" "$BASE/auth/token")
R[introspect]=$(rps -s "$(post_script "token=$ACCESS" "wrk.headers[\"Authorization\"]=\"Basic $BASIC\"")" "$BASE/auth/introspect")
R[password]=$(rps -s "$(post_script 'grant_type=password&client_id=app&username=bench&password=bench+password+123' '')" "$BASE/auth/token")

printf '%-20s %12s %10s\n' endpoint req/s vs_healthz
for k in healthz jwks client_credentials introspect password; do
  printf '%-20s %12s %10.3f\n' "$k" "${R[$k]}" "$(python3 -c "print(${R[$k]}/${R[healthz]})")"
done
