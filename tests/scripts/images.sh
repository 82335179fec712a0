#!/usr/bin/env bash
# Builds the two container images `deploy/` names (`make images`):
#   ghcr.io/ferrolb/ferrolb-controller:VERSION and ghcr.io/ferrolb/ferrolb-speaker:VERSION,
# as OCI archives in ${CARGO_TARGET_DIR:-target}/images/ferrolb-{controller,speaker}.oci.tar.
#
# 1. The release binaries, fully static: glibc with `+crt-static`. `--target` is explicit so that
#    RUSTFLAGS reaches only the target's code, not build scripts and proc-macros (which must stay
#    dynamic host binaries). TLS is rustls + ring (`cargo tree` shows no openssl), so nothing else
#    needs a shared library. Fails unless each binary has no ELF interpreter and no NEEDED entry.
#
#    Name resolution in a static glibc binary: since glibc 2.34 the `files` and `dns` NSS sources
#    are part of libc itself, so a static binary reads /etc/hosts and asks the nameservers of
#    /etc/resolv.conf without any libnss_*.so (checked with glibc 2.36: a static getaddrinfo in an
#    empty chroot resolves names from /etc/hosts and over DNS, and the link prints no NSS warning).
#    Other sources (mdns, ldap, systemd-resolved's `resolve` module) cannot be loaded. The daemons
#    rarely resolve at all: in a pod the kube client connects to KUBERNETES_SERVICE_HOST, an IP,
#    which hyper's connector uses without getaddrinfo, and gossip peers are node IPs. Only a
#    --kubeconfig naming the server by host name resolves, through the kubelet-mounted /etc/hosts
#    and /etc/resolv.conf.
# 2. The images, daemonless with buildah: FROM scratch plus the binary (deploy/images/Containerfile.*),
#    in a per-run vfs store under the output directory (no dependence on /var/lib/containers),
#    written as OCI archives whose index names the full reference, so that
#      ctr -n k8s.io images import --base-name ghcr.io/ferrolb/ferrolb-controller --digests FILE
#    (or without --base-name) gives exactly ghcr.io/ferrolb/ferrolb-controller:VERSION.
# 3. As root with containerd, ctr and runc installed: imports both archives into a throwaway
#    containerd (own root, state and socket; CRI plugin off) and runs each image's `--help`: proves
#    the name, the entrypoint and that the binary runs in an empty root file system. A few seconds.
#
# Idempotent: cargo rebuilds nothing when nothing changed, and an archive newer than its binary
# and its Containerfile is kept.
set -euo pipefail
source "$(dirname "$0")/env.sh"

TARGET=x86_64-unknown-linux-gnu
tdir="${CARGO_TARGET_DIR:-$ROOT/target}"
out="$tdir/images"
bindir="$tdir/$TARGET/release"
registry=ghcr.io/ferrolb
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
daemons=(ferrolb-controller ferrolb-speaker)

die() { echo "error: $*" >&2; exit 1; }
for tool in buildah readelf file; do
  command -v "$tool" >/dev/null || die "$tool is not installed (Debian: buildah, binutils, file; tests/scripts/setup.sh installs them)"
done
# deploy/ must name what this builds.
for d in "${daemons[@]}"; do
  grep -q "image: $registry/$d:$version\$" deploy/*.yaml ||
    die "deploy/ does not name $registry/$d:$version (the workspace version); update the manifests"
done

echo "==> release binaries (static glibc, --target $TARGET)"
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --target "$TARGET" -p ferrolb-controller -p ferrolb-speaker

for d in "${daemons[@]}"; do
  bin="$bindir/$d"
  [ -x "$bin" ] || die "$bin was not built"
  # A dynamic executable names its loader (PT_INTERP) and its libraries (DT_NEEDED); a static one
  # (static-pie included) has neither. `file` is printed for the reader, readelf decides.
  interp=$(readelf -lW "$bin" | grep -c 'Requesting program interpreter' || true)
  needed=$(readelf -dW "$bin" | grep '(NEEDED)' || true)
  if [ "$interp" != 0 ] || [ -n "$needed" ]; then
    echo "$(file -b "$bin")" >&2
    [ -n "$needed" ] && echo "$needed" >&2
    die "$d is dynamically linked; a FROM scratch image has no loader or shared libraries to run it. Something linked a system library (check 'cargo tree -p $d' for openssl/native-tls or a -sys crate) or the build lost '-C target-feature=+crt-static'."
  fi
  echo "$d: $(file -b "$bin" | cut -d, -f1-5); $(du -h "$bin" | cut -f1)"
done

mkdir -p "$out"
store=""
cleanup() { [ -n "$store" ] && rm -rf "$store"; return 0; }
trap cleanup EXIT
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || revision="$revision-dirty"
# Reproducible: the image's creation time is the commit's, not the build's.
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)

for d in "${daemons[@]}"; do
  archive="$out/$d.oci.tar"
  containerfile="deploy/images/Containerfile.${d#ferrolb-}"
  if [ "$archive" -nt "$bindir/$d" ] && [ "$archive" -nt "$containerfile" ]; then
    echo "==> $archive is up to date"
    continue
  fi
  echo "==> image $registry/$d:$version"
  if [ -z "$store" ]; then
    store=$(mktemp -d "$out/.buildah.XXXXXX")
  fi
  # vfs: one small layer, so copying costs nothing, and a store that is only files (no mounts)
  # can be removed with rm.
  bh=(buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs)
  ctx="$store/context-$d"
  mkdir -p "$ctx"
  cp "$bindir/$d" "$ctx/$d"
  ref="$registry/$d:$version"
  "${bh[@]}" build --quiet --timestamp "$epoch" --build-arg VERSION="$version" \
    --build-arg REVISION="$revision" -f "$containerfile" -t "$ref" "$ctx" >/dev/null
  rm -f "$archive.tmp"
  # The reference after the path becomes the index's org.opencontainers.image.ref.name.
  "${bh[@]}" push --quiet "$ref" "oci-archive:$archive.tmp:$ref"
  mv "$archive.tmp" "$archive"
done
for d in "${daemons[@]}"; do
  echo "$out/$d.oci.tar: $(du -h "$out/$d.oci.tar" | cut -f1)"
done

# 3. Import and run in a throwaway containerd.
if [ "$(id -u)" != 0 ] || ! command -v containerd >/dev/null || ! command -v ctr >/dev/null || ! command -v runc >/dev/null; then
  echo "==> skipping the containerd check (needs root, containerd, ctr and runc)"
  exit 0
fi
echo "==> importing into a throwaway containerd and running --help"
cd_dir=$(mktemp -d /tmp/ferrolb-images-ctrd.XXXXXX)
cd_pid=""
stop_containerd() {
  if [ -n "$cd_pid" ]; then
    kill "$cd_pid" 2>/dev/null || true
    wait "$cd_pid" 2>/dev/null || true
  fi
  # Snapshots may still be mounted if a run was interrupted.
  grep -o " $cd_dir/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$cd_dir"
  cleanup
}
trap stop_containerd EXIT
sock="$cd_dir/containerd.sock"
cat >"$cd_dir/config.toml" <<EOF
version = 2
root = "$cd_dir/root"
state = "$cd_dir/state"
# No CRI: it would listen on a streaming port and look for CNI; ctr needs neither.
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
EOF
containerd --config "$cd_dir/config.toml" >"$cd_dir/containerd.log" 2>&1 &
cd_pid=$!
for _ in $(seq 100); do
  [ -S "$sock" ] && ctr -a "$sock" version >/dev/null 2>&1 && break
  sleep 0.1
done
ctr -a "$sock" version >/dev/null 2>&1 || { cat "$cd_dir/containerd.log" >&2; die "the throwaway containerd did not start"; }
for d in "${daemons[@]}"; do
  ref="$registry/$d:$version"
  # What the lab does on each node (there with -n k8s.io, the kubelet's namespace).
  ctr -a "$sock" -n k8s.io images import --base-name "$registry/$d" --digests "$out/$d.oci.tar" >/dev/null
  # The list first, then grep: `ctr … | grep -q` under pipefail fails when grep exits at the
  # first match and ctr, still writing the digest line, dies of SIGPIPE.
  listed=$(ctr -a "$sock" -n k8s.io images ls -q)
  grep -qx "$ref" <<<"$listed" ||
    die "importing $out/$d.oci.tar did not give the image $ref (got: $(tr '\n' ' ' <<<"$listed"))"
  help=$(ctr -a "$sock" -n k8s.io run --rm "$ref" "images-check-$d" "/$d" --help 2>&1) ||
    die "running $ref failed: $help"
  grep -q "^Usage: $d" <<<"$help" || die "$ref --help printed no usage: $help"
  echo "$ref: imported as $ref, /$d --help runs"
done
