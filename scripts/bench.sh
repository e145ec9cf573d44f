#!/usr/bin/env bash
# The benchmark, on a fresh machine too: installs what it needs when missing (Debian's
# docker-registry, curl, nginx-light, openssl), then runs `cargo bench --bench fetch`, which
# builds target/release/dist, starts its own servers on 127.0.0.1 (stopping them by PID),
# and prints Markdown tables. The summary is also written to target/bench-report.md.
#
#   scripts/bench.sh                  # every case
#   scripts/bench.sh small            # cases whose name contains "small"
#   BENCH_RUNS=9 scripts/bench.sh big # 9 measured runs per variant instead of 5
#
# Cases: worker-small, static-small, big, many-lines, sha, h2, ranged. Use a quiet machine: the numbers
# are wall-clock times on shared cores.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-missing.sh docker-registry curl openssl nginx:nginx-light

exec cargo bench --bench fetch -- "$@"
