//! The ARP/NDP responder of one interface: an `AF_PACKET` socket, a thread that answers requests
//! for the owned addresses, and announcements on demand.
//!
//! The socket is opened in the calling thread's network namespace and stays bound to it, whichever
//! thread uses it later. A classic BPF filter attached before the socket is bound keeps the kernel
//! from copying anything but ARP and Neighbor Solicitations to user space, and drops frames the
//! interface sent itself or that were addressed to another host's MAC (`PACKET_OUTGOING`,
//! `PACKET_OTHERHOST`), so the thread costs nothing on a busy link.
//!
//! Only two kinds of frames ever leave: answers to requests for owned addresses (sent to the
//! requester, RFC 826 and RFC 4861 §7.2.4) and announcements of owned addresses (gratuitous ARP,
//! RFC 5227 §3; unsolicited NA, RFC 4861 §7.2.6). Every one has the interface's own MAC as its
//! Ethernet source, ARP sender and NA target link-layer address.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, sockopt};
use pnet_base::MacAddr;
use pnet_datalink::{Channel, DataLinkReceiver, DataLinkSender, NetworkInterface};
use tracing::{debug, info, trace, warn};

use crate::error::{NetError, send_hint, socket_hint};
use crate::frame::{self, Request};
use crate::iface::Interface;

/// How long the receive thread blocks before it looks at the stop flag: bounds how long `stop`
/// waits, and costs two wake-ups a second on an idle link.
pub const READ_TIMEOUT: Duration = Duration::from_millis(500);
/// A loop iteration this much longer than the read timeout allows means the process did not run
/// (SIGSTOP, a paused VM): the requests queued in the socket meanwhile are stale, and the
/// addresses may have moved to another node while this one slept.
pub const PAUSED: Duration = Duration::from_millis(250);
/// After a pause, frames are dropped for this long: the queue drains unanswered, and the speaker's
/// loop, which notices the same pause on its next wake-up (at most 100 ms after it went to
/// sleep), stops answering for every address until its view has settled.
pub const PAUSE_DRAIN: Duration = Duration::from_millis(100);
/// How long a send may wait for room in the socket's queue before it is reported as failed.
pub const WRITE_TIMEOUT: Duration = Duration::from_millis(100);
/// How long `stop` waits for the thread: a read timeout and a write timeout, with margin.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// Receive buffer per frame. ARP and Neighbor Solicitations are far shorter; longer frames are
/// truncated by the kernel (and then fail to parse), which is what a responder wants.
const READ_BUFFER: usize = 4096;
/// At most one warning per this interval for repeated receive or send failures (a downed link
/// would otherwise log ten times a second).
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// A snapshot of a responder's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// ARP requests and Neighbor Solicitations received, owned or not.
    pub requests_seen: u64,
    /// Of those, the ones for owned addresses that were answered.
    pub requests_answered: u64,
    /// Gratuitous ARP frames sent (two per IPv4 announcement: a request and a reply).
    pub garp_sent: u64,
    /// Unsolicited Neighbor Advertisements sent (one per IPv6 announcement).
    pub na_sent: u64,
    /// ARP packets and Neighbor Solicitations that broke their RFC's validity rules.
    pub malformed: u64,
    /// Frames the kernel refused to send.
    pub send_errors: u64,
    /// Errors reported by the socket while receiving (the interface went down, for one).
    pub receive_errors: u64,
}

#[derive(Debug, Default)]
struct AtomicCounters {
    requests_seen: AtomicU64,
    requests_answered: AtomicU64,
    garp_sent: AtomicU64,
    na_sent: AtomicU64,
    malformed: AtomicU64,
    send_errors: AtomicU64,
    receive_errors: AtomicU64,
}

impl AtomicCounters {
    fn snapshot(&self) -> Counters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            requests_seen: get(&self.requests_seen),
            requests_answered: get(&self.requests_answered),
            garp_sent: get(&self.garp_sent),
            na_sent: get(&self.na_sent),
            malformed: get(&self.malformed),
            send_errors: get(&self.send_errors),
            receive_errors: get(&self.receive_errors),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What the receive thread and the owner of the [`Responder`] share.
struct Shared {
    iface: String,
    mac: MacAddr,
    owned: RwLock<HashSet<IpAddr>>,
    tx: Mutex<Box<dyn DataLinkSender>>,
    stop: AtomicBool,
    counters: AtomicCounters,
}

impl Shared {
    fn owns(&self, ip: IpAddr) -> bool {
        self.owned
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&ip)
    }

    fn send(&self, frame: &[u8], what: &'static str) -> Result<(), NetError> {
        let result = self
            .tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send_to(frame, None);
        let source = match result {
            Some(Ok(())) => return Ok(()),
            Some(Err(e)) => e,
            None => io::Error::other("the sender had no buffer for the frame"),
        };
        bump(&self.counters.send_errors);
        Err(NetError::Send {
            iface: self.iface.clone(),
            what,
            hint: send_hint(&self.iface, &source),
            source,
        })
    }
}

/// Answers ARP requests and Neighbor Solicitations for the owned addresses on one interface, and
/// announces them on demand. Dropping it stops the thread (as [`Responder::stop`] does).
pub struct Responder {
    iface: Interface,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("iface", &self.iface.name)
            .field("mac", &self.iface.mac)
            .field("owned", &self.owned())
            .field("counters", &self.counters())
            .finish()
    }
}

/// Opens and closes a packet socket: fails, with the fix in the message, when this process may
/// not open raw sockets (no CAP_NET_RAW). The speaker checks it at start-up and exits rather than
/// run, and report Ready, while it can answer nothing (the cluster lab once showed a Ready
/// DaemonSet of speakers without the capability).
pub fn check_raw_sockets() -> Result<(), NetError> {
    let name = "any interface";
    filtered_packet_socket()
        .map(drop)
        .map_err(|source| NetError::Socket {
            iface: name.into(),
            hint: socket_hint(name, &source),
            source,
        })
}

impl Responder {
    /// Opens the interface's packet socket (in the calling thread's network namespace) and starts
    /// the thread that answers requests. The owned set starts empty: nothing is answered until
    /// [`Responder::set_owned`].
    pub fn start(iface: &Interface) -> Result<Responder, NetError> {
        let socket_error = |source: io::Error| NetError::Socket {
            iface: iface.name.clone(),
            hint: socket_hint(&iface.name, &source),
            source,
        };
        let fd = filtered_packet_socket().map_err(socket_error)?;
        let raw_fd = fd.as_raw_fd();
        let config = pnet_datalink::Config {
            read_buffer_size: READ_BUFFER,
            read_timeout: Some(READ_TIMEOUT),
            write_timeout: Some(WRITE_TIMEOUT),
            // The interface's own MAC, broadcast and the solicited-node groups (joined through
            // the kernel, see `join_solicited_node`) are all a responder needs to hear.
            promiscuous: false,
            // pnet binds this socket to the interface (ETH_P_ALL) and owns it from here on,
            // closing it also when binding fails.
            socket_fd: Some(fd.into_raw_fd()),
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
        let (tx, rx) = match pnet_datalink::channel(&pnet_iface, config) {
            Ok(Channel::Ethernet(tx, rx)) => (tx, rx),
            Ok(_) => {
                return Err(socket_error(io::Error::other(
                    "pnet returned a channel that is not Ethernet",
                )));
            }
            Err(e) => return Err(socket_error(e)),
        };
        let shared = Arc::new(Shared {
            iface: iface.name.clone(),
            mac: iface.mac,
            owned: RwLock::new(HashSet::new()),
            tx: Mutex::new(tx),
            stop: AtomicBool::new(false),
            counters: AtomicCounters::default(),
        });
        let thread = std::thread::Builder::new()
            .name(format!("arp-ndp-{}", iface.name))
            .spawn({
                let shared = Arc::clone(&shared);
                move || receive_loop(&shared, rx, raw_fd)
            })
            .map_err(|e| NetError::Socket {
                iface: iface.name.clone(),
                hint: format!(
                    "starting the responder thread of {} failed (out of threads or memory?)",
                    iface.name
                ),
                source: e,
            })?;
        info!(iface = %iface.name, index = iface.index, mac = %iface.mac, "ARP/NDP responder started");
        Ok(Responder {
            iface: iface.clone(),
            shared,
            thread: Some(thread),
        })
    }

    /// The interface this responder answers on.
    pub fn interface(&self) -> &Interface {
        &self.iface
    }

    /// Replaces the set of addresses this node answers for. Addresses no host may own
    /// (unspecified, multicast, broadcast, loopback) are left out with a warning.
    pub fn set_owned(&self, ips: impl IntoIterator<Item = IpAddr>) {
        let mut set = HashSet::new();
        for ip in ips {
            if is_ownable(ip) {
                set.insert(ip);
            } else {
                warn!(iface = %self.iface.name, %ip, "not answering for an address no host can own");
            }
        }
        let mut owned = self
            .shared
            .owned
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if *owned != set {
            debug!(iface = %self.iface.name, count = set.len(), "owned addresses replaced");
        }
        *owned = set;
    }

    /// The addresses answered for, sorted.
    pub fn owned(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self
            .shared
            .owned
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect();
        v.sort_unstable();
        v
    }

    /// Announces that `ip` is at this interface's MAC: a gratuitous ARP request and reply for
    /// IPv4 (RFC 5227 §3), an unsolicited Neighbor Advertisement with Override for IPv6 (RFC 4861
    /// §7.2.6). One burst; repeating it (RFC 4861 §7.2.6 allows up to MAX_NEIGHBOR_ADVERTISEMENT = 3,
    /// RFC 5227 §2.3 sends ANNOUNCE_NUM = 2, ANNOUNCE_INTERVAL = 2 s apart) is the schedule's job.
    /// `ip` must be owned: announcing an address this node does not answer for would attract
    /// traffic and then leave its ARP/NDP refreshes unanswered.
    pub fn announce(&self, ip: IpAddr) -> Result<(), NetError> {
        if !self.shared.owns(ip) {
            return Err(NetError::NotOwned {
                ip,
                iface: self.iface.name.clone(),
            });
        }
        let mac = self.iface.mac;
        match ip {
            IpAddr::V4(v4) => {
                self.shared
                    .send(&frame::garp_request(mac, v4), "a gratuitous ARP request")?;
                bump(&self.shared.counters.garp_sent);
                self.shared
                    .send(&frame::garp_reply(mac, v4), "a gratuitous ARP reply")?;
                bump(&self.shared.counters.garp_sent);
            }
            IpAddr::V6(v6) => {
                self.shared.send(
                    &frame::unsolicited_na(mac, v6),
                    "an unsolicited Neighbor Advertisement",
                )?;
                bump(&self.shared.counters.na_sent);
            }
        }
        debug!(iface = %self.iface.name, %ip, "announced");
        Ok(())
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }

    /// Stops the thread and closes the socket, waiting at most [`STOP_TIMEOUT`].
    pub fn stop(mut self) -> Result<(), NetError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), NetError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        self.shared.stop.store(true, Ordering::Relaxed);
        let start = Instant::now();
        while !thread.is_finished() {
            if start.elapsed() >= STOP_TIMEOUT {
                return Err(NetError::StopTimeout {
                    iface: self.iface.name.clone(),
                    waited_ms: start.elapsed().as_millis(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        thread.join().map_err(|_| NetError::ThreadPanicked {
            iface: self.iface.name.clone(),
        })?;
        info!(iface = %self.iface.name, "ARP/NDP responder stopped");
        Ok(())
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            warn!(iface = %self.iface.name, error = %e, "stopping the responder");
        }
    }
}

fn is_ownable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() || v4.is_loopback())
        }
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast() || v6.is_loopback()),
    }
}

/// Receives until told to stop. `fd` is the descriptor of the socket inside `rx` (pnet owns it and
/// closes it when `rx` and the sender are dropped).
fn receive_loop(shared: &Shared, mut rx: Box<dyn DataLinkReceiver>, fd: RawFd) {
    let span = tracing::info_span!("responder", iface = %shared.iface);
    let _enter = span.enter();
    let mut last_warning: Option<Instant> = None;
    let mut read_done = Instant::now();
    let mut drop_until: Option<Instant> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        // A read blocks for at most READ_TIMEOUT, and what happens between two reads takes
        // microseconds (or READ_TIMEOUT after an error): much longer means the thread did not run.
        let start = Instant::now();
        let next = rx.next();
        let done = Instant::now();
        let stalled = done.duration_since(start).saturating_sub(READ_TIMEOUT)
            + start.duration_since(read_done).saturating_sub(READ_TIMEOUT);
        read_done = done;
        if stalled > PAUSED {
            warn!(
                paused_ms = stalled.as_millis(),
                "the process did not run: dropping the requests queued meanwhile"
            );
            drop_until = Some(done + PAUSE_DRAIN);
        }
        match next {
            Ok(_) if drop_until.is_some_and(|t| done < t) => {
                trace!("request queued during a pause dropped");
            }
            Ok(frame) => handle(shared, frame, &mut last_warning),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                ) => {}
            Err(e) => {
                bump(&shared.counters.receive_errors);
                // When the interface goes down the kernel sets ENETDOWN on the socket. pnet sees
                // POLLERR without data and returns "Unexpected poll event" without reading the
                // error, so every later poll would fail at once: read (and so clear) it here. The
                // socket stays bound and receives again once the interface is back up.
                let pending = take_socket_error(fd, rx.as_ref());
                if should_warn(&mut last_warning) {
                    let cause = pending.as_ref().unwrap_or(&e);
                    warn!(
                        error = %cause,
                        hint = %receive_hint(&shared.iface, cause),
                        "receiving on the packet socket failed; still listening"
                    );
                }
                // Never spin on an error that does not clear.
                std::thread::sleep(READ_TIMEOUT);
            }
        }
    }
}

/// Reads and clears the socket's pending error (SO_ERROR). Borrowing `rx` proves the descriptor is
/// still open.
fn take_socket_error(fd: RawFd, _rx: &dyn DataLinkReceiver) -> Option<io::Error> {
    // SAFETY: `fd` belongs to the socket owned by `_rx` (pnet closes it only when the receiver and
    // sender are both dropped); `_rx` is borrowed for this whole call, so the descriptor is open and
    // cannot be closed and reused for another file while the borrowed handle exists.
    let socket = unsafe { BorrowedFd::borrow_raw(fd) };
    match nix::sys::socket::getsockopt(&socket, sockopt::SocketError) {
        Ok(0) => None,
        Ok(errno) => Some(io::Error::from_raw_os_error(errno)),
        Err(errno) => Some(errno.into()),
    }
}

fn receive_hint(iface: &str, err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ENETDOWN) => {
            format!("interface {iface} went down; requests are answered again once it is up")
        }
        Some(libc::ENODEV) | Some(libc::ENXIO) => {
            format!("interface {iface} disappeared; restart the responder once it is back")
        }
        _ => "unexpected error from the kernel".into(),
    }
}

fn handle(shared: &Shared, frame: &[u8], last_warning: &mut Option<Instant>) {
    // The BPF filter already drops our own and other hosts' frames; this keeps the rule even if
    // the filter is ever loosened.
    if !frame::addressed_to(frame, shared.mac) || frame::eth_source(frame) == Some(shared.mac) {
        return;
    }
    let request = match frame::parse(frame) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            bump(&shared.counters.malformed);
            trace!(error = %e, frame = ?frame::Hex(frame), "malformed frame ignored");
            return;
        }
    };
    bump(&shared.counters.requests_seen);
    let target = request.target();
    if !shared.owns(target) {
        trace!(%target, "request for an address not owned here");
        return;
    }
    let what = match request {
        Request::Arp { .. } => "an ARP reply",
        Request::Ns { .. } => "a Neighbor Advertisement",
    };
    match shared.send(&frame::reply_for(&request, shared.mac), what) {
        Ok(()) => {
            bump(&shared.counters.requests_answered);
            trace!(%target, ?request, "answered");
        }
        Err(e) => {
            if should_warn(last_warning) {
                warn!(%target, error = %e, "answering a request failed");
            }
        }
    }
}

fn should_warn(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    match *last {
        Some(t) if now.duration_since(t) < WARN_INTERVAL => false,
        _ => {
            *last = Some(now);
            true
        }
    }
}

/// A packet socket that receives nothing until bound, with [`FILTER`] attached: bound by pnet
/// afterwards, it never lets an unfiltered frame through.
fn filtered_packet_socket() -> io::Result<OwnedFd> {
    // Protocol 0: the socket receives no frames until `bind` names a protocol.
    let fd = nix::sys::socket::socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let prog = libc::sock_fprog {
        // FILTER has 12 instructions; the cast cannot truncate.
        len: FILTER.len() as libc::c_ushort,
        filter: FILTER.as_ptr().cast_mut(),
    };
    // SAFETY: `fd` is an open socket we own; `prog` points to a `sock_fprog` that lives across the
    // call, whose `filter` points to `FILTER.len()` valid `sock_filter` instructions in a static.
    // The kernel copies the program during the call and never writes through the pointer (the
    // `*mut` is only the C declaration's). The length passed is exactly the size of `prog`.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const prog).cast::<libc::c_void>(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

const fn insn(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Offset of the packet-type ancillary field for BPF loads (linux/filter.h `SKF_AD_OFF +
/// SKF_AD_PKTTYPE`), as the unsigned `k` of a load.
const PKTTYPE: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32;
const PACKET_OTHERHOST: u32 = 3;
const PACKET_OUTGOING: u32 = 4;
const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const LD_H_ABS: u32 = libc::BPF_LD | libc::BPF_H | libc::BPF_ABS;
const LD_B_ABS: u32 = libc::BPF_LD | libc::BPF_B | libc::BPF_ABS;
const JEQ_K: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const RET_K: u32 = libc::BPF_RET | libc::BPF_K;
/// Bytes of an accepted frame copied to user space (the whole frame, up to the read buffer).
const SNAP: u32 = READ_BUFFER as u32;

/// Classic BPF: keep ARP (EtherType 0x0806) and ICMPv6 type 135 (Neighbor Solicitation, RFC 4861
/// §4.3) directly after a plain IPv6 header; drop frames this host sent (`PACKET_OUTGOING`) and
/// unicast frames for other MACs (`PACKET_OTHERHOST`). Jump offsets count instructions skipped.
pub(crate) const FILTER: [libc::sock_filter; 12] = [
    insn(LD_W_ABS, 0, 0, PKTTYPE),                   // 0: A = pkttype
    insn(JEQ_K, 9, 0, PACKET_OUTGOING),              // 1: sent by us -> 11 drop
    insn(JEQ_K, 8, 0, PACKET_OTHERHOST),             // 2: for another MAC -> 11 drop
    insn(LD_H_ABS, 0, 0, 12),                        // 3: A = EtherType
    insn(JEQ_K, 5, 0, frame::ETHERTYPE_ARP as u32),  // 4: ARP -> 10 accept
    insn(JEQ_K, 0, 5, frame::ETHERTYPE_IPV6 as u32), // 5: not IPv6 -> 11 drop
    insn(LD_B_ABS, 0, 0, 14 + 6),                    // 6: A = IPv6 next header
    insn(JEQ_K, 0, 3, 58),                           // 7: not ICMPv6 -> 11 drop
    insn(LD_B_ABS, 0, 0, 14 + 40),                   // 8: A = ICMPv6 type
    insn(JEQ_K, 0, 1, 135),                          // 9: not NS -> 11 drop
    insn(RET_K, 0, 0, SNAP),                         // 10: accept
    insn(RET_K, 0, 0, 0),                            // 11: drop
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A classic BPF interpreter for the instructions [`FILTER`] uses: what the kernel would
    /// decide for `frame` arriving with packet type `pkttype`. Out-of-bounds loads drop the frame,
    /// as in the kernel.
    fn run_filter(frame: &[u8], pkttype: u32) -> u32 {
        let mut a: u32 = 0;
        let mut pc = 0usize;
        let load = |at: u32, n: usize| -> Option<u32> {
            let s = frame.get(at as usize..at as usize + n)?;
            Some(s.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
        };
        for _ in 0..64 {
            let i = FILTER[pc];
            let code = u32::from(i.code);
            pc += 1;
            match code {
                LD_W_ABS if i.k == PKTTYPE => a = pkttype,
                LD_W_ABS => match load(i.k, 4) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LD_H_ABS => match load(i.k, 2) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LD_B_ABS => match load(i.k, 1) {
                    Some(v) => a = v,
                    None => return 0,
                },
                JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                RET_K => return i.k,
                other => panic!("instruction {other:#x} not interpreted"),
            }
        }
        panic!("filter did not return");
    }

    const PEER: MacAddr = MacAddr(0x02, 0xfe, 0, 0, 0, 0x03);
    const HOST: u32 = 0;
    const BROADCAST: u32 = 1;
    const MULTICAST: u32 = 2;

    #[test]
    fn filter_keeps_arp_and_neighbor_solicitations_only() {
        let vip4 = Ipv4Addr::new(192, 0, 2, 70);
        let vip6: Ipv6Addr = "2001:db8::1:70".parse().unwrap();
        let arp = frame::garp_request(PEER, vip4);
        assert_eq!(run_filter(&arp, BROADCAST), SNAP);
        assert_eq!(run_filter(&arp, HOST), SNAP);
        assert_eq!(run_filter(&arp, PACKET_OUTGOING), 0, "our own frames");
        assert_eq!(run_filter(&arp, PACKET_OTHERHOST), 0, "someone else's");

        // A Neighbor Solicitation: an NA with the type byte changed is enough for the filter.
        let mut ns = frame::unsolicited_na(PEER, vip6);
        ns[54] = 135;
        assert_eq!(run_filter(&ns, MULTICAST), SNAP);
        let na = frame::unsolicited_na(PEER, vip6);
        assert_eq!(
            run_filter(&na, MULTICAST),
            0,
            "advertisements are not requests"
        );
        let mut udp = ns.clone();
        udp[20] = 17;
        assert_eq!(run_filter(&udp, HOST), 0);
        let mut ipv4 = arp.clone();
        ipv4[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(run_filter(&ipv4, HOST), 0);
        // Too short to hold what the filter reads: dropped, as the kernel does.
        assert_eq!(run_filter(&ns[..40], MULTICAST), 0);
        assert_eq!(run_filter(&arp[..13], BROADCAST), 0);
    }

    #[test]
    fn only_addresses_a_host_can_own_are_owned() {
        for ip in ["192.0.2.70", "2001:db8::1:70", "fe80::1"] {
            assert!(is_ownable(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "127.0.0.1",
            "::",
            "::1",
            "ff02::1",
        ] {
            assert!(!is_ownable(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn warnings_are_rate_limited() {
        let mut last = None;
        assert!(should_warn(&mut last));
        assert!(!should_warn(&mut last));
        last = Some(Instant::now() - WARN_INTERVAL);
        assert!(should_warn(&mut last));
    }
}
