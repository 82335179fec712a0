#!/usr/bin/env bash
# The pure crates are pure by Cargo: their normal dependency tree holds no async runtime, no
# Kubernetes client and no HTTP stack (DESIGN.md, "Layout"). Prints each tree's size and fails
# naming the crate and the path that pulled a forbidden one in.
set -euo pipefail
source "$(dirname "$0")/env.sh"

pure=(ferrolb-model ferrolb-allocator ferrolb-crds ferrolb-config ferrolb-speaker-core)
# Crates whose presence means I/O or a client: tokio, the kube client and runtime, hyper and the
# HTTP/TLS stack under them, netlink and raw sockets.
forbidden='^(tokio|kube-client|kube-runtime|hyper|hyper-util|tower|rustls|reqwest|rtnetlink|netlink-sys|pnet_datalink|memberlist|axum)$'
status=0
for crate in "${pure[@]}"; do
  tree=$(cargo tree -e normal --prefix none --format '{p}' --locked -p "$crate" | awk '{print $1}' | sort -u)
  bad=$(grep -E "$forbidden" <<<"$tree" || true)
  echo "$crate: $(wc -l <<<"$tree") crates in its normal dependency tree"
  if [ -n "$bad" ]; then
    status=1
    for b in $bad; do
      echo "error: $crate depends on $b, which a pure crate must not:" >&2
      cargo tree -e normal --locked -p "$crate" -i "$b" | head -20 >&2
    done
  fi
done
exit $status
