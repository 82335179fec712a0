//! The speaker in the lab: real kube-apiserver, the controller, one speaker process per node; the
//! client namespace checks with arping, ndisc6, tcpdump and TCP who answers for each address.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ferrolb_lab::daemons::{apply, service_yaml, wait_ingress};
use ferrolb_lab::netns::BACKEND_PORT;
use ferrolb_lab::observe::{Capture, arping, flush_neigh, ndisc6, tcp_get};
use ferrolb_lab::probe::{longest_outage_ms, parse_records};
use ferrolb_lab::speakers::{Cluster, index_of, ip, node_of_mac};
use ferrolb_lab::{LabChild, Port};

const WAIT: Duration = Duration::from_secs(30);

/// Starts the client's probe loop against `target`: `count` requests every 50 ms, 200 ms timeout.
fn probe(c: &Cluster, target: SocketAddr, count: u32) -> LabChild {
    let bin = ferrolb_lab::lab_binary().to_string_lossy().into_owned();
    let target = target.to_string();
    let count = count.to_string();
    c.lab
        .spawn(
            Port::Client,
            "probe",
            &[
                &bin,
                "probe",
                "--target",
                &target,
                "--count",
                &count,
                "--interval-ms",
                "50",
                "--timeout-ms",
                "200",
            ],
        )
        .unwrap()
}

/// MACs answering ARP (IPv4) or NDP (IPv6) for `addr`, as lab node numbers.
fn answering(c: &Cluster, addr: IpAddr) -> Vec<usize> {
    let macs = match addr {
        IpAddr::V4(_) => arping(&c.lab, Port::Client, addr, 2).unwrap(),
        IpAddr::V6(_) => ndisc6(&c.lab, Port::Client, addr).unwrap(),
    };
    let mut nodes: Vec<usize> = macs
        .iter()
        .map(|m| node_of_mac(&c.lab, m).unwrap_or_else(|| panic!("{addr} answered by unknown MAC {m}")))
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

#[test]
fn one_node_answers_and_another_takes_over_when_it_dies() {
    let c = Cluster::start(3, &[]).unwrap();
    apply(&c.env, &c.lab, &service_yaml("web", &[], "", BACKEND_PORT)).unwrap();
    let vip = ip(&wait_ingress(&c.env, "default", "web", 1, WAIT).unwrap()[0]);
    let owner = index_of(&c.announcer("web", WAIT).unwrap_or_else(|e| panic!("{e}\n{}", c.logs())));

    // Exactly the owner answers; tcpdump on the client sees no ARP reply from another MAC.
    let capture = Capture::start(&c.lab, Port::Client, "tcpdump-client", "arp").unwrap();
    assert_eq!(answering(&c, vip), vec![owner], "{}", c.logs());
    let frames = capture.stop().unwrap();
    let replies: Vec<&String> = frames
        .iter()
        .filter(|f| f.contains("Reply") && f.contains(&format!("{vip} is-at")))
        .collect();
    assert!(!replies.is_empty(), "{frames:#?}");
    for r in &replies {
        assert!(r.contains(&Port::Node(owner).mac()), "reply from another node: {r}");
    }
    let rec = tcp_get(&c.lab, Port::Client, SocketAddr::new(vip, BACKEND_PORT)).unwrap();
    assert_eq!(rec.node, Some(format!("node-{owner}")), "{rec:?}");
    assert!(
        ferrolb_lab::daemons::events_for(&c.env, "default", "web")
            .unwrap()
            .iter()
            .any(|e| e.starts_with("Announcing:") && e.contains(&format!("node-{owner}"))),
        "no Announcing event"
    );

    // The owner's link goes down: the probe loop measures the outage.
    let mut p = probe(&c, SocketAddr::new(vip, BACKEND_PORT), 80);
    std::thread::sleep(Duration::from_millis(1000));
    c.lab.set_link(Port::Node(owner), false).unwrap();
    assert!(p.wait_timeout(Duration::from_secs(30)).unwrap().is_some());
    let records = parse_records(&p.log_text());
    let outage = longest_outage_ms(&records);
    println!("node death (link down): outage {outage:?} ms");
    let last = records.last().unwrap();
    assert!(last.ok(), "no recovery: {records:?}\n{}", c.logs());
    let successor = index_of(last.node.as_deref().unwrap());
    assert_ne!(successor, owner);
    assert_eq!(answering(&c, vip), vec![successor]);
    let named = c
        .wait_announcer("web", Some(&format!("node-{owner}")), WAIT)
        .unwrap();
    assert_eq!(index_of(&named), successor);
}

#[test]
fn dual_stack_service_keeps_both_families_on_one_node() {
    let c = Cluster::start(3, &[]).unwrap();
    let spec = "  ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv4, IPv6]\n";
    apply(&c.env, &c.lab, &service_yaml("dual", &[], spec, BACKEND_PORT)).unwrap();
    let ips = wait_ingress(&c.env, "default", "dual", 2, WAIT).unwrap();
    let owner = index_of(&c.announcer("dual", WAIT).unwrap_or_else(|e| panic!("{e}\n{}", c.logs())));
    flush_neigh(&c.lab, Port::Client).unwrap();
    for a in &ips {
        let addr = ip(a);
        assert_eq!(answering(&c, addr), vec![owner], "{addr}\n{}", c.logs());
        let rec = tcp_get(&c.lab, Port::Client, SocketAddr::new(addr, BACKEND_PORT)).unwrap();
        assert_eq!(rec.node, Some(format!("node-{owner}")), "{addr}: {rec:?}");
    }
}
