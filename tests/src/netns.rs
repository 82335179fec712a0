//! The layer-2 segment: network namespaces joined by a Linux bridge.
//!
//! ```text
//!                 ┌──────────── <prefix>-sw ────────────┐
//!                 │  br0 ── api  client  n1  n2 … nN    │   (no uplink, no address)
//!                 └────────────┬─────┬──────┬───────────┘
//!   <prefix>-api: eth0 192.0.2.2    2001:db8::2      kube-apiserver + etcd
//!   <prefix>-client: eth0 192.0.2.3 2001:db8::3      observers: arping, ndisc6, tcpdump, probes
//!   <prefix>-n<i>: eth0 192.0.2.(10+i) 2001:db8::(10+i)   a node: backend + kube-proxy emulation
//! ```
//!
//! Every node emulates kube-proxy in IPVS mode with `strictARP`: the lab's VIP ranges are local
//! (AnyIP routes on `lo`), so traffic for any VIP reaching the node is delivered to the node's
//! backend, while `arp_ignore=1`/`arp_announce=2` (and IPv6's per-interface neighbour discovery)
//! keep the kernel from answering ARP or NDP for them. Only a speaker can make a VIP reachable.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cmd;
use crate::process::{LabChild, Spawner};

/// Every lab object's name starts with this; the stale sweep looks for it.
pub const PREFIX: &str = "ferrolb";
/// IPv4 subnet of the segment (RFC 5737 TEST-NET-1).
pub const SUBNET_V4: &str = "192.0.2.0/24";
/// IPv6 subnet of the segment (RFC 3849 documentation prefix).
pub const SUBNET_V6: &str = "2001:db8::/64";
/// Addresses nodes treat as service VIPs (kube-proxy emulation); pools in lab tests come from here.
pub const VIP_RANGE_V4: &str = "192.0.2.64/26";
/// IPv6 counterpart of [`VIP_RANGE_V4`], on-link in [`SUBNET_V6`].
pub const VIP_RANGE_V6: &str = "2001:db8::1:0/112";
/// Address of the API server namespace.
pub const API_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const API_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// Address of the client namespace.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3);
/// Port every node's backend listens on.
pub const BACKEND_PORT: u16 = 80;
/// Most nodes a lab may have (node addresses stay below the VIP range).
pub const MAX_NODES: usize = 40;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A place on the segment: a node (1-based), the API server or the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Port {
    Node(usize),
    Api,
    Client,
}

impl Port {
    /// Name of the bridge port (the switch-side veth) and suffix of the namespace.
    pub fn tag(self) -> String {
        match self {
            Port::Node(i) => format!("n{i}"),
            Port::Api => "api".into(),
            Port::Client => "client".into(),
        }
    }

    /// Host byte of the addresses: .2 api, .3 client, .(10+i) node i.
    fn host(self) -> u8 {
        match self {
            Port::Api => 2,
            Port::Client => 3,
            Port::Node(i) => 10 + i as u8,
        }
    }

    pub fn v4(self) -> Ipv4Addr {
        Ipv4Addr::new(192, 0, 2, self.host())
    }

    /// IPv6 address whose last group reads like the IPv4 host byte (node 1: .11 and ::11).
    pub fn v6(self) -> Ipv6Addr {
        let h = self.host();
        let group = u16::from_str_radix(&h.to_string(), 16).unwrap_or(h as u16);
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, group)
    }

    /// Fixed, locally administered MAC, so tests can name who answered.
    pub fn mac(self) -> String {
        format!("02:fe:00:00:00:{:02x}", self.host())
    }
}

/// What to build.
#[derive(Clone, Debug)]
pub struct LabConfig {
    /// Number of node namespaces.
    pub nodes: usize,
    /// Start each node's backend (TCP server answering with the node's name).
    pub backends: bool,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            nodes: 3,
            backends: true,
        }
    }
}

/// A live lab. Dropping it kills every process in its namespaces and deletes them.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    dir: PathBuf,
    nodes: usize,
    created: Vec<String>,
    backends: Vec<LabChild>,
    spawner: Spawner,
}

impl Lab {
    /// Builds a lab; sweeps leftovers of crashed runs first.
    pub fn new(config: LabConfig) -> anyhow::Result<Lab> {
        crate::require_root();
        if config.nodes > MAX_NODES {
            bail!(
                "a lab has at most {MAX_NODES} nodes, asked for {}",
                config.nodes
            );
        }
        sweep_stale();
        let prefix = format!(
            "{PREFIX}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let dir = runs_dir().join(&prefix);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut lab = Lab {
            prefix,
            dir,
            nodes: config.nodes,
            created: Vec::new(),
            backends: Vec::new(),
            spawner: Spawner::new(),
        };
        // On error, `lab` is dropped here and removes what was already made.
        lab.build()?;
        if config.backends {
            lab.start_backends()?;
        }
        Ok(lab)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let sw = self.switch_ns();
        self.add_netns(&sw)?;
        // A switch forwards frames; it does not run them through ip(6)tables. With br_netfilter
        // loaded (container hosts load it) the kernel would, and since veth delivers in the
        // sender's context, that work was billed to whichever speaker sent the frame.
        if std::path::Path::new("/proc/sys/net/bridge").exists() {
            cmd::run(&[
                "ip",
                "netns",
                "exec",
                &sw,
                "sysctl",
                "-q",
                "-w",
                "net.bridge.bridge-nf-call-iptables=0",
                "net.bridge.bridge-nf-call-ip6tables=0",
                "net.bridge.bridge-nf-call-arptables=0",
            ])?;
        }
        cmd::run(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        cmd::run(&["ip", "-n", &sw, "link", "set", "br0", "up"])?;
        for port in self.ports() {
            self.attach(port)?;
        }
        Ok(())
    }

    fn add_netns(&mut self, name: &str) -> anyhow::Result<()> {
        cmd::run(&["ip", "netns", "add", name])?;
        self.created.push(name.to_string());
        cmd::run(&["ip", "-n", name, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Creates the port's namespace and plugs it into the bridge.
    fn attach(&mut self, port: Port) -> anyhow::Result<()> {
        let ns = self.netns(port);
        let sw = self.switch_ns();
        let tag = port.tag();
        self.add_netns(&ns)?;
        cmd::run(&[
            "ip", "-n", &sw, "link", "add", &tag, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ])?;
        cmd::run(&["ip", "-n", &sw, "link", "set", &tag, "master", "br0", "up"])?;
        // Lab hosts skip IPv6 duplicate-address detection (LAB-NOTES); kube-proxy emulation on
        // nodes: the kernel answers ARP only for addresses on the receiving interface.
        let mut sysctls = vec![
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
            "net.ipv6.conf.eth0.accept_dad=0",
            // The lab's router advertisements do not exist; do not wait for them.
            "net.ipv6.conf.eth0.accept_ra=0",
        ];
        if let Port::Node(_) = port {
            sysctls.extend([
                "net.ipv4.conf.all.arp_ignore=1",
                "net.ipv4.conf.all.arp_announce=2",
                "net.ipv4.conf.eth0.arp_ignore=1",
                "net.ipv4.conf.eth0.arp_announce=2",
            ]);
        }
        let mut argv = vec!["ip", "netns", "exec", &ns, "sysctl", "-q", "-w"];
        argv.extend(sysctls);
        cmd::run(&argv)?;
        let mac = port.mac();
        let v4 = format!("{}/24", port.v4());
        let v6 = format!("{}/64", port.v6());
        cmd::run(&[
            "ip", "-n", &ns, "link", "set", "eth0", "address", &mac, "up",
        ])?;
        cmd::run(&["ip", "-n", &ns, "addr", "add", &v4, "dev", "eth0"])?;
        cmd::run(&["ip", "-n", &ns, "addr", "add", &v6, "dev", "eth0", "nodad"])?;
        if let Port::Node(_) = port {
            cmd::run(&[
                "ip",
                "-n",
                &ns,
                "route",
                "add",
                "local",
                VIP_RANGE_V4,
                "dev",
                "lo",
            ])?;
            cmd::run(&[
                "ip",
                "-n",
                &ns,
                "-6",
                "route",
                "add",
                "local",
                VIP_RANGE_V6,
                "dev",
                "lo",
            ])?;
        }
        Ok(())
    }

    fn start_backends(&mut self) -> anyhow::Result<()> {
        let bin = crate::lab_binary();
        let bin = bin.to_string_lossy().into_owned();
        for i in 1..=self.nodes {
            let name = node_name(i);
            let port = BACKEND_PORT.to_string();
            let child = self.spawn(
                Port::Node(i),
                &format!("backend-{name}"),
                &[&bin, "backend", "--name", &name, "--port", &port],
            )?;
            self.backends.push(child);
        }
        for i in 1..=self.nodes {
            let ns = self.netns(Port::Node(i));
            let want = format!(":{BACKEND_PORT} ");
            cmd::wait_for(
                &format!("backend of node {i} listening"),
                Duration::from_secs(10),
                Duration::from_millis(20),
                || {
                    let out = cmd::run(&["ip", "netns", "exec", &ns, "ss", "-Htln"]).ok()?;
                    out.contains(&want).then_some(())
                },
            )?;
        }
        Ok(())
    }

    /// Per-run prefix of every name in this lab.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Directory holding logs and data of this run (removed with the lab).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Namespace of the switch (holds `br0`).
    pub fn switch_ns(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    /// Namespace of a port.
    pub fn netns(&self, port: Port) -> String {
        format!("{}-{}", self.prefix, port.tag())
    }

    /// Every port: api, client, then nodes 1..=N.
    pub fn ports(&self) -> Vec<Port> {
        let mut v = vec![Port::Api, Port::Client];
        v.extend((1..=self.nodes).map(Port::Node));
        v
    }

    /// Names of all namespaces of this lab that currently exist.
    pub fn namespaces(&self) -> &[String] {
        &self.created
    }

    /// Runs a command inside `port`'s namespace and returns its stdout.
    pub fn exec(&self, port: Port, argv: &[&str]) -> anyhow::Result<String> {
        let ns = self.netns(port);
        let mut full = vec!["ip", "netns", "exec", &ns];
        full.extend_from_slice(argv);
        cmd::run(&full)
    }

    /// Starts a long-running process inside `port`'s namespace; its output goes to
    /// `<lab dir>/<name>.log`. It dies with the test.
    pub fn spawn(&self, port: Port, name: &str, argv: &[&str]) -> anyhow::Result<LabChild> {
        self.spawn_env(port, name, argv, &[])
    }

    /// [`Lab::spawn`] with extra environment variables.
    pub fn spawn_env(
        &self,
        port: Port,
        name: &str,
        argv: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<LabChild> {
        let log = self.dir.join(format!("{name}.log"));
        self.spawner.spawn(name, &self.netns(port), argv, env, &log)
    }

    /// Starts a long-running process in `port`'s network namespace only (`nsenter --net`),
    /// with the host's mounts: see [`crate::process::Enter::NetworkOnly`].
    pub fn spawn_network_only(
        &self,
        port: Port,
        name: &str,
        argv: &[&str],
    ) -> anyhow::Result<LabChild> {
        let log = self.dir.join(format!("{name}.log"));
        self.spawner.spawn_with(
            name,
            &self.netns(port),
            crate::process::Enter::NetworkOnly,
            argv,
            &[],
            &log,
        )
    }

    /// Removes node `port`'s local VIP routes (the kube-proxy emulation): the cluster lab's nodes
    /// run the real kube-proxy, which forwards VIP traffic with nftables and must not find the
    /// VIPs local.
    pub fn remove_vip_routes(&self, port: Port) -> anyhow::Result<()> {
        let ns = self.netns(port);
        cmd::run(&[
            "ip",
            "-n",
            &ns,
            "route",
            "del",
            "local",
            VIP_RANGE_V4,
            "dev",
            "lo",
            "table",
            "local",
        ])?;
        cmd::run(&[
            "ip",
            "-n",
            &ns,
            "-6",
            "route",
            "del",
            "local",
            VIP_RANGE_V6,
            "dev",
            "lo",
            "table",
            "local",
        ])?;
        Ok(())
    }

    /// Brings the switch side of `port`'s cable down or up: the port's host drops off the segment
    /// (a dead node, as seen by everyone else) or comes back.
    pub fn set_link(&self, port: Port, up: bool) -> anyhow::Result<()> {
        let state = if up { "up" } else { "down" };
        cmd::run(&[
            "ip",
            "-n",
            &self.switch_ns(),
            "link",
            "set",
            &port.tag(),
            state,
        ])?;
        Ok(())
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) every process in `port`'s namespace: a hung node.
    pub fn set_frozen(&self, port: Port, frozen: bool) -> anyhow::Result<()> {
        let sig = if frozen { "-STOP" } else { "-CONT" };
        for pid in netns_pids(&self.netns(port))? {
            cmd::run(&["kill", sig, &pid.to_string()])?;
        }
        Ok(())
    }

    /// Cuts layer-2 traffic between every port of `a` and every port of `b`, in both directions,
    /// on the switch (nftables bridge filter). Replaces any earlier partition.
    pub fn partition(&self, a: &[Port], b: &[Port]) -> anyhow::Result<()> {
        let mut rules = String::from(
            "table bridge ferrolb_partition {\n chain forward {\n  type filter hook forward priority 0; policy accept;\n",
        );
        for x in a {
            for y in b {
                let (x, y) = (x.tag(), y.tag());
                rules.push_str(&format!("  iifname \"{x}\" oifname \"{y}\" drop\n"));
                rules.push_str(&format!("  iifname \"{y}\" oifname \"{x}\" drop\n"));
            }
        }
        rules.push_str(" }\n}\n");
        self.heal()?;
        self.nft(&self.switch_ns(), &rules)
    }

    /// Removes any partition.
    pub fn heal(&self) -> anyhow::Result<()> {
        let sw = self.switch_ns();
        let list = cmd::run(&["ip", "netns", "exec", &sw, "nft", "list", "tables"])?;
        if list.contains("ferrolb_partition") {
            cmd::run(&[
                "ip",
                "netns",
                "exec",
                &sw,
                "nft",
                "delete",
                "table",
                "bridge",
                "ferrolb_partition",
            ])?;
        }
        Ok(())
    }

    /// Drops `percent`% of frames entering and leaving `port`'s `eth0`, chosen at random
    /// (nftables `numgen random` on netdev ingress and egress hooks). 0 removes the loss.
    ///
    /// tc netem is not used for loss: it is missing from some kernels (the CI machines' kernel is
    /// built without CONFIG_NET_SCH_NETEM); nftables gives the same independent random loss.
    pub fn set_loss(&self, port: Port, percent: u8) -> anyhow::Result<()> {
        if percent > 100 {
            bail!("loss is a percentage, got {percent}");
        }
        let ns = self.netns(port);
        let list = cmd::run(&["ip", "netns", "exec", &ns, "nft", "list", "tables"])?;
        if list.contains("ferrolb_loss") {
            cmd::run(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "nft",
                "delete",
                "table",
                "netdev",
                "ferrolb_loss",
            ])?;
        }
        if percent == 0 {
            return Ok(());
        }
        // `numgen random mod 100` yields 0..=99, so 100% is an unconditional drop.
        let verdict = if percent == 100 {
            "drop".to_string()
        } else {
            format!("numgen random mod 100 < {percent} drop")
        };
        let rules = format!(
            "table netdev ferrolb_loss {{\n\
             chain ingress_loss {{ type filter hook ingress device \"eth0\" priority 0; {verdict}; }}\n\
             chain egress_loss {{ type filter hook egress device \"eth0\" priority 0; {verdict}; }}\n\
             }}\n"
        );
        self.nft(&ns, &rules)
    }

    /// Delays every frame leaving `port`'s `eth0` by `ms` milliseconds with tc netem (0 removes
    /// it). Fails with an explanation on kernels built without netem.
    pub fn set_delay(&self, port: Port, ms: u32) -> anyhow::Result<()> {
        let ns = self.netns(port);
        let _ = cmd::run(&[
            "ip", "netns", "exec", &ns, "tc", "qdisc", "del", "dev", "eth0", "root",
        ]);
        if ms == 0 {
            return Ok(());
        }
        let delay = format!("{ms}ms");
        cmd::run(&[
            "ip", "netns", "exec", &ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay",
            &delay,
        ])
        .map(|_| ())
        .context("adding delay with tc netem (this kernel may be built without CONFIG_NET_SCH_NETEM; `tc qdisc add … netem` then says \"Specified qdisc kind is unknown\")")
    }

    fn nft(&self, ns: &str, rules: &str) -> anyhow::Result<()> {
        let file = self
            .dir
            .join(format!("nft-{}.conf", SEQ.fetch_add(1, Ordering::SeqCst)));
        std::fs::write(&file, rules)?;
        let path = file.to_string_lossy().into_owned();
        cmd::run(&["ip", "netns", "exec", ns, "nft", "-f", &path])
            .with_context(|| format!("applying nftables rules:\n{rules}"))?;
        Ok(())
    }

    /// Removes everything; every error is collected and returned together.
    fn teardown(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        self.backends.clear();
        for ns in self.created.drain(..).rev() {
            if let Err(e) = remove_netns(&ns) {
                errors.push(format!("{ns}: {e:#}"));
            }
        }
        // What the cluster lab's containers mounted below the run directory (root filesystems,
        // pod network namespaces) goes before the directory does.
        if let Err(e) = unmount_under(&self.dir) {
            errors.push(format!("{}: {e:#}", self.dir.display()));
        }
        // FERROLB_KEEP_LAB_LOGS=1 keeps logs and data for debugging (the network is removed).
        if std::env::var_os("FERROLB_KEEP_LAB_LOGS").is_some() {
            eprintln!("lab logs kept in {}", self.dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            errors.push(format!("{}: {e}", self.dir.display()));
        }
        errors
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_logs(&self.dir);
        }
        for e in self.teardown() {
            eprintln!("lab teardown: {e}");
        }
    }
}

/// Kubernetes Node name of node `i`.
pub fn node_name(i: usize) -> String {
    format!("node-{i}")
}

/// Where lab runs keep logs and data: `/tmp/ferrolb-lab/<prefix>`.
pub fn runs_dir() -> PathBuf {
    std::env::temp_dir().join("ferrolb-lab")
}

/// PIDs of processes inside a namespace.
pub fn netns_pids(ns: &str) -> anyhow::Result<Vec<i32>> {
    let out = cmd::run(&["ip", "netns", "pids", ns])?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Kills every process in `ns` and deletes it.
fn remove_netns(ns: &str) -> anyhow::Result<()> {
    // A namespace outlives `ip netns del` while a process is still in it; kill them first.
    for round in 0..50 {
        let pids = netns_pids(ns).unwrap_or_default();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if round == 49 {
            bail!("processes in {ns} survived SIGKILL for 5 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cmd::run(&["ip", "netns", "del", ns])?;
    Ok(())
}

/// Names of all lab namespaces present on the machine, from any run.
pub fn lab_namespaces() -> Vec<String> {
    let out = cmd::run(&["ip", "netns", "list"]).unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{PREFIX}-")))
        .map(str::to_string)
        .collect()
}

/// PID of the process that created a lab object, read from its name (`ferrolb-<pid>-<seq>-…`).
fn owner_pid(name: &str) -> Option<i32> {
    name.strip_prefix(&format!("{PREFIX}-"))?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// Removes namespaces and run directories left by lab runs whose process is gone (a crashed or
/// killed test). Labs of live processes (parallel runs) are left alone.
pub fn sweep_stale() -> Vec<String> {
    let alive = |pid: i32| Path::new(&format!("/proc/{pid}")).exists();
    let mut removed = Vec::new();
    for ns in lab_namespaces() {
        if owner_pid(&ns).is_some_and(|p| !alive(p)) {
            match remove_netns(&ns) {
                Ok(()) => removed.push(ns),
                Err(e) => eprintln!("lab sweep: could not remove {ns}: {e:#}"),
            }
        }
    }
    removed.extend(crate::cluster_lab::sweep_stale_cgroups(|name| {
        owner_pid(name).is_some_and(|p| !alive(p))
    }));
    if let Ok(entries) = std::fs::read_dir(runs_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if owner_pid(&name).is_some_and(|p| !alive(p)) {
                let _ = unmount_under(&e.path());
                crate::cluster_lab::remove_host_leftovers(&e.path());
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    removed
}

/// Unmounts (lazily, deepest first) everything mounted at or below `dir`: the overlay root
/// filesystems and network-namespace files containerd made for the cluster lab's pods.
pub fn unmount_under(dir: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    let mut errors = Vec::new();
    for p in points {
        if let Err(e) = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH)
            && e != nix::errno::Errno::EINVAL
        {
            errors.push(format!("{p}: {e}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("unmounting: {}", errors.join("; "))
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .map_err(|_| ())
                .and_then(|o| u8::from_str_radix(o, 8).map_err(|_| ()))
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes every lab namespace and run directory, whoever made it (`ferrolb-lab clean`).
pub fn sweep_all() -> Vec<String> {
    let mut removed = Vec::new();
    for ns in lab_namespaces() {
        if remove_netns(&ns).is_ok() {
            removed.push(ns);
        }
    }
    removed.extend(crate::cluster_lab::sweep_stale_cgroups(|_| true));
    let _ = unmount_under(&runs_dir());
    let _ = std::fs::remove_dir_all(runs_dir());
    removed
}

/// Prints the last lines of every log of a failed run, so a CI failure explains itself.
fn print_logs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("==== {} (last {} lines) ====", p.display(), tail.len());
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_the_plan() {
        assert_eq!(Port::Node(1).v4(), Ipv4Addr::new(192, 0, 2, 11));
        assert_eq!(Port::Node(1).v6().to_string(), "2001:db8::11");
        assert_eq!(Port::Node(3).mac(), "02:fe:00:00:00:0d");
        assert_eq!(Port::Api.v4(), API_V4);
        assert_eq!(Port::Client.v6(), CLIENT_V6);
        assert_eq!(Port::Node(MAX_NODES).v4(), Ipv4Addr::new(192, 0, 2, 50));
    }

    #[test]
    fn mountinfo_escapes_are_read() {
        assert_eq!(unescape_mountinfo("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn owner_pid_is_read_from_names() {
        assert_eq!(owner_pid("ferrolb-1234-0-sw"), Some(1234));
        assert_eq!(owner_pid("ferrolb-1234-7"), Some(1234));
        assert_eq!(owner_pid("other-1234-0"), None);
        assert_eq!(owner_pid("ferrolb-x-0"), None);
    }
}
