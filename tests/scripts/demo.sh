#!/usr/bin/env bash
# The demo (README): builds everything, brings up the lab with a real kube-apiserver, applies
# deploy/, and shows it working. Ctrl-C tears it all down. Needs root.
set -euo pipefail
source "$(dirname "$0")/env.sh"
need_root "the demo" "demo"
"$ROOT/tests/scripts/setup.sh"
echo "==> building ferrolb"
cargo build --workspace --bins
exec "$ROOT/target/debug/ferrolb-lab" up --nodes "${FERROLB_DEMO_NODES:-3}"
