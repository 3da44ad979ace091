#!/usr/bin/env bash
# What TLS and authentication cost qnetd (docs/BENCHMARKS.md, "The cost of TLS and tokens"): the
# real qnetd binary pinned to one core, qnet_loadgen --server pinned to another, so the generator
# and its TLS work do not take the server's CPU. Rounds of plain, tokens, tls and mtls
# interleaved so that drift on a shared machine hits each alike; each run prints its throughput,
# qnetd's CPU time per call and the load average. `latency`: one client making one call at a
# time, what a single user sees per call (GetJob p50 and p99 in each set-up). `floor`: gRPC's own
# cost of TLS, with no qnet code: the loadgen's bare echo server as a process of its own on the
# server's core, plaintext against TLS and mTLS, 8 client threads. Then HTTP against HTTPS on the
# HTTP port with ab (apache2-utils): /healthz and /api/jobs/ID, with and without keep-alive.
#
#   security_cost.sh BUILD_DIR [ROUNDS] [SERVER_CPU] [CLIENT_CPU] [grpc|latency|floor|http|all]
#   tests/bench/security_cost.sh build 5 0 1 | tee /tmp/security_cost.txt
set -euo pipefail
build=$(realpath "$1")
rounds=${2:-5}
server_cpu=${3:-0}
client_cpu=${4:-1}
parts=${5:-all}
here=$(dirname "$(realpath "$0")")
qnetd=$build/server/qnetd
loadgen=$build/tests/bench/qnet_loadgen
work=$(mktemp -d /tmp/qnet-security-cost.XXXXXX)
pid=
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/pki" "$work/bench"
"$here/../server/auth/make_certs.sh" "$work/pki"
pki=$work/pki
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz \
  t10k-labels-idx1-ubyte.gz; do
  echo fake >"$work/bench/$f"
done
mapfile -t minted < <("$qnetd" token --name bench --role client)
token=${minted[0]}
printf '%s\nalice client -\n' "${minted[1]}" >"$work/tokens"

# await WHAT COMMAND...: polls COMMAND until it succeeds. Gives up when the process $pid has
# exited (its own stderr says why) or after 60 s: ctest runs this beside other tests, and on a
# loaded machine a TLS server can take seconds to start.
await() {
  local what=$1 deadline=$((SECONDS + 60))
  shift
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      local rc=0
      wait "$pid" || rc=$?
      pid=
      echo "gave up waiting for $what: the process exited with status $rc" >&2
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      echo "gave up waiting for $what after 60 s" >&2
      exit 1
    fi
    sleep 0.05
  done
}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start MODE: qnetd on its core, set up for MODE; sets pid, grpc, http, scheme.
start() {
  local mode=$1 args=()
  grpc=127.0.0.1:$(port)
  http=127.0.0.1:$(port)
  scheme=http
  [[ $mode != plain ]] && args+=(--auth-tokens "$work/tokens")
  if [[ $mode == tls || $mode == mtls ]]; then
    args+=(--tls-cert "$pki/server.pem" --tls-key "$pki/server.key")
    scheme=https
  fi
  [[ $mode == mtls ]] && args+=(--tls-client-ca "$pki/ca.pem")
  rm -rf "$work/data"
  taskset -c "$server_cpu" "$qnetd" --listen "$grpc" --http-listen "$http" --data-dir "$work/data" \
    --dataset "bench=idx:$work/bench" --quota-queued-jobs 0 --quota-submits-per-minute 0 \
    --log-level warn "${args[@]}" &
  pid=$!
  await "qnetd ($mode) to become healthy" curl -skf --cacert "$pki/ca.pem" "$scheme://$http/healthz"
}

# qnetd's CPU time so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }

stop() {
  kill "$pid"
  wait "$pid" || true
  pid=
}

wants() { [[ $parts == all || $parts == "$1" ]]; }
# The gRPC parts' lines also go to a log that security_cost_summary.py reads at the end.
say() { echo "$*" | tee -a "$work/log"; }

if wants grpc; then
  for round in $(seq "$rounds"); do
    ((round == 1)) && say "== gRPC: qnetd on CPU $server_cpu, qnet_loadgen on CPU $client_cpu"
    for mode in plain tokens tls mtls; do
      start "$mode"
      say "-- round $round $mode load $(cut -d' ' -f1-3 /proc/loadavg)"
      taskset -c "$client_cpu" "$loadgen" --server "$grpc" --dataset bench --security "$mode" \
        --pki "$pki" --token "$token" --server-pid "$pid" --threads 8 --seconds 3 --submits 2000 \
        --deep 0 | grep -E '^(SubmitJob, durable|GetJob |Echo|qnetd CPU)' | tee -a "$work/log"
      stop
    done
  done
fi

if wants latency; then
  for round in $(seq "$rounds"); do
    ((round == 1)) && say "== gRPC, one client, one call at a time: qnetd on CPU $server_cpu"
    for mode in plain tokens tls mtls; do
      start "$mode"
      say "-- round $round $mode load $(cut -d' ' -f1-3 /proc/loadavg)"
      taskset -c "$client_cpu" "$loadgen" --server "$grpc" --dataset bench --security "$mode" \
        --pki "$pki" --token "$token" --server-pid "$pid" --threads 1 --seconds 3 --submits 200 \
        --deep 0 | grep -E '^(GetJob +[0-9]|qnetd CPU)' | tee -a "$work/log"
      stop
    done
  done
fi

if wants floor; then
  for round in $(seq "$rounds"); do
    ((round == 1)) && say "== bare gRPC echo, no qnet code: server on CPU $server_cpu, 8 clients on CPU $client_cpu"
    for mode in plain tls mtls; do
      # A file of its own per server: the background shell truncates its redirect only when it
      # gets to run, so a reused file could still show the previous server's address.
      out=$work/echo-$round-$mode.out
      taskset -c "$server_cpu" "$loadgen" --serve-echo --security "$mode" --pki "$pki" >"$out" &
      pid=$!
      await "the echo server ($mode) to listen" grep -q '^listening echo=.*:[0-9]' "$out"
      say "-- round $round $mode load $(cut -d' ' -f1-3 /proc/loadavg)"
      taskset -c "$client_cpu" "$loadgen" --echo-server "$(sed -n 's/^listening echo=//p' "$out")" \
        --security "$mode" --pki "$pki" --server-pid "$pid" --threads 8 --seconds 3 | grep -E '^(Echo|echo server)' | tee -a "$work/log"
      stop
    done
  done
fi

if wants http; then
  for round in $(seq "$rounds"); do
    ((round == 1)) && echo "== HTTP port: ab -c 8 on CPU $client_cpu"
    for mode in plain tls; do
      # Tokens on both: the HTTP port asks for an identity on /api either way.
      security=$([[ $mode == plain ]] && echo tokens || echo tls)
      start "$security"
      "$loadgen" --server "$grpc" --dataset bench --security "$security" --pki "$pki" \
        --token "$token" --threads 1 --submits 3 --seconds 0.1 --deep 0 >/dev/null
      job=$(curl -sf --cacert "$pki/ca.pem" -H "Authorization: Bearer $token" \
        "$scheme://$http/api/v1/jobs" | python3 -c 'import json, sys; print(json.load(sys.stdin)["jobs"][0]["id"])')
      for target in /healthz "/api/v1/jobs/$job"; do
        for keep in -k ""; do
          n=$([[ -n $keep ]] && echo 20000 || echo 2000)
          before=$(cpu_ticks)
          rate=$(taskset -c "$client_cpu" ab -q -c 8 -n "$n" $keep -H "Authorization: Bearer $token" \
            "$scheme://$http$target" 2>&1 | awk '/Requests per second/ {print $4} /Non-2xx/ {print "non-2xx:" $3}' | tr '\n' ' ')
          us=$((($(cpu_ticks) - before) * 1000000 / $(getconf CLK_TCK) / n))
          echo "round $round $scheme $target ${keep:-(new connection each)} load $(cut -d' ' -f1 /proc/loadavg): $rate/s, qnetd CPU $us us per request"
        done
      done
      stop
    done
  done
fi

if [[ -s $work/log ]]; then
  echo "== summary"
  python3 "$here/security_cost_summary.py" "$work/log"
fi
