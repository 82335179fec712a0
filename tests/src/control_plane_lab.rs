//! A control-plane group in the lab: `ferrolb-speaker control-plane` in every node namespace, a
//! Raft group over the segment, each node's health URL pointing at "its" API server. Used by the
//! control-plane stories (`tests/tests/lab/control_plane.rs`) and `ferrolb-lab bench-control-plane`.
//!
//! With `real_api_servers` every node runs a real kube-apiserver of one cluster (the lab's
//! `kube-env` started again with the lab's etcd, CA and keys, its serving certificate naming the
//! VIP: [`KubeEnv::start_member`]), listening on 6443 of every address of the node, so the
//! client's real `kubectl` reaches the cluster through `VIP:6443`; killing, freezing or restarting
//! that process is the node's API server failing. Without, to save the CPU of more API servers,
//! each node reaches the lab's one API server through a relay on its own 127.0.0.1:6443
//! (`ferrolb-lab forward`): still a real `/readyz` over TLS with the cluster CA. Every node runs
//! the lab's backend, so the client's probe loop (TCP to VIP:80) names the holder.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cmd;
use crate::daemons::binary;
use crate::kube_env::API_PORT;
use crate::netns::{API_V4, BACKEND_PORT, Lab, LabConfig, Port};
use crate::probe::{ProbeRecord, longest_outage_ms, parse_records};
use crate::speakers::{index_of, start_probe};
use crate::{KubeEnv, LabChild};

/// The control-plane VIP of the stories: on-link, outside the service VIP range the nodes treat
/// as local.
pub const VIP: &str = "192.0.2.60";
/// The speakers' Raft port.
pub const PEER_PORT: u16 = 7480;
/// How long the stories wait for a holder.
pub const WAIT: Duration = Duration::from_secs(30);

/// /32 or /128.
pub fn host_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

pub struct Group {
    pub vip: IpAddr,
    pub lab: Lab,
    pub env: KubeEnv,
    pub nodes: usize,
    pub key: PathBuf,
    pub speakers: Vec<Option<LabChild>>,
    /// Each node's API server: a real kube-apiserver (`real_api_servers`) or a relay to the lab's.
    pub apis: Vec<Option<LabChild>>,
    pub real_api_servers: bool,
}

impl Group {
    /// A lab of `nodes` nodes with the lab's API server, an API server (or relay) per node and a
    /// control-plane speaker per node holding `vip`.
    pub fn start(nodes: usize, vip: IpAddr, real_api_servers: bool) -> anyhow::Result<Group> {
        let lab = Lab::new(LabConfig {
            nodes,
            backends: true,
        })?;
        let env = KubeEnv::start(&lab)?;
        let key = lab.dir().join("control-plane.key");
        std::fs::write(&key, "5a".repeat(32))?;
        let mut g = Group {
            vip,
            lab,
            env,
            nodes,
            key,
            speakers: Vec::new(),
            apis: Vec::new(),
            real_api_servers,
        };
        for i in 1..=nodes {
            let r = g.start_api(i)?;
            g.apis.push(Some(r));
        }
        for i in 1..=nodes {
            let s = g.start_speaker(i)?;
            g.speakers.push(Some(s));
        }
        Ok(g)
    }

    /// Starts node `i`'s API server and waits until it listens (a member: until it is ready).
    pub fn start_api(&self, i: usize) -> anyhow::Result<LabChild> {
        if self.real_api_servers {
            let sans = vec![self.vip.to_string()];
            return self.env.start_member(&self.lab, Port::Node(i), &sans);
        }
        let bin = crate::lab_binary().to_string_lossy().into_owned();
        let to = SocketAddr::new(API_V4.into(), API_PORT).to_string();
        let child = self.lab.spawn(
            Port::Node(i),
            &format!("apiserver-relay-{i}"),
            &[&bin, "forward", "--listen", "127.0.0.1:6443", "--to", &to],
        )?;
        let ns = self.lab.netns(Port::Node(i));
        cmd::wait_for(
            "relay listening",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                let out = cmd::run(&["ip", "netns", "exec", &ns, "ss", "-Htln"]).ok()?;
                out.contains("127.0.0.1:6443").then_some(())
            },
        )?;
        Ok(child)
    }

    pub fn start_speaker(&self, i: usize) -> anyhow::Result<LabChild> {
        let bin = binary("ferrolb-speaker")?.to_string_lossy().into_owned();
        let peers: Vec<String> = (1..=self.nodes)
            .map(|n| format!("{n}={}:{PEER_PORT}", Port::Node(n).v4()))
            .collect();
        let peers = peers.join(",");
        let data = self.lab.dir().join(format!("cp-data-{i}"));
        let data = data.to_string_lossy().into_owned();
        let ca = self.env.ca_path().to_string_lossy().into_owned();
        let key = self.key.to_string_lossy().into_owned();
        let id = i.to_string();
        let vip = self.vip.to_string();
        self.lab.spawn(
            Port::Node(i),
            &format!("cp-speaker-{i}"),
            &[
                &bin,
                "control-plane",
                "--vip",
                &vip,
                "--interface",
                "eth0",
                "--id",
                &id,
                "--peers",
                &peers,
                "--health-url",
                "https://127.0.0.1:6443/readyz",
                "--health-ca",
                &ca,
                "--data-dir",
                &data,
                "--key-file",
                &key,
                "--log-level",
                "info,ferrolb_speaker=debug",
            ],
        )
    }

    /// Nodes with the VIP on their `eth0`.
    pub fn holders(&self) -> Vec<usize> {
        (1..=self.nodes)
            .filter(|i| {
                self.lab
                    .exec(Port::Node(*i), &["ip", "-o", "addr", "show", "dev", "eth0"])
                    .is_ok_and(|out| {
                        out.contains(&format!(" {}/{} ", self.vip, host_prefix(self.vip)))
                    })
            })
            .collect()
    }

    /// Waits until exactly one node, not `not`, holds the VIP.
    pub fn wait_holder(&self, not: Option<usize>) -> anyhow::Result<usize> {
        cmd::wait_for(
            "one VIP holder",
            WAIT,
            Duration::from_millis(50),
            || match self.holders().as_slice() {
                [one] if Some(*one) != not => Some(*one),
                _ => None,
            },
        )
        .with_context(|| format!("holders {:?}\n{}", self.holders(), self.logs()))
    }

    /// The last 40 lines of every speaker's log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for s in self.speakers.iter().flatten() {
            out.push_str(&format!("==== {} ====\n", s.name()));
            out.push_str(&crate::kube_env::tail(&s.log_text(), 40));
            out.push('\n');
        }
        out
    }

    /// Runs the client's probe loop against VIP:80 (`count` requests, one every `interval_ms`,
    /// `timeout_ms` each) while `fault` happens after one second; returns the longest outage in
    /// ms, the node answering at the end, and the records.
    pub fn measure_with(
        &self,
        count: u32,
        interval_ms: u32,
        timeout_ms: u32,
        fault: impl FnOnce() -> anyhow::Result<()>,
    ) -> anyhow::Result<(Option<u128>, usize, Vec<ProbeRecord>)> {
        let target = SocketAddr::new(self.vip, BACKEND_PORT);
        let mut p = start_probe(&self.lab, target, count, interval_ms, timeout_ms)?;
        std::thread::sleep(Duration::from_millis(1000));
        fault()?;
        if p.wait_timeout(Duration::from_secs(120))?.is_none() {
            bail!("the probe loop did not finish within 120 s");
        }
        let records = parse_records(&p.log_text());
        let Some(last) = records.last().filter(|r| r.ok()) else {
            bail!("no recovery: {:?}\n{}", records.last(), self.logs());
        };
        let node = index_of(last.node.as_deref().unwrap_or_default());
        Ok((longest_outage_ms(&records), node, records))
    }

    /// [`Group::measure_with`] the stories' way: `count` × 50 ms, 200 ms timeout.
    pub fn measure(
        &self,
        count: u32,
        fault: impl FnOnce() -> anyhow::Result<()>,
    ) -> anyhow::Result<(Option<u128>, usize)> {
        let (outage, node, _) = self.measure_with(count, 50, 200, fault)?;
        Ok((outage, node))
    }
}
