#!/usr/bin/env bash
# make bench: the security-server pair measured side by side with two
# baselines in the same run (the sample services called directly, and an
# nginx mutual-TLS reverse-proxy pair), then the component benchmarks (key
# algorithms, hash registry, TSA) and a CPU profile of the pair. Prints a
# markdown report (also left in $BENCH_OUT, default bench-report.md in a
# temporary directory that is removed unless BENCH_KEEP=1). See
# docs/performance.md.
#
# Knobs (environment): DURATION (each closed-loop run, default 3s), WARMUP
# (1s), CONC (1,16,64), RATES (open loop, 200,50 req/s), OPEN_DURATION (8s), CONNS
# (1000), BODY_MIB (200), BENCHTIME (component benchmarks, 1s), BENCH_QUICK=1 (short runs
# for trying the script), BENCH_OUT (report file), BENCH_KEEP=1 (keep the
# work directory: logs, profile, configs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ "${BENCH_QUICK:-}" = 1 ]; then
  : "${DURATION:=1s}" "${WARMUP:=200ms}" "${OPEN_DURATION:=2s}" "${BENCHTIME:=200ms}" "${PROFILE_N:=300}"
fi
DURATION=${DURATION:-3s}
WARMUP=${WARMUP:-1s}
CONC=${CONC:-1,16,64}
RATES=${RATES:-200,50}
OPEN_DURATION=${OPEN_DURATION:-8s}
CONNS=${CONNS:-1000}
BODY_MIB=${BODY_MIB:-200}
BENCHTIME=${BENCHTIME:-1s}
PROFILE_N=${PROFILE_N:-2000}

say() { echo "bench: $*" >&2; }

# --- tools -----------------------------------------------------------------
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    had_pid=$([ -e /run/nginx.pid ] && echo yes || echo no)
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian may start its own nginx on :80 after installing it: stop it.
    if [ "$had_pid" = no ] && [ -s /run/nginx.pid ]; then /usr/sbin/nginx -s quit 2>/dev/null || true; fi
  else
    say "missing ${missing[*]} and cannot install them (need root and apt-get)"; exit 1
  fi
fi
export PATH=$PATH:/usr/sbin

# --- work directory and clean-up -------------------------------------------
work=$(mktemp -d /tmp/passerelle-bench.XXXXXX)
out=${BENCH_OUT:-$work/bench-report.md}
sandbox_pid=""
tmpfs_pid=""
shm=""
stop_pid() {
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  set +e
  bash scripts/bench-nginx.sh stop "$work/nginx" 2>/dev/null
  stop_pid "$sandbox_pid"
  stop_pid "$tmpfs_pid"
  [ -n "$shm" ] && rm -rf "$shm"
  if [ "${BENCH_KEEP:-}" = 1 ]; then say "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -----------------------------------------------------------------
say "building passerelle and loadgen"
go build -o "$work/passerelle" ./cmd/passerelle
go build -o "$work/loadgen" ./test/load/cmd/loadgen
go test -c -o "$work/load.test" ./test/load/
loadgen=$work/loadgen

# --- a 200 MiB body through the pair (its own process, before anything else runs) ---
say "streaming a ${BODY_MIB} MiB body through an in-process pair"
stream_flag=()
if "$loadgen" stream -size $((BODY_MIB << 20)) -dir "$work/stream" -result "$work/stream.json" >"$work/stream.md" 2>"$work/stream.log"; then
  stream_flag=(-stream-result "$work/stream.json")
else
  { echo "### A ${BODY_MIB} MiB body streamed through the pair"; echo; echo "**Failed:** $(tail -n 3 "$work/stream.log")"; } >"$work/stream.md"
fi
rm -rf "$work/stream"

# --- the sandbox, as its own process ----------------------------------------
start_sandbox() { # $1 = directory, $2 = log name; sets started_pid
  "$work/passerelle" sandbox --dir "$1" --port-base 0 --quiet >"$work/$2.out" 2>"$work/$2.log" &
  started_pid=$!
  for _ in $(seq 600); do
    [ -s "$1/sandbox.json" ] && return 0
    kill -0 "$started_pid" 2>/dev/null || { cat "$work/$2.log" >&2; exit 1; }
    sleep 0.1
  done
  say "the sandbox in $1 did not start"; exit 1
}
say "starting passerelle sandbox"
start_sandbox "$work/sb" sandbox
sandbox_pid=$started_pid
# A diagnostic twin with its data on tmpfs, where fsync costs nothing: the
# difference shows what durable logging costs (TMPFS_PAIR=0 to skip).
tmpfs_flag=()
if [ "${TMPFS_PAIR:-1}" = 1 ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  shm=$(mktemp -d /dev/shm/passerelle-bench.XXXXXX)
  say "starting a second sandbox on tmpfs ($shm)"
  start_sandbox "$shm/sb" sandbox-tmpfs
  tmpfs_pid=$started_pid
  tmpfs_flag=(-sandbox-tmpfs "$shm/sb")
fi

# --- the nginx mTLS pair, proxying to the same sample services --------------
read -r rest_backend soap_backend < <("$loadgen" backends -sandbox "$work/sb")
say "starting the nginx mTLS pair in front of $rest_backend and $soap_backend"
bash scripts/bench-nginx.sh start "$work/nginx" "$rest_backend" "$soap_backend" "$loadgen"
# shellcheck disable=SC1091
. "$work/nginx/nginx.env"

# --- exchange: throughput, latency, open loop, memory ------------------------
say "exchange runs: ${CONC} connections × 3 messages × 3-4 systems, ${DURATION} each (+${WARMUP} warm-up); open loop ${RATES} req/s × ${OPEN_DURATION}; ${CONNS} held connections"
"$loadgen" run -sandbox "$work/sb" -pid "$sandbox_pid" -nginx "$NGINX_URL" -nginx-pids "$NGINX_PIDS" \
  -duration "$DURATION" -warmup "$WARMUP" -conc "$CONC" -rates "$RATES" -open-duration "$OPEN_DURATION" \
  -conns "$CONNS" "${tmpfs_flag[@]}" "${stream_flag[@]}" >"$work/exchange.md" 2>"$work/loadgen.log" || { cat "$work/loadgen.log" >&2; exit 1; }
sb_cpu=$(awk '{printf "%.1f", ($14+$15)/100}' "/proc/$sandbox_pid/stat" 2>/dev/null || echo "?")

# Everything on loopback stops before the component benchmarks.
bash scripts/bench-nginx.sh stop "$work/nginx"
stop_pid "$sandbox_pid"; sandbox_pid=""
stop_pid "$tmpfs_pid"; tmpfs_pid=""

# --- component benchmarks -----------------------------------------------------
say "component benchmarks (key algorithms, hash registry, TSA)"
{
  "$work/load.test" -test.run '^$' -test.bench 'BenchmarkKeyAlgorithms' -test.benchtime "$BENCHTIME"
  go test -run '^$' -bench 'BenchmarkAppendBatch256$|BenchmarkAppendConcurrent|BenchmarkAppendToCheckpoint' -benchtime "$BENCHTIME" ./hashregistry/
  go test -run '^$' -bench 'BenchmarkBatchVsPerMessage|BenchmarkServerRequests|BenchmarkVerifyToken' -benchtime 3x ./timestamp/
} >"$work/components.txt" 2>&1 || { cat "$work/components.txt" >&2; exit 1; }

# --- profile of the pair (in process: the same code, REST POST and SOAP at 16) ---
say "CPU profile of the pair (${PROFILE_N} exchanges per message kind)"
(cd "$work" && ./load.test -test.run '^$' -test.bench 'BenchmarkPair' -test.benchtime "${PROFILE_N}x" \
  -test.cpuprofile pair.cpu >"$work/profile.txt" 2>&1) || { cat "$work/profile.txt" >&2; exit 1; }
go tool pprof -top -nodecount 25 "$work/load.test" "$work/pair.cpu" 2>/dev/null | sed -n '/flat%/,$p' >"$work/pprof-flat.txt"
go tool pprof -top -cum -nodecount 40 "$work/load.test" "$work/pair.cpu" 2>/dev/null | sed -n '/flat%/,$p' >"$work/pprof-cum.txt"

# --- report ------------------------------------------------------------------
{
  echo "## Passerelle benchmark — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`, $(go version | cut -d' ' -f3), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(uname -r), nginx $(nginx -v 2>&1 | sed 's|.*/||'). Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Closed-loop runs ${DURATION} each after ${WARMUP} warm-up; the load generator runs on the same 2 cores as what it measures."
  echo "The sandbox process used ${sb_cpu} s of CPU during the exchange runs."
  echo
  cat "$work/exchange.md"
  echo
  cat "$work/stream.md"
  echo
  "$loadgen" components "$work/components.txt"
  echo "### CPU profile of the pair (BenchmarkPair: in-process sandbox, REST POST 1 KiB and SOAP 1 KiB at concurrency 16)"
  echo
  grep -E 'req/s' "$work/profile.txt" | sed 's/^/    /' || true
  echo
  echo "Top cumulative (whole process: both servers, the backends and the load generator):"
  echo
  echo '```'
  cat "$work/pprof-cum.txt"
  echo '```'
  echo
  echo "Top flat:"
  echo
  echo '```'
  cat "$work/pprof-flat.txt"
  echo '```'
} >"$out"
cat "$out"
