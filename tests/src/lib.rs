//! ferrolb's lab: the real parts every claim about Kubernetes or the network is tested against.
//!
//! - [`Lab`]: a layer-2 segment made of network namespaces: a switch namespace holding a Linux
//!   bridge, one namespace per node, one for the API server and one for a client. Documentation
//!   addresses only (192.0.2.0/24, 2001:db8::/64), no uplink, no address in the root namespace.
//!   Everything carries a per-run prefix; dropping the lab removes it, also when a test panics, and
//!   creating one sweeps leftovers of crashed runs.
//! - [`KubeEnv`]: a real kube-apiserver with a real etcd (built from the official Go modules in
//!   `tests/kube-env`), running inside the lab's `api` namespace and reachable from the test process
//!   through a loopback forwarder.
//! - Observers ([`observe`]): `arping`, `ndisc6`, `ip neigh`, `tcpdump` and a bounded TCP probe
//!   loop, all run from the client namespace.
//!
//! The lab needs root (network namespaces); [`require_root`] fails with a message saying so.

pub mod bench;
pub mod bench_cluster;
pub mod bench_control_plane;
pub mod bench_speaker;
pub mod cluster_lab;
pub mod cmd;
pub mod control_plane_lab;
pub mod daemons;
pub mod forward;
pub mod kube_env;
pub mod netns;
pub mod observe;
pub mod probe;
pub mod process;
pub mod speakers;

pub use cluster_lab::ClusterLab;
pub use kube_env::KubeEnv;
pub use netns::{Lab, LabConfig, Port};
pub use process::LabChild;

use std::path::PathBuf;

/// Fails with an explanation when not running as root: the lab creates network namespaces, which
/// needs CAP_SYS_ADMIN and CAP_NET_ADMIN. The tests never skip silently.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "the ferrolb lab needs root (it creates network namespaces, bridges and veth pairs); \
             run the tests as root, e.g. `sudo make test`"
        );
    }
}

/// Root of the cargo workspace (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// The cargo target directory (`CARGO_TARGET_DIR` or `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Path of the `ferrolb-lab` helper binary (backends and probes run it inside namespaces). Set by
/// cargo for this package's integration tests; otherwise found next to the running executable.
pub fn lab_binary() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_ferrolb-lab") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("exe dir");
    for candidate in [dir.join("ferrolb-lab"), dir.join("../ferrolb-lab")] {
        if candidate.exists() {
            return candidate;
        }
    }
    panic!(
        "ferrolb-lab binary not found next to {}; build it with `cargo build -p ferrolb-lab`",
        exe.display()
    );
}
