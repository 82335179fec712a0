//! How many ARP requests and Neighbor Solicitations one [`Responder`] answers per second, on the
//! lab's layer-2 segment. Needs root (it builds a lab):
//!
//! ```text
//! cargo run --release -p ferrolb-net --example bench-arp -- [--seconds 3] [--rate 10000]
//! ```
//!
//! A one-node lab without backends; node 1's responder owns 192.0.2.70 and 2001:db8::1:70 (the
//! lab's VIP ranges). From the client namespace, one packet socket sends requests for them and
//! counts the answers, in four phases of `--seconds` each: ARP flooded (as fast as one thread can
//! send), ARP paced at `--rate` requests per second, and the same two for NS → NA.
//!
//! Every phase follows the frames through each stage, so the figures say where they were lost:
//! sent by the client, received by node 1's `eth0` (veth counters), read by the responder
//! (`requests_seen`), answered, and counted back at the client. The scheduler's figures for the
//! sending, responding and receiving threads (time on a CPU, time runnable without one) tell a
//! responder that is slow from one that is starved. On a small machine the kernel's softirq work
//! (the bridge and both veth hops run in the senders' system calls) competes for the same cores,
//! so the flood figures are a property of the machine, not of the responder alone.
//!
//! The lab's `api` port is unplugged from the switch during the run, so the broadcast flood costs
//! one receiving namespace (node 1) instead of two. Ctrl-C leaves the lab behind; the next lab
//! created on the machine sweeps it.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferrolb_lab::netns::{CLIENT_V4, CLIENT_V6};
use ferrolb_lab::{Lab, LabConfig, Port};
use ferrolb_net::frame::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ND_HOP_LIMIT};
use ferrolb_net::{
    Counters, MacAddr, MulticastMembership, Request, Responder, interface, join_solicited_node,
};
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, setsockopt, socket, sockopt};
use pnet_datalink::{Channel, DataLinkReceiver, DataLinkSender, NetworkInterface};

/// The owned VIPs, from the lab's VIP ranges 192.0.2.64/26 and 2001:db8::1:0/112.
const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 70);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, 0x70);
/// Upper bound on the frames one phase sends, whatever the clock says.
const MAX_FRAMES: u64 = 50_000_000;
/// Upper bound on the receive loop's iterations (frames plus read timeouts) in one phase.
const MAX_RECEIVES: u64 = 4 * MAX_FRAMES;
/// How long the receiver keeps counting after the last request: answers still in flight.
const GRACE: Duration = Duration::from_millis(300);
/// The client socket's read timeout: how often the receiver looks at its stop flag.
const READ_TIMEOUT: Duration = Duration::from_millis(50);
/// Receive buffer of the client socket, so that a burst of answers is not lost at the measuring
/// end (the kernel default, net.core.rmem_default, holds a few hundred small frames).
const CLIENT_RCVBUF: usize = 16 << 20;
/// The longest `--seconds` accepted: a flood is not a soak test.
const MAX_SECONDS: u64 = 60;
/// Name of the responder's thread (`arp-ndp-<iface>`), as /proc shows it.
const RESPONDER_THREAD: &str = "arp-ndp-eth0";

struct Args {
    seconds: u64,
    rate: u32,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        seconds: 3,
        rate: 10_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let value = it.next().with_context(|| format!("{a} needs a value"))?;
        let n: u64 = value
            .parse()
            .with_context(|| format!("{a}: {value:?} is not a number"))?;
        match a.as_str() {
            "--seconds" if (1..=MAX_SECONDS).contains(&n) => args.seconds = n,
            "--seconds" => bail!("--seconds must be 1..={MAX_SECONDS}, got {n}"),
            "--rate" if (1..=1_000_000).contains(&n) => args.rate = n as u32,
            "--rate" => bail!("--rate must be 1..=1000000 requests per second, got {n}"),
            _ => bail!("unknown argument {a}; use --seconds N --rate N"),
        }
    }
    Ok(args)
}

/// The two kinds of request, with the frame the client sends and the test for its answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Arp,
    Ndp,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Arp => "ARP request -> reply",
            Family::Ndp => "NS -> NA",
        }
    }

    fn request(self, client: MacAddr) -> Vec<u8> {
        match self {
            Family::Arp => arp_request(client),
            Family::Ndp => neighbor_solicitation(client),
        }
    }

    /// Whether `f` is node 1's answer to the client's request.
    fn is_answer(self, f: &[u8], node: MacAddr, client: MacAddr) -> bool {
        let eth_ok =
            f.get(0..6) == Some(&client.octets()[..]) && f.get(6..12) == Some(&node.octets()[..]);
        eth_ok
            && match self {
                // RFC 826 reply: op 2, sender = node 1 / VIP, target IP = the client.
                Family::Arp => {
                    f.get(12..14) == Some(&ETHERTYPE_ARP.to_be_bytes()[..])
                        && f.get(20..22) == Some(&[0, 2][..])
                        && f.get(22..28) == Some(&node.octets()[..])
                        && f.get(28..32) == Some(&VIP4.octets()[..])
                        && f.get(38..42) == Some(&CLIENT_V4.octets()[..])
                }
                // RFC 4861 §4.4 NA (ICMPv6 type 136) for the VIP, to the client's address.
                Family::Ndp => {
                    f.get(12..14) == Some(&ETHERTYPE_IPV6.to_be_bytes()[..])
                        && f.get(20) == Some(&58)
                        && f.get(38..54) == Some(&CLIENT_V6.octets()[..])
                        && f.get(54) == Some(&136)
                        && f.get(62..78) == Some(&VIP6.octets()[..])
                }
            }
    }
}

/// A broadcast ARP request from the client for [`VIP4`] (RFC 826), unpadded as the kernel sends
/// it on a veth.
fn arp_request(client: MacAddr) -> Vec<u8> {
    let mut f = Vec::with_capacity(frame::ARP_FRAME_LEN);
    f.extend_from_slice(&MacAddr::broadcast().octets());
    f.extend_from_slice(&client.octets());
    f.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    f.extend_from_slice(&1u16.to_be_bytes()); // hardware type Ethernet
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes()); // protocol type IPv4
    f.extend_from_slice(&[6, 4, 0, 1]); // lengths 6 and 4, op request
    f.extend_from_slice(&client.octets());
    f.extend_from_slice(&CLIENT_V4.octets());
    f.extend_from_slice(&MacAddr::zero().octets());
    f.extend_from_slice(&VIP4.octets());
    f
}

/// A Neighbor Solicitation from the client for [`VIP6`] to its solicited-node group, with the
/// source link-layer address option a multicast solicitation must carry (RFC 4861 §4.3).
fn neighbor_solicitation(client: MacAddr) -> Vec<u8> {
    let group = frame::solicited_node(VIP6);
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0]; // type, code, checksum, reserved
    icmp.extend_from_slice(&VIP6.octets());
    icmp.extend_from_slice(&[1, 1]); // source link-layer address, 1 × 8 bytes
    icmp.extend_from_slice(&client.octets());
    let sum = frame::icmpv6_checksum(CLIENT_V6, group, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut f = Vec::with_capacity(frame::ETH_HEADER_LEN + 40 + icmp.len());
    f.extend_from_slice(&frame::multicast_mac(group).octets());
    f.extend_from_slice(&client.octets());
    f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, no traffic class or flow label
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, ND_HOP_LIMIT]); // next header ICMPv6
    f.extend_from_slice(&CLIENT_V6.octets());
    f.extend_from_slice(&group.octets());
    f.extend_from_slice(&icmp);
    f
}

/// Runs `f` in a fresh thread inside network namespace `ns`; sockets it opens stay there.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns {path}"))?;
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread in {ns} panicked"))?
}

/// The client's packet socket on its `eth0`: its MAC and the two halves of the channel.
struct Client {
    mac: MacAddr,
    tx: Box<dyn DataLinkSender>,
    rx: Box<dyn DataLinkReceiver>,
}

/// Opens the client's packet socket, with a large receive buffer. One socket sends and receives:
/// the kernel does not loop a packet socket's own frames back to it, so the receiver reads
/// answers, not the flood.
fn client_channel() -> anyhow::Result<Client> {
    let iface = interface("eth0")?;
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // RcvBufForce: root may exceed net.core.rmem_max.
    setsockopt(&fd, sockopt::RcvBufForce, &CLIENT_RCVBUF).context("SO_RCVBUFFORCE")?;
    let config = pnet_datalink::Config {
        read_timeout: Some(READ_TIMEOUT),
        write_timeout: Some(Duration::from_millis(100)),
        promiscuous: false,
        socket_fd: Some(std::os::fd::IntoRawFd::into_raw_fd(fd)),
        ..pnet_datalink::Config::default()
    };
    let pnet_iface = NetworkInterface {
        name: iface.name.clone(),
        description: String::new(),
        index: iface.index,
        mac: Some(iface.mac),
        ips: Vec::new(),
        flags: 0,
    };
    match pnet_datalink::channel(&pnet_iface, config).context("opening the client's channel")? {
        Channel::Ethernet(tx, rx) => Ok(Client {
            mac: iface.mac,
            tx,
            rx,
        }),
        _ => bail!("pnet returned a channel that is not Ethernet"),
    }
}

/// Packet counters of a port's `eth0`, read inside its namespace.
#[derive(Clone, Copy, Default)]
struct Link {
    rx_packets: u64,
    rx_dropped: u64,
    tx_packets: u64,
    tx_dropped: u64,
}

fn link(lab: &Lab, port: Port) -> anyhow::Result<Link> {
    let dir = "/sys/class/net/eth0/statistics";
    let files =
        ["rx_packets", "rx_dropped", "tx_packets", "tx_dropped"].map(|f| format!("{dir}/{f}"));
    let mut argv = vec!["cat"];
    argv.extend(files.iter().map(String::as_str));
    let out = lab.exec(port, &argv)?;
    let v: Vec<u64> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    match v[..] {
        [rx_packets, rx_dropped, tx_packets, tx_dropped] => Ok(Link {
            rx_packets,
            rx_dropped,
            tx_packets,
            tx_dropped,
        }),
        _ => bail!("unexpected link statistics of {port:?}: {out:?}"),
    }
}

impl Link {
    fn since(self, before: Link) -> Link {
        Link {
            rx_packets: self.rx_packets.saturating_sub(before.rx_packets),
            rx_dropped: self.rx_dropped.saturating_sub(before.rx_dropped),
            tx_packets: self.tx_packets.saturating_sub(before.tx_packets),
            tx_dropped: self.tx_dropped.saturating_sub(before.tx_dropped),
        }
    }
}

fn counters_since(now: Counters, before: Counters) -> Counters {
    Counters {
        requests_seen: now.requests_seen.saturating_sub(before.requests_seen),
        requests_answered: now
            .requests_answered
            .saturating_sub(before.requests_answered),
        garp_sent: now.garp_sent.saturating_sub(before.garp_sent),
        na_sent: now.na_sent.saturating_sub(before.na_sent),
        malformed: now.malformed.saturating_sub(before.malformed),
        send_errors: now.send_errors.saturating_sub(before.send_errors),
        receive_errors: now.receive_errors.saturating_sub(before.receive_errors),
    }
}

/// A thread's scheduler times, from /proc/<tid>/schedstat: time on a CPU and time runnable but
/// waiting for one (both in nanoseconds; needs CONFIG_SCHED_INFO).
#[derive(Clone, Copy)]
struct Sched {
    on_cpu: Duration,
    waiting: Duration,
}

fn sched(path: &str) -> Option<Sched> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    Some(Sched {
        on_cpu: Duration::from_nanos(it.next()?.ok()?),
        waiting: Duration::from_nanos(it.next()?.ok()?),
    })
}

/// What a thread did between two readings.
fn sched_since(now: Option<Sched>, before: Option<Sched>) -> Option<Sched> {
    let (now, before) = (now?, before?);
    Some(Sched {
        on_cpu: now.on_cpu.saturating_sub(before.on_cpu),
        waiting: now.waiting.saturating_sub(before.waiting),
    })
}

const THIS_THREAD: &str = "/proc/thread-self/schedstat";

/// The /proc schedstat file of the responder's thread in this process. The thread names itself
/// once it runs, which may be a moment after `Responder::start` returns: look for up to a second.
fn responder_thread_sched() -> Option<String> {
    for _ in 0..100 {
        for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if comm.trim() == RESPONDER_THREAD {
                return Some(
                    entry
                        .path()
                        .join("schedstat")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[derive(Default)]
struct Sent {
    ok: u64,
    errors: u64,
    elapsed: Duration,
    cpu: Option<Sched>,
}

/// Sends `frame` for at most `duration` and [`MAX_FRAMES`] frames, as fast as possible or at
/// `rate` per second (the due time of frame i is start + i / rate; a late sender catches up).
fn send_loop(
    tx: &mut dyn DataLinkSender,
    frame: &[u8],
    duration: Duration,
    rate: Option<u32>,
) -> Sent {
    let cpu_before = sched(THIS_THREAD);
    let start = Instant::now();
    let end = start + duration;
    let mut sent = Sent::default();
    for i in 0..MAX_FRAMES {
        let mut now = Instant::now();
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
            if due >= end {
                break;
            }
            if due > now {
                std::thread::sleep(due - now);
                now = Instant::now();
            }
        }
        if now >= end {
            break;
        }
        match tx.send_to(frame, None) {
            Some(Ok(())) => sent.ok += 1,
            _ => sent.errors += 1,
        }
    }
    sent.elapsed = start.elapsed();
    sent.cpu = sched_since(sched(THIS_THREAD), cpu_before);
    sent
}

#[derive(Default)]
struct Received {
    answers: u64,
    other: u64,
    errors: u64,
    cpu: Option<Sched>,
}

/// Counts answers until `stop` is set, `deadline` passes or [`MAX_RECEIVES`] iterations ran.
fn receive_loop(
    rx: &mut dyn DataLinkReceiver,
    family: Family,
    node: MacAddr,
    client: MacAddr,
    stop: &AtomicBool,
    deadline: Instant,
) -> Received {
    let cpu_before = sched(THIS_THREAD);
    let mut r = Received::default();
    for _ in 0..MAX_RECEIVES {
        if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            break;
        }
        match rx.next() {
            Ok(f) if family.is_answer(f, node, client) => r.answers += 1,
            Ok(_) => r.other += 1,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => r.errors += 1,
        }
    }
    r.cpu = sched_since(sched(THIS_THREAD), cpu_before);
    r
}

/// Everything the benchmark works with.
struct Bench {
    lab: Lab,
    responder: Responder,
    node_mac: MacAddr,
    client_mac: MacAddr,
    tx: Box<dyn DataLinkSender>,
    /// Taken by the receiving thread during a phase, given back at its end.
    rx: Option<Box<dyn DataLinkReceiver>>,
    responder_sched: Option<String>,
}

struct Phase {
    family: Family,
    rate: Option<u32>,
    sent: Sent,
    received: Received,
    responder: Counters,
    responder_cpu: Option<Sched>,
    node: Link,
    client: Link,
}

impl Bench {
    /// Sends one request at a time until an answer comes back (at most 10 tries): proves the path
    /// works before anything is measured.
    fn check_answered(&mut self, family: Family) -> anyhow::Result<()> {
        let request = family.request(self.client_mac);
        let mut rx = self.rx.take().context("receiver missing")?;
        let mut result = Err(anyhow::anyhow!(
            "node 1's responder did not answer {} for 10 tries",
            family.name()
        ));
        'tries: for _ in 0..10 {
            if let Some(Err(e)) = self.tx.send_to(&request, None) {
                result = Err(e).context("sending a request from the client");
                break;
            }
            let until = Instant::now() + Duration::from_millis(200);
            for _ in 0..1000 {
                if Instant::now() >= until {
                    break;
                }
                if let Ok(f) = rx.next()
                    && family.is_answer(f, self.node_mac, self.client_mac)
                {
                    result = Ok(());
                    break 'tries;
                }
            }
        }
        self.rx = Some(rx);
        result
    }

    fn run(&mut self, family: Family, seconds: u64, rate: Option<u32>) -> anyhow::Result<Phase> {
        let request = family.request(self.client_mac);
        let duration = Duration::from_secs(seconds);
        let (node_before, client_before) = (
            link(&self.lab, Port::Node(1))?,
            link(&self.lab, Port::Client)?,
        );
        let counters_before = self.responder.counters();
        let responder_cpu_before = self.responder_sched.as_deref().and_then(sched);

        let stop = Arc::new(AtomicBool::new(false));
        let mut rx = self.rx.take().context("receiver missing")?;
        let (node_mac, client_mac) = (self.node_mac, self.client_mac);
        let deadline = Instant::now() + duration + GRACE + Duration::from_secs(5);
        let receiver = std::thread::Builder::new()
            .name("bench-receive".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || {
                    let r =
                        receive_loop(rx.as_mut(), family, node_mac, client_mac, &stop, deadline);
                    (rx, r)
                }
            })?;
        let sent = send_loop(self.tx.as_mut(), &request, duration, rate);
        std::thread::sleep(GRACE);
        stop.store(true, Ordering::Relaxed);
        let (rx, received) = receiver
            .join()
            .map_err(|_| anyhow::anyhow!("the receiving thread panicked"))?;
        self.rx = Some(rx);

        let responder_cpu = sched_since(
            self.responder_sched.as_deref().and_then(sched),
            responder_cpu_before,
        );
        Ok(Phase {
            family,
            rate,
            sent,
            received,
            responder: counters_since(self.responder.counters(), counters_before),
            responder_cpu,
            node: link(&self.lab, Port::Node(1))?.since(node_before),
            client: link(&self.lab, Port::Client)?.since(client_before),
        })
    }
}

fn per_s(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn pct(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * n as f64 / of as f64
    }
}

fn share(d: Duration, wall: Duration) -> f64 {
    100.0 * d.as_secs_f64() / wall.as_secs_f64().max(1e-9)
}

/// "on CPU 45%, waiting 30%": of the wall time, how much the thread ran and how much it was
/// runnable but had no CPU.
fn cpu_share(cpu: Option<Sched>, wall: Duration) -> String {
    match cpu {
        Some(c) => format!(
            "on CPU {:.0}%, waiting for a CPU {:.0}%",
            share(c.on_cpu, wall),
            share(c.waiting, wall)
        ),
        None => "CPU unknown".into(),
    }
}

impl Phase {
    fn print(&self) {
        let secs = self.sent.elapsed;
        // Replies count within the sending time plus the grace period: per-second figures use the
        // sending time, which is when they were asked for.
        let sent = self.sent.ok;
        let seen = self.responder.requests_seen;
        let answered = self.responder.requests_answered;
        let counted = self.received.answers;
        let pace = match self.rate {
            Some(r) => format!("paced at {r}/s"),
            None => "flood".into(),
        };
        println!(
            "\n== {} — {pace}, {:.2} s ==",
            self.family.name(),
            secs.as_secs_f64()
        );
        println!(
            "  client sent            {sent:>10}  {:>10.0}/s   send errors {}, sender thread {}",
            per_s(sent, secs),
            self.sent.errors,
            cpu_share(self.sent.cpu, secs),
        );
        println!(
            "  node 1 eth0 received   {:>10}  {:>10.0}/s   rx_dropped {} (client eth0 tx_dropped {})",
            self.node.rx_packets,
            per_s(self.node.rx_packets, secs),
            self.node.rx_dropped,
            self.client.tx_dropped,
        );
        println!(
            "  responder saw          {seen:>10}  {:>10.0}/s   ({:.1}% of sent), responder thread {}",
            per_s(seen, secs),
            pct(seen, sent),
            cpu_share(self.responder_cpu, secs),
        );
        // The responder thread's CPU per answer (its system calls included, and with them the
        // softirq work of delivering the answer): what one answer costs at this load.
        let cost = match self.responder_cpu {
            Some(c) if answered > 0 => format!(
                ", {:.1} µs of responder CPU per answer",
                c.on_cpu.as_secs_f64() * 1e6 / answered as f64
            ),
            _ => String::new(),
        };
        println!(
            "  responder answered     {answered:>10}  {:>10.0}/s   ({:.1}% of seen){cost}",
            per_s(answered, secs),
            pct(answered, seen),
        );
        println!(
            "  client counted answers {counted:>10}  {:>10.0}/s   receiver thread {} (client eth0 rx {}, rx_dropped {}, other frames {}, receive errors {})",
            per_s(counted, secs),
            cpu_share(self.received.cpu, secs),
            self.client.rx_packets,
            self.client.rx_dropped,
            self.received.other,
            self.received.errors,
        );
        println!(
            "  answered ratio         {:.2}% (answers counted / requests sent)",
            pct(counted, sent)
        );
        let c = self.responder;
        println!(
            "  responder counters     requests_seen {} requests_answered {} malformed {} send_errors {} receive_errors {} garp_sent {} na_sent {}",
            c.requests_seen,
            c.requests_answered,
            c.malformed,
            c.send_errors,
            c.receive_errors,
            c.garp_sent,
            c.na_sent,
        );
        println!("  verdict: {}", self.verdict());
    }

    /// Where the frames were lost, largest loss first named.
    fn verdict(&self) -> String {
        let sent = self.sent.ok;
        let counted = self.received.answers;
        if sent == 0 {
            return "nothing was sent".into();
        }
        if counted * 1000 >= sent * 995 {
            let rate = per_s(counted, self.sent.elapsed);
            return match self.rate {
                Some(_) => format!(
                    "the responder kept up with the offered {rate:.0}/s (at least 99.5% answered)"
                ),
                None => format!(
                    "sender-limited: at least 99.5% answered; {rate:.0}/s is a lower bound of the responder's rate on this machine"
                ),
            };
        }
        // Node 1's eth0 also receives a little background traffic (MLD, router solicitations):
        // clamp each stage to the one before it.
        let arrived = self.node.rx_packets.min(sent);
        let seen = self.responder.requests_seen.min(arrived);
        let answered = self.responder.requests_answered.min(seen);
        let back = counted.min(answered);
        let stages = [
            (
                sent - arrived,
                "client -> node 1 (the veth/bridge backlog overflowed before node 1's eth0): kernel-limited, the responder never got those",
            ),
            (
                arrived - seen,
                "node 1's eth0 -> the responder (its socket's queue overflowed): responder-limited",
            ),
            (
                seen - answered,
                "seen but not answered (send errors): responder-limited on sending",
            ),
            (
                answered - back,
                "node 1 -> the client (return path or the benchmark's own receive socket): client-limited",
            ),
        ];
        let Some((lost, why)) = stages.iter().max_by_key(|(lost, _)| *lost) else {
            return String::new();
        };
        let mut verdict = format!(
            "{:.1}% of the requests went unanswered; most were lost at {why} ({lost} frames, {:.1}% of sent)",
            100.0 - pct(counted, sent),
            pct(*lost, sent)
        );
        // Whether the responder's thread was slow or starved: on a core of its own it runs all
        // the time; runnable time without a CPU means the machine, not the responder, set the pace.
        if let Some(cpu) = self.responder_cpu {
            let wall = self.sent.elapsed;
            let (on, waiting) = (share(cpu.on_cpu, wall), share(cpu.waiting, wall));
            verdict.push_str(&if on >= 80.0 {
                format!("; the responder thread was on a CPU {on:.0}% of the time: CPU-bound, that is its own cost")
            } else if waiting >= 20.0 {
                format!(
                    "; the responder thread ran only {on:.0}% of the time and waited {waiting:.0}% for a CPU: \
                     starved by CPU contention (the sender and its softirqs, other jobs), so its own limit is higher"
                )
            } else {
                format!("; the responder thread ran {on:.0}% and waited {waiting:.0}% for a CPU: it was not CPU-bound")
            });
        }
        verdict
    }
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if !nix::unistd::geteuid().is_root() {
        bail!("bench-arp builds a lab of network namespaces: run it as root");
    }
    let lab = Lab::new(LabConfig {
        nodes: 1,
        backends: false,
    })?;
    lab.set_link(Port::Api, false)?;

    let (responder, membership): (Responder, MulticastMembership) =
        in_netns(&lab.netns(Port::Node(1)), || {
            let iface = interface("eth0")?;
            // What the speaker does before answering NDP: listen to the VIP's solicited-node group.
            let membership = join_solicited_node(iface.index, VIP6)?;
            Ok((Responder::start(&iface)?, membership))
        })?;
    responder.set_owned([IpAddr::from(VIP4), IpAddr::from(VIP6)]);
    let node_mac = responder.interface().mac;
    let Client {
        mac: client_mac,
        tx,
        rx,
    } = in_netns(&lab.netns(Port::Client), client_channel)?;

    // The crate's own parser must read the client's requests as the requests they are.
    for family in [Family::Arp, Family::Ndp] {
        let request = family.request(client_mac);
        match frame::parse(&request) {
            Ok(Some(Request::Arp { target_ip, .. })) if target_ip == VIP4 => {}
            Ok(Some(Request::Ns { target, .. })) if target == VIP6 => {}
            other => bail!("the {} frame built here parses as {other:?}", family.name()),
        }
    }

    let mut bench = Bench {
        responder_sched: responder_thread_sched(),
        lab,
        responder,
        node_mac,
        client_mac,
        tx,
        rx: Some(rx),
    };
    println!(
        "bench-arp: node 1 ({node_mac}) answers for {VIP4} and {VIP6}; client {client_mac} ({CLIENT_V4}, {CLIENT_V6}); \
         {} s per phase, paced rate {}/s, at most {MAX_FRAMES} frames per phase",
        args.seconds, args.rate
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!(
            "  {} CPUs, load average {} (other jobs on the machine skew the flood figures)",
            std::thread::available_parallelism().map_or(0, usize::from),
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if bench.responder_sched.is_none() {
        println!(
            "  (responder thread {RESPONDER_THREAD} not found in /proc: its CPU time is not reported)"
        );
    }
    for family in [Family::Arp, Family::Ndp] {
        bench.check_answered(family)?;
        for rate in [None, Some(args.rate)] {
            bench.run(family, args.seconds, rate)?.print();
        }
    }

    let Bench { lab, responder, .. } = bench;
    responder.stop().context("stopping the responder")?;
    drop(membership);
    // Deletes the lab's namespaces (and nothing else).
    drop(lab);
    Ok(())
}
