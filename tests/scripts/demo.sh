#!/usr/bin/env bash
# The demo (README): builds ferrolb and its images, brings up a real cluster in the lab (kubelets,
# containerd, kube-proxy beside a real kube-apiserver), applies deploy/ as shipped, and shows a
# VIP surviving its node's death, measured by the probe loop. Ctrl-C tears it all down. Needs root.
set -euo pipefail
source "$(dirname "$0")/env.sh"
need_root "the demo" "demo"
"$ROOT/tests/scripts/setup.sh"
echo "==> building the lab"
cargo build -q -p ferrolb-lab --bin ferrolb-lab
exec "${CARGO_TARGET_DIR:-$ROOT/target}/debug/ferrolb-lab" demo --nodes "${FERROLB_DEMO_NODES:-3}"
