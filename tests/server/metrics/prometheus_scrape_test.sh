#!/usr/bin/env bash
# A real Prometheus scrapes a real qnetd: the exposition parses, the target is up, the qnet
# metrics arrive, and deploy/prometheus/qnet-rules.yml loads and evaluates against them. Takes
# about 6 s: Prometheus hands its first targets to the scraper after a fixed 5 s throttle.
#   prometheus_scrape_test.sh QNETD PROMETHEUS RULES_FILE
set -euo pipefail
qnetd=$1
prometheus=$2
rules=$3
tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*.log; do echo "--- $f"; tail -20 "$f"; done; exit 1; }

"$qnetd" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --data-dir "$tmp/data" \
  >"$tmp/qnetd.out" 2>"$tmp/qnetd.log" &
pids+=($!)
# Waits are on conditions, each bounded at 60 s: ctest runs this beside other tests.
deadline=$((SECONDS + 60))
while ((SECONDS < deadline)); do
  grep -q '^listening ' "$tmp/qnetd.out" && break
  sleep 0.1
done
http=$(sed -n 's/^listening grpc=[^ ]* http=//p' "$tmp/qnetd.out")
[[ -n $http ]] || fail "qnetd did not print its listening line"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cp "$rules" "$tmp/qnet-rules.yml"
cat >"$tmp/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [qnet-rules.yml]
scrape_configs:
  - job_name: qnetd
    static_configs: [{targets: ["$http"]}]
YAML
"$prometheus" --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
  --web.listen-address="127.0.0.1:$port" >"$tmp/prometheus.log" 2>&1 &
pids+=($!)

# The value of the first sample of an instant query ("" when none).
query() {
  curl -sf --get "http://127.0.0.1:$port/api/v1/query" --data-urlencode "query=$1" 2>/dev/null |
    sed -n 's/.*"value":\[[^,]*,"\([^"]*\)"\].*/\1/p'
}
deadline=$((SECONDS + 60))
while ((SECONDS < deadline)); do
  up=$(query 'up{job="qnetd"}' || true)
  [[ $up == 1 ]] && break
  sleep 0.1
done
[[ $up == 1 ]] || fail "Prometheus never scraped qnetd successfully (up=$up)"
deadline=$((SECONDS + 60))
while ((SECONDS < deadline)); do
  version=$(query 'qnet_build_info' || true)
  rule=$(query 'count(qnet:jobs_finished:rate5m)' || true)
  [[ -n $version && -n $rule ]] && break
  sleep 0.2
done
[[ $version == 1 ]] || fail "qnet_build_info not scraped"
[[ $rule == 3 ]] || fail "recording rule qnet:jobs_finished:rate5m has $rule series, want 3"
samples=$(query 'scrape_samples_scraped{job="qnetd"}')
(( samples > 50 )) || fail "only $samples samples scraped"
curl -sf "http://127.0.0.1:$port/api/v1/rules" | grep -q '"health":"ok"' || fail "rules unhealthy"
if curl -sf "http://127.0.0.1:$port/api/v1/rules" | grep -q '"health":"err"'; then
  fail "a rule failed to evaluate"
fi
echo "ok: Prometheus scraped $samples samples from qnetd at $http; rules evaluate"
