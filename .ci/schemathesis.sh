#!/usr/bin/env bash
# Contract test: runs target/debug/tessera against a throwaway database and
# checks every PUBLIC operation of openapi.yaml with Schemathesis (responses
# must match the documented status codes, content types, headers and
# schemas; no 5xx). The admin API and /metrics are not exercised.
#
# Needs: target/debug/tessera (built by `cargo test`), python3 (schemathesis
# goes into a private virtualenv; python3-venv and curl are installed if missing),
# Postgres on TESSERA_TEST_DATABASE_URL's server (default
# postgres://postgres@127.0.0.1:5432), psql. Exits non-zero on any failure.
#
# Knobs: SCHEMATHESIS_MAX_EXAMPLES (default 150 per operation and phase),
# SCHEMATHESIS_SEED (default fixed; `random` for a new one, printed at the end),
# SCHEMATHESIS_EXTRA_ARGS (appended to `st run`, e.g. `--report har`).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
SPEC_VALIDATOR_VERSION=0.9.0
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-150}"
BIN=target/debug/tessera

# Fixtures; the same values appear in the spec's request examples, so the
# examples phase gets real 200s. Local throwaway data only.
USER_NAME=alice
USER_PASSWORD='correct horse battery staple'
PUBLIC_CLIENT=mobile
CONFIDENTIAL_CLIENT=backend
CONFIDENTIAL_SECRET=tss_KAnPzJv3UqbTgCHeUy36ZVqswF-qFMdvLx2M3mu4OM0

log() { printf '\n== %s\n' "$*"; }
die() { printf 'schemathesis.sh: %s\n' "$*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------
sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
apt_install() {
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "$@" >/dev/null ||
    { $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "$@" >/dev/null; }
}
command -v python3 >/dev/null || { log "installing python3"; apt_install python3 python3-venv; }
command -v curl >/dev/null || { log "installing curl"; apt_install curl; }
command -v psql >/dev/null || { log "installing the Postgres client"; apt_install postgresql-client; }
command -v psql >/dev/null || die "psql is required (apt-get install postgresql-client)"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# A private virtualenv: Debian's system Python refuses pip installs (PEP 668).
VENV="${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tessera-schemathesis-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating a virtualenv in $VENV"
  python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$VENV"; }
fi
PY="$VENV/bin/python"
if ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$SCHEMATHESIS_VERSION')" 2>/dev/null; then
  log "installing schemathesis $SCHEMATHESIS_VERSION"
  "$PY" -m pip install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi
if ! "$PY" -c "import openapi_spec_validator" 2>/dev/null; then
  log "installing openapi-spec-validator $SPEC_VALIDATOR_VERSION"
  "$PY" -m pip install --quiet "openapi-spec-validator==$SPEC_VALIDATOR_VERSION"
fi
ST="$VENV/bin/st"
[ -x "$ST" ] || die "the schemathesis CLI (st) is missing from $VENV"

for _ in $(seq 1 24); do [ -x "$BIN" ] && break; sleep 5; done
[ -x "$BIN" ] || die "$BIN not found: run cargo build (or cargo test) first"

DB_NAME="tessera_schemathesis_$$"
# The database server: TESSERA_TEST_DATABASE_URL's, else the local default.
read -r ADMIN_URL DB_URL < <(python3 - "${TESSERA_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}" "$DB_NAME" <<'EOF'
import sys
from urllib.parse import urlsplit, urlunsplit
u = urlsplit(sys.argv[1])
print(urlunsplit(u._replace(path="/postgres")), urlunsplit(u._replace(path="/" + sys.argv[2])))
EOF
)
[ -n "$DB_URL" ] || die "cannot parse the database URL"
WORK="$(mktemp -d)"
SERVER_PID=""

cleanup() {
  local status=$?
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -s "$WORK/server.log" ]; then
    echo "--- server errors (last 20) ---" >&2
    grep -a -E 'ERROR|panicked' "$WORK/server.log" | tail -n 20 >&2 || true
  fi
  psql "$ADMIN_URL" -qAtc "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the spec itself ---------------------------------------------------------
log "validating openapi.yaml and its examples"
"$PY" - openapi.yaml <<'EOF'
import sys, yaml, jsonschema
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

doc = yaml.safe_load(open(sys.argv[1]))
validate(doc)
URI = "urn:openapi"
registry = Registry().with_resource(URI, Resource(contents=doc, specification=DRAFT202012))
checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
count = failures = 0

def check(pointer, value, where):
    global count, failures
    count += 1
    validator = jsonschema.Draft202012Validator({"$ref": f"{URI}#{pointer}"}, registry=registry, format_checker=checker)
    for error in validator.iter_errors(value):
        failures += 1
        print(f"example {where}: {error.message[:200]} at {list(error.absolute_path)}")

def walk(node, pointer):
    if isinstance(node, dict):
        if isinstance(node.get("schema"), dict):  # media type, parameter or header
            if "example" in node:
                check(pointer + "/schema", node["example"], pointer + "/example")
            for name, example in (node.get("examples") or {}).items():
                if "$ref" not in example:
                    check(pointer + "/schema", example["value"], f"{pointer}/examples/{name}")
        if isinstance(node.get("examples"), list) and ("/schemas/" in pointer or pointer.endswith("/schema")
                                                       or "/properties/" in pointer or "/items" in pointer):
            for i, example in enumerate(node["examples"]):
                check(pointer, example, f"{pointer}/examples/{i}")
        for key, value in node.items():
            walk(value, pointer + "/" + str(key).replace("~", "~0").replace("/", "~1"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            walk(value, f"{pointer}/{i}")

walk(doc, "")
print(f"openapi.yaml is valid OpenAPI 3.1; {count} examples checked, {failures} do not match their schema")
sys.exit(1 if failures else 0)
EOF

# --- a server on a fresh database ---------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PUBLIC_PORT="$(free_port)"
ADMIN_PORT="$(free_port)"
while [ "$ADMIN_PORT" = "$PUBLIC_PORT" ]; do ADMIN_PORT="$(free_port)"; done
BASE="http://127.0.0.1:$PUBLIC_PORT"

export TESSERA_ENV=local
export TESSERA__DATABASE__URL="$DB_URL"
export TESSERA__HTTP__PUBLIC_ADDR="127.0.0.1:$PUBLIC_PORT"
export TESSERA__HTTP__ADMIN_ADDR="127.0.0.1:$ADMIN_PORT"
export TESSERA__ISSUER="$BASE"
# Long enough that the bearer token below outlives the run.
export TESSERA__TOKENS__ACCESS_TTL=1h
export TESSERA__LOG__LEVEL=warn

log "creating database $DB_NAME"
psql "$ADMIN_URL" -qAtc "CREATE DATABASE \"$DB_NAME\"" >/dev/null
"$BIN" migrate
printf '%s' "$USER_PASSWORD" | "$BIN" user create "$USER_NAME" --password-stdin --scope "profile read"
"$BIN" client create "$PUBLIC_CLIENT" --public --grant password,refresh_token --scope "profile read"
printf '%s' "$CONFIDENTIAL_SECRET" | "$BIN" client create "$CONFIDENTIAL_CLIENT" --secret-stdin \
  --grant password,refresh_token,client_credentials --scope "profile read introspect revocations:read admin"

log "starting tessera on $BASE (admin 127.0.0.1:$ADMIN_PORT)"
"$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
ready=""
for _ in $(seq 1 120); do
  kill -0 "$SERVER_PID" 2>/dev/null || die "tessera serve exited early"
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz" || true)" = 200 ]; then ready=1; break; fi
  sleep 0.5
done
[ -n "$ready" ] || die "tessera did not become ready within 60 s"

# A bearer token for the operations secured by bearerAuth (feed, admin introspection).
TOKEN="$(curl -sf -u "$CONFIDENTIAL_CLIENT:$CONFIDENTIAL_SECRET" -d grant_type=client_credentials \
  -d 'scope=revocations:read admin' "$BASE/auth/token" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')" || die "could not get a bearer token"
export SCHEMATHESIS_BEARER="$TOKEN"

cat >"$WORK/schemathesis.toml" <<'EOF'
continue-on-failure = true
hooks = "tessera_checks"

[cache]
enabled = false

[auth.openapi.bearerAuth]
bearer = "${SCHEMATHESIS_BEARER}"

# A body over http.max_body_bytes is refused with 413 before it is parsed:
# that is a rejection too.
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
EOF

# A method the spec does not list for a path must get the documented JSON 405
# (its `Allow` header is checked by tests/api/bad_input.rs; tessera also
# answers HEAD on GET routes, which the spec does not list as operations).
cat >"$WORK/tessera_checks.py" <<'EOF'
import json

import schemathesis
from schemathesis.generation.meta import CoveragePhaseData, CoverageScenario


@schemathesis.check
def method_not_allowed(ctx, response, case):
    meta = case.meta
    if meta is None or not isinstance(meta.phase.data, CoveragePhaseData):
        return None
    if meta.phase.data.scenario != CoverageScenario.UNSPECIFIED_HTTP_METHOD:
        return None
    method = response.request.method
    if response.status_code != 405:
        raise AssertionError(f"{method} on a path without that method returned {response.status_code}, expected 405")
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"{method}: the 405 body is not JSON") from None
    if not isinstance(body, dict) or body.get("error") != "method_not_allowed":
        raise AssertionError(f'{method}: the 405 body is not {{"error": "method_not_allowed", ...}}: {body!r}')
    return None
EOF
export PYTHONPATH="$WORK${PYTHONPATH:+:$PYTHONPATH}"

# --- edge cases ----------------------------------------------------------------
# Inputs that random generation reaches only now and then, checked every run
# so that a regression fails deterministically: none may get a 5xx.
log "edge-case probes (no 5xx allowed)"
probe_failures=0
probe() {
  local name=$1 status
  shift
  status="$(curl -s -o "$WORK/probe.out" -w '%{http_code}' "$@" || true)"
  if [ -z "$status" ] || [ "$status" = 000 ] || [ "$status" -ge 500 ]; then
    printf 'FAIL  %s: HTTP %s %s\n' "$name" "${status:-none}" "$(head -c 200 "$WORK/probe.out" 2>/dev/null)"
    probe_failures=$((probe_failures + 1))
  else
    printf 'ok    %s: HTTP %s\n' "$name" "$status"
  fi
}
nul_basic="$(printf 'a%%00b:x' | base64)"
probe "token: NUL in form client_id" -d 'grant_type=client_credentials&client_id=a%00b&client_secret=x' "$BASE/auth/token"
probe "token: NUL in JSON client_id" -H 'Content-Type: application/json' \
  -d '{"grant_type":"password","username":"alice","password":"x","client_id":"a\u0000b"}' "$BASE/auth/token"
probe "token: NUL in Basic client_id" -H "Authorization: Basic $nul_basic" -d grant_type=client_credentials "$BASE/auth/token"
probe "revoke: NUL in client_id" -d 'token=x&client_id=a%00b' "$BASE/auth/revoke"
probe "introspect: NUL in client_id" -d 'token=x&client_id=a%00b&client_secret=x' "$BASE/auth/introspect"
probe "token: JSON nested 200 deep" -H 'Content-Type: application/json' \
  -d "$(python3 -c 'print("[" * 200 + "]" * 200)')" "$BASE/auth/token"
probe "token: invalid UTF-8 in form" --data-binary $'grant_type=password&username=\xff\xfe' "$BASE/auth/token"
probe "revocations: since above i64" -H "Authorization: Bearer $TOKEN" "$BASE/auth/revocations?since=9223372036854775808"
# The event stream never ends by itself, so schemathesis (which waits for a
# whole body) skips it; these probes cover its answers instead (tests/api
# checks its events). --max-time cuts the 200 stream short.
probe "stream: no token" "$BASE/auth/revocations/stream"
probe "stream: since above i64" -H "Authorization: Bearer $TOKEN" "$BASE/auth/revocations/stream?since=9223372036854775808"
probe "stream: bad Last-Event-ID" -H "Authorization: Bearer $TOKEN" -H 'Last-Event-ID: x' "$BASE/auth/revocations/stream"
probe "stream: cursor ahead" -H "Authorization: Bearer $TOKEN" "$BASE/auth/revocations/stream?since=999999"
probe "stream: opens" --max-time 2 -H "Authorization: Bearer $TOKEN" "$BASE/auth/revocations/stream"

# --- schemathesis ------------------------------------------------------------
# A fixed seed keeps CI reproducible; SCHEMATHESIS_SEED=random explores.
SEED="${SCHEMATHESIS_SEED:-20261127}"
seed_args=(--seed "$SEED")
[ "$SEED" = random ] && seed_args=()
log "schemathesis $SCHEMATHESIS_VERSION on the public operations ($MAX_EXAMPLES examples per operation and phase, seed $SEED)"
# From $WORK, so that Hypothesis' example database stays out of the repo.
SPEC="$PWD/openapi.yaml"
cd "$WORK"
st_status=0
timeout 1200 "$ST" --config-file "$WORK/schemathesis.toml" --no-color run "$SPEC" \
  --url "$BASE" \
  --exclude-path-regex '^/(admin/|metrics$|auth/revocations/stream$)' \
  --phases examples,coverage,fuzzing,stateful \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,missing_required_header,ignored_auth,method_not_allowed \
  --max-examples "$MAX_EXAMPLES" \
  --workers 2 \
  --request-timeout 10 \
  --suppress-health-check too_slow,filter_too_much \
  "${seed_args[@]}" ${SCHEMATHESIS_EXTRA_ARGS:-} || st_status=$?

# The admin API, with a real admin token (the same bearer token: its scope
# includes admin). Last, as it changes what the public run relies on
# (users disabled, keys rotated, tokens revoked). Without the coverage
# phase: schemathesis 4.32.5's coverage generator hits an internal error
# (Hypothesis "AST constructor recursion depth mismatch") on
# POST /admin/clients/{client_id}/disable, every run. (Run once with it, the
# other admin operations passed, after the spec's `after` bound was fixed.)
log "schemathesis $SCHEMATHESIS_VERSION on the admin operations (${SCHEMATHESIS_ADMIN_EXAMPLES:-50} examples per operation and phase)"
admin_status=0
timeout 1200 "$ST" --config-file "$WORK/schemathesis.toml" --no-color run "$SPEC" \
  --url "http://127.0.0.1:$ADMIN_PORT" \
  --include-path-regex '^/admin/' \
  --phases examples,fuzzing \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,missing_required_header,method_not_allowed \
  --max-examples "${SCHEMATHESIS_ADMIN_EXAMPLES:-50}" \
  --workers 2 \
  --request-timeout 10 \
  --suppress-health-check too_slow,filter_too_much \
  "${seed_args[@]}" ${SCHEMATHESIS_EXTRA_ARGS:-} || admin_status=$?
if [ "$admin_status" -ne 0 ]; then
  echo "schemathesis.sh: schemathesis on the admin API exited $admin_status" >&2
  st_status=$admin_status
fi

if [ "$probe_failures" -ne 0 ]; then
  echo "schemathesis.sh: $probe_failures edge-case probe(s) got a 5xx (see above)" >&2
fi
if [ "$st_status" -ne 0 ]; then
  echo "schemathesis.sh: schemathesis exited $st_status" >&2
fi
[ "$probe_failures" -eq 0 ] && [ "$st_status" -eq 0 ]
