//! Speakers as real processes in the node namespaces, with what a kubelet and the endpoint
//! controller would write to the API (Node objects with addresses and a Ready condition,
//! EndpointSlices), and readers of what the speakers report.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;

use crate::daemons::{ControllerOptions, apply, binary, install, start_controller};
use crate::netns::{Lab, LabConfig, Port, node_name};
use crate::process::LabChild;
use crate::{KubeEnv, cmd};

/// The lab's pool (every VIP the nodes' kube-proxy emulation forwards) and an advertisement
/// covering everything.
pub const POOL_AND_ADVERTISEMENT: &str = "apiVersion: ferrolb.io/v1alpha1
kind: IPAddressPool
metadata: {name: lab}
spec:
  addresses: [192.0.2.64/26, 2001:db8::1:0/112]
---
apiVersion: ferrolb.io/v1alpha1
kind: L2Advertisement
metadata: {name: default}
spec: {}
---
";

/// Creates the Node object of each lab node, as its kubelet would: InternalIP addresses of both
/// families and a `Ready` condition.
pub fn register_nodes(env: &KubeEnv, lab: &Lab) -> anyhow::Result<()> {
    for i in 1..=lab.nodes() {
        let name = node_name(i);
        let yaml = format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/hostname: {name}}}\n---\n"
        );
        apply(env, lab, &yaml)?;
        set_node_status(env, i, true)?;
    }
    Ok(())
}

/// Writes node `i`'s status: addresses, and `Ready` True or False.
pub fn set_node_status(env: &KubeEnv, i: usize, ready: bool) -> anyhow::Result<()> {
    let port = Port::Node(i);
    let status = if ready { "True" } else { "False" };
    let patch = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"{}"}},{{"type":"InternalIP","address":"{}"}},{{"type":"Hostname","address":"{}"}}],"conditions":[{{"type":"Ready","status":"{status}","reason":"Lab","message":"set by the lab","lastHeartbeatTime":null,"lastTransitionTime":"2026-01-01T00:00:00Z"}}]}}}}"#,
        port.v4(),
        port.v6(),
        node_name(i)
    );
    env.kubectl(&[
        "patch",
        "node",
        &node_name(i),
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ])?;
    Ok(())
}

/// Starts the speaker of node `i` as service account `ferrolb-system/ferrolb-speaker`.
pub fn start_speaker(
    lab: &Lab,
    env: &KubeEnv,
    i: usize,
    extra_args: &[&str],
) -> anyhow::Result<LabChild> {
    let bin = binary("ferrolb-speaker")?.to_string_lossy().into_owned();
    let kc = env.service_account_kubeconfig("ferrolb-system", "ferrolb-speaker")?;
    let kc = kc.to_string_lossy().into_owned();
    let name = node_name(i);
    // A profiler in front of node 1's speaker, for benchmarks (e.g. `heaptrack -o /tmp/speaker`).
    let wrapper = match std::env::var("FERROLB_SPEAKER1_WRAPPER") {
        Ok(w) if i == 1 => w,
        _ => String::new(),
    };
    let mut argv: Vec<&str> = wrapper.split_whitespace().collect();
    argv.extend([
        bin.as_str(),
        "--kubeconfig",
        &kc,
        "--node-name",
        &name,
        "--metrics-bind-address",
        "127.0.0.1:7473",
    ]);
    if !extra_args.contains(&"--log-level") {
        argv.extend(["--log-level", "info,ferrolb_speaker=debug"]);
    }
    argv.extend(extra_args);
    lab.spawn(Port::Node(i), &format!("speaker-{i}"), &argv)
}

/// A running cluster: the lab with `nodes` nodes and backends, the API server with `deploy/`
/// installed, Node objects, the lab pool and advertisement, a controller and one speaker per node.
pub struct Cluster {
    pub lab: Lab,
    pub env: KubeEnv,
    pub controller: LabChild,
    /// `speakers[i - 1]` runs on node `i`; `None` after [`Cluster::kill_speaker`].
    pub speakers: Vec<Option<LabChild>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("lab", &self.lab.prefix())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    pub fn start(nodes: usize, speaker_args: &[&str]) -> anyhow::Result<Cluster> {
        let t0 = std::time::Instant::now();
        let lap =
            |what: &str| eprintln!("cluster: {what} after {:.1} s", t0.elapsed().as_secs_f64());
        let lab = Lab::new(LabConfig {
            nodes,
            backends: true,
        })?;
        lap("lab");
        let env = KubeEnv::start(&lab)?;
        lap("API server");
        install(&env)?;
        lap("deploy/ installed");
        register_nodes(&env, &lab)?;
        apply(&env, &lab, POOL_AND_ADVERTISEMENT)?;
        lap("nodes registered");
        let controller = start_controller(&lab, &env, &ControllerOptions::default())?;
        let mut speakers = Vec::new();
        for i in 1..=nodes {
            speakers.push(Some(start_speaker(&lab, &env, i, speaker_args)?));
        }
        lap("daemons started");
        let c = Cluster {
            lab,
            env,
            controller,
            speakers,
        };
        for i in 1..=nodes {
            c.wait_members(i, nodes)?;
        }
        lap("speakers joined");
        Ok(c)
    }

    /// Waits until node `i`'s speaker reports `n` live members on /metrics.
    pub fn wait_members(&self, i: usize, n: usize) -> anyhow::Result<()> {
        cmd::wait_for(
            &format!("speaker {i} to see {n} members"),
            Duration::from_secs(30),
            Duration::from_millis(100),
            || (self.metric(i, "ferrolb_speaker_members").ok()? == n as f64).then_some(()),
        )
        .with_context(|| {
            // What every speaker saw, to tell a member never re-admitted from a slow report.
            let seen: Vec<String> = (1..=self.speakers.len())
                .map(|j| {
                    let m = |name| self.metric(j, name).map_or("?".into(), |v| v.to_string());
                    format!(
                        "speaker {j}: members {}, known {}, quorum {}",
                        m("ferrolb_speaker_members"),
                        m("ferrolb_speaker_known_members"),
                        m("ferrolb_speaker_quorum")
                    )
                })
                .collect();
            format!("{}\n{}", seen.join("\n"), self.logs())
        })
    }

    /// A metric of node `i`'s speaker (the first sample with that name).
    pub fn metric(&self, i: usize, name: &str) -> anyhow::Result<f64> {
        let text = self.metrics(i)?;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.split(['{', ' ']).next() == Some(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .with_context(|| format!("no metric {name} on speaker {i}"))
    }

    /// Node `i`'s speaker's /metrics text.
    pub fn metrics(&self, i: usize) -> anyhow::Result<String> {
        crate::daemons::http_get(&self.lab, Port::Node(i), "127.0.0.1:7473", "/metrics")
    }

    /// The node named in the Service's `ferrolb.io/Announced` condition once it is `True`.
    pub fn announcer(&self, service: &str, timeout: Duration) -> anyhow::Result<String> {
        self.wait_announcer(service, None, timeout)
    }

    /// Waits until the Service's Announced condition names a node other than `not` (any node with
    /// `None`).
    pub fn wait_announcer(
        &self,
        service: &str,
        not: Option<&str>,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        wait_announcer(&self.env, "default", service, not, timeout)
    }

    /// The Service's Announced condition as (status, message).
    pub fn condition(&self, service: &str) -> anyhow::Result<Option<(String, String)>> {
        announced_condition(&self.env, "default", service)
    }

    /// The Service's Announced condition's reason.
    pub fn condition_reason(&self, service: &str) -> anyhow::Result<String> {
        self.env.kubectl(&[
            "-n",
            "default",
            "get",
            "service",
            service,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="ferrolb.io/Announced")].reason}"#,
        ])
    }

    /// Runs `kubectl <args>` until `accept` takes its output (at most `timeout`); returns what
    /// `accept` returned, or fails with the speakers' logs.
    pub fn wait_kubectl<T>(
        &self,
        what: &str,
        args: &[&str],
        timeout: Duration,
        accept: impl Fn(String) -> Option<T>,
    ) -> anyhow::Result<T> {
        cmd::wait_for(what, timeout, Duration::from_millis(200), || {
            accept(self.env.kubectl(args).ok()?)
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", self.logs()))
    }

    /// SIGKILLs node `i`'s speaker (the node stays up).
    pub fn kill_speaker(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut s) = self.speakers[i - 1].take() {
            s.signal(nix::sys::signal::Signal::SIGKILL)?;
            s.wait_timeout(Duration::from_secs(5))?;
        }
        Ok(())
    }

    /// SIGTERMs node `i`'s speaker and waits (bounded) for it to exit.
    pub fn stop_speaker(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut s) = self.speakers[i - 1].take() {
            s.signal(nix::sys::signal::Signal::SIGTERM)?;
            if s.wait_timeout(Duration::from_secs(10))?.is_none() {
                anyhow::bail!("speaker {i} did not exit within 10 s of SIGTERM");
            }
        }
        Ok(())
    }

    /// Starts node `i`'s speaker again.
    pub fn restart_speaker(&mut self, i: usize, args: &[&str]) -> anyhow::Result<()> {
        self.speakers[i - 1] = Some(start_speaker(&self.lab, &self.env, i, args)?);
        Ok(())
    }

    /// Every speaker's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for s in self.speakers.iter().flatten() {
            out.push_str(&format!("==== {} ====\n", s.name()));
            let text = s.log_text();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

/// The lab node whose MAC is `mac`.
pub fn node_of_mac(lab: &Lab, mac: &str) -> Option<usize> {
    (1..=lab.nodes()).find(|i| Port::Node(*i).mac() == mac)
}

/// Node index from a node name (`node-3` → 3).
pub fn index_of(node: &str) -> usize {
    node.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A parsed address.
pub fn ip(s: &str) -> IpAddr {
    s.parse()
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// Lab nodes whose MAC answers ARP (IPv4) or NDP (IPv6) for `addr` from the client, sorted.
pub fn answering(lab: &Lab, addr: IpAddr) -> anyhow::Result<Vec<usize>> {
    let macs = match addr {
        IpAddr::V4(_) => crate::observe::arping(lab, Port::Client, addr, 2)?,
        IpAddr::V6(_) => crate::observe::ndisc6(lab, Port::Client, addr)?,
    };
    let mut nodes = Vec::new();
    for m in &macs {
        nodes.push(
            node_of_mac(lab, m).with_context(|| format!("{addr} answered by unknown MAC {m}"))?,
        );
    }
    nodes.sort_unstable();
    nodes.dedup();
    Ok(nodes)
}

/// Starts the client's probe loop against `target`: `count` requests every `interval_ms`, each
/// with a `timeout_ms` timeout.
pub fn start_probe(
    lab: &Lab,
    target: std::net::SocketAddr,
    count: u32,
    interval_ms: u32,
    timeout_ms: u32,
) -> anyhow::Result<LabChild> {
    use std::sync::atomic::{AtomicU32, Ordering};
    // A log of its own per run: lab logs append, and records of two runs must not mix.
    static RUN: AtomicU32 = AtomicU32::new(0);
    let name = format!("probe-{}", RUN.fetch_add(1, Ordering::SeqCst));
    let bin = crate::lab_binary().to_string_lossy().into_owned();
    let (target, count) = (target.to_string(), count.to_string());
    let (interval, timeout) = (interval_ms.to_string(), timeout_ms.to_string());
    lab.spawn(
        Port::Client,
        &name,
        &[
            &bin,
            "probe",
            "--target",
            &target,
            "--count",
            &count,
            "--interval-ms",
            &interval,
            "--timeout-ms",
            &timeout,
        ],
    )
}

/// Waits until Service `namespace/service`'s Announced condition is True and names a node other
/// than `not` (any node with `None`); returns that node.
pub fn wait_announcer(
    env: &KubeEnv,
    namespace: &str,
    service: &str,
    not: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<String> {
    cmd::wait_for(
        &format!("service {service} to be announced (by a node other than {not:?})"),
        timeout,
        Duration::from_millis(100),
        || {
            let (status, msg) = announced_condition(env, namespace, service).ok()??;
            // "announced by <node> on <interfaces> (<addresses>)", the speaker's wording.
            let node = msg
                .strip_prefix("announced by ")?
                .split_whitespace()
                .next()?
                .to_string();
            (status == "True" && Some(node.as_str()) != not).then_some(node)
        },
    )
}

/// Service `namespace/service`'s Announced condition as (status, message).
pub fn announced_condition(
    env: &KubeEnv,
    namespace: &str,
    service: &str,
) -> anyhow::Result<Option<(String, String)>> {
    let out = env.kubectl(&[
        "-n",
        namespace,
        "get",
        "service",
        service,
        "-o",
        r#"jsonpath={range .status.conditions[?(@.type=="ferrolb.io/Announced")]}{.status}|{.reason}|{.message}{end}"#,
    ])?;
    let mut parts = out.splitn(3, '|');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(s), Some(_), Some(m)) if !s.is_empty() => Ok(Some((s.into(), m.into()))),
        _ => Ok(None),
    }
}
