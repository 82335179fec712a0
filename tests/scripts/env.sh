# Sourced by the other scripts: toolchain paths for non-login root shells (CI, sudo).
export PATH="/usr/local/go/bin:${HOME:-/root}/.cargo/bin:/root/.cargo/bin:${HOME:-/root}/go/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export ROOT
cd "$ROOT"

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "error: $1 needs root: the lab creates network namespaces, a bridge and veth pairs." >&2
    echo "       run it as root, e.g. 'sudo make ${2:-test}'." >&2
    exit 1
  fi
}
