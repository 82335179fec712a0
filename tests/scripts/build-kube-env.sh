#!/usr/bin/env bash
# Builds target/kube-env/kube-env (kube-apiserver + etcd) when missing or older than its Go sources,
# and, given `kubectl` as first argument, target/kube-env/kubectl from the same release. The Rust
# harness calls this too, so there is one build recipe.
set -euo pipefail
source "$(dirname "$0")/env.sh"
src="$ROOT/tests/kube-env"
self="$ROOT/tests/scripts/build-kube-env.sh"
out="${CARGO_TARGET_DIR:-$ROOT/target}/kube-env"
mkdir -p "$out"
cd "$src"
# Stamp the Kubernetes release into the binaries, as the official build does, so /version and
# `kubectl version` report it (and kubectl's version-skew checks see the truth).
version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
minor=$(echo "$version" | cut -d. -f2)
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
build() { # build NAME PACKAGE
  local bin="$out/$1"
  if [ -x "$bin" ] && [ -z "$(find go.mod go.sum main.go "$self" -newer "$bin")" ]; then
    return 0
  fi
  go build -trimpath -ldflags "$ldflags" -o "$bin.tmp" "$2"
  mv "$bin.tmp" "$bin"
}
case "${1:-kube-env}" in
  kube-env) build kube-env . ;;
  kubectl) build kubectl k8s.io/kubernetes/cmd/kubectl ;;
  *) echo "usage: $0 [kube-env|kubectl]" >&2; exit 2 ;;
esac
