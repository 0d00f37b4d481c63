#!/usr/bin/env bash
# Builds the Rust SDK's examples and runs each against a live server (the debug binary
# on a free port, SQLite in a temporary directory), with an API key made through the
# operator API. CI runs it; so can you, after `cargo build -p minitter-server`.
set -euo pipefail
cd "$(dirname "$0")/../../.."
target="${CARGO_TARGET_DIR:-target}"

cargo build --locked --quiet -p minitter-client --examples
data_dir="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
admin_token="examples-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
MINITTER_ADMIN_TOKEN="$admin_token" MINITTER_DATA_DIR="$data_dir" MINITTER_BIND="127.0.0.1:$port" \
  MINITTER_LOG=warn "$target/debug/minitter-server" > "$data_dir/server.log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; rm -rf "$data_dir"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 50); do
  curl -sf "$base/healthz" > /dev/null && break
  sleep 0.2
done

field() { python3 -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }
admin=(-H "authorization: Bearer $admin_token" -H 'content-type: application/json')
plan_id="$(curl -sf "${admin[@]}" "$base/admin/v1/usage-plans" -d '{"name":"sdk examples"}' | field id)"
api_key="$(curl -sf "${admin[@]}" "$base/admin/v1/api-keys" \
  -d "{\"name\":\"sdk examples\",\"plan_id\":\"$plan_id\"}" | field secret)"

for example in client-sdk/rust/examples/*.rs; do
  name="$(basename "$example" .rs)"
  echo "example $name"
  MINITTER_URL="$base" MINITTER_API_KEY="$api_key" "$target/debug/examples/$name"
done
