//! The layer-2 segment: every node answers for its own addresses only, its backend answers over
//! TCP, VIPs stay silent until someone announces them, and nothing is left behind.

use std::net::{IpAddr, SocketAddr};

use ferrolb_lab::netns::{BACKEND_PORT, lab_namespaces};
use ferrolb_lab::observe::{Capture, arping, ndisc6, tcp_get};
use ferrolb_lab::{Lab, LabConfig, Port};

#[test]
fn three_nodes_answer_arp_ndp_and_tcp_for_themselves_only() {
    let lab = Lab::new(LabConfig {
        nodes: 3,
        backends: true,
    })
    .unwrap();
    let prefix = lab.prefix().to_string();
    // tcpdump on node 3 sees the broadcast requests for node 1 but node 3 never replies.
    let capture = Capture::start(&lab, Port::Node(3), "tcpdump-n3", "arp").unwrap();
    for i in 1..=3 {
        let node = Port::Node(i);
        let macs = arping(&lab, Port::Client, node.v4().into(), 2).unwrap();
        assert!(!macs.is_empty(), "node {i} did not answer arping");
        assert!(
            macs.iter().all(|m| *m == node.mac()),
            "node {i}: answers {macs:?}, want {}",
            node.mac()
        );

        let macs = ndisc6(&lab, Port::Client, node.v6().into()).unwrap();
        assert_eq!(macs, vec![node.mac()], "node {i} NDP answers");

        for addr in [IpAddr::from(node.v4()), IpAddr::from(node.v6())] {
            let rec = tcp_get(&lab, Port::Client, SocketAddr::new(addr, BACKEND_PORT)).unwrap();
            assert_eq!(
                rec.node.as_deref(),
                Some(format!("node-{i}").as_str()),
                "{addr}: {rec:?}"
            );
        }
    }
    let frames = capture.stop().unwrap();
    let requests = frames
        .iter()
        .filter(|f| f.contains("Request who-has 192.0.2.11"))
        .count();
    assert!(
        requests >= 2,
        "node 3 saw {requests} broadcast requests for node 1: {frames:#?}"
    );
    let own = Port::Node(3).mac();
    let replies_from_n3: Vec<_> = frames
        .iter()
        .filter(|f| {
            f.starts_with(|c: char| c.is_ascii_digit())
                && f.contains(&format!(" {own} >"))
                && f.contains("Reply")
        })
        .filter(|f| !f.contains("192.0.2.13 is-at"))
        .collect();
    assert!(
        replies_from_n3.is_empty(),
        "node 3 answered for others: {replies_from_n3:#?}"
    );
    drop(lab);
    let left: Vec<_> = lab_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn vips_are_silent_until_announced_then_reach_the_backend() {
    let lab = Lab::new(LabConfig {
        nodes: 2,
        backends: true,
    })
    .unwrap();
    let vip4: IpAddr = "192.0.2.70".parse().unwrap();
    let vip6: IpAddr = "2001:db8::1:70".parse().unwrap();

    // kube-proxy emulation with strict ARP: no node's kernel answers ARP or NDP for a VIP.
    assert!(arping(&lab, Port::Client, vip4, 2).unwrap().is_empty());
    assert!(ndisc6(&lab, Port::Client, vip6).unwrap().is_empty());
    assert!(
        tcp_get(&lab, Port::Client, SocketAddr::new(vip4, BACKEND_PORT))
            .unwrap()
            .error
            .is_some()
    );

    // Once the client learns node 2's MAC for the VIPs (what a speaker's announcement does), the
    // traffic reaches node 2's backend through its kube-proxy emulation.
    let mac = Port::Node(2).mac();
    for vip in [vip4, vip6] {
        lab.exec(
            Port::Client,
            &[
                "ip",
                "neigh",
                "replace",
                &vip.to_string(),
                "lladdr",
                &mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ],
        )
        .unwrap();
        let rec = tcp_get(&lab, Port::Client, SocketAddr::new(vip, BACKEND_PORT)).unwrap();
        assert_eq!(rec.node.as_deref(), Some("node-2"), "{vip}: {rec:?}");
    }
}
