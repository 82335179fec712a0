//! The control-plane VIP in the lab: `ferrolb-speaker control-plane` in every node namespace, a
//! Raft group over the segment (the harness is `ferrolb_lab::control_plane_lab`). The three-node
//! story runs a real kube-apiserver on every node and reaches the cluster through `VIP:6443` with
//! the real `kubectl`; the smaller ones relay each node's 127.0.0.1:6443 to the lab's API server.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ferrolb_lab::cmd;
use ferrolb_lab::control_plane_lab::{Group, VIP, WAIT};
use ferrolb_lab::daemons::binary;
use ferrolb_lab::netns::{API_V4, BACKEND_PORT, Port};
use ferrolb_lab::observe::{Capture, tcp_get};
use ferrolb_lab::speakers::answering;

fn vip() -> IpAddr {
    VIP.parse().unwrap()
}

#[test]
fn three_nodes_one_holder_and_failover_on_link_loss_and_on_api_server_failure() {
    let mut g = Group::start(3, vip(), true).unwrap();
    let holder = g.wait_holder(None).unwrap();

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
    let (outage, successor) = g
        .measure(120, || g.lab.set_link(Port::Node(holder), false))
        .unwrap();
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
    let (outage, next) = g
        .measure(120, move || {
            drop(relay);
            Ok(())
        })
        .unwrap();
    println!("control-plane VIP, leader's API server down: outage {outage:?} ms");
    assert_ne!(next, leader);
    assert_eq!(g.wait_holder(Some(leader)).unwrap(), next);
    assert_eq!(answering(&g.lab, vip()).unwrap(), vec![next]);
    let log = g.speakers[leader - 1].as_ref().unwrap().log_text();
    assert!(
        log.contains("handing Raft leadership to a healthy peer"),
        "{}",
        g.logs()
    );

    // SIGTERM on the holder: it removes the VIP and hands leadership over.
    let r = g.start_api(leader).unwrap();
    g.apis[leader - 1] = Some(r);
    let mut s = g.speakers[next - 1].take().unwrap();
    let (outage, after) = g
        .measure(120, || s.terminate(Duration::from_secs(10)).map(drop))
        .unwrap();
    println!("control-plane VIP, holder stopped with SIGTERM: outage {outage:?} ms");
    assert!(
        s.log_text().contains("control-plane speaker stopped"),
        "{}",
        s.log_text()
    );
    assert_ne!(after, next);
    assert_eq!(g.wait_holder(Some(next)).unwrap(), after);
    g.speakers[next - 1] = Some(g.start_speaker(next).unwrap());

    // The holder's API server hangs (SIGSTOP: connections are accepted by the
    // kernel, nothing answers): the health check times out and leadership moves.
    let hung = after;
    let (outage, next) = g
        .measure(120, || g.apis[hung - 1].as_ref().unwrap().freeze())
        .unwrap();
    println!("control-plane VIP, leader's API server hung (SIGSTOP): outage {outage:?} ms");
    assert_ne!(next, hung);
    assert_eq!(g.wait_holder(Some(hung)).unwrap(), next);
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

    // A rolling restart of the three speakers, one at a time as a static-pod upgrade does it
    // (SIGTERM, start, rejoin): sampled all along, never two holders, and a holder again after
    // each step.
    for i in 1..=3 {
        let mut s = g.speakers[i - 1].take().unwrap();
        s.terminate(Duration::from_secs(10)).unwrap();
        g.speakers[i - 1] = Some(g.start_speaker(i).unwrap());
        let start = std::time::Instant::now();
        loop {
            let h = g.holders();
            assert!(h.len() <= 1, "two holders at once: {h:?}\n{}", g.logs());
            if h.len() == 1 && start.elapsed() > Duration::from_secs(2) {
                break;
            }
            assert!(
                start.elapsed() < WAIT,
                "no holder after restarting node {i}\n{}",
                g.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let holder = g.wait_holder(None).unwrap();
    assert_eq!(answering(&g.lab, vip()).unwrap(), vec![holder]);

    // Every API server down at once: no node is healthy, so the VIP goes nowhere (a client gets
    // no answer rather than a node that cannot serve); the first API server back brings it to its
    // node.
    for api in &mut g.apis {
        if let Some(mut a) = api.take() {
            a.kill().unwrap();
        }
    }
    cmd::wait_for("VIP removed", WAIT, Duration::from_millis(50), || {
        g.holders().is_empty().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", g.logs()));
    let back = if holder == 3 { 1 } else { holder + 1 };
    g.apis[back - 1] = Some(g.start_api(back).unwrap());
    assert_eq!(g.wait_holder(None).unwrap(), back, "{}", g.logs());
    assert_eq!(kubectl(&["get", "--raw", "/readyz"]).unwrap().trim(), "ok");
}

#[test]
fn a_one_node_group_holds_the_vip_while_its_api_server_is_healthy() {
    let mut g = Group::start(1, vip(), false).unwrap();
    assert_eq!(g.wait_holder(None).unwrap(), 1);
    assert_eq!(answering(&g.lab, vip()).unwrap(), vec![1], "{}", g.logs());
    // Its API server fails: nobody to hand over to, the VIP goes nowhere.
    g.apis[0].take();
    cmd::wait_for("VIP removed", WAIT, Duration::from_millis(50), || {
        g.holders().is_empty().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", g.logs()));
    // It comes back: the VIP too.
    let r = g.start_api(1).unwrap();
    g.apis[0] = Some(r);
    assert_eq!(g.wait_holder(None).unwrap(), 1);
    // A restart keeps term and vote (data directory) and takes the VIP again.
    let mut s = g.speakers[0].take().unwrap();
    s.terminate(Duration::from_secs(10)).unwrap();
    assert!(g.holders().is_empty(), "VIP left behind on SIGTERM");
    g.speakers[0] = Some(g.start_speaker(1).unwrap());
    assert_eq!(g.wait_holder(None).unwrap(), 1);
}

#[test]
fn an_ipv6_vip_is_held_answered_by_ndp_and_reached() {
    let mut g = Group::start(2, "2001:db8::60".parse().unwrap(), false).unwrap();
    let holder = g.wait_holder(None).unwrap();
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
    let other = g.wait_holder(Some(holder)).unwrap();
    assert_eq!(
        answering(&g.lab, g.vip).unwrap(),
        vec![other],
        "{}",
        g.logs()
    );
}
