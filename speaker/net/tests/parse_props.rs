//! Property tests of the frame code: `parse` never panics on any input, accepts exactly the
//! requests the builders describe, and never turns one of our answers into a request.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::mutate::{self, MAC, PEER, Rng, arp_request, check, corpus, ns, sllao};
use ferrolb_net::MacAddr;
use ferrolb_net::frame::{self, Request, parse, reply_for};
use proptest::prelude::*;

fn unicast_mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(|mut o| {
        o[0] &= 0xfe; // clear the group bit
        MacAddr::from(o)
    })
}

/// A sender address a host may use: not multicast, broadcast or loopback (0.0.0.0 allowed:
/// RFC 5227 probes).
fn sender_ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>()
        .prop_map(Ipv4Addr::from)
        .prop_filter("usable sender", |ip| {
            !(ip.is_multicast() || ip.is_broadcast() || ip.is_loopback())
        })
}

fn unicast_ipv6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>()
        .prop_map(Ipv6Addr::from)
        .prop_filter("not multicast", |ip| {
            !ip.is_multicast() && !ip.is_unspecified()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check(&bytes);
    }

    #[test]
    fn random_bytes_behind_a_known_ethertype_never_panic(
        ethertype in prop_oneof![Just([0x08u8, 0x06]), Just([0x86, 0xdd])],
        mut bytes in proptest::collection::vec(any::<u8>(), 14..200),
    ) {
        bytes[12..14].copy_from_slice(&ethertype);
        check(&bytes);
        mutate::fix_checksum(&mut bytes);
        check(&bytes);
    }

    #[test]
    fn mutated_valid_frames_never_panic(seed in any::<u64>(), which in 0usize..64) {
        let corpus = corpus();
        let mut rng = Rng::new(seed);
        let input = mutate::mutate(&mut rng, &corpus[which % corpus.len()]);
        check(&input);
    }

    #[test]
    fn arp_requests_round_trip(
        sha in unicast_mac(),
        spa in sender_ipv4(),
        tha in any::<[u8; 6]>(),
        tpa in any::<u32>().prop_map(Ipv4Addr::from),
        pad in 0usize..30,
    ) {
        let mut f = arp_request(sha, spa, MacAddr::from(tha), tpa);
        f.resize(f.len() + pad, 0);
        let want = if spa == tpa {
            None // RFC 5227 §2.3: an announcement, not a question
        } else {
            Some(Request::Arp { sender_mac: sha, sender_ip: spa, target_ip: tpa })
        };
        prop_assert_eq!(parse(&f), Ok(want));
        if let Some(req) = want {
            prop_assert_eq!(
                reply_for(&req, MAC),
                frame::arp_reply(MAC, tpa, sha, spa)
            );
        }
    }

    #[test]
    fn solicitations_round_trip(
        src_mac in unicast_mac(),
        src in unicast_ipv6(),
        target in unicast_ipv6(),
        with_sllao in any::<bool>(),
        to_group in any::<bool>(),
    ) {
        let dst = if to_group { frame::solicited_node(target) } else { target };
        let options = if with_sllao { sllao(src_mac) } else { Vec::new() };
        let f = ns(src_mac, src, dst, target, &options);
        let req = Request::Ns {
            src_mac,
            src_ip: src,
            target,
            source_ll: with_sllao.then_some(src_mac),
        };
        prop_assert_eq!(parse(&f), Ok(Some(req)));
        prop_assert_eq!(
            reply_for(&req, MAC),
            frame::solicited_na(MAC, target, src_mac, src)
        );
    }

    #[test]
    fn any_single_bit_flip_in_a_solicitation_is_caught_or_harmless(bit in 0usize..(86 * 8)) {
        // Flip one bit of a valid solicitation without repairing the checksum. From the payload
        // length on, every byte is covered by a check (length, next header, hop limit) or by the
        // checksum (pseudo-header addresses and the ICMPv6 message; a ones' complement sum catches
        // every single-bit error): the frame is rejected or, when the flip changed what it is
        // (next header, ICMPv6 type), ignored, but never accepted. Flips in the Ethernet header,
        // traffic class or flow label may leave a request.
        let mut f = ns(PEER, mutate::PEER6, frame::solicited_node(mutate::VIP6), mutate::VIP6, &sllao(PEER));
        f[bit / 8] ^= 1 << (bit % 8);
        let r = parse(&f);
        if bit / 8 >= 18 {
            prop_assert!(!matches!(r, Ok(Some(_))), "bit {} flipped and still accepted: {:?}", bit, r);
        }
        check(&f);
    }

    #[test]
    fn solicited_node_keeps_the_low_24_bits(ip in any::<u128>().prop_map(Ipv6Addr::from)) {
        let g = u128::from(frame::solicited_node(ip));
        prop_assert_eq!(g >> 24, 0xff_0200_0000_0000_0000_0000_01ff_u128);
        prop_assert_eq!(g & 0xff_ffff, u128::from(ip) & 0xff_ffff);
    }

    #[test]
    fn our_frames_are_never_requests(mac in unicast_mac(), v4 in any::<u32>(), v6 in any::<u128>(), peer in unicast_mac()) {
        let (v4, v6) = (Ipv4Addr::from(v4), Ipv6Addr::from(v6));
        for f in [
            frame::garp_request(mac, v4),
            frame::garp_reply(mac, v4),
            frame::arp_reply(mac, v4, peer, Ipv4Addr::new(192, 0, 2, 3)),
            frame::unsolicited_na(mac, v6),
            frame::solicited_na(mac, v6, peer, mutate::PEER6),
        ] {
            prop_assert_eq!(frame::eth_source(&f), Some(mac));
            // Never a request (announcements of addresses no host may use are even rejected).
            let r = parse(&f);
            prop_assert!(!matches!(r, Ok(Some(_))), "{:?}", r);
        }
    }
}
