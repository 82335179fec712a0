#!/usr/bin/env bash
# Builds target/kube-env/kube-env when missing or older than its Go sources (the Rust harness does
# the same check; building here first keeps the test output free of a multi-minute build).
set -euo pipefail
source "$(dirname "$0")/env.sh"
src="$ROOT/tests/kube-env"
out="${CARGO_TARGET_DIR:-$ROOT/target}/kube-env"
mkdir -p "$out"
bin="$out/kube-env"
if [ -x "$bin" ] && [ -z "$(find "$src/go.mod" "$src/go.sum" "$src/main.go" -newer "$bin")" ]; then
  exit 0
fi
(cd "$src" && go build -trimpath -o "$bin.tmp" . && mv "$bin.tmp" "$bin")
