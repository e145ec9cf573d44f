#!/usr/bin/env bash
# The whole test suite, as CI runs it, on a fresh machine too: installs what the tests need
# (Debian's docker-registry, jq, curl, skopeo, and strace for the sync checks), then checks
# formatting, lints, and runs every test.
# The tests start their own registries on 127.0.0.1 and stop them by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-missing.sh docker-registry jq curl skopeo strace
rustup component add rustfmt clippy >/dev/null 2>&1 || true

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
cargo test
