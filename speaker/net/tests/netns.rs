//! The responder on a real layer-2 segment (the lab: network namespaces on a Linux bridge),
//! observed from the client namespace with independent tools (`arping`, `ndisc6`, `ip neigh`,
//! `ip maddr`).
//!
//! A network namespace belongs to a thread, and a socket to the namespace it was opened in: each
//! test opens the responder (or the multicast membership) in a thread that entered node 1's
//! namespace with setns(2), and hands it back to the test thread, where it keeps working in that
//! namespace. Needs root, like every lab test.

// Test code: a failed set-up is a failed test. The workspace's clippy.toml allows unwrap and panic
// in tests, but clippy does not count the helpers of an integration test as test code.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ferrolb_lab::cmd::wait_for;
use ferrolb_lab::observe::{arping, flush_neigh, ndisc6, neigh};
use ferrolb_lab::{Lab, LabConfig, Port};
use ferrolb_net::{
    MulticastMembership, NetError, Responder, interface, interfaces, join_solicited_node,
};
use nix::sched::{CloneFlags, setns};

/// Owned VIPs, from the lab's VIP ranges 192.0.2.64/26 and 2001:db8::1:0/112.
const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 70);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, 0x70);
/// In the same ranges, never owned.
const OTHER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 71);
const OTHER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, 0x71);

fn lab() -> Lab {
    Lab::new(LabConfig {
        nodes: 2,
        backends: false,
    })
    .unwrap()
}

/// Runs `f` in a fresh thread inside network namespace `ns` and returns what it returns.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
    .join()
    .unwrap()
}

/// Node 1's responder on its `eth0`, opened inside its namespace, with the VIPs' solicited-node
/// groups joined (what the speaker does before answering NDP).
fn start_on_node1(lab: &Lab) -> (Responder, Vec<MulticastMembership>) {
    in_netns(&lab.netns(Port::Node(1)), || {
        let iface = interface("eth0").unwrap();
        let groups = vec![join_solicited_node(iface.index, VIP6).unwrap()];
        (Responder::start(&iface).unwrap(), groups)
    })
}

fn node_mac(i: usize) -> String {
    Port::Node(i).mac()
}

#[test]
fn answers_arp_and_ndp_for_owned_vips_only_and_only_with_its_own_mac() {
    let lab = lab();
    let (responder, _groups) = start_on_node1(&lab);
    let mac = node_mac(1);
    assert_eq!(responder.interface().mac.to_string(), mac);
    assert_eq!(responder.interface().name, "eth0");
    assert!(responder.interface().up);
    assert!(
        responder
            .interface()
            .addresses
            .iter()
            .any(|a| a.ip == IpAddr::from(Port::Node(1).v4()) && a.prefix == 24),
        "{:?}",
        responder.interface()
    );

    // Nothing owned yet: silence (the kernel does not answer for VIPs in the lab either).
    assert_eq!(
        arping(&lab, Port::Client, VIP4.into(), 2).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        ndisc6(&lab, Port::Client, VIP6.into()).unwrap(),
        Vec::<String>::new()
    );

    responder.set_owned([IpAddr::from(VIP4), IpAddr::from(VIP6)]);
    assert_eq!(
        responder.owned(),
        vec![IpAddr::from(VIP4), IpAddr::from(VIP6)]
    );

    // arping sends 2 broadcast requests: 2 replies, all from node 1 (node 2 stays silent).
    let answers = arping(&lab, Port::Client, VIP4.into(), 2).unwrap();
    assert_eq!(answers, vec![mac.clone(); 2], "ARP answers for {VIP4}");
    // One solicitation, all answers collected for a second: exactly one, from node 1.
    let answers = ndisc6(&lab, Port::Client, VIP6.into()).unwrap();
    assert_eq!(answers, vec![mac.clone()], "NDP answers for {VIP6}");

    // Addresses of the same ranges that nobody owns stay unanswered.
    assert_eq!(
        arping(&lab, Port::Client, OTHER4.into(), 2).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        ndisc6(&lab, Port::Client, OTHER6.into()).unwrap(),
        Vec::<String>::new()
    );

    let c = responder.counters();
    // Requests sent: arping 2 + ndisc6 1 for the VIPs, the same for the unowned addresses.
    let sent = 6;
    assert!(c.requests_seen >= sent, "{c:?}");
    assert_eq!(c.requests_answered, 3, "{c:?}");
    assert_eq!((c.garp_sent, c.na_sent, c.send_errors), (0, 0, 0), "{c:?}");

    // The responder survives its interface going down and up again (the socket stays bound; the
    // kernel reports ENETDOWN once and resumes delivery when the link is back).
    for state in ["down", "up"] {
        lab.exec(Port::Node(1), &["ip", "link", "set", "eth0", state])
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let answers = wait_for(
        "node 1 to answer again after its link came back",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let a = arping(&lab, Port::Client, VIP4.into(), 1).ok()?;
            (!a.is_empty()).then_some(a)
        },
    )
    .unwrap();
    assert_eq!(answers, vec![mac.clone()]);
    // One ENETDOWN, read once: no error loop while the link was down.
    let c = responder.counters();
    assert!((1..=2).contains(&c.receive_errors), "{c:?}");

    // Giving the addresses up silences the node at once.
    responder.set_owned([]);
    assert_eq!(
        arping(&lab, Port::Client, VIP4.into(), 2).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        ndisc6(&lab, Port::Client, VIP6.into()).unwrap(),
        Vec::<String>::new()
    );
    let answered = responder.counters().requests_answered;
    assert_eq!(responder.counters().requests_answered, answered);

    responder.stop().unwrap();
}

#[test]
fn announcements_move_the_clients_existing_neighbour_entries() {
    let lab = lab();
    let (responder, _groups) = start_on_node1(&lab);
    let (n1, n2) = (node_mac(1), node_mac(2));
    let vips = [IpAddr::from(VIP4), IpAddr::from(VIP6)];

    // Announcing what is not owned is refused (and sends nothing).
    match responder.announce(VIP4.into()) {
        Err(e @ NetError::NotOwned { .. }) => assert!(e.to_string().contains("192.0.2.70")),
        other => panic!("announce of an unowned VIP: {other:?}"),
    }
    responder.set_owned(vips);

    // Without an entry, the client's kernel ignores gratuitous ARP (arp_accept=0) and unsolicited
    // NA (accept_untracked_na=0): an announcement corrects caches, it does not fill them.
    flush_neigh(&lab, Port::Client).unwrap();
    for vip in vips {
        responder.announce(vip).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    for vip in vips {
        assert_eq!(neigh(&lab, Port::Client, vip).unwrap(), None, "{vip}");
    }

    // The client still believes the VIPs are at node 2 (the previous owner): stale entries.
    for vip in vips {
        lab.exec(
            Port::Client,
            &[
                "ip",
                "neigh",
                "replace",
                &vip.to_string(),
                "lladdr",
                &n2,
                "dev",
                "eth0",
                "nud",
                "stale",
            ],
        )
        .unwrap();
        assert_eq!(
            neigh(&lab, Port::Client, vip).unwrap(),
            Some((n2.clone(), "STALE".to_string()))
        );
    }
    // Node 1 announces; the client's entries now point to node 1. IPv4: Linux overrides an
    // existing entry on a gratuitous ARP even with arp_accept=0 (`arp_is_garp`); IPv6: an
    // unsolicited NA with Override=1 replaces the link-layer address (RFC 4861 §7.2.5).
    for vip in vips {
        responder.announce(vip).unwrap();
    }
    for vip in vips {
        let entry = wait_for(
            &format!("the client's entry for {vip} to move to node 1"),
            Duration::from_secs(3),
            Duration::from_millis(20),
            || {
                let e = neigh(&lab, Port::Client, vip).ok().flatten()?;
                (e.0 == n1).then_some(e)
            },
        )
        .unwrap();
        // Unsolicited announcements do not prove reachability (RFC 4861 §7.2.5): STALE.
        assert_eq!(entry.1, "STALE", "{vip}");
    }
    let c = responder.counters();
    assert_eq!((c.garp_sent, c.na_sent, c.send_errors), (4, 2, 0), "{c:?}");
    responder.stop().unwrap();
}

#[test]
fn solicited_node_membership_lasts_as_long_as_the_value() {
    let lab = lab();
    let ns = lab.netns(Port::Node(1));
    let group = "ff02::1:ff01:70";
    let listed = |lab: &Lab| {
        lab.exec(Port::Node(1), &["ip", "-6", "maddr", "show", "dev", "eth0"])
            .unwrap()
            .contains(group)
    };
    assert!(!listed(&lab), "{group} joined before the test");

    // Two addresses with the same low 24 bits share one group (RFC 4291 §2.7.1); the kernel counts
    // the members.
    let twin: Ipv6Addr = "2001:db8:1::1:70".parse().unwrap();
    let (first, second) = in_netns(&ns, move || {
        let index = interface("eth0").unwrap().index;
        (
            join_solicited_node(index, VIP6).unwrap(),
            join_solicited_node(index, twin).unwrap(),
        )
    });
    assert_eq!(first.group().to_string(), group);
    assert_eq!(second.group(), first.group());
    assert!(listed(&lab), "{group} not joined");
    drop(first);
    assert!(listed(&lab), "{group} left while a member remained");
    drop(second);
    wait_for(
        &format!("{group} to be left"),
        Duration::from_secs(2),
        Duration::from_millis(20),
        || (!listed(&lab)).then_some(()),
    )
    .unwrap();
}

#[test]
fn interface_state_and_kernel_errors_become_sentences() {
    let lab = lab();
    let ns = lab.netns(Port::Node(1));
    let (listed, up) = in_netns(&ns, || {
        let listed: Vec<String> = interfaces().into_iter().map(|i| i.name).collect();
        (listed, interface("eth0").unwrap().up)
    });
    // Only Ethernet interfaces are listed (not `lo`); eth0 is up with carrier.
    assert_eq!(listed, vec!["eth0".to_string()]);
    assert!(up);
    // Unplugged at the switch: administratively up, but no carrier, so not `up`.
    lab.set_link(Port::Node(1), false).unwrap();
    assert!(!in_netns(&ns, || interface("eth0").unwrap().up));
    lab.set_link(Port::Node(1), true).unwrap();

    let (missing, bad_index, bad_group, no_cap) = in_netns(&ns, || {
        let missing = interface("eth9").unwrap_err().to_string();
        let mut ghost = interface("eth0").unwrap();
        ghost.name = "ghost0".into();
        ghost.index = 999_999;
        let bad_index = Responder::start(&ghost).unwrap_err().to_string();
        let bad_group = join_solicited_node(999_999, VIP6).unwrap_err().to_string();
        let eth0 = interface("eth0").unwrap();
        // Become an unprivileged user in this thread only (the raw syscall changes the calling
        // thread's credentials; glibc's setresuid would change every thread's), dropping
        // CAP_NET_RAW with it.
        // SAFETY: setresuid takes three integers and touches no memory of ours; the thread ends
        // right after, so no other code runs with the changed credentials.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(rc, 0, "setresuid: {}", std::io::Error::last_os_error());
        let no_cap = Responder::start(&eth0).unwrap_err().to_string();
        let check = ferrolb_net::check_raw_sockets().unwrap_err().to_string();
        assert!(
            check.starts_with("opening a raw socket on any interface needs CAP_NET_RAW"),
            "{check}"
        );
        (missing, bad_index, bad_group, no_cap)
    });
    assert!(
        missing.contains("no network interface named \"eth9\" (this namespace has: eth0, lo)"),
        "{missing}"
    );
    assert!(
        bad_index.contains("opening a raw socket on ghost0 failed: the interface does not exist"),
        "{bad_index}"
    );
    assert!(
        bad_group.contains("no interface with index 999999 in this network namespace"),
        "{bad_group}"
    );
    assert!(
        no_cap.starts_with("opening a raw socket on eth0 needs CAP_NET_RAW"),
        "{no_cap}"
    );
}

/// On a switch that snoops MLD (RFC 4541) with an active querier, a solicitation for a VIP reaches
/// only the ports whose hosts reported its solicited-node group. The kernel does not report a
/// VIP's group (the VIP is not configured on the interface), so without `join_solicited_node`
/// the responder never hears the solicitation; with it, the kernel sends the MLD report and the
/// switch forwards the solicitations. The lab's bridge snoops but has no querier by default, and
/// without a querier it floods all multicast: that is why the other tests pass either way.
#[test]
fn the_solicited_node_join_is_what_makes_a_snooping_switch_deliver_solicitations() {
    let lab = lab();
    let sw = lab.switch_ns();
    let responder = in_netns(&lab.netns(Port::Node(1)), || {
        Responder::start(&interface("eth0").unwrap()).unwrap()
    });
    responder.set_owned([IpAddr::from(VIP6)]);
    let answers = || ndisc6(&lab, Port::Client, VIP6.into()).unwrap();
    assert_eq!(answers(), vec![node_mac(1)], "flooded without a querier");

    // Become an MLD querier, with 1 s response and last-listener intervals (the defaults are 10 s
    // and 1 s); set apart from the querier switch so the querier starts with these values.
    let bridge = |args: &[&str]| {
        let mut argv = vec![
            "ip",
            "-n",
            sw.as_str(),
            "link",
            "set",
            "br0",
            "type",
            "bridge",
        ];
        argv.extend_from_slice(args);
        ferrolb_lab::cmd::run(&argv).unwrap();
    };
    bridge(&[
        "mcast_query_response_interval",
        "100",
        "mcast_startup_query_interval",
        "100",
    ]);
    bridge(&["mcast_querier", "1"]);
    wait_for(
        "the querier to take over (solicitations no longer flooded to node 1)",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || answers().is_empty().then_some(()),
    )
    .unwrap();

    let membership = in_netns(&lab.netns(Port::Node(1)), || {
        join_solicited_node(interface("eth0").unwrap().index, VIP6).unwrap()
    });
    // The kernel sends the report within a jiffy of the join; the switch learns the port from it.
    wait_for(
        "the switch to learn node 1's MLD report",
        Duration::from_secs(3),
        Duration::from_millis(20),
        || {
            let mdb = ferrolb_lab::cmd::run(&["ip", "netns", "exec", &sw, "bridge", "mdb", "show"])
                .ok()?;
            mdb.lines()
                .any(|l| l.contains("port n1 grp ff02::1:ff01:70"))
                .then_some(())
        },
    )
    .unwrap();
    assert_eq!(answers(), vec![node_mac(1)], "answered once joined");

    // Leaving (MLD Done, then the querier's last-listener queries) stops the delivery again.
    drop(membership);
    wait_for(
        "the switch to stop delivering after the leave",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || answers().is_empty().then_some(()),
    )
    .unwrap();
    responder.stop().unwrap();
}
