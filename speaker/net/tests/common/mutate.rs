//! Test-only fuzzing kit for `frame::parse`: a seeded random generator, a corpus of valid frames
//! of every kind the parser knows, a mutation engine, and the checks run on every input.
//!
//! Shared by the `fuzz_parse` test, the property tests and the `fuzz-parse` example. It is not
//! part of the library. Written without `unwrap`/`panic!` so the example (not a test target) passes
//! the workspace lints; invariant violations are `assert!`s.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ferrolb_net::MacAddr;
use ferrolb_net::frame::{self, ParseError, Request};

/// The responder's MAC in every check.
pub const MAC: MacAddr = MacAddr(0x02, 0xfe, 0, 0, 0, 0x0b);
pub const PEER: MacAddr = MacAddr(0x02, 0xfe, 0, 0, 0, 0x03);
pub const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 70);
pub const PEER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, 0x70);
pub const PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3);

/// SplitMix64: small, fast, deterministic for a seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; 0 gives 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// An ARP request for Ethernet/IPv4 (RFC 826), unpadded.
pub fn arp_request(sha: MacAddr, spa: Ipv4Addr, tha: MacAddr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&MacAddr::broadcast().octets());
    f.extend_from_slice(&sha.octets());
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&sha.octets());
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha.octets());
    f.extend_from_slice(&tpa.octets());
    f
}

/// A Neighbor Solicitation (RFC 4861 §4.3) with a correct checksum.
pub fn ns(
    eth_src: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    options: &[u8],
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&frame::multicast_mac(dst).octets());
    f.extend_from_slice(&eth_src.octets());
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    let len = (24 + options.len()) as u16;
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&target.octets());
    f.extend_from_slice(options);
    fix_checksum(&mut f);
    f
}

pub fn sllao(mac: MacAddr) -> Vec<u8> {
    let mut v = vec![1, 1];
    v.extend_from_slice(&mac.octets());
    v
}

/// Frames of every kind the parser distinguishes: requests it answers, frames it ignores, and
/// one it rejects that mutations rarely produce.
pub fn corpus() -> Vec<Vec<u8>> {
    let mut padded = arp_request(PEER, PEER4, MacAddr::broadcast(), VIP4);
    padded.resize(60, 0);
    let mut nonce_and_sllao = vec![14, 1, 1, 2, 3, 4, 5, 6];
    nonce_and_sllao.extend_from_slice(&sllao(PEER));
    vec![
        padded,
        arp_request(PEER, PEER4, MacAddr::zero(), VIP4),
        arp_request(PEER, Ipv4Addr::UNSPECIFIED, MacAddr::zero(), VIP4),
        frame::garp_request(PEER, VIP4),
        frame::garp_reply(PEER, VIP4),
        frame::arp_reply(PEER, VIP4, MAC, PEER4),
        ns(PEER, PEER6, frame::solicited_node(VIP6), VIP6, &sllao(PEER)),
        ns(PEER, PEER6, VIP6, VIP6, &[]),
        ns(
            PEER,
            Ipv6Addr::UNSPECIFIED,
            frame::solicited_node(VIP6),
            VIP6,
            &[],
        ),
        ns(
            PEER,
            PEER6,
            frame::solicited_node(VIP6),
            VIP6,
            &nonce_and_sllao,
        ),
        frame::unsolicited_na(PEER, VIP6),
        frame::solicited_na(PEER, VIP6, MAC, PEER6),
        // Invalid on purpose: duplicate address detection with a source link-layer address.
        ns(
            PEER,
            Ipv6Addr::UNSPECIFIED,
            frame::solicited_node(VIP6),
            VIP6,
            &sllao(PEER),
        ),
    ]
}

/// Recomputes the ICMPv6 checksum of a frame that looks like Ethernet + IPv6 + ICMPv6 with its
/// payload length, so mutations of the body reach the checks behind the checksum.
pub fn fix_checksum(f: &mut [u8]) {
    if f.len() < 14 + 40 + 4 || f[12..14] != [0x86, 0xdd] {
        return;
    }
    let payload = usize::from(u16::from_be_bytes([f[18], f[19]]));
    let end = 54 + payload;
    if end > f.len() || payload < 4 {
        return;
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&f[22..38]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&f[38..54]);
    f[56] = 0;
    f[57] = 0;
    let sum = frame::icmpv6_checksum(Ipv6Addr::from(src), Ipv6Addr::from(dst), &f[54..end]);
    f[56..58].copy_from_slice(&sum.to_be_bytes());
}

const INTERESTING8: [u8; 12] = [0, 1, 2, 4, 6, 8, 0x7f, 0x80, 0xff, 58, 135, 136];
const INTERESTING16: [u16; 10] = [0, 1, 0x0806, 0x0800, 0x86dd, 24, 32, 0x7fff, 0x8000, 0xffff];

/// One to four stacked mutations of `seed`; afterwards, half the time, a fixed checksum.
pub fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut f = seed.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = f.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                f[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                f[i] = rng.byte();
            }
            2 if len > 0 => {
                let i = rng.below(len);
                f[i] = INTERESTING8[rng.below(INTERESTING8.len())];
            }
            3 if len > 1 => {
                let i = rng.below(len - 1);
                let v = INTERESTING16[rng.below(INTERESTING16.len())];
                f[i..i + 2].copy_from_slice(&v.to_be_bytes());
            }
            4 => f.truncate(rng.below(len + 1)),
            5 => {
                let extra = rng.below(64);
                for _ in 0..extra {
                    f.push(rng.byte());
                }
            }
            6 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(16));
                f.drain(at..at + n);
            }
            7 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
                f.splice(at..at, bytes);
            }
            _ if len >= 20 => {
                // Mutate the fields that steer the parser: EtherType and lengths.
                let (at, v) = match rng.below(3) {
                    0 => (12, INTERESTING16[rng.below(INTERESTING16.len())]),
                    1 => (18, rng.below(200) as u16),
                    _ => (18, u16::from(INTERESTING8[rng.below(INTERESTING8.len())])),
                };
                f[at..at + 2].copy_from_slice(&v.to_be_bytes());
            }
            _ => {}
        }
    }
    if rng.one_in(2) {
        fix_checksum(&mut f);
    }
    f
}

/// Random bytes of random length; half the time with an ARP or IPv6 EtherType so the parser goes
/// past the first check.
pub fn random_frame(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(129);
    let mut f: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
    if len >= 14 && rng.one_in(2) {
        let et: [u8; 2] = if rng.one_in(2) {
            [0x08, 0x06]
        } else {
            [0x86, 0xdd]
        };
        f[12..14].copy_from_slice(&et);
        if rng.one_in(2) {
            fix_checksum(&mut f);
        }
    }
    f
}

/// One input of the fuzzer: a seed mutated, or random bytes.
pub fn next_input(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    if rng.one_in(4) {
        random_frame(rng)
    } else {
        let seed = &corpus[rng.below(corpus.len())];
        mutate(rng, seed)
    }
}

/// What `parse` made of an input, for the coverage tally.
pub fn outcome(r: &Result<Option<Request>, ParseError>) -> String {
    match r {
        Ok(Some(Request::Arp { .. })) => "Ok(Arp)".into(),
        Ok(Some(Request::Ns { .. })) => "Ok(Ns)".into(),
        Ok(None) => "Ok(None)".into(),
        Err(e) => {
            let d = format!("{e:?}");
            let name: String = d.chars().take_while(|c| c.is_alphanumeric()).collect();
            format!("Err({name})")
        }
    }
}

/// Parses `input` and checks what must hold for every request the parser accepts:
/// - the answer comes from our MAC, is a well-formed ARP reply or Neighbor Advertisement, and is
///   never itself a request (two responders can never ping-pong);
/// - an ARP answer goes unicast to the requester and carries our MAC as sender;
/// - an NDP answer has hop limit 255, a valid checksum and our MAC as target link-layer address;
/// - trailing bytes (padding) do not change the result.
///
/// Returns the outcome's name.
pub fn check(input: &[u8]) -> String {
    let parsed = frame::parse(input);
    if let Ok(Some(req)) = parsed {
        let reply = frame::reply_for(&req, MAC);
        assert_eq!(frame::eth_source(&reply), Some(MAC), "reply source");
        assert_eq!(
            frame::parse(&reply),
            Ok(None),
            "a reply parsed as a request"
        );
        match req {
            Request::Arp { sender_mac, .. } => {
                assert_eq!(reply.len(), frame::ARP_FRAME_LEN);
                assert!(sender_mac.is_unicast(), "answering a multicast sender");
                assert_eq!(&reply[0..6], &sender_mac.octets());
                assert_eq!(&reply[22..28], &MAC.octets());
            }
            Request::Ns { .. } => {
                assert_eq!(reply.len(), frame::NA_FRAME_LEN);
                assert_eq!(reply[21], 255, "hop limit");
                let mut src = [0u8; 16];
                src.copy_from_slice(&reply[22..38]);
                let mut dst = [0u8; 16];
                dst.copy_from_slice(&reply[38..54]);
                assert_eq!(
                    frame::icmpv6_checksum(Ipv6Addr::from(src), Ipv6Addr::from(dst), &reply[54..]),
                    0,
                    "reply checksum"
                );
                assert_eq!(&reply[80..86], &MAC.octets());
                assert!(
                    !MacAddr::new(reply[0], reply[1], reply[2], reply[3], reply[4], reply[5])
                        .is_broadcast()
                );
            }
        }
        let mut padded = input.to_vec();
        padded.extend_from_slice(&[0; 24]);
        assert_eq!(frame::parse(&padded), parsed, "padding changed the result");
    }
    outcome(&parsed)
}

/// Outcome counts of a run.
#[derive(Debug, Default)]
pub struct Tally(pub BTreeMap<String, u64>);

impl Tally {
    pub fn add(&mut self, outcome: String) {
        *self.0.entry(outcome).or_default() += 1;
    }

    pub fn count(&self, outcome: &str) -> u64 {
        self.0.get(outcome).copied().unwrap_or(0)
    }

    pub fn summary(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}
