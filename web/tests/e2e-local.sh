#!/usr/bin/env bash
# Runs e2e.test.mjs against two fresh local nodes (acme.example and
# globex.example) on their web ports, with an admin and one member each.
#
#   WORKS_NODE_BINARY=target/debug/tenant-node web/tests/e2e-local.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
node_bin=${WORKS_NODE_BINARY:?set WORKS_NODE_BINARY to a tenant-node binary}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Not run in $(...): the node's pid must reach the cleanup. Sets $url.
start() { # tenant company member
  local tenant=$1 company=$2 member=$3 api bridge web
  api=$(free_port); bridge=$(free_port); web=$(free_port)
  WORKS_ADMIN_PASSWORD="admin password" "$node_bin" init --data "$work/$tenant" --tenant "$tenant" \
    --company "$company" --api "127.0.0.1:$api" --bridge "127.0.0.1:$bridge" --web "127.0.0.1:$web" >/dev/null
  "$node_bin" serve --data "$work/$tenant" >"$work/$tenant.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    "$node_bin" login --node "http://127.0.0.1:$api" --user "admin@$tenant" --password "admin password" \
      >"$work/$tenant.token" 2>/dev/null && break
    sleep 0.1
  done
  WORKS_TOKEN=$(cat "$work/$tenant.token") "$node_bin" admin member add "$member" --node "http://127.0.0.1:$api" \
    --display-name "${member^}" --password "$member password" >/dev/null
  url="http://127.0.0.1:$web/"
}

start acme.example "Acme Corp" alice
url_a=$url
start globex.example "Globex Inc" carol
url_b=$url
export WORKS_A_URL=$url_a WORKS_A_ADMIN_ID=admin@acme.example WORKS_A_ADMIN_PASSWORD="admin password"
export WORKS_A_MEMBERS="alice@acme.example:alice password"
export WORKS_B_URL=$url_b WORKS_B_ADMIN_ID=admin@globex.example WORKS_B_ADMIN_PASSWORD="admin password"
export WORKS_B_MEMBERS="carol@globex.example:carol password"
echo "acme $url_a, globex $url_b"
node --test --test-concurrency=1 "$here/e2e.test.mjs"
