//! The speaker in the lab: real kube-apiserver, the controller, one speaker process per node; the
//! client namespace checks with arping, ndisc6, tcpdump and TCP who answers for each address.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ferrolb_lab::daemons::{apply, service_yaml, wait_ingress};
use ferrolb_lab::netns::BACKEND_PORT;
use ferrolb_lab::observe::{Capture, flush_neigh, tcp_get};
use ferrolb_lab::probe::{longest_outage_ms, parse_records};
use ferrolb_lab::speakers::{Cluster, index_of, ip, start_probe};
use ferrolb_lab::{LabChild, Port};

const WAIT: Duration = Duration::from_secs(30);

/// Starts the client's probe loop against `target`: `count` requests every 50 ms, 200 ms timeout.
fn probe(c: &Cluster, target: SocketAddr, count: u32) -> LabChild {
    start_probe(&c.lab, target, count, 50, 200).unwrap()
}

/// Lab nodes answering ARP or NDP for `addr`.
fn answering(c: &Cluster, addr: IpAddr) -> Vec<usize> {
    ferrolb_lab::speakers::answering(&c.lab, addr).unwrap()
}

#[test]
fn one_node_answers_and_another_takes_over_when_it_dies() {
    let mut c = Cluster::start(3, &[]).unwrap();
    apply(&c.env, &c.lab, &service_yaml("web", &[], "", BACKEND_PORT)).unwrap();
    let vip = ip(&wait_ingress(&c.env, "default", "web", 1, WAIT).unwrap()[0]);
    let owner = index_of(
        &c.announcer("web", WAIT)
            .unwrap_or_else(|e| panic!("{e}\n{}", c.logs())),
    );

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
        assert!(
            r.contains(&Port::Node(owner).mac()),
            "reply from another node: {r}"
        );
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

    // The owner's speaker is SIGKILLed, its node stays up: another node takes over.
    let target = SocketAddr::new(vip, BACKEND_PORT);
    let mut p = probe(&c, target, 60);
    std::thread::sleep(Duration::from_millis(1000));
    c.kill_speaker(owner).unwrap();
    assert!(p.wait_timeout(Duration::from_secs(30)).unwrap().is_some());
    let records = parse_records(&p.log_text());
    println!(
        "speaker kill -9: outage {:?} ms",
        longest_outage_ms(&records)
    );
    let named = c
        .wait_announcer("web", Some(&format!("node-{owner}")), WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert_eq!(answering(&c, vip), vec![index_of(&named)], "{}", c.logs());
    c.restart_speaker(owner, &[]).unwrap();
    for i in 1..=3 {
        c.wait_members(i, 3).unwrap();
    }

    // Rolling restart of every speaker with SIGTERM, one at a time: not one request fails.
    let mut p = probe(&c, target, 400);
    for i in 1..=3 {
        c.stop_speaker(i).unwrap();
        c.restart_speaker(i, &[]).unwrap();
        for j in 1..=3 {
            c.wait_members(j, 3).unwrap();
        }
    }
    assert!(p.wait_timeout(Duration::from_secs(60)).unwrap().is_some());
    let records = parse_records(&p.log_text());
    let failed: Vec<_> = records.iter().filter(|r| !r.ok()).collect();
    println!(
        "rolling restart: {} requests, {} failed",
        records.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "rolling restart lost requests: {failed:?}\n{}",
        c.logs()
    );
    let owner = index_of(&c.announcer("web", WAIT).unwrap());
    assert_eq!(answering(&c, vip), vec![owner], "{}", c.logs());

    // The owner's link goes down: the probe loop measures the outage.
    let mut p = probe(&c, target, 80);
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
    apply(
        &c.env,
        &c.lab,
        &service_yaml("dual", &[], spec, BACKEND_PORT),
    )
    .unwrap();
    let ips = wait_ingress(&c.env, "default", "dual", 2, WAIT).unwrap();
    let owner = index_of(
        &c.announcer("dual", WAIT)
            .unwrap_or_else(|e| panic!("{e}\n{}", c.logs())),
    );
    flush_neigh(&c.lab, Port::Client).unwrap();
    for a in &ips {
        let addr = ip(a);
        assert_eq!(answering(&c, addr), vec![owner], "{addr}\n{}", c.logs());
        let rec = tcp_get(&c.lab, Port::Client, SocketAddr::new(addr, BACKEND_PORT)).unwrap();
        assert_eq!(rec.node, Some(format!("node-{owner}")), "{addr}: {rec:?}");
    }
}

#[test]
fn sharing_services_have_one_owner() {
    let c = Cluster::start(3, &[]).unwrap();
    let ann = [
        ("ferrolb.io/allow-shared-ip", "k"),
        ("ferrolb.io/loadBalancerIPs", "192.0.2.100"),
    ];
    apply(
        &c.env,
        &c.lab,
        &service_yaml("share-a", &ann, "", BACKEND_PORT),
    )
    .unwrap();
    apply(&c.env, &c.lab, &service_yaml("share-b", &ann, "", 8080)).unwrap();
    for s in ["share-a", "share-b"] {
        assert_eq!(
            wait_ingress(&c.env, "default", s, 1, WAIT).unwrap(),
            vec!["192.0.2.100".to_string()]
        );
    }
    let a = c.announcer("share-a", WAIT).unwrap();
    let b = c.announcer("share-b", WAIT).unwrap();
    assert_eq!(a, b, "sharing Services announced by two nodes");
    assert_eq!(answering(&c, ip("192.0.2.100")), vec![index_of(&a)]);
}

/// Applies an EndpointSlice for Service `svc` with one ready endpoint per node in `nodes`, as the
/// endpoint-slice controller would.
fn endpoints(c: &Cluster, svc: &str, nodes: &[usize]) {
    let mut eps = String::new();
    for n in nodes {
        eps.push_str(&format!(
            "- addresses: [\"192.0.2.{}\"]\n  nodeName: node-{n}\n  conditions: {{ready: true, serving: true}}\n",
            200 + n
        ));
    }
    if nodes.is_empty() {
        eps.push_str("[]\n");
    }
    let yaml = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {svc}-lab\n  namespace: default\n  labels: {{kubernetes.io/service-name: {svc}}}\naddressType: IPv4\nports: [{{name: p, port: 80, protocol: TCP}}]\nendpoints:\n{eps}---\n"
    );
    apply(&c.env, &c.lab, &yaml).unwrap();
}

#[test]
fn local_traffic_policy_follows_the_endpoints() {
    let c = Cluster::start(3, &[]).unwrap();
    let spec = "  externalTrafficPolicy: Local\n";
    apply(
        &c.env,
        &c.lab,
        &service_yaml("local", &[], spec, BACKEND_PORT),
    )
    .unwrap();
    let vip = ip(&wait_ingress(&c.env, "default", "local", 1, WAIT).unwrap()[0]);
    // No endpoints anywhere: nobody answers, and the condition says why.
    ferrolb_lab::cmd::wait_for(
        "the NoEndpoints condition",
        WAIT,
        Duration::from_millis(200),
        || (c.condition_reason("local").ok()? == "NoEndpoints").then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert!(answering(&c, vip).is_empty());
    for n in [2, 3, 1] {
        endpoints(&c, "local", &[n]);
        ferrolb_lab::cmd::wait_for(
            &format!("node-{n} to announce"),
            WAIT,
            Duration::from_millis(200),
            || {
                (c.announcer("local", Duration::from_millis(1)).ok()? == format!("node-{n}"))
                    .then_some(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
        assert_eq!(answering(&c, vip), vec![n], "{}", c.logs());
        let rec = tcp_get(&c.lab, Port::Client, SocketAddr::new(vip, BACKEND_PORT)).unwrap();
        assert_eq!(rec.node, Some(format!("node-{n}")));
    }
}

#[test]
fn partition_fences_the_minority_and_heals_to_one_owner() {
    let c = Cluster::start(3, &[]).unwrap();
    apply(&c.env, &c.lab, &service_yaml("web", &[], "", BACKEND_PORT)).unwrap();
    let vip = ip(&wait_ingress(&c.env, "default", "web", 1, WAIT).unwrap()[0]);
    let owner = index_of(&c.announcer("web", WAIT).unwrap());
    let others: Vec<Port> = (1..=3).filter(|i| *i != owner).map(Port::Node).collect();
    // The owner and the client on one side, the two other nodes and the API server on the other.
    let mut majority = others.clone();
    majority.push(Port::Api);
    c.lab
        .partition(&[Port::Node(owner), Port::Client], &majority)
        .unwrap();
    // The owner loses quorum and stops answering: the client, on its side, gets no answer.
    ferrolb_lab::cmd::wait_for(
        "the minority owner to stop answering",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || (c.metric(owner, "ferrolb_speaker_quorum").ok()? == 0.0).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert!(answering(&c, vip).is_empty(), "{}", c.logs());
    // The majority elected one of its own.
    let majority_owners: Vec<usize> = others
        .iter()
        .map(|p| match p {
            Port::Node(i) => *i,
            _ => 0,
        })
        .filter(|i| {
            c.metrics(*i)
                .map(|m| m.contains(&format!("ip=\"{vip}\"")))
                .unwrap_or(false)
        })
        .collect();
    assert_eq!(majority_owners.len(), 1, "{}", c.logs());

    // Heal: the hash winner (the old owner) takes the address back; one node answers and the
    // client's neighbour entry converges to it.
    c.lab.heal().unwrap();
    for i in 1..=3 {
        c.wait_members(i, 3).unwrap();
    }
    ferrolb_lab::cmd::wait_for(
        "one owner after healing",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || (answering(&c, vip) == vec![owner]).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let rec = tcp_get(&c.lab, Port::Client, SocketAddr::new(vip, BACKEND_PORT)).unwrap();
    assert_eq!(rec.node, Some(format!("node-{owner}")));
    let entry = ferrolb_lab::observe::neigh(&c.lab, Port::Client, vip).unwrap();
    assert_eq!(entry.map(|e| e.0), Some(Port::Node(owner).mac()));
}

#[test]
fn api_server_outage_keeps_announcing_and_still_fails_over() {
    let mut c = Cluster::start(3, &[]).unwrap();
    apply(&c.env, &c.lab, &service_yaml("web", &[], "", BACKEND_PORT)).unwrap();
    let vip = ip(&wait_ingress(&c.env, "default", "web", 1, WAIT).unwrap()[0]);
    let owner = index_of(&c.announcer("web", WAIT).unwrap());
    c.env.stop().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(answering(&c, vip), vec![owner], "{}", c.logs());
    // A node dies while the API server is down: gossip moves the address on the last known state.
    c.lab.set_link(Port::Node(owner), false).unwrap();
    let successor = ferrolb_lab::cmd::wait_for(
        "another node to answer during the outage",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let a = answering(&c, vip);
            (a.len() == 1 && a[0] != owner).then(|| a[0])
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let rec = tcp_get(&c.lab, Port::Client, SocketAddr::new(vip, BACKEND_PORT)).unwrap();
    assert_eq!(rec.node, Some(format!("node-{successor}")));
    // The API server comes back: the condition catches up.
    c.env.restart(&c.lab).unwrap();
    let named = c
        .wait_announcer("web", Some(&format!("node-{owner}")), WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert_eq!(index_of(&named), successor);
}

#[test]
fn bad_input_is_reported_and_changes_nothing() {
    let mut c = Cluster::start(3, &[]).unwrap();
    apply(&c.env, &c.lab, &service_yaml("web", &[], "", BACKEND_PORT)).unwrap();
    let vip = ip(&wait_ingress(&c.env, "default", "web", 1, WAIT).unwrap()[0]);
    let owner = index_of(&c.announcer("web", WAIT).unwrap());

    // An interface name the kernel would refuse is rejected by kubectl (the CRD schema).
    let file = c.lab.dir().join("bad-name.yaml");
    std::fs::write(
        &file,
        "apiVersion: ferrolb.io/v1alpha1\nkind: L2Advertisement\nmetadata: {name: bad-name}\nspec: {interfaces: [\"a/b\"]}\n",
    )
    .unwrap();
    let err = c
        .env
        .kubectl(&["apply", "-f", &file.to_string_lossy()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec.interfaces"), "{err}");

    // An advertisement naming an interface that does not exist: a condition per node, an Event, a
    // summary column; the address stays where it is.
    apply(
        &c.env,
        &c.lab,
        "apiVersion: ferrolb.io/v1alpha1\nkind: L2Advertisement\nmetadata: {name: eth9}\nspec: {interfaces: [eth9]}\n---\n",
    )
    .unwrap();
    let problems = c
        .wait_kubectl(
            "the missing interface in the advertisement's status",
            &[
                "get",
                "l2advertisement",
                "eth9",
                "-o",
                "jsonpath={.status.problems}",
            ],
            WAIT,
            |p| (p.contains("eth9") && p.contains("node-1") && p.contains("node-3")).then_some(p),
        )
        .unwrap();
    assert!(
        problems.starts_with("spec.interfaces: eth9 missing on"),
        "{problems}"
    );
    let reasons = c
        .env
        .kubectl(&[
            "get",
            "l2advertisement",
            "eth9",
            "-o",
            r#"jsonpath={.status.nodes[*].conditions[?(@.type=="InterfacesReady")].reason}"#,
        ])
        .unwrap();
    assert_eq!(reasons.split_whitespace().count(), 3, "{reasons}");
    assert!(reasons.split_whitespace().all(|r| r == "InterfaceMissing"));
    // Events about cluster-scoped objects land in the default namespace.
    ferrolb_lab::daemons::wait_event(
        &c.env,
        "default",
        "eth9",
        "eth9 does not exist on node",
        WAIT,
    )
    .unwrap();
    let table = c.env.kubectl(&["get", "l2advertisements"]).unwrap();
    assert!(table.contains("eth9 missing"), "{table}");

    // A malformed selector: the advertisement is ignored, its Valid condition and an Event name the
    // field.
    apply(
        &c.env,
        &c.lab,
        "apiVersion: ferrolb.io/v1alpha1\nkind: L2Advertisement\nmetadata: {name: bad-selector}\nspec:\n  nodeSelectors:\n  - matchExpressions: [{key: zone, operator: Near}]\n---\n",
    )
    .unwrap();
    let msg = c
        .wait_kubectl(
            "Valid=False on bad-selector",
            &[
                "get",
                "l2advertisement",
                "bad-selector",
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="Valid")].status} {.status.conditions[?(@.type=="Valid")].message}"#,
            ],
            WAIT,
            |m| m.starts_with("False").then_some(m),
        )
        .unwrap();
    assert!(
        msg.contains("spec.nodeSelectors[0]") && msg.contains("Near"),
        "{msg}"
    );

    // An advertisement naming a pool that does not exist, with a label key of bad syntax: it
    // still applies (as before), and its problems column names both fields.
    apply(
        &c.env,
        &c.lab,
        "apiVersion: ferrolb.io/v1alpha1\nkind: L2Advertisement\nmetadata: {name: no-such-pool}\nspec:\n  ipAddressPools: [nope]\n  serviceSelectors:\n  - matchLabels: {\"app name\": web}\n---\n",
    )
    .unwrap();
    let problems = c
        .wait_kubectl(
            "the unknown pool in the advertisement's problems",
            &[
                "get",
                "l2advertisement",
                "no-such-pool",
                "-o",
                "jsonpath={.status.problems}",
            ],
            WAIT,
            |p| p.contains("nope").then_some(p),
        )
        .unwrap();
    assert!(
        problems.starts_with(
            "spec.ipAddressPools[0]: pool \"nope\" does not exist; spec.serviceSelectors[0]: matchLabels: label key \"app name\" is invalid"
        ),
        "{problems}"
    );
    assert_eq!(c.announcer("web", WAIT).unwrap(), format!("node-{owner}"));
    assert_eq!(answering(&c, vip), vec![owner]);

    // A speaker with the wrong gossip key cannot join, says so, and answers for nothing.
    let key = c.lab.dir().join("wrong.key");
    std::fs::write(&key, "ab".repeat(32)).unwrap();
    let key = key.to_string_lossy().into_owned();
    c.kill_speaker(owner).unwrap();
    c.restart_speaker(owner, &["--gossip-key-file", &key])
        .unwrap();
    let successor = index_of(
        &c.wait_announcer("web", Some(&format!("node-{owner}")), WAIT)
            .unwrap_or_else(|e| panic!("{e}\n{}", c.logs())),
    );
    ferrolb_lab::cmd::wait_for(
        "the wrong-key speaker to say why it cannot join",
        WAIT,
        Duration::from_millis(200),
        || {
            c.speakers[owner - 1]
                .as_ref()?
                .log_text()
                .contains("another gossip key")
                .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.metric(owner, "ferrolb_speaker_members").unwrap(), 1.0);
    for i in (1..=3).filter(|i| *i != owner) {
        assert_eq!(c.metric(i, "ferrolb_speaker_members").unwrap(), 2.0);
    }
    assert_eq!(answering(&c, vip), vec![successor], "{}", c.logs());
}

#[test]
fn sticky_mode_keeps_the_address_when_the_old_owner_returns() {
    let c = Cluster::start(3, &["--sticky"]).unwrap();
    apply(&c.env, &c.lab, &service_yaml("web", &[], "", BACKEND_PORT)).unwrap();
    let vip = ip(&wait_ingress(&c.env, "default", "web", 1, WAIT).unwrap()[0]);
    let owner = index_of(&c.announcer("web", WAIT).unwrap());
    c.lab.set_link(Port::Node(owner), false).unwrap();
    let successor = index_of(
        &c.wait_announcer("web", Some(&format!("node-{owner}")), WAIT)
            .unwrap_or_else(|e| panic!("{e}\n{}", c.logs())),
    );
    c.lab.set_link(Port::Node(owner), true).unwrap();
    for i in 1..=3 {
        c.wait_members(i, 3).unwrap();
    }
    // The returning node hashes higher, but the address stays where it is.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(answering(&c, vip), vec![successor], "{}", c.logs());
    assert_eq!(
        c.announcer("web", WAIT).unwrap(),
        format!("node-{successor}")
    );
    let rec = tcp_get(&c.lab, Port::Client, SocketAddr::new(vip, BACKEND_PORT)).unwrap();
    assert_eq!(rec.node, Some(format!("node-{successor}")));
}

/// A frozen owner (its speaker SIGSTOPped, as a paused VM or a long stall) is replaced; when thawed
/// it notices the clock jump and answers nothing stale: neither the ARP requests queued in its
/// socket during the freeze nor a gratuitous ARP, until it has rejoined and settled and gets the
/// address back make-before-break. (Before: it sent a gratuitous ARP 1.5 ms after the thaw and
/// answered the requests queued during a 4 s freeze.)
#[test]
fn a_thawed_owner_answers_nothing_stale() {
    let c = Cluster::start(3, &[]).unwrap();
    apply(&c.env, &c.lab, &service_yaml("web", &[], "", BACKEND_PORT)).unwrap();
    let vip = ip(&wait_ingress(&c.env, "default", "web", 1, WAIT).unwrap()[0]);
    let owner = index_of(&c.announcer("web", WAIT).unwrap());
    let speaker = c.speakers[owner - 1].as_ref().unwrap();
    speaker.freeze().unwrap();
    let frozen_at = std::time::Instant::now();
    let successor = index_of(
        &c.wait_announcer("web", Some(&format!("node-{owner}")), WAIT)
            .unwrap_or_else(|e| panic!("{e}\n{}", c.logs())),
    );
    let capture = Capture::start(&c.lab, Port::Client, "tcpdump-client", "arp").unwrap();
    // Requests during the freeze: the successor answers, the frozen responder queues them.
    assert_eq!(answering(&c, vip), vec![successor], "{}", c.logs());
    std::thread::sleep(Duration::from_secs(4).saturating_sub(frozen_at.elapsed()));
    speaker.thaw().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let frames = capture.stop().unwrap();
    let mac = Port::Node(owner).mac();
    let stale: Vec<&String> = frames
        .iter()
        .filter(|f| f.contains(&format!("{mac} >")) && f.contains(&vip.to_string()))
        .collect();
    assert!(
        stale.is_empty(),
        "stale frames after the thaw: {stale:#?}\n{}",
        c.logs()
    );
    // Then it rejoins, settles and takes the address back; one node answers.
    ferrolb_lab::cmd::wait_for(
        "the thawed owner to take the address back",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || (answering(&c, vip) == vec![owner]).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
}
