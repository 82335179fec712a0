#!/usr/bin/env bash
# The test command (README, `.ci/run`): formatting, lints, generated files, then every test layer,
# including the real kube-apiserver and the network-namespace lab. Needs root.
set -euo pipefail
source "$(dirname "$0")/env.sh"
need_root "the test suite" "test"
start=$(date +%s)
step() { echo; echo "==> $* ($(( $(date +%s) - start ))s)"; }

step "setup"
"$ROOT/tests/scripts/setup.sh"

step "format"
cargo fmt --all --check
test -z "$(gofmt -l tests/kube-env)" || { echo "gofmt: tests/kube-env needs formatting" >&2; gofmt -l tests/kube-env; exit 1; }

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "images (static binaries, buildah)"
"$ROOT/tests/scripts/images.sh"

step "pure crates are pure (cargo tree -e normal)"
"$ROOT/tests/scripts/purity.sh"

step "generated CRDs match the Rust types"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Built with the whole workspace (as the tests are), not `cargo run -p ferrolb-crds`: kube's
# features differ between the two resolutions, and the second would compile the kube crates twice.
cargo build -q --locked --workspace --all-targets
"${CARGO_TARGET_DIR:-$ROOT/target}/debug/crdgen" "$tmp" >/dev/null
if ! diff -ru deploy/crds "$tmp"; then
  echo "error: deploy/crds is stale; run 'cargo run -p ferrolb-crds --bin crdgen' and commit" >&2
  exit 1
fi

step "generated reference matches the code (docs/reference)"
"$ROOT/tests/scripts/reference.sh" "$tmp/reference"
if ! diff -ru docs/reference "$tmp/reference"; then
  echo "error: docs/reference is stale; run 'make reference' and commit" >&2
  exit 1
fi

step "tests (unit, property, real kube-apiserver, network lab)"
cargo test --workspace --locked -- --test-threads="${FERROLB_TEST_THREADS:-2}"

step "nothing of the lab is left"
left=$(ip netns list | grep -c '^ferrolb-' || true)
if [ "$left" != 0 ]; then
  echo "error: $left lab namespace(s) left behind:" >&2
  ip netns list | grep '^ferrolb-' >&2
  exit 1
fi

step "all passed in $(( $(date +%s) - start ))s"
