#!/usr/bin/env bash
# Installs what the lab and the build need on a fresh Debian machine. Idempotent.
set -euo pipefail
source "$(dirname "$0")/env.sh"
need_root "setup" "test"

# Debian packages: the lab's tools (iproute2, nftables, setpriv and nsenter from util-linux) and
# its independent observers (arping, ndisc6, tcpdump, ss; python3 runs tests/tools/arp-sweep.py);
# for the images (tests/scripts/images.sh): buildah, file and binutils (readelf) to build and check
# them; the cluster lab's node parts: containerd (with ctr), runc and the CNI plugins.
pkgs=(iproute2 iputils-arping ndisc6 tcpdump nftables util-linux procps python3
  buildah file binutils containerd runc containernetworking-plugins)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q "${missing[@]}" >/dev/null
  }
fi

for tool in go cargo rustc; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed (Go and Rust are required)" >&2; exit 1; }
done
# The list first, then grep (under pipefail, `rustup … | grep -q` can fail on SIGPIPE).
components=$(rustup component list --installed 2>/dev/null || true)
grep -q '^clippy' <<<"$components" || rustup component add clippy rustfmt

# The real kube-apiserver and etcd, built from the official Go modules (cached in target/).
echo "==> building tests/kube-env (kube-apiserver + etcd from Go modules; minutes the first time)"
"$ROOT/tests/scripts/build-kube-env.sh"

# The cluster lab's parts from the same release: kubelet, kube-proxy, kube-controller-manager,
# kube-scheduler, and the lab's own pause/sample image.
echo "==> building the cluster lab's Kubernetes parts (minutes the first time)"
"$ROOT/tests/scripts/build-kube-env.sh" cluster

# The real kubectl: the machine's own if it has one, else built from the same Go modules.
if ! command -v kubectl >/dev/null; then
  echo "==> no kubectl on this machine: building it from k8s.io/kubernetes/cmd/kubectl"
  "$ROOT/tests/scripts/build-kube-env.sh" kubectl
  ln -sf "${CARGO_TARGET_DIR:-$ROOT/target}/kube-env/kubectl" /usr/local/bin/kubectl
fi
echo "==> kubectl: $(kubectl version --client 2>/dev/null | head -1)"
