#!/usr/bin/env bash
# The test suite: unit, property and integration tests. Integration tests talk to real
# servers, so this first brings up the local stack (installing it on first use; see
# scripts/stack.sh), then runs cargo test. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/stack.sh up
cargo test --all-targets "$@"
