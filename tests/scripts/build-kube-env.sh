#!/usr/bin/env bash
# Builds target/kube-env/kube-env (kube-apiserver + etcd) when missing or older than its Go sources;
# given `kubectl` as first argument, target/kube-env/kubectl from the same release; given `cluster`,
# the cluster lab's parts: kubelet, kube-proxy, kube-controller-manager, kube-scheduler (the same
# release's cmd/ packages) and labpod (the pause and sample-application binary of the lab's images).
# The Rust harness calls this too, so there is one build recipe.
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
  if [ -x "$bin" ] && [ -z "$(find go.mod go.sum ./*.go labpod "$self" -newer "$bin")" ]; then
    return 0
  fi
  go build -trimpath -ldflags "$ldflags" -o "$bin.tmp" "$2"
  mv "$bin.tmp" "$bin"
}
case "${1:-kube-env}" in
  kube-env) build kube-env . ;;
  kubectl) build kubectl k8s.io/kubernetes/cmd/kubectl ;;
  cluster)
    for c in kubelet kube-proxy kube-controller-manager kube-scheduler; do
      build "$c" "k8s.io/kubernetes/cmd/$c"
    done
    # Runs inside images built FROM scratch: no libc to link against.
    CGO_ENABLED=0 build labpod ./labpod
    # Its image (pause and sample application), daemonless with buildah, storage kept in target/.
    img="$out/labpod.oci.tar"
    if [ ! -f "$img" ] || [ "$out/labpod" -nt "$img" ]; then
      b=(buildah --root "$out/buildah/root" --runroot "$out/buildah/run" --storage-driver vfs)
      ctr=$("${b[@]}" from scratch)
      "${b[@]}" copy "$ctr" "$out/labpod" /labpod >/dev/null
      "${b[@]}" config --entrypoint '["/labpod","pause"]' --user 65534:65534 "$ctr"
      "${b[@]}" commit -q "$ctr" "oci-archive:$img.tmp:lab.ferrolb.io/labpod:1" >/dev/null
      "${b[@]}" rm "$ctr" >/dev/null
      mv "$img.tmp" "$img"
    fi
    ;;
  *) echo "usage: $0 [kube-env|kubectl|cluster]" >&2; exit 2 ;;
esac
