//! The lab's faults applied to the speakers themselves (issue 12's proof): a frozen owner, a
//! paused process that wakes up with requests queued in its socket. The client's tcpdump is the
//! judge of who answered, frame by frame.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ferrolb_lab::daemons::{apply, service_yaml, wait_ingress};
use ferrolb_lab::netns::BACKEND_PORT;
use ferrolb_lab::observe::Capture;
use ferrolb_lab::probe::{longest_outage_ms, parse_records};
use ferrolb_lab::speakers::{Cluster, answering, index_of, ip, start_probe};
use ferrolb_lab::{LabChild, Port};
use nix::sys::signal::Signal;

const WAIT: Duration = Duration::from_secs(30);

/// An address on the segment that nobody holds: the client asks for it once as a marker in the
/// capture (frames after the marker came after the event it marks).
const MARKER: &str = "192.0.2.250";

/// Broadcasts `count` ARP requests for `addr` from the client, one every 10 ms, in the background
/// (`tests/tools/arp-sweep.py`: Debian's arping takes whole seconds as its interval).
fn arp_sweep(c: &Cluster, addr: IpAddr, count: u32, name: &str) -> LabChild {
    let script = ferrolb_lab::workspace_root().join("tests/tools/arp-sweep.py");
    c.lab
        .spawn(
            Port::Client,
            name,
            &[
                "python3",
                &script.to_string_lossy(),
                "eth0",
                &addr.to_string(),
                &count.to_string(),
                "10",
            ],
        )
        .unwrap()
}

/// The MACs of the ARP replies for `vip` among `frames`, in order.
fn reply_macs(frames: &[String], vip: IpAddr) -> Vec<String> {
    let needle = format!("{vip} is-at ");
    frames
        .iter()
        .filter_map(|f| {
            let at = f.find(&needle)?;
            let mac = f[at + needle.len()..].split([',', ' ']).next()?;
            Some(mac.to_string())
        })
        .collect()
}

#[test]
fn a_frozen_owner_is_replaced_and_once_thawed_answers_nothing_until_it_rejoined() {
    let c = Cluster::start(3, &[]).unwrap();
    apply(&c.env, &c.lab, &service_yaml("web", &[], "", BACKEND_PORT)).unwrap();
    let vip = ip(&wait_ingress(&c.env, "default", "web", 1, WAIT).unwrap()[0]);
    let owner = index_of(
        &c.announcer("web", WAIT)
            .unwrap_or_else(|e| panic!("{e}\n{}", c.logs())),
    );
    let owner_mac = Port::Node(owner).mac();
    let speaker = c.speakers[owner - 1].as_ref().unwrap();

    // The owner's speaker freezes (SIGSTOP: a VM pause, a stall); its node stays up. Another
    // node takes over, and the client follows its gratuitous ARP (the probe loop shows it).
    let target = SocketAddr::new(vip, BACKEND_PORT);
    let mut probe = start_probe(&c.lab, target, 150, 20, 100).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    speaker.signal(Signal::SIGSTOP).unwrap();
    assert!(probe.wait_timeout(WAIT).unwrap().is_some());
    let records = parse_records(&probe.log_text());
    let outage = longest_outage_ms(&records);
    println!("frozen owner: outage {outage:?} ms");
    let last = records.last().unwrap();
    assert!(last.ok(), "no recovery: {records:?}\n{}", c.logs());
    let successor = index_of(last.node.as_deref().unwrap());
    assert_ne!(successor, owner);
    // The node itself still serves what reaches it, so a client whose cache still names the
    // frozen owner loses nothing; the successor's gratuitous ARP moves it over.
    assert!(
        outage.is_none_or(|ms| ms < 2000),
        "outage {outage:?}\n{}",
        c.logs()
    );

    // While it is frozen, the client asks for the address: the requests queue in the frozen
    // speaker's socket. Then it is thawed while the client keeps asking every 10 ms.
    let capture = Capture::start(&c.lab, Port::Client, "tcpdump-arp", "arp").unwrap();
    let mut before = arp_sweep(&c, vip, 20, "arping-frozen");
    assert!(before.wait_timeout(WAIT).unwrap().is_some());
    let mut during = arp_sweep(&c, vip, 300, "arping-thaw");
    std::thread::sleep(Duration::from_millis(100));
    let mut marker = arp_sweep(&c, ip(MARKER), 1, "arp-marker");
    assert!(marker.wait_timeout(WAIT).unwrap().is_some());
    speaker.signal(Signal::SIGCONT).unwrap();
    assert!(during.wait_timeout(WAIT).unwrap().is_some());
    let frames = capture.stop().unwrap();

    // Frames after the marker came after the thaw. The thawed speaker must not answer the
    // requests that queued while it slept, nor announce before it rejoined: during the first
    // 300 ms after the thaw (30 requests) every reply is the successor's.
    let marker = frames
        .iter()
        .position(|f| f.contains(&format!("who-has {MARKER}")))
        .unwrap_or_else(|| panic!("no marker in the capture: {frames:#?}"));
    let after = reply_macs(&frames[marker..], vip);
    let successor_mac = Port::Node(successor).mac();
    println!(
        "after the thaw: {} replies, {} from the thawed owner",
        after.len(),
        after.iter().filter(|m| **m == owner_mac).count()
    );
    assert!(
        after.len() >= 30,
        "too few replies after the thaw: {after:?}\n{}",
        c.logs()
    );
    let early: Vec<&String> = after[..30]
        .iter()
        .filter(|m| **m != successor_mac)
        .collect();
    assert!(
        early.is_empty(),
        "the thawed owner ({owner_mac}) answered {} of the first 30 requests after the thaw, before it rejoined: {:?}\n{}",
        early.len(),
        &after[..30],
        c.logs()
    );
    // Nor may it send a gratuitous ARP for the address in that window (request or reply form).
    let vip_text = format!("{vip} ");
    let mut replies = 0;
    let mut window = Vec::new();
    for f in &frames[marker..] {
        if replies >= 30 {
            break;
        }
        replies += reply_macs(std::slice::from_ref(f), vip).len();
        if f.contains(&vip_text) {
            window.push(f);
        }
    }
    let from_owner: Vec<_> = window.iter().filter(|f| f.contains(&owner_mac)).collect();
    assert!(
        from_owner.is_empty(),
        "the thawed owner spoke for {vip} right after the thaw: {from_owner:#?}\n{}",
        c.logs()
    );

    // It rejoins; in the end exactly one node answers.
    for i in 1..=3 {
        c.wait_members(i, 3).unwrap();
    }
    cmd_settle();
    assert_eq!(answering(&c.lab, vip).unwrap().len(), 1, "{}", c.logs());
}

/// Lets a fail-back finish (the returning node's settle, then its announcement).
fn cmd_settle() {
    std::thread::sleep(Duration::from_millis(2500));
}
