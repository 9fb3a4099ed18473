#!/usr/bin/env bash
# make bench: benchmarks reported as ratios against baselines measured in the
# same run. Each package's Benchmark* functions run here until the load
# generator under test/ exists.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run '^$' -bench . -benchtime 2s ./... 
