#!/usr/bin/env bash
# Builds Portico and runs the whole system on this machine:
#   - a demo OpenID provider (npm oidc-provider) on http://127.0.0.1:9000, with Dynamic Client
#     Registration behind an initial access token;
#   - the control plane (`portico`) on http://127.0.0.1:8080: admin API and developer portal API;
#   - an echo upstream on 127.0.0.1:8081;
#   - Envoy with the filter on http://127.0.0.1:10000 (admin 127.0.0.1:9901), syncing its
#     snapshot from the control plane (envoy/dynamic.yaml).
# It seeds an example API (/orders), a policy and a catalogue entry, prints how to register a
# client and call the API, and stops everything on Ctrl-C. State lives in .demo/ (deleted at
# each start).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
say() { printf '==> %s\n' "$*"; }

say "building (release)"
cargo build --quiet -p portico-filter --target wasm32-wasip1 --profile wasm-release
cargo build --quiet --release -p portico-control-plane -p portico-tests --bin portico --bin portico-echo

ADMIN_KEY=demo-admin-key-change-me
DATA_PLANE_TOKEN=demo-data-plane-token-change-me   # the token in envoy/dynamic.yaml
INITIAL_ACCESS_TOKEN=demo-initial-access-token
IDP=http://127.0.0.1:9000
PORTICO=http://127.0.0.1:8080
envoy_bin=$(ls .venv/lib/python3*/site-packages/envoy/_bin/envoy)

for port in 9000 8080 8081 10000 9901; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use; stop what listens there first" >&2
    exit 1
  fi
done

run_dir=.demo
rm -rf "$run_dir"
mkdir -p "$run_dir"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

wait_for() { # url, what
  for _ in $(seq 200); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "$2 did not start; see $run_dir/" >&2
  exit 1
}

IDP_INITIAL_ACCESS_TOKEN=$INITIAL_ACCESS_TOKEN node tests/idp/idp.mjs --port 9000 >"$run_dir/idp.log" 2>&1 &
pids+=($!)
PORTICO_DATA_DIR="$run_dir/data" PORTICO_ADMIN_KEYS="demo:$ADMIN_KEY" \
  PORTICO_DATA_PLANE_TOKENS="demo:$DATA_PLANE_TOKEN" PORTICO_LISTEN=127.0.0.1:8080 \
  target/release/portico >"$run_dir/portico.out" 2>"$run_dir/portico.log" &
pids+=($!)
target/release/portico-echo 127.0.0.1:8081 >"$run_dir/echo.log" 2>&1 &
pids+=($!)
wait_for "$IDP/.well-known/openid-configuration" "the IdP"
wait_for "$PORTICO/readyz" "the control plane"
"$envoy_bin" -c envoy/dynamic.yaml --disable-hot-restart --concurrency 2 \
  --component-log-level wasm:info >"$run_dir/envoy.log" 2>&1 &
pids+=($!)
wait_for http://127.0.0.1:9901/ready "Envoy"

say "seeding: issuer, API /orders, policy, catalogue entry, DCR settings"
admin() { # method, path, body
  curl -sf -X "$1" "$PORTICO/admin/v1$2" -H "Authorization: Bearer $ADMIN_KEY" \
    -H 'Content-Type: application/json' -H 'If-Match: *' -d "$3" >/dev/null
}
admin POST /issuers "{\"id\": \"demo-idp\", \"issuer\": \"$IDP\"}"
admin POST /apis '{"id": "orders", "name": "Orders", "listen_path": "/orders", "issuers": ["demo-idp"], "audiences": ["https://api.portico.test"], "identity_claims": ["client_id"], "policies_header": "x-portico-policies"}'
admin POST /policies '{"id": "orders-standard", "name": "Orders, standard", "access_rights": [{"api": "orders"}], "rate_limit": {"requests": 20, "per_seconds": 10}}'
admin PUT /gateway '{"unmatched": "deny", "public_prefixes": ["/health"]}'
admin POST /catalogue '{"id": "orders", "name": "Orders API", "description": "Read and place orders.", "policy": "orders-standard"}'
admin PUT /dcr "{\"enabled\": true, \"provider\": \"other\", \"issuer\": \"$IDP\", \"initial_access_token\": \"$INITIAL_ACCESS_TOKEN\"}"

cat <<EOT

Developer portal: open $PORTICO/portal in a browser (sign up, create a client, copy the commands)

Portico is running (logs in $run_dir/):
  developer portal      $PORTICO/portal
  developer portal API  $PORTICO/portal/api/v1   (docs/portal-api.md)
  admin API             $PORTICO/admin/v1        (Authorization: Bearer $ADMIN_KEY; docs/admin-api.md)
  gateway (Envoy)       http://127.0.0.1:10000   protecting /orders
  identity provider     $IDP
  metrics (portico)     $PORTICO/metrics                        (Prometheus text; README.md)
  metrics (Envoy)       http://127.0.0.1:9901/stats/prometheus  (portico_filter_*; docs/filter-config.md#metrics)
  Grafana dashboard     deploy/grafana/portico.json             (import it, pick the Prometheus that scrapes both)

Try the developer journey in the browser at $PORTICO/portal, or with curl:

  # 1. Sign up in the portal (the session cookie goes to $run_dir/cookies)
  curl -s -c $run_dir/cookies $PORTICO/portal/api/v1/signup -H 'Content-Type: application/json' \\
    -d '{"email": "ada@example.com", "name": "Ada", "password": "correct horse battery staple"}'

  # 2. Register an OAuth client for the Orders API (shows client_id and client_secret once)
  curl -s -b $run_dir/cookies $PORTICO/portal/api/v1/oauth-clients -H 'Content-Type: application/json' \\
    -H 'Idempotency-Key: demo-1' -d '{"catalogue_entries": ["orders"], "client_name": "My app"}'

  # 3. Get a token from the IdP with those credentials
  curl -s $IDP/token -d grant_type=client_credentials -d client_id=<client_id> -d client_secret=<client_secret>

  # 4. Call the API through Envoy: 200, and the upstream sees x-portico-client-id
  curl -s http://127.0.0.1:10000/orders/42 -H "Authorization: Bearer <access_token>"

  # Without a token: 401; more than 20 calls in 10 s: 429
  curl -si http://127.0.0.1:10000/orders/42

Press Ctrl-C to stop.
EOT
wait
