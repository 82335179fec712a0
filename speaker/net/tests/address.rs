//! The floating address (the control-plane VIP) added and removed with netlink inside a lab node's
//! namespace, checked with `ip addr`: /32 and /128, IPv6 `nodad` and deprecated (never a source
//! address), an add of a present address and a removal of an absent one are not errors. Needs root.

// Test code: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::fs::File;
use std::net::IpAddr;

use ferrolb_lab::{Lab, LabConfig, Port};
use ferrolb_net::{Added, Addresses, interface};
use nix::sched::{CloneFlags, setns};

#[test]
fn the_vip_is_added_as_a_host_address_never_preferred_and_removed() {
    let lab = Lab::new(LabConfig {
        nodes: 1,
        backends: false,
    })
    .unwrap();
    let ns = lab.netns(Port::Node(1));
    let path = format!("/run/netns/{ns}");
    let v4: IpAddr = "192.0.2.60".parse().unwrap();
    let v6: IpAddr = "2001:db8::60".parse().unwrap();
    let show = |lab: &Lab| {
        lab.exec(Port::Node(1), &["ip", "-o", "addr", "show", "dev", "eth0"])
            .unwrap()
    };
    let (tx, rx) = std::sync::mpsc::channel::<&'static str>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        let file = File::open(&path).unwrap();
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (addrs, conn) = Addresses::connect().unwrap();
            tokio::spawn(conn);
            let index = interface("eth0").unwrap().index;
            assert_eq!(addrs.add(index, v4).await.unwrap(), Added::New);
            assert_eq!(addrs.add(index, v6).await.unwrap(), Added::New);
            assert_eq!(addrs.add(index, v4).await.unwrap(), Added::AlreadyThere);
            assert!(addrs.has(index, v4).await.unwrap());
            assert!(addrs.has(index, v6).await.unwrap());
            tx.send("added").unwrap();
            done_rx.recv().unwrap();
            assert!(addrs.remove(index, v4).await.unwrap());
            assert!(addrs.remove(index, v6).await.unwrap());
            assert!(!addrs.remove(index, v4).await.unwrap());
            assert!(!addrs.has(index, v4).await.unwrap());
            // An interface that does not exist: a sentence, not a panic.
            let e = addrs.add(9999, v4).await.unwrap_err().to_string();
            assert!(e.contains("does not exist"), "{e}");
        });
    });
    assert_eq!(rx.recv().unwrap(), "added");
    let out = show(&lab);
    let line4 = out
        .lines()
        .find(|l| l.contains("192.0.2.60"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line4.contains("192.0.2.60/32 scope global"), "{line4}");
    let line6 = out
        .lines()
        .find(|l| l.contains("2001:db8::60"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line6.contains("2001:db8::60/128"), "{line6}");
    assert!(line6.contains("nodad"), "{line6}");
    assert!(
        line6.contains("deprecated") && line6.contains("preferred_lft 0sec"),
        "{line6}"
    );
    // The node's own address stays the source towards its subnet.
    let route = lab
        .exec(Port::Node(1), &["ip", "route", "get", "192.0.2.3"])
        .unwrap();
    assert!(route.contains("src 192.0.2.11"), "{route}");
    let route6 = lab
        .exec(Port::Node(1), &["ip", "-6", "route", "get", "2001:db8::3"])
        .unwrap();
    assert!(route6.contains("src 2001:db8::11"), "{route6}");
    done_tx.send(()).unwrap();
    worker.join().unwrap();
    let out = show(&lab);
    assert!(
        !out.contains("192.0.2.60") && !out.contains("2001:db8::60"),
        "{out}"
    );
}
