#!/usr/bin/env bash
# Compose smoke test: docker-compose.yml run as an operator runs it, against a
# real Docker engine. With a generated env file (random secrets) and free host
# ports, under a compose project name of its own, it checks that:
#   - a .env copied from .env.example and not filled in stops compose at once;
#   - `docker compose up -d --build --wait` brings db and tessera up healthy;
#   - /readyz answers 200 and /metrics answers on the admin port;
#   - the tessera process runs as a non-root uid;
#   - the admin port is published on 127.0.0.1 only;
#   - a user and a client created with `docker compose exec` get a token
#     (password grant), and a generated client secret works;
#   - `docker compose down` then `up` keeps the data (the user still logs in);
#   - `docker compose stop` exits 0, and so does tessera (graceful SIGTERM);
#   - with an encryption key published in the repository, tessera refuses to
#     start and `up --wait` fails rather than reporting success.
# Everything it created (containers, network, volume) is removed at the end,
# also on failure or interrupt; the image (tag $TESSERA_IMAGE) is kept, so the
# next run's build is cached.
#
# Needs: docker with the compose v2 plugin, curl, python3.
# Exit status: 0 passed, 1 failed, 2 no usable Docker engine (nothing tried).
# Knobs: TESSERA_IMAGE (default tessera:smoke), SMOKE_WAIT_TIMEOUT (seconds
# `up --wait` may take, default 300).
set -Eeuo pipefail
cd "$(dirname "$0")/../.."

IMAGE="${TESSERA_IMAGE:-tessera:smoke}"
WAIT_TIMEOUT="${SMOKE_WAIT_TIMEOUT:-300}"
PROJECT="tessera-smoke-$$-$(date +%s)"
# alice's password, for the login checks.
USER_PASSWORD="smoke test password $$"
# Published in config/local.yaml: production must refuse it.
PUBLISHED_KEY="dGVzc2VyYS1sb2NhbC1kZXYta2V5LW5vdC1zZWNyZXQ="

started=$(date +%s)
log() { printf '\n== %s (%ss in) %s\n' "$(date +%T)" "$(($(date +%s) - started))" "$*"; }
ok() { printf 'ok    %s\n' "$*"; }
fail() {
  printf 'smoke.sh: FAIL: %s\n' "$*" >&2
  exit 1
}

command -v docker >/dev/null || { echo "smoke.sh: docker is not installed" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "smoke.sh: no Docker engine answers (docker info failed)" >&2; exit 2; }
docker compose version >/dev/null 2>&1 || { echo "smoke.sh: the Docker Compose v2 plugin is missing" >&2; exit 2; }
for tool in curl python3; do
  command -v "$tool" >/dev/null || fail "$tool is required"
done

WORK=$(mktemp -d)
ENV_FILE="$WORK/env"
# Compose lets the process environment override the env file: nothing from
# the caller's shell may leak into the project.
unset POSTGRES_PASSWORD TESSERA_ENCRYPTION_KEY TESSERA_ISSUER TESSERA_AUDIENCE \
  TESSERA_PUBLIC_PORT TESSERA_ADMIN_PORT TESSERA_IMAGE COMPOSE_PROJECT_NAME COMPOSE_FILE
compose() { docker compose --project-name "$PROJECT" --env-file "$ENV_FILE" "$@"; }

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ "$status" -ne 0 ]; then
    echo "--- compose ps ---" >&2
    compose ps -a >&2 2>&1 || true
    echo "--- compose logs (last 60 lines per service) ---" >&2
    compose logs --no-color --tail 60 >&2 2>&1 || true
  fi
  compose down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 || true
  rm -rf "$WORK"
  local took=$(($(date +%s) - started))
  if [ "$status" -eq 0 ]; then
    echo "smoke.sh: passed in ${took}s"
  else
    echo "smoke.sh: FAILED (exit $status) after ${took}s" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PUBLIC_PORT=$(free_port)
ADMIN_PORT=$(free_port)
while [ "$ADMIN_PORT" = "$PUBLIC_PORT" ]; do ADMIN_PORT=$(free_port); done
BASE="http://127.0.0.1:$PUBLIC_PORT"

write_env() { # $1: encryption key
  {
    printf 'POSTGRES_PASSWORD=%s\n' "$DB_PASSWORD"
    printf 'TESSERA_ENCRYPTION_KEY=%s\n' "$1"
    printf 'TESSERA_ISSUER=http://localhost:%s\n' "$PUBLIC_PORT"
    printf 'TESSERA_PUBLIC_PORT=%s\nTESSERA_ADMIN_PORT=%s\n' "$PUBLIC_PORT" "$ADMIN_PORT"
    printf 'TESSERA_IMAGE=%s\n' "$IMAGE"
  } >"$ENV_FILE"
}
DB_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
ENCRYPTION_KEY=$(python3 -c 'import base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())')
write_env "$ENCRYPTION_KEY"

json() { # $1: python expression over `d` (the JSON document on stdin)
  python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"
}
container() { compose ps --all --quiet "$1"; }
health() { docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$(container "$1")"; }
up() {
  compose up --detach --wait --wait-timeout "$WAIT_TIMEOUT" "$@"
}
token_status() { # password grant for alice through mobile; prints the HTTP status
  curl -s -o "$WORK/token.json" -w '%{http_code}' "$BASE/auth/token" \
    -d grant_type=password -d client_id=mobile -d username=alice \
    --data-urlencode "password=$USER_PASSWORD"
}

log "project $PROJECT: public port $PUBLIC_PORT, admin port $ADMIN_PORT, image $IMAGE"
log ".env copied from .env.example and not filled in"
if docker compose --project-name "$PROJECT" --env-file .env.example config >"$WORK/example.log" 2>&1; then
  fail "compose accepts .env.example as it is: an example password would be fixed into the volume"
fi
grep -q 'set POSTGRES_PASSWORD in .env' "$WORK/example.log" ||
  { cat "$WORK/example.log" >&2; fail "compose did not say which value is missing"; }
ok "compose refuses to start: $(grep -o 'required variable [A-Z_]* is missing a value' "$WORK/example.log" | head -1)"
log "docker compose build"
compose build >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log" >&2; fail "the image did not build"; }
ok "image built"

log "docker compose up -d --wait"
up || fail "the services did not become healthy within ${WAIT_TIMEOUT}s"
for service in db tessera; do
  status=$(health "$service")
  [ "$status" = healthy ] || fail "$service is $status, not healthy"
  ok "$service is healthy"
done

log "probes"
ready=$(curl -s -o "$WORK/ready.json" -w '%{http_code}' "$BASE/readyz")
[ "$ready" = 200 ] || fail "/readyz answered $ready: $(cat "$WORK/ready.json")"
ok "/readyz 200: $(cat "$WORK/ready.json")"
metrics=$(curl -s -o "$WORK/metrics.txt" -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/metrics")
[ "$metrics" = 200 ] && grep -q '^tessera_tokens_issued_total' "$WORK/metrics.txt" ||
  fail "/metrics on the admin port answered $metrics"
ok "/metrics 200 on 127.0.0.1:$ADMIN_PORT"

# PID 1 of the container is tessera itself (exec-form ENTRYPOINT).
compose exec -T tessera cat /proc/1/status >"$WORK/status" || fail "cannot read the process status"
comm=$(awk '/^Name:/ {print $2}' "$WORK/status")
uids=$(awk '/^Uid:/ {print $2, $3, $4, $5}' "$WORK/status")
[ "$comm" = tessera ] || fail "PID 1 is $comm, not tessera"
for uid in $uids; do [ "$uid" != 0 ] || fail "tessera runs as root (Uid: $uids)"; done
ok "tessera runs as uid ${uids%% *} (real, effective, saved, fs: $uids)"

docker inspect --format '{{json .NetworkSettings.Ports}}' "$(container tessera)" >"$WORK/ports.json"
python3 - "$WORK/ports.json" "$PUBLIC_PORT" "$ADMIN_PORT" <<'EOF' || fail "port publication is wrong (see above)"
import json, sys
ports = json.load(open(sys.argv[1]))
public, admin = ports.get("8080/tcp") or [], ports.get("8081/tcp") or []
problems = []
if not admin:
    problems.append("the admin port is not published")
for b in admin:
    if b["HostIp"] != "127.0.0.1" or b["HostPort"] != sys.argv[3]:
        problems.append(f"admin port published on {b['HostIp']}:{b['HostPort']}")
if not any(b["HostPort"] == sys.argv[2] for b in public):
    problems.append(f"public port not published on {sys.argv[2]}: {public}")
print("\n".join(problems) or f"8080/tcp -> {public}; 8081/tcp -> {admin}")
sys.exit(1 if problems else 0)
EOF
ok "the admin port is published on 127.0.0.1 only"

log "a user and clients through docker compose exec"
printf '%s\n' "$USER_PASSWORD" |
  compose exec -T tessera tessera user create alice --password-stdin --scope "read write" ||
  fail "user create failed"
compose exec -T tessera tessera client create mobile --public --grant password,refresh_token --scope "read write" ||
  fail "client create (public) failed"
SECRET=$(compose exec -T tessera tessera client create backend --grant client_credentials --scope read |
  sed -n 's/^client_secret: //p') || fail "client create (confidential) failed"
[ -n "$SECRET" ] || fail "client create printed no secret"
status=$(token_status)
[ "$status" = 200 ] || fail "password grant answered $status: $(cat "$WORK/token.json")"
[ "$(json 'd["token_type"]' <"$WORK/token.json")" = Bearer ] || fail "no bearer token: $(cat "$WORK/token.json")"
ok "password grant: $(json 'd["scope"]' <"$WORK/token.json") token for alice"
status=$(curl -s -o "$WORK/cc.json" -w '%{http_code}' -u "backend:$SECRET" "$BASE/auth/token" -d grant_type=client_credentials)
[ "$status" = 200 ] || fail "client_credentials grant answered $status: $(cat "$WORK/cc.json")"
ok "client_credentials grant with the generated secret"

log "docker compose down, then up: the data stays"
compose down --timeout 40 || fail "down failed"
up || fail "the services did not come back healthy"
status=$(token_status)
[ "$status" = 200 ] || fail "after down/up the password grant answered $status: $(cat "$WORK/token.json")"
ok "alice still logs in after down/up"

log "docker compose stop"
compose stop || fail "docker compose stop exited non-zero"
code=$(docker inspect --format '{{.State.ExitCode}}' "$(container tessera)")
[ "$code" = 0 ] || fail "tessera exited $code on stop"
ok "stop exited 0; tessera exited 0"

log "a published encryption key is refused"
write_env "$PUBLISHED_KEY"
if compose up --detach --wait --wait-timeout 60 tessera >"$WORK/refused.log" 2>&1; then
  cat "$WORK/refused.log" >&2
  fail "up --wait reported success with a published encryption key"
fi
compose logs --no-color tessera >"$WORK/tessera.log" 2>&1 || true
grep -q 'keys.encryption_key is a key published in this repository' "$WORK/tessera.log" ||
  { tail -n 20 "$WORK/tessera.log" >&2; fail "tessera did not log why it refused to start"; }
ok "up --wait failed, and tessera logged: $(grep -m1 -o 'keys.encryption_key is a key published[^"]*' "$WORK/tessera.log")"

log "all checks passed"
