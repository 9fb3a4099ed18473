#!/usr/bin/env bash
# Timestamping benchmarks (issue 3): messages stamped per second through the
# batcher against one TSA request per message, measured in the same run and
# printed as a ratio (batched/per-message); the TSA server's requests/s; the
# cost of verifying one token offline.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run '^$' -bench 'BenchmarkBatchVsPerMessage|BenchmarkServerRequests|BenchmarkVerifyToken' \
  -benchtime "${BENCHTIME:-3x}" ./timestamp/
