#!/usr/bin/env bash
# Build the image, start it, check /health and the API key, then stop it with SIGTERM and check
# that it drained and exited 0. Run from anywhere where a Docker engine runs:
#   bash deploy/docker-check.sh            # CPU image with the default model
# Exits 0 when every check passed, 1 when one failed, 77 (skipped) without a Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    echo "skipped: no Docker engine here" >&2
    exit 77
fi

image=llmserver:check
name=llmserver-check-$$
port=${PORT:-18000}
key=check-$(date +%s)-$RANDOM
cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; docker logs "$name" >&2 || true; exit 1; }
status() { python3 -c 'import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
try:
    print(urllib.request.urlopen(req, timeout=5).status)
except urllib.error.HTTPError as e:
    print(e.code)
except OSError:
    print(0)' "$1" "${2:-}"; }

docker build -f deploy/Dockerfile -t "$image" .
docker run -d --name "$name" -p "127.0.0.1:$port:8000" -e "LLMSERVER_API_KEY=$key" \
    --stop-timeout 45 "$image"

for _ in $(seq 1 120); do
    [ "$(status "http://127.0.0.1:$port/ready")" = 200 ] && break
    [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ] || fail "container exited"
    sleep 1
done
[ "$(status "http://127.0.0.1:$port/health")" = 200 ] || fail "/health did not answer 200"
[ "$(status "http://127.0.0.1:$port/v1/models" "$key")" = 200 ] || fail "the key was refused"
[ "$(status "http://127.0.0.1:$port/v1/models" wrong)" = 401 ] || fail "a wrong key was not 401"
docker logs "$name" 2>&1 | grep -q "ready: http://" || fail "no ready line in the log"

docker stop -t 45 "$name" >/dev/null
code=$(docker inspect -f '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || fail "exit status $code after SIGTERM"
docker logs "$name" 2>&1 | grep -q "shutdown complete" || fail "no drain in the log"
echo "docker check passed: built, /health 200, key checked, SIGTERM drained, exit 0"
