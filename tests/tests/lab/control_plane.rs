//! The control-plane VIP in the lab: `ferrolb-speaker control-plane` in every node namespace, a
//! Raft group over the segment, each node's health URL pointing at "its" API server.
//!
//! In the three-node story every node runs a real kube-apiserver of one cluster (the lab's
//! `kube-env` started again with the lab's etcd, CA and keys, its serving certificate naming the
//! VIP: [`KubeEnv::start_member`]), listening on 6443 of every address of the node, so the client's
//! real `kubectl` reaches the cluster through `VIP:6443`; killing, freezing or restarting that
//! process is the node's API server failing. The smaller stories save the CPU of two more API
//! servers: each node reaches the lab's one API server through a relay on its own
//! 127.0.0.1:6443 (`ferrolb-lab forward`), still a real `/readyz` over TLS with the cluster CA.
//! The client measures with the lab's probe loop (TCP to VIP:80, answered by the holder's
//! backend) and sees who answers ARP with `arping`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ferrolb_lab::cmd;
use ferrolb_lab::daemons::binary;
use ferrolb_lab::netns::{API_V4, BACKEND_PORT, Lab, LabConfig, Port};
use ferrolb_lab::observe::{Capture, tcp_get};
use ferrolb_lab::probe::{longest_outage_ms, parse_records};
use ferrolb_lab::speakers::{answering, index_of, start_probe};
use ferrolb_lab::{KubeEnv, LabChild};

/// The control-plane VIP: on-link, outside the service VIP range the nodes treat as local.
const VIP: &str = "192.0.2.60";
const PEER_PORT: u16 = 7480;
const WAIT: Duration = Duration::from_secs(30);

fn vip() -> IpAddr {
    VIP.parse().unwrap()
}

fn host_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

struct Group {
    vip: IpAddr,
    lab: Lab,
    env: KubeEnv,
    nodes: usize,
    key: PathBuf,
    speakers: Vec<Option<LabChild>>,
    /// Each node's API server: a real kube-apiserver (`real_api_servers`) or a relay to the lab's.
    apis: Vec<Option<LabChild>>,
    real_api_servers: bool,
}

impl Group {
    fn start(nodes: usize) -> Group {
        Group::start_with(nodes, vip(), false)
    }

    fn start_with(nodes: usize, vip: IpAddr, real_api_servers: bool) -> Group {
        let lab = Lab::new(LabConfig {
            nodes,
            backends: true,
        })
        .unwrap();
        let env = KubeEnv::start(&lab).unwrap();
        let key = lab.dir().join("control-plane.key");
        std::fs::write(&key, "5a".repeat(32)).unwrap();
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
            let r = g.start_api(i);
            g.apis.push(Some(r));
        }
        for i in 1..=nodes {
            let s = g.start_speaker(i);
            g.speakers.push(Some(s));
        }
        g
    }

    /// Starts node `i`'s API server and waits until it listens (a member: until it is ready).
    fn start_api(&self, i: usize) -> LabChild {
        if self.real_api_servers {
            let sans = vec![self.vip.to_string()];
            return self
                .env
                .start_member(&self.lab, Port::Node(i), &sans)
                .unwrap();
        }
        let bin = ferrolb_lab::lab_binary().to_string_lossy().into_owned();
        let to = SocketAddr::new(API_V4.into(), ferrolb_lab::kube_env::API_PORT).to_string();
        let child = self
            .lab
            .spawn(
                Port::Node(i),
                &format!("apiserver-relay-{i}"),
                &[&bin, "forward", "--listen", "127.0.0.1:6443", "--to", &to],
            )
            .unwrap();
        let ns = self.lab.netns(Port::Node(i));
        cmd::wait_for(
            "relay listening",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                let out = cmd::run(&["ip", "netns", "exec", &ns, "ss", "-Htln"]).ok()?;
                out.contains("127.0.0.1:6443").then_some(())
            },
        )
        .unwrap();
        child
    }

    fn start_speaker(&self, i: usize) -> LabChild {
        let bin = binary("ferrolb-speaker")
            .unwrap()
            .to_string_lossy()
            .into_owned();
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
        self.lab
            .spawn(
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
            .unwrap()
    }

    /// Nodes with the VIP on their `eth0`.
    fn holders(&self) -> Vec<usize> {
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
    fn wait_holder(&self, not: Option<usize>) -> usize {
        cmd::wait_for(
            "one VIP holder",
            WAIT,
            Duration::from_millis(50),
            || match self.holders().as_slice() {
                [one] if Some(*one) != not => Some(*one),
                _ => None,
            },
        )
        .unwrap_or_else(|e| panic!("{e}\nholders {:?}\n{}", self.holders(), self.logs()))
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for s in self.speakers.iter().flatten() {
            out.push_str(&format!("==== {} ====\n", s.name()));
            let text = s.log_text();
            let lines: Vec<&str> = text.lines().collect();
            for l in &lines[lines.len().saturating_sub(40)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Runs the client's probe loop against VIP:80 for `count` × 50 ms while `fault` happens after
    /// one second; returns the outage in ms and the node answering at the end.
    fn measure(&self, count: u32, fault: impl FnOnce()) -> (Option<u128>, usize) {
        let target = SocketAddr::new(self.vip, BACKEND_PORT);
        let mut p = start_probe(&self.lab, target, count, 50, 200).unwrap();
        std::thread::sleep(Duration::from_millis(1000));
        fault();
        assert!(p.wait_timeout(Duration::from_secs(60)).unwrap().is_some());
        let records = parse_records(&p.log_text());
        let last = records.last().unwrap();
        assert!(last.ok(), "no recovery: {records:?}\n{}", self.logs());
        (
            longest_outage_ms(&records),
            index_of(last.node.as_deref().unwrap()),
        )
    }
}

#[test]
fn three_nodes_one_holder_and_failover_on_link_loss_and_on_api_server_failure() {
    let mut g = Group::start_with(3, vip(), true);
    let holder = g.wait_holder(None);

    // The client's real kubectl reaches the cluster through the VIP (the serving certificate of
    // every API server names it, the CA checks it), and the `kubernetes` Endpoints list the lab's
    // API server and the three members: one cluster.
    let vip_kc = g.env.kubeconfig_for(vip()).unwrap();
    let vip_kc = vip_kc.to_string_lossy().into_owned();
    let kubectl = |args: &[&str]| {
        let mut argv = vec!["kubectl", "--kubeconfig", &vip_kc, "--request-timeout=10s"];
        argv.extend_from_slice(args);
        g.lab.exec(Port::Client, &argv)
    };
    assert_eq!(kubectl(&["get", "--raw", "/readyz"]).unwrap().trim(), "ok");
    let mut want: Vec<String> = std::iter::once(API_V4.to_string())
        .chain((1..=3).map(|i| Port::Node(i).v4().to_string()))
        .collect();
    want.sort();
    cmd::wait_for(
        "the kubernetes Endpoints list four API servers",
        WAIT,
        Duration::from_millis(500),
        || {
            let out = kubectl(&[
                "get",
                "endpoints",
                "kubernetes",
                "-o",
                "jsonpath={.subsets[*].addresses[*].ip}",
            ])
            .ok()?;
            let mut got: Vec<String> = out.split_whitespace().map(String::from).collect();
            got.sort();
            (got == want).then_some(())
        },
    )
    .unwrap();

    // Exactly one MAC answers for the VIP, and it is the holder's; TCP reaches its backend.
    assert_eq!(
        answering(&g.lab, vip()).unwrap(),
        vec![holder],
        "{}",
        g.logs()
    );
    let rec = tcp_get(&g.lab, Port::Client, SocketAddr::new(vip(), BACKEND_PORT)).unwrap();
    assert_eq!(rec.node, Some(format!("node-{holder}")), "{rec:?}");
    // Its metrics say so.
    let metrics = g
        .lab
        .exec(
            Port::Node(holder),
            &["curl", "-sf", "http://127.0.0.1:7474/metrics"],
        )
        .unwrap();
    for line in [
        "ferrolb_control_plane_vip_held 1",
        "ferrolb_control_plane_leader 1",
        "ferrolb_control_plane_api_server_healthy 1",
    ] {
        assert!(metrics.contains(line), "{metrics}");
    }
    // `control-plane status` on the holder's node and on a follower's say who holds the VIP.
    let bin = binary("ferrolb-speaker")
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let status = |i: usize, extra: &[&str]| {
        let mut argv = vec![bin.as_str(), "control-plane", "status"];
        argv.extend_from_slice(extra);
        g.lab.exec(Port::Node(i), &argv).unwrap()
    };
    let text = status(holder, &[]);
    assert!(
        text.starts_with(&format!(
            "VIP {} on eth0: held by this node ({holder})\nnode {holder}: leader, term ",
            vip()
        )),
        "{text}"
    );
    assert!(text.contains("API server healthy"), "{text}");
    let follower = if holder == 1 { 2 } else { 1 };
    let text = status(follower, &[]);
    assert!(
        text.contains(&format!(
            "not held here (not the leader); the leader is node {holder}"
        )),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&status(follower, &["-o", "json"])).unwrap();
    assert_eq!(json["leader"], serde_json::json!(holder));
    assert_eq!(json["vip_held"], serde_json::json!(false));
    assert_eq!(json["peers"].as_array().map(Vec::len), Some(2), "{json}");

    // The holder's link goes down: a majority elects another leader, which takes the VIP after
    // the old leader's quorum window; the old one, cut off, drops it on its own.
    let (outage, successor) = g.measure(120, || g.lab.set_link(Port::Node(holder), false).unwrap());
    println!("control-plane VIP, leader link down: outage {outage:?} ms");
    assert_ne!(successor, holder);
    let ns = g.lab.netns(Port::Node(holder));
    cmd::wait_for(
        "the isolated old leader drops the VIP",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || {
            let out = cmd::run(&[
                "ip", "netns", "exec", &ns, "ip", "-o", "addr", "show", "dev", "eth0",
            ])
            .ok()?;
            (!out.contains(&format!(" {VIP}/32 "))).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", g.logs()));
    assert_eq!(g.holders(), vec![successor]);
    assert_eq!(answering(&g.lab, vip()).unwrap(), vec![successor]);

    // The link comes back: pre-vote keeps the returning node from disturbing the leader.
    g.lab.set_link(Port::Node(holder), true).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(g.holders(), vec![successor], "{}", g.logs());

    // The leader's API server fails (the process is killed: connection refused): leadership moves to
    // a healthy node, which takes the VIP.
    let leader = successor;
    let relay = g.apis[leader - 1].take();
    let (outage, next) = g.measure(120, move || drop(relay));
    println!("control-plane VIP, leader's API server down: outage {outage:?} ms");
    assert_ne!(next, leader);
    assert_eq!(g.wait_holder(Some(leader)), next);
    assert_eq!(answering(&g.lab, vip()).unwrap(), vec![next]);
    let log = g.speakers[leader - 1].as_ref().unwrap().log_text();
    assert!(
        log.contains("handing Raft leadership to a healthy peer"),
        "{}",
        g.logs()
    );

    // SIGTERM on the holder: it removes the VIP and hands leadership over.
    let r = g.start_api(leader);
    g.apis[leader - 1] = Some(r);
    let mut s = g.speakers[next - 1].take().unwrap();
    let (outage, after) = g.measure(120, || {
        s.terminate(Duration::from_secs(10)).unwrap();
    });
    println!("control-plane VIP, holder stopped with SIGTERM: outage {outage:?} ms");
    assert!(
        s.log_text().contains("control-plane speaker stopped"),
        "{}",
        s.log_text()
    );
    assert_ne!(after, next);
    assert_eq!(g.wait_holder(Some(next)), after);
    g.speakers[next - 1] = Some(g.start_speaker(next));

    // The holder's API server hangs (SIGSTOP: connections are accepted by the
    // kernel, nothing answers): the health check times out and leadership moves.
    let hung = after;
    let (outage, next) = g.measure(120, || {
        g.apis[hung - 1].as_ref().unwrap().freeze().unwrap();
    });
    println!("control-plane VIP, leader's API server hung (SIGSTOP): outage {outage:?} ms");
    assert_ne!(next, hung);
    assert_eq!(g.wait_holder(Some(hung)), next);
    g.apis[hung - 1].as_ref().unwrap().thaw().unwrap();

    // The holder is cut off from the other nodes (the client still reaches everyone): it drops
    // the VIP when its quorum lapses, the majority elects a leader that takes it only after that
    // window. Sampled all along, never two nodes hold it; in the client's capture, every frame of
    // the old holder's MAC for the VIP comes before the first of the new holder's.
    let capture = Capture::start(&g.lab, Port::Client, "tcpdump-cp", "arp").unwrap();
    let others: Vec<Port> = (1..=3).filter(|i| *i != next).map(Port::Node).collect();
    g.lab.partition(&[Port::Node(next)], &others).unwrap();
    let start = std::time::Instant::now();
    let mut successor = None;
    while start.elapsed() < Duration::from_secs(10) {
        let h = g.holders();
        assert!(h.len() <= 1, "two holders at once: {h:?}\n{}", g.logs());
        if let [one] = h.as_slice()
            && *one != next
        {
            successor = Some(*one);
            break;
        }
    }
    let successor = successor.unwrap_or_else(|| panic!("no new holder\n{}", g.logs()));
    // Let the new holder's announcement burst finish.
    std::thread::sleep(Duration::from_millis(1200));
    let frames = capture.stop().unwrap();
    let about_vip: Vec<&String> = frames
        .iter()
        .filter(|f| f.contains(&format!("{VIP} is-at")) || f.contains(&format!("tell {VIP}")))
        .collect();
    let old_mac = Port::Node(next).mac();
    let new_mac = Port::Node(successor).mac();
    let first_new = about_vip.iter().position(|f| f.contains(&new_mac));
    let last_old = about_vip.iter().rposition(|f| f.contains(&old_mac));
    println!(
        "partition: {} ARP frames about the VIP; old holder's last at {last_old:?}, new holder's first at {first_new:?}",
        about_vip.len()
    );
    assert!(
        first_new.is_some(),
        "no announcement of the new holder: {frames:#?}"
    );
    if let (Some(o), Some(n)) = (last_old, first_new) {
        assert!(o < n, "old and new holder interleave: {about_vip:#?}");
    }
    assert_eq!(answering(&g.lab, vip()).unwrap(), vec![successor]);
    g.lab.heal().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(g.holders(), vec![successor], "{}", g.logs());
    // After every failover, the client's kubectl still reaches the cluster through the VIP.
    assert_eq!(kubectl(&["get", "--raw", "/readyz"]).unwrap().trim(), "ok");
}

#[test]
fn a_one_node_group_holds_the_vip_while_its_api_server_is_healthy() {
    let mut g = Group::start(1);
    assert_eq!(g.wait_holder(None), 1);
    assert_eq!(answering(&g.lab, vip()).unwrap(), vec![1], "{}", g.logs());
    // Its API server fails: nobody to hand over to, the VIP goes nowhere.
    g.apis[0].take();
    cmd::wait_for("VIP removed", WAIT, Duration::from_millis(50), || {
        g.holders().is_empty().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", g.logs()));
    // It comes back: the VIP too.
    let r = g.start_api(1);
    g.apis[0] = Some(r);
    assert_eq!(g.wait_holder(None), 1);
    // A restart keeps term and vote (data directory) and takes the VIP again.
    let mut s = g.speakers[0].take().unwrap();
    s.terminate(Duration::from_secs(10)).unwrap();
    assert!(g.holders().is_empty(), "VIP left behind on SIGTERM");
    g.speakers[0] = Some(g.start_speaker(1));
    assert_eq!(g.wait_holder(None), 1);
}

#[test]
fn an_ipv6_vip_is_held_answered_by_ndp_and_reached() {
    let mut g = Group::start_with(2, "2001:db8::60".parse().unwrap(), false);
    let holder = g.wait_holder(None);
    // Two nodes: the speakers warn that the group cannot survive a failure.
    let log = g.speakers[0].as_ref().unwrap().log_text();
    assert!(log.contains("a group of two cannot survive"), "{log}");
    assert_eq!(
        answering(&g.lab, g.vip).unwrap(),
        vec![holder],
        "{}",
        g.logs()
    );
    let rec = tcp_get(&g.lab, Port::Client, SocketAddr::new(g.vip, BACKEND_PORT)).unwrap();
    assert_eq!(rec.node, Some(format!("node-{holder}")), "{rec:?}");
    // The holder's API server fails: leadership and the VIP move to the other node (both nodes
    // stay up: a group of two needs both for a quorum).
    g.apis[holder - 1].take();
    let other = g.wait_holder(Some(holder));
    assert_eq!(
        answering(&g.lab, g.vip).unwrap(),
        vec![other],
        "{}",
        g.logs()
    );
}
