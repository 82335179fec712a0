//! The fault helpers later scenarios rely on: a node's link going down, frozen processes, a
//! partition on the switch, random loss, and the probe loop that measures the outage they cause.

use std::net::SocketAddr;
use std::time::Duration;

use ferrolb_lab::cmd;
use ferrolb_lab::netns::BACKEND_PORT;
use ferrolb_lab::observe::{arping, tcp_get};
use ferrolb_lab::probe::{longest_outage_ms, parse_records};
use ferrolb_lab::{Lab, LabConfig, Port};

#[test]
fn link_down_partition_and_loss_cut_exactly_what_they_name() {
    let lab = Lab::new(LabConfig {
        nodes: 2,
        backends: true,
    })
    .unwrap();
    let (n1, n2) = (Port::Node(1), Port::Node(2));
    let answers = |p: Port| {
        !arping(&lab, Port::Client, p.v4().into(), 1)
            .unwrap()
            .is_empty()
    };
    assert!(answers(n1) && answers(n2));

    lab.set_link(n1, false).unwrap();
    assert!(!answers(n1), "node 1 answered with its link down");
    assert!(answers(n2));
    lab.set_link(n1, true).unwrap();
    // The carrier comes back asynchronously: on a loaded machine the first ARP request can go
    // out before the port forwards again.
    let answers_soon = |p: Port, what: &str| {
        cmd::wait_for(
            what,
            Duration::from_secs(5),
            Duration::from_millis(100),
            || answers(p).then_some(()),
        )
        .unwrap()
    };
    answers_soon(n1, "node 1 answering after its link came back");

    lab.partition(&[n1], &[Port::Client]).unwrap();
    assert!(!answers(n1), "partitioned node 1 answered the client");
    assert!(answers(n2));
    // Node 1 still reaches node 2: only the named pair is cut.
    assert_eq!(arping(&lab, n2, n1.v4().into(), 1).unwrap(), vec![n1.mac()]);
    lab.heal().unwrap();
    answers_soon(n1, "node 1 answering after healing");

    lab.set_loss(n2, 100).unwrap();
    assert!(!answers(n2), "node 2 answered through 100% loss");
    lab.set_loss(n2, 0).unwrap();
    assert!(answers(n2), "node 2 silent after loss was removed");

    // 50% loss in each direction: some of 20 requests get through, some do not.
    lab.set_loss(n2, 50).unwrap();
    let got = arping(&lab, Port::Client, n2.v4().into(), 20)
        .unwrap()
        .len();
    lab.set_loss(n2, 0).unwrap();
    assert!(
        got > 0 && got < 20,
        "{got}/20 answers through 50% loss each way"
    );
}

#[test]
fn frozen_node_stops_answering_tcp_until_thawed() {
    let lab = Lab::new(LabConfig {
        nodes: 1,
        backends: true,
    })
    .unwrap();
    let target = SocketAddr::new(Port::Node(1).v4().into(), BACKEND_PORT);
    assert!(tcp_get(&lab, Port::Client, target).unwrap().ok());
    lab.set_frozen(Port::Node(1), true).unwrap();
    let rec = tcp_get(&lab, Port::Client, target).unwrap();
    assert!(!rec.ok(), "a frozen backend answered: {rec:?}");
    lab.set_frozen(Port::Node(1), false).unwrap();
    assert!(tcp_get(&lab, Port::Client, target).unwrap().ok());
}

#[test]
fn probe_loop_measures_an_outage() {
    let lab = Lab::new(LabConfig {
        nodes: 1,
        backends: true,
    })
    .unwrap();
    let bin = ferrolb_lab::lab_binary().to_string_lossy().into_owned();
    let target = SocketAddr::new(Port::Node(1).v4().into(), BACKEND_PORT).to_string();
    let mut probe = lab
        .spawn(
            Port::Client,
            "probe",
            &[
                &bin,
                "probe",
                "--target",
                &target,
                "--count",
                "40",
                "--interval-ms",
                "50",
                "--timeout-ms",
                "200",
            ],
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    lab.set_link(Port::Node(1), false).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    lab.set_link(Port::Node(1), true).unwrap();
    assert!(
        probe
            .wait_timeout(Duration::from_secs(20))
            .unwrap()
            .is_some(),
        "probe loop did not end"
    );
    let records = parse_records(&probe.log_text());
    assert_eq!(records.len(), 40);
    assert!(
        records.first().unwrap().ok() && records.last().unwrap().ok(),
        "{records:?}"
    );
    let outage = longest_outage_ms(&records).expect("the link was down, some requests must fail");
    assert!(
        (400..3000).contains(&outage),
        "outage {outage} ms for a 600 ms link cut"
    );
}
