//! ferrolb's own daemons as real processes in the lab, authenticated as their service accounts.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::netns::{Lab, Port};
use crate::process::LabChild;
use crate::{KubeEnv, cmd};

/// Path of a workspace binary (`ferrolb-controller`, `ferrolb-speaker`; the release build with
/// `FERROLB_LAB_PROFILE=release`), rebuilt when any source
/// of the daemons is newer: `cargo test -p ferrolb-lab` does not rebuild other packages' binaries,
/// and a test must not run a stale daemon. (Not unconditionally: `cargo build --bin` resolves
/// features differently from `cargo test --workspace` and would relink dependencies every time.)
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    // FERROLB_LAB_PROFILE=release: benchmarks measure optimised daemons.
    let release = std::env::var("FERROLB_LAB_PROFILE").is_ok_and(|p| p == "release");
    let path = crate::target_dir()
        .join(if release { "release" } else { "debug" })
        .join(name);
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let root = crate::workspace_root();
    let newest = [
        "controller",
        "speaker",
        "config",
        "crds",
        "cli",
        "Cargo.lock",
    ]
    .iter()
    .filter_map(|d| newest_mtime(&root.join(d)))
    .max();
    if built.is_none() || newest > built {
        let mut args = vec!["build", "-q", "--bin", name];
        if release {
            args.push("--release");
        }
        let status = std::process::Command::new("cargo")
            .args(&args)
            .current_dir(&root)
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("cargo build --bin {name} failed");
        }
    }
    Ok(path)
}

/// Newest modification time of a file or of anything below a directory.
fn newest_mtime(path: &std::path::Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .flatten()
        .filter_map(|e| newest_mtime(&e.path()))
        .max()
}

/// Applies `deploy/` (namespace, CRDs, RBAC, workloads) with the real kubectl and waits for the
/// CRDs to be served; returns what `kubectl apply` printed.
pub fn install(env: &KubeEnv) -> anyhow::Result<String> {
    let deploy = crate::workspace_root().join("deploy");
    let out = env.kubectl(&["apply", "-k", &deploy.to_string_lossy()])?;
    env.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "--all",
    ])?;
    Ok(out)
}

/// A node-less lab with the real API server running and `deploy/` installed: the set-up of every
/// controller scenario and benchmark.
pub fn installed_cluster() -> anyhow::Result<(Lab, KubeEnv)> {
    let lab = Lab::new(crate::LabConfig {
        nodes: 0,
        backends: false,
    })?;
    let env = KubeEnv::start(&lab)?;
    install(&env)?;
    Ok((lab, env))
}

/// Holder of the controller's leader Lease (empty when none).
pub fn lease_holder(env: &KubeEnv) -> String {
    env.kubectl(&[
        "-n",
        "ferrolb-system",
        "get",
        "lease",
        "ferrolb-controller",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
    .unwrap_or_default()
}

/// Waits until `identity` (or, with `None`, anyone) holds the controller's leader Lease.
pub fn wait_leader(env: &KubeEnv, identity: Option<&str>) -> anyhow::Result<String> {
    cmd::wait_for(
        "a controller to lead",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let h = lease_holder(env);
            (!h.is_empty() && identity.is_none_or(|i| i == h)).then_some(h)
        },
    )
}

/// Options of a controller process.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    pub identity: String,
    /// Where it runs (it reaches the API server over the segment).
    pub port: Port,
    pub extra_args: Vec<String>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            identity: "controller-a".into(),
            port: Port::Api,
            extra_args: Vec::new(),
        }
    }
}

/// Starts `ferrolb-controller` as service account `ferrolb-system/ferrolb-controller`, with short
/// lease timings (lease 4 s, renew deadline 3 s, retry 1 s) so leader changes fit in a test.
pub fn start_controller(
    lab: &Lab,
    env: &KubeEnv,
    opts: &ControllerOptions,
) -> anyhow::Result<LabChild> {
    let bin = binary("ferrolb-controller")?.to_string_lossy().into_owned();
    let kc = env.service_account_kubeconfig("ferrolb-system", "ferrolb-controller")?;
    let kc = kc.to_string_lossy().into_owned();
    // A profiler in front of every controller, for benchmarks (e.g. `heaptrack -o /tmp/ctl`).
    let wrapper = std::env::var("FERROLB_CONTROLLER_WRAPPER").unwrap_or_default();
    let mut argv: Vec<&str> = wrapper.split_whitespace().collect();
    argv.extend([
        bin.as_str(),
        "--kubeconfig",
        &kc,
        "--identity",
        &opts.identity,
        "--lease-duration",
        "4",
        "--renew-deadline",
        "3",
        "--retry-period",
        "1",
    ]);
    if !opts
        .extra_args
        .iter()
        .any(|a| a == "--metrics-bind-address")
    {
        argv.extend(["--metrics-bind-address", "127.0.0.1:0"]);
    }
    if !opts.extra_args.iter().any(|a| a == "--log-level") {
        argv.extend(["--log-level", "info,ferrolb_controller=debug"]);
    }
    argv.extend(opts.extra_args.iter().map(String::as_str));
    lab.spawn(opts.port, &opts.identity, &argv)
}

/// Waits until the Service's status shows `count` ingress addresses; returns them.
pub fn wait_ingress(
    env: &KubeEnv,
    namespace: &str,
    name: &str,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    let jsonpath = "jsonpath={.status.loadBalancer.ingress[*].ip}";
    cmd::wait_for(
        &format!("{count} address(es) on service {namespace}/{name}"),
        timeout,
        Duration::from_millis(100),
        || {
            let out = env
                .kubectl(&["-n", namespace, "get", "service", name, "-o", jsonpath])
                .ok()?;
            let ips: Vec<String> = out.split_whitespace().map(str::to_string).collect();
            (ips.len() == count).then_some(ips)
        },
    )
}

/// The Events ferrolb reported about an object, as `reason: note` lines.
pub fn events_for(env: &KubeEnv, namespace: &str, name: &str) -> anyhow::Result<Vec<String>> {
    let out = env.kubectl(&[
        "-n",
        namespace,
        "get",
        "events.events.k8s.io",
        "--field-selector",
        &format!("regarding.name={name}"),
        "-o",
        "jsonpath={range .items[*]}{.reportingController} {.reason}: {.note}{\"\\n\"}{end}",
    ])?;
    // Only ferrolb's own Events: kube-apiserver reports on Services too (its ClusterIP repair loop
    // can say "ClusterIPNotAllocated: Cluster IP [IPv6] …" about a Service just created).
    Ok(out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(by, _)| by.starts_with("ferrolb-"))
        .map(|(_, ev)| ev.to_string())
        .collect())
}

/// Waits until an Event about the object contains `text`.
pub fn wait_event(
    env: &KubeEnv,
    namespace: &str,
    name: &str,
    text: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    cmd::wait_for(
        &format!("an event on {namespace}/{name} containing {text:?}"),
        timeout,
        Duration::from_millis(200),
        || {
            events_for(env, namespace, name)
                .ok()?
                .into_iter()
                .find(|l| l.contains(text))
        },
    )
}

/// Applies YAML text with the real kubectl.
pub fn apply(env: &KubeEnv, lab: &Lab, yaml: &str) -> anyhow::Result<String> {
    let file = lab.dir().join(format!("apply-{}.yaml", next()));
    std::fs::write(&file, yaml)?;
    env.kubectl(&["apply", "-f", &file.to_string_lossy()])
}

fn next() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// YAML of a LoadBalancer Service in `default` with one TCP port and optional extra spec lines and
/// annotations.
pub fn service_yaml(
    name: &str,
    annotations: &[(&str, &str)],
    extra_spec: &str,
    port: u16,
) -> String {
    let mut ann = String::new();
    if !annotations.is_empty() {
        ann.push_str("  annotations:\n");
        for (k, v) in annotations {
            ann.push_str(&format!("    {k}: \"{v}\"\n"));
        }
    }
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n{ann}spec:\n  type: LoadBalancer\n  selector: {{app: {name}}}\n  ports:\n  - {{name: p, port: {port}, protocol: TCP}}\n{extra_spec}---\n"
    )
}

/// `GET path` over plain HTTP/1.0 from inside `port`'s namespace (bash's /dev/tcp, no extra tool):
/// the response, headers included.
pub fn http_get(lab: &Lab, port: Port, addr: &str, path: &str) -> anyhow::Result<String> {
    let (host, p) = addr.rsplit_once(':').context("address without port")?;
    let script = format!(
        "exec 3<>/dev/tcp/{host}/{p}; printf 'GET {path} HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n' >&3; cat <&3"
    );
    lab.exec(port, &["timeout", "5", "bash", "-c", &script])
}
