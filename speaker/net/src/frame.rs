//! ARP and NDP frames, built and parsed without I/O.
//!
//! Builders return complete Ethernet frames, byte for byte what goes on the wire (the NIC pads
//! short frames to the 60-byte minimum, as it does for the kernel's own ARP). [`parse`] reads a
//! received frame and returns the [`Request`] it carries, if it is one this crate answers: an ARP
//! request (RFC 826) or a Neighbor Solicitation (RFC 4861 §4.3). It reads every field through
//! bounds-checked accessors and never panics, whatever the input (see the property and fuzz tests).
//!
//! Why by hand, not with `pnet_packet`'s packet types (which the tests use as the independent
//! decoder of what these builders send): its NDP option parsing computes an option's byte length
//! from the 8-bit length field sent by the peer, and that arithmetic can overflow and panic on a
//! hostile frame; this parser must take any frame the segment delivers, so every length here is
//! checked before it is used.
//!
//! Choices, with their sources:
//! - **Gratuitous ARP from others is not a request.** An ARP request whose sender and target IP
//!   are equal is an announcement (RFC 5227 §2.3, §3); [`parse`] returns `Ok(None)`, so a speaker
//!   never answers another host's announcement (that would make two hosts fight over the address).
//! - **ARP probes are answered.** A probe has sender IP 0.0.0.0 (RFC 5227 §2.1.1). The host that
//!   owns the address answers it like any request (RFC 826 processing; Linux does the same), with
//!   the target IP 0.0.0.0 copied from the probe; the prober then sees the address in use and
//!   picks another one instead of stealing a VIP.
//! - **Neighbor Solicitations are answered with or without a source link-layer address option.**
//!   Unicast reachability probes may omit it (RFC 4861 §4.3, §7.2.2); the answer then goes to the
//!   Ethernet source of the solicitation.
//! - **Duplicate-address-detection solicitations (source ::) are answered** with an advertisement
//!   to all-nodes ff02::1 with Solicited=0 (RFC 4861 §7.2.4): that is how an owner defends its
//!   address (RFC 4862 §5.4.3), so another host does not configure a VIP that a speaker holds.
//! - **Advertisements carry the target as their IPv6 source.** RFC 4861 §4.4 asks for an address
//!   of the sending interface; a VIP is the node's address as far as the segment is concerned, and
//!   Linux does the same when it answers for its own addresses (`ndisc_send_na`).
//! - **Gratuitous ARP is sent both as request and as reply.** RFC 5227 §3 prefers requests, but
//!   some hosts and switches update their caches only on replies (MetalLB sends both for the same
//!   reason). A gratuitous reply's target hardware address equals the sender's, which Linux
//!   requires before it treats a reply as gratuitous (`arp_is_garp`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pnet_base::MacAddr;

/// EtherType of ARP (RFC 826).
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv4; the ARP protocol type for IPv4 (RFC 826 `ar$pro`).
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Length of an Ethernet II header: destination, source, EtherType.
pub const ETH_HEADER_LEN: usize = 14;
/// Length of an IPv4-over-Ethernet ARP frame without padding (14 + 28).
pub const ARP_FRAME_LEN: usize = ETH_HEADER_LEN + ARP_LEN;
/// Length of a Neighbor Advertisement frame with a target link-layer address option
/// (14 Ethernet + 40 IPv6 + 24 ICMPv6 + 8 option).
pub const NA_FRAME_LEN: usize = ETH_HEADER_LEN + IPV6_HEADER_LEN + NA_LEN;
/// The all-nodes multicast address (RFC 4291 §2.7.1).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// IPv6 hop limit of every Neighbor Discovery message, checked by receivers (RFC 4861 §4.3, §4.4,
/// §7.1.1): it proves the packet was not forwarded by a router.
pub const ND_HOP_LIMIT: u8 = 255;

const ARP_LEN: usize = 28;
const ARP_HTYPE_ETHERNET: u16 = 1;
const ARP_OP_REQUEST: u16 = 1;
const ARP_OP_REPLY: u16 = 2;
const IPV6_HEADER_LEN: usize = 40;
const IPPROTO_ICMPV6: u8 = 58;
const ICMPV6_NS: u8 = 135;
const ICMPV6_NA: u8 = 136;
/// Fixed part of a Neighbor Solicitation or Advertisement: type, code, checksum, 4 bytes of
/// flags/reserved, 16 bytes of target (RFC 4861 §4.3, §4.4).
const ND_FIXED_LEN: usize = 24;
const NA_LEN: usize = ND_FIXED_LEN + 8;
const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;
/// Neighbor Advertisement flags (RFC 4861 §4.4), in the first byte after the checksum.
const NA_FLAG_SOLICITED: u8 = 0x40;
const NA_FLAG_OVERRIDE: u8 = 0x20;

/// A request this crate answers, read from a received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// An ARP request (RFC 826), including RFC 5227 probes (`sender_ip` 0.0.0.0), but never a
    /// gratuitous announcement.
    Arp {
        sender_mac: MacAddr,
        sender_ip: Ipv4Addr,
        target_ip: Ipv4Addr,
    },
    /// A Neighbor Solicitation (RFC 4861 §4.3).
    Ns {
        /// Ethernet source of the frame.
        src_mac: MacAddr,
        /// IPv6 source; `::` for duplicate address detection.
        src_ip: Ipv6Addr,
        target: Ipv6Addr,
        /// The source link-layer address option, when present.
        source_ll: Option<MacAddr>,
    },
}

impl Request {
    /// The address the requester asks about.
    pub fn target(&self) -> IpAddr {
        match *self {
            Request::Arp { target_ip, .. } => IpAddr::V4(target_ip),
            Request::Ns { target, .. } => IpAddr::V6(target),
        }
    }
}

/// Why a frame that claims to be an ARP packet or a Neighbor Solicitation was rejected. The text
/// names the rule it broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{what} truncated: needs {need} bytes, frame has {got}")]
    Truncated {
        what: &'static str,
        need: usize,
        got: usize,
    },
    #[error(
        "ARP for Ethernet/IPv4 with hardware length {hlen} and protocol length {plen} (RFC 826 says 6 and 4)"
    )]
    ArpLengths { hlen: u8, plen: u8 },
    #[error(
        "ARP sender hardware address {0} is multicast or broadcast; answering would flood the segment"
    )]
    ArpMulticastSender(MacAddr),
    #[error("ARP sender IP {0} is multicast, broadcast or loopback, which no host may use")]
    ArpBadSenderIp(Ipv4Addr),
    #[error("IPv6 EtherType with IP version {0}")]
    Ipv6Version(u8),
    #[error("Ethernet source {0} of a Neighbor Solicitation is multicast or broadcast")]
    NsMulticastSourceMac(MacAddr),
    #[error(
        "Neighbor Solicitation with hop limit {0}, not 255: it crossed a router (RFC 4861 §7.1.1)"
    )]
    NsHopLimit(u8),
    #[error("Neighbor Solicitation with ICMPv6 code {0}, not 0 (RFC 4861 §7.1.1)")]
    NsCode(u8),
    #[error("Neighbor Solicitation of {0} bytes, shorter than 24 (RFC 4861 §7.1.1)")]
    NsTooShort(usize),
    #[error(
        "Neighbor Solicitation with ICMPv6 checksum {got:#06x}, computed {want:#06x} (RFC 4861 §7.1.1)"
    )]
    NsChecksum { got: u16, want: u16 },
    #[error("Neighbor Solicitation for multicast target {0} (RFC 4861 §7.1.1)")]
    NsMulticastTarget(Ipv6Addr),
    #[error("Neighbor Solicitation from multicast source {0} (RFC 4291 §2.7)")]
    NsMulticastSource(Ipv6Addr),
    #[error("Neighbor Solicitation option of type {kind} has length 0 (RFC 4861 §4.6)")]
    NsZeroLengthOption { kind: u8 },
    #[error("Neighbor Solicitation option of type {kind} runs past the end of the message")]
    NsOptionOverrun { kind: u8 },
    #[error("Neighbor Solicitation source link-layer address {0} is multicast or broadcast")]
    NsMulticastSourceLl(MacAddr),
    #[error(
        "duplicate address detection solicitation (source ::) sent to {0}, not to a solicited-node group (RFC 4861 §7.1.1)"
    )]
    NsDadDestination(Ipv6Addr),
    #[error(
        "duplicate address detection solicitation (source ::) with a source link-layer address option (RFC 4861 §7.1.1)"
    )]
    NsDadWithSourceLl,
}

/// A broadcast gratuitous ARP request announcing that `ip` is at `mac`: sender and target IP both
/// `ip`, target hardware address zero (RFC 5227 §2.3 "ARP Announcement", §3).
pub fn garp_request(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    arp_frame(
        MacAddr::broadcast(),
        ARP_OP_REQUEST,
        mac,
        ip,
        MacAddr::zero(),
        ip,
    )
}

/// A broadcast gratuitous ARP reply for `ip`: sender and target IP both `ip`, target hardware
/// address `mac` (the form Linux's `arp_is_garp` accepts for replies).
pub fn garp_reply(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    arp_frame(MacAddr::broadcast(), ARP_OP_REPLY, mac, ip, mac, ip)
}

/// The unicast ARP reply telling `requester` that `ip_owned` is at `mac` (RFC 826: swap sender and
/// target, fill in our hardware address, send to the requester's hardware address).
pub fn arp_reply(
    mac: MacAddr,
    ip_owned: Ipv4Addr,
    requester_mac: MacAddr,
    requester_ip: Ipv4Addr,
) -> Vec<u8> {
    arp_frame(
        requester_mac,
        ARP_OP_REPLY,
        mac,
        ip_owned,
        requester_mac,
        requester_ip,
    )
}

/// An unsolicited Neighbor Advertisement for `ip` to all-nodes (RFC 4861 §7.2.6): Override=1 so
/// that existing cache entries switch to `mac`, Solicited=0, Router=0, with a target link-layer
/// address option.
pub fn unsolicited_na(mac: MacAddr, ip: Ipv6Addr) -> Vec<u8> {
    na_frame(
        mac,
        ip,
        multicast_mac(ALL_NODES),
        ALL_NODES,
        NA_FLAG_OVERRIDE,
    )
}

/// The Neighbor Advertisement answering a solicitation for `target` from `dst_ip` at `dst_mac`
/// (RFC 4861 §7.2.4): unicast with Solicited=1 and Override=1. When the solicitation came from the
/// unspecified address (duplicate address detection), the answer goes to all-nodes with
/// Solicited=0 instead, and `dst_mac` is not used.
pub fn solicited_na(mac: MacAddr, target: Ipv6Addr, dst_mac: MacAddr, dst_ip: Ipv6Addr) -> Vec<u8> {
    if dst_ip.is_unspecified() {
        unsolicited_na(mac, target)
    } else {
        na_frame(
            mac,
            target,
            dst_mac,
            dst_ip,
            NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE,
        )
    }
}

/// The solicited-node multicast address of `ip`: ff02::1:ff00:0/104 followed by the low 24 bits of
/// `ip` (RFC 4291 §2.7.1).
pub fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// The Ethernet multicast address of an IPv6 multicast group: 33:33 and the group's low 32 bits
/// (RFC 2464 §7).
pub fn multicast_mac(group: Ipv6Addr) -> MacAddr {
    let o = group.octets();
    MacAddr::new(0x33, 0x33, o[12], o[13], o[14], o[15])
}

/// The frame that answers `req` from the interface with hardware address `mac`.
pub fn reply_for(req: &Request, mac: MacAddr) -> Vec<u8> {
    match *req {
        Request::Arp {
            sender_mac,
            sender_ip,
            target_ip,
        } => arp_reply(mac, target_ip, sender_mac, sender_ip),
        Request::Ns {
            src_mac,
            src_ip,
            target,
            source_ll,
        } => solicited_na(mac, target, source_ll.unwrap_or(src_mac), src_ip),
    }
}

/// Whether a frame's Ethernet destination is `mac`, broadcast or multicast: the frames a host on
/// a shared segment is meant to read. Frames for other unicast MACs (seen on a hub, a flooding
/// switch or in promiscuous mode) are someone else's conversation.
pub fn addressed_to(frame: &[u8], mac: MacAddr) -> bool {
    match mac_at(frame, 0) {
        Some(dst) => dst == mac || dst.is_multicast(),
        None => false,
    }
}

/// The Ethernet source of a frame, if it has one.
pub fn eth_source(frame: &[u8]) -> Option<MacAddr> {
    mac_at(frame, 6)
}

/// Reads a frame and returns the request it carries.
///
/// `Ok(None)`: not something this crate answers (another EtherType, an ARP reply, a gratuitous
/// ARP, ARP for another hardware or protocol type, an IPv6 packet that is not a Neighbor
/// Solicitation). `Err`: an ARP packet or a Neighbor Solicitation that breaks its RFC's validity
/// rules (RFC 826 lengths, RFC 4861 §7.1.1). Trailing bytes (Ethernet padding) are ignored.
pub fn parse(frame: &[u8]) -> Result<Option<Request>, ParseError> {
    let ethertype = be16(frame, 12).ok_or(ParseError::Truncated {
        what: "Ethernet header",
        need: ETH_HEADER_LEN,
        got: frame.len(),
    })?;
    match ethertype {
        ETHERTYPE_ARP => parse_arp(frame),
        ETHERTYPE_IPV6 => parse_ns(frame),
        _ => Ok(None),
    }
}

fn parse_arp(frame: &[u8]) -> Result<Option<Request>, ParseError> {
    let truncated = |need| ParseError::Truncated {
        what: "ARP packet",
        need,
        got: frame.len(),
    };
    let a = ETH_HEADER_LEN;
    let (Some(htype), Some(ptype), Some(hlen), Some(plen), Some(op)) = (
        be16(frame, a),
        be16(frame, a + 2),
        frame.get(a + 4).copied(),
        frame.get(a + 5).copied(),
        be16(frame, a + 6),
    ) else {
        return Err(truncated(a + 8));
    };
    // RFC 826: a packet for a hardware or protocol type we do not speak is not ours to judge.
    if htype != ARP_HTYPE_ETHERNET || ptype != ETHERTYPE_IPV4 {
        return Ok(None);
    }
    if hlen != 6 || plen != 4 {
        return Err(ParseError::ArpLengths { hlen, plen });
    }
    let (Some(sha), Some(spa), Some(_tha), Some(tpa)) = (
        mac_at(frame, a + 8),
        ipv4_at(frame, a + 14),
        mac_at(frame, a + 18),
        ipv4_at(frame, a + 24),
    ) else {
        return Err(truncated(ARP_FRAME_LEN));
    };
    if op != ARP_OP_REQUEST {
        return Ok(None);
    }
    if sha.is_multicast() {
        return Err(ParseError::ArpMulticastSender(sha));
    }
    if spa.is_multicast() || spa.is_broadcast() || spa.is_loopback() {
        return Err(ParseError::ArpBadSenderIp(spa));
    }
    // RFC 5227 §2.3: sender IP = target IP is an announcement, not a question.
    if spa == tpa {
        return Ok(None);
    }
    Ok(Some(Request::Arp {
        sender_mac: sha,
        sender_ip: spa,
        target_ip: tpa,
    }))
}

fn parse_ns(frame: &[u8]) -> Result<Option<Request>, ParseError> {
    let ip = ETH_HEADER_LEN;
    let header = frame
        .get(ip..ip + IPV6_HEADER_LEN)
        .ok_or(ParseError::Truncated {
            what: "IPv6 header",
            need: ip + IPV6_HEADER_LEN,
            got: frame.len(),
        })?;
    let version = header.first().map_or(0, |b| b >> 4);
    if version != 6 {
        return Err(ParseError::Ipv6Version(version));
    }
    let (Some(payload_len), Some(next_header), Some(hop_limit), Some(src_ip), Some(dst_ip)) = (
        be16(header, 4),
        header.get(6).copied(),
        header.get(7).copied(),
        ipv6_at(header, 8),
        ipv6_at(header, 24),
    ) else {
        return Err(ParseError::Truncated {
            what: "IPv6 header",
            need: ip + IPV6_HEADER_LEN,
            got: frame.len(),
        });
    };
    // A solicitation has no extension headers; anything else is not ours (MLD, for one, comes
    // with a hop-by-hop header).
    if next_header != IPPROTO_ICMPV6 {
        return Ok(None);
    }
    let start = ip + IPV6_HEADER_LEN;
    let end = start + usize::from(payload_len);
    let Some(icmp) = frame.get(start..end) else {
        return Err(ParseError::Truncated {
            what: "IPv6 payload",
            need: end,
            got: frame.len(),
        });
    };
    if icmp.first() != Some(&ICMPV6_NS) {
        return Ok(None);
    }
    // RFC 4861 §7.1.1 validity checks.
    if icmp.len() < ND_FIXED_LEN {
        return Err(ParseError::NsTooShort(icmp.len()));
    }
    if hop_limit != ND_HOP_LIMIT {
        return Err(ParseError::NsHopLimit(hop_limit));
    }
    if icmpv6_checksum(src_ip, dst_ip, icmp) != 0 {
        // Error path only: recompute over a copy with the checksum field zeroed to say what it
        // should have been.
        let mut zeroed = icmp.to_vec();
        if let Some(field) = zeroed.get_mut(2..4) {
            field.fill(0);
        }
        return Err(ParseError::NsChecksum {
            got: be16(icmp, 2).unwrap_or(0),
            want: icmpv6_checksum(src_ip, dst_ip, &zeroed),
        });
    }
    let code = icmp.get(1).copied().unwrap_or(0);
    if code != 0 {
        return Err(ParseError::NsCode(code));
    }
    let Some(target) = ipv6_at(icmp, 8) else {
        return Err(ParseError::NsTooShort(icmp.len()));
    };
    if target.is_multicast() {
        return Err(ParseError::NsMulticastTarget(target));
    }
    if src_ip.is_multicast() {
        return Err(ParseError::NsMulticastSource(src_ip));
    }
    let src_mac = mac_at(frame, 6).ok_or(ParseError::Truncated {
        what: "Ethernet header",
        need: ETH_HEADER_LEN,
        got: frame.len(),
    })?;
    if src_mac.is_multicast() {
        return Err(ParseError::NsMulticastSourceMac(src_mac));
    }
    let source_ll = source_ll_option(icmp.get(ND_FIXED_LEN..).unwrap_or_default())?;
    if let Some(ll) = source_ll
        && ll.is_multicast()
    {
        return Err(ParseError::NsMulticastSourceLl(ll));
    }
    if src_ip.is_unspecified() {
        if !is_solicited_node(dst_ip) {
            return Err(ParseError::NsDadDestination(dst_ip));
        }
        if source_ll.is_some() {
            return Err(ParseError::NsDadWithSourceLl);
        }
    }
    Ok(Some(Request::Ns {
        src_mac,
        src_ip,
        target,
        source_ll,
    }))
}

/// Walks the options of a solicitation (RFC 4861 §4.6) and returns the first source link-layer
/// address. Unknown options are skipped (§4.6: receivers ignore what they do not recognise);
/// an option of length 0 or one running past the end makes the whole message invalid.
fn source_ll_option(mut opts: &[u8]) -> Result<Option<MacAddr>, ParseError> {
    let mut found = None;
    while let (Some(&kind), Some(&units)) = (opts.first(), opts.get(1)) {
        if units == 0 {
            return Err(ParseError::NsZeroLengthOption { kind });
        }
        let len = usize::from(units) * 8;
        let Some(option) = opts.get(..len) else {
            return Err(ParseError::NsOptionOverrun { kind });
        };
        if kind == OPT_SOURCE_LL && found.is_none() {
            // For Ethernet the option is 8 bytes: type, length, 6-byte address (RFC 4861 §4.6.1,
            // RFC 2464 §8); anything longer carries the address in its first 6 data bytes.
            found = mac_at(option, 2);
        }
        opts = opts.get(len..).unwrap_or_default();
    }
    if !opts.is_empty() {
        // A single trailing byte cannot hold an option header.
        return Err(ParseError::NsOptionOverrun {
            kind: opts.first().copied().unwrap_or(0),
        });
    }
    Ok(found)
}

fn is_solicited_node(ip: Ipv6Addr) -> bool {
    let o = ip.octets();
    o[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff]
}

fn arp_frame(
    eth_dst: MacAddr,
    op: u16,
    sha: MacAddr,
    spa: Ipv4Addr,
    tha: MacAddr,
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(ARP_FRAME_LEN);
    f.extend_from_slice(&eth_dst.octets());
    f.extend_from_slice(&sha.octets());
    f.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    // RFC 826 packet: ar$hrd, ar$pro, ar$hln, ar$pln, ar$op, ar$sha, ar$spa, ar$tha, ar$tpa.
    f.extend_from_slice(&ARP_HTYPE_ETHERNET.to_be_bytes());
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    f.push(6);
    f.push(4);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha.octets());
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha.octets());
    f.extend_from_slice(&tpa.octets());
    f
}

/// A Neighbor Advertisement for `target` from `mac` (RFC 4861 §4.4) with a target link-layer
/// address option (§4.6.1), IPv6 source `target`.
fn na_frame(
    mac: MacAddr,
    target: Ipv6Addr,
    dst_mac: MacAddr,
    dst_ip: Ipv6Addr,
    flags: u8,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(NA_FRAME_LEN);
    f.extend_from_slice(&dst_mac.octets());
    f.extend_from_slice(&mac.octets());
    f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    // IPv6 header: version 6, traffic class 0, flow label 0.
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(NA_LEN as u16).to_be_bytes());
    f.push(IPPROTO_ICMPV6);
    f.push(ND_HOP_LIMIT);
    f.extend_from_slice(&target.octets());
    f.extend_from_slice(&dst_ip.octets());
    let icmp = f.len();
    f.extend_from_slice(&[ICMPV6_NA, 0, 0, 0, flags, 0, 0, 0]);
    f.extend_from_slice(&target.octets());
    f.extend_from_slice(&[OPT_TARGET_LL, 1]);
    f.extend_from_slice(&mac.octets());
    let sum = icmpv6_checksum(target, dst_ip, f.get(icmp..).unwrap_or_default());
    if let Some(slot) = f.get_mut(icmp + 2..icmp + 4) {
        slot.copy_from_slice(&sum.to_be_bytes());
    }
    f
}

/// The Internet checksum (RFC 1071) of an ICMPv6 message over the IPv6 pseudo-header (RFC 8200
/// §8.1). Over a message whose checksum field is filled in, a correct one yields 0; over one with
/// the field zeroed, it yields the value to put there.
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = pair.first().copied().unwrap_or(0);
            let lo = pair.get(1).copied().unwrap_or(0);
            sum += u64::from(u16::from_be_bytes([hi, lo]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    add(&len.to_be_bytes());
    add(&[0, 0, 0, IPPROTO_ICMPV6]);
    add(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

fn mac_at(b: &[u8], at: usize) -> Option<MacAddr> {
    let s: [u8; 6] = b.get(at..at.checked_add(6)?)?.try_into().ok()?;
    Some(MacAddr::from(s))
}

fn ipv4_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(Ipv4Addr::from(s))
}

fn ipv6_at(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let s: [u8; 16] = b.get(at..at.checked_add(16)?)?.try_into().ok()?;
    Some(Ipv6Addr::from(s))
}

/// A frame shown as hex, 16 bytes a line, for logs and test failures.
#[derive(Clone, Copy)]
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.0.chunks(16).enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{:04x}:", i * 16)?;
            for b in line {
                write!(f, " {b:02x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
