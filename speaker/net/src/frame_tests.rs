//! Frames checked byte by byte against layouts written out by hand from the RFCs, decoded again
//! with an independent decoder (pnet_packet), and the parser's accept/reject table.

use super::*;
use pnet_packet::Packet;
use pnet_packet::arp::{ArpOperations, ArpPacket};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
use pnet_packet::icmpv6::ndp::NeighborAdvertPacket;
use pnet_packet::icmpv6::{Icmpv6Packet, Icmpv6Types};
use pnet_packet::ipv6::Ipv6Packet;

const MAC: MacAddr = MacAddr(0x02, 0xfe, 0, 0, 0, 0x0b);
const CLIENT_MAC: MacAddr = MacAddr(0x02, 0xfe, 0, 0, 0, 0x03);
const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 70);
const CLIENT4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, 0x70);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3);

/// Hex with whitespace and `|` separators ignored, so layouts can be written field by field.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    assert_eq!(digits.len() % 2, 0, "odd number of hex digits in {s:?}");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn assert_bytes(got: &[u8], want: &[u8]) {
    assert_eq!(got, want, "\ngot:\n{:?}\nwant:\n{:?}", Hex(got), Hex(want));
}

// ---------------------------------------------------------------- builders, byte by byte

#[test]
fn garp_request_is_an_rfc5227_announcement() {
    let want = hex("ff ff ff ff ff ff | 02 fe 00 00 00 0b | 08 06
         00 01 | 08 00 | 06 | 04 | 00 01
         02 fe 00 00 00 0b | c0 00 02 46
         00 00 00 00 00 00 | c0 00 02 46");
    assert_bytes(&garp_request(MAC, VIP4), &want);
    assert_eq!(want.len(), ARP_FRAME_LEN);
}

#[test]
fn garp_reply_repeats_the_sender_as_target() {
    let want = hex("ff ff ff ff ff ff | 02 fe 00 00 00 0b | 08 06
         00 01 | 08 00 | 06 | 04 | 00 02
         02 fe 00 00 00 0b | c0 00 02 46
         02 fe 00 00 00 0b | c0 00 02 46");
    assert_bytes(&garp_reply(MAC, VIP4), &want);
}

#[test]
fn arp_reply_goes_to_the_requester() {
    let want = hex("02 fe 00 00 00 03 | 02 fe 00 00 00 0b | 08 06
         00 01 | 08 00 | 06 | 04 | 00 02
         02 fe 00 00 00 0b | c0 00 02 46
         02 fe 00 00 00 03 | c0 00 02 03");
    assert_bytes(&arp_reply(MAC, VIP4, CLIENT_MAC, CLIENT4), &want);
}

#[test]
fn unsolicited_na_goes_to_all_nodes_with_override() {
    // Checksum 0xf742 computed separately (Python) over the pseudo-header and message.
    let want = hex("33 33 00 00 00 01 | 02 fe 00 00 00 0b | 86 dd
         60 00 00 00 | 00 20 | 3a | ff
         20 01 0d b8 00 00 00 00 00 00 00 00 00 01 00 70
         ff 02 00 00 00 00 00 00 00 00 00 00 00 00 00 01
         88 | 00 | f7 42 | 20 00 00 00
         20 01 0d b8 00 00 00 00 00 00 00 00 00 01 00 70
         02 | 01 | 02 fe 00 00 00 0b");
    assert_bytes(&unsolicited_na(MAC, VIP6), &want);
    assert_eq!(want.len(), NA_FRAME_LEN);
}

#[test]
fn solicited_na_is_unicast_with_solicited_and_override() {
    let want = hex("02 fe 00 00 00 03 | 02 fe 00 00 00 0b | 86 dd
         60 00 00 00 | 00 20 | 3a | ff
         20 01 0d b8 00 00 00 00 00 00 00 00 00 01 00 70
         20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 03
         88 | 00 | 88 8a | 60 00 00 00
         20 01 0d b8 00 00 00 00 00 00 00 00 00 01 00 70
         02 | 01 | 02 fe 00 00 00 0b");
    assert_bytes(&solicited_na(MAC, VIP6, CLIENT_MAC, CLIENT6), &want);
}

#[test]
fn solicited_na_to_the_unspecified_address_goes_to_all_nodes() {
    // RFC 4861 §7.2.4: a solicitation from :: is answered to all-nodes with Solicited=0.
    assert_bytes(
        &solicited_na(MAC, VIP6, CLIENT_MAC, Ipv6Addr::UNSPECIFIED),
        &unsolicited_na(MAC, VIP6),
    );
}

#[test]
fn solicited_node_groups_follow_rfc4291() {
    // The example of RFC 4291 §2.7.1.
    assert_eq!(
        solicited_node("4037::1:800:200e:8c6c".parse().unwrap()),
        "ff02::1:ff0e:8c6c".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(
        solicited_node(VIP6),
        "ff02::1:ff01:70".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(multicast_mac(ALL_NODES), MacAddr(0x33, 0x33, 0, 0, 0, 1));
    assert_eq!(
        multicast_mac(solicited_node(VIP6)),
        MacAddr(0x33, 0x33, 0xff, 0x01, 0x00, 0x70)
    );
}

// ---------------------------------------------------------------- independent decoder

#[test]
fn pnet_packet_reads_our_arp_frames_as_intended() {
    for (frame, op, tha, eth_dst) in [
        (
            garp_request(MAC, VIP4),
            ArpOperations::Request,
            MacAddr::zero(),
            MacAddr::broadcast(),
        ),
        (
            garp_reply(MAC, VIP4),
            ArpOperations::Reply,
            MAC,
            MacAddr::broadcast(),
        ),
    ] {
        let eth = EthernetPacket::new(&frame).unwrap();
        assert_eq!(eth.get_destination(), eth_dst);
        assert_eq!(eth.get_source(), MAC);
        assert_eq!(eth.get_ethertype(), EtherTypes::Arp);
        let arp = ArpPacket::new(eth.payload()).unwrap();
        assert_eq!(arp.get_operation(), op);
        assert_eq!(arp.get_sender_hw_addr(), MAC);
        assert_eq!(arp.get_sender_proto_addr(), VIP4);
        assert_eq!(arp.get_target_hw_addr(), tha);
        assert_eq!(arp.get_target_proto_addr(), VIP4);
    }
}

#[test]
fn pnet_packet_reads_our_advertisements_and_agrees_on_the_checksum() {
    for (frame, dst, flags) in [
        (unsolicited_na(MAC, VIP6), ALL_NODES, 0x20),
        (solicited_na(MAC, VIP6, CLIENT_MAC, CLIENT6), CLIENT6, 0x60),
    ] {
        let eth = EthernetPacket::new(&frame).unwrap();
        assert_eq!(eth.get_ethertype(), EtherTypes::Ipv6);
        let ip = Ipv6Packet::new(eth.payload()).unwrap();
        assert_eq!(ip.get_hop_limit(), 255);
        assert_eq!(ip.get_source(), VIP6);
        assert_eq!(ip.get_destination(), dst);
        let icmp = Icmpv6Packet::new(ip.payload()).unwrap();
        assert_eq!(icmp.get_icmpv6_type(), Icmpv6Types::NeighborAdvert);
        assert_eq!(
            icmp.get_checksum(),
            pnet_packet::icmpv6::checksum(&icmp, &VIP6, &dst)
        );
        let na = NeighborAdvertPacket::new(ip.payload()).unwrap();
        assert_eq!(na.get_flags(), flags);
        assert_eq!(na.get_target_addr(), VIP6);
        let opts = na.get_options();
        assert_eq!(opts.len(), 1);
        assert_eq!(opts[0].option_type.0, 2);
        assert_eq!(opts[0].data[..6], MAC.octets());
    }
}

// ---------------------------------------------------------------- parsing ARP

/// What iputils `arping` puts on the wire (target hardware address all ones), padded to the
/// Ethernet minimum of 60 bytes as it arrives.
fn arping_request() -> Vec<u8> {
    hex("ff ff ff ff ff ff | 02 fe 00 00 00 03 | 08 06
         00 01 | 08 00 | 06 | 04 | 00 01
         02 fe 00 00 00 03 | c0 00 02 03
         ff ff ff ff ff ff | c0 00 02 46
         00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00")
}

#[test]
fn an_arping_request_is_parsed_and_answered_to_the_requester() {
    let frame = arping_request();
    assert_eq!(frame.len(), 60);
    let req = parse(&frame).unwrap().unwrap();
    assert_eq!(
        req,
        Request::Arp {
            sender_mac: CLIENT_MAC,
            sender_ip: CLIENT4,
            target_ip: VIP4,
        }
    );
    assert_eq!(req.target(), IpAddr::V4(VIP4));
    assert_bytes(
        &reply_for(&req, MAC),
        &arp_reply(MAC, VIP4, CLIENT_MAC, CLIENT4),
    );
}

#[test]
fn an_rfc5227_probe_is_answered_with_target_ip_zero() {
    let mut frame = arping_request();
    frame[28..32].fill(0); // sender IP 0.0.0.0
    frame[32..38].fill(0); // target hardware address zero, as RFC 5227 §2.1.1 asks
    let req = parse(&frame).unwrap().unwrap();
    assert_eq!(
        req,
        Request::Arp {
            sender_mac: CLIENT_MAC,
            sender_ip: Ipv4Addr::UNSPECIFIED,
            target_ip: VIP4,
        }
    );
    let reply = reply_for(&req, MAC);
    // Unicast to the prober; sender IP = the probed address, which the prober treats as "in use".
    assert_eq!(&reply[0..6], &CLIENT_MAC.octets());
    assert_eq!(&reply[28..32], &VIP4.octets());
    assert_eq!(&reply[38..42], &[0, 0, 0, 0]);
}

#[test]
fn announcements_and_replies_are_not_requests() {
    assert_eq!(parse(&garp_request(CLIENT_MAC, VIP4)), Ok(None));
    assert_eq!(parse(&garp_reply(CLIENT_MAC, VIP4)), Ok(None));
    assert_eq!(parse(&arp_reply(CLIENT_MAC, VIP4, MAC, CLIENT4)), Ok(None));
    assert_eq!(parse(&unsolicited_na(CLIENT_MAC, VIP6)), Ok(None));
    assert_eq!(
        parse(&solicited_na(CLIENT_MAC, VIP6, MAC, CLIENT6)),
        Ok(None)
    );
}

#[test]
fn arp_validity_rules() {
    let base = arping_request();
    let with = |at: usize, bytes: &[u8]| {
        let mut f = base.clone();
        f[at..at + bytes.len()].copy_from_slice(bytes);
        f
    };
    // RFC 826 lengths for Ethernet/IPv4.
    assert_eq!(
        parse(&with(18, &[8])),
        Err(ParseError::ArpLengths { hlen: 8, plen: 4 })
    );
    assert_eq!(
        parse(&with(19, &[16])),
        Err(ParseError::ArpLengths { hlen: 6, plen: 16 })
    );
    // Another hardware type (IEEE 802) or protocol type: not ours.
    assert_eq!(parse(&with(14, &[0, 6])), Ok(None));
    assert_eq!(parse(&with(16, &[0x86, 0xdd])), Ok(None));
    // Unknown operations (InARP = 8) are ignored.
    assert_eq!(parse(&with(20, &[0, 8])), Ok(None));
    // A reply would flood the segment.
    assert_eq!(
        parse(&with(22, &[0xff; 6])),
        Err(ParseError::ArpMulticastSender(MacAddr::broadcast()))
    );
    assert_eq!(
        parse(&with(28, &[224, 0, 0, 1])),
        Err(ParseError::ArpBadSenderIp(Ipv4Addr::new(224, 0, 0, 1)))
    );
    // Truncations anywhere.
    for len in [0, 13, 14, 21, 41] {
        assert!(
            matches!(parse(&base[..len]), Err(ParseError::Truncated { .. })),
            "length {len}"
        );
    }
    assert!(parse(&base[..42]).unwrap().is_some(), "no padding needed");
    // Other EtherTypes are none of our business.
    assert_eq!(parse(&with(12, &[0x08, 0x00])), Ok(None));
}

// ---------------------------------------------------------------- parsing NS

/// What `ndisc6` sends for the VIP: to the solicited-node group, with a source link-layer
/// address option. Checksum 0x1a47 computed separately.
fn ndisc6_solicitation() -> Vec<u8> {
    hex("33 33 ff 01 00 70 | 02 fe 00 00 00 03 | 86 dd
         60 00 00 00 | 00 20 | 3a | ff
         20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 03
         ff 02 00 00 00 00 00 00 00 00 00 01 ff 01 00 70
         87 | 00 | 1a 47 | 00 00 00 00
         20 01 0d b8 00 00 00 00 00 00 00 00 00 01 00 70
         01 | 01 | 02 fe 00 00 00 03")
}

/// A solicitation built field by field, with a correct checksum unless `fix_checksum` is false.
struct Ns {
    eth_src: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    code: u8,
    target: Ipv6Addr,
    options: Vec<u8>,
    fix_checksum: bool,
}

impl Default for Ns {
    fn default() -> Ns {
        Ns {
            eth_src: CLIENT_MAC,
            src: CLIENT6,
            dst: solicited_node(VIP6),
            hop_limit: 255,
            code: 0,
            target: VIP6,
            options: vec![1, 1, 2, 0xfe, 0, 0, 0, 3],
            fix_checksum: true,
        }
    }
}

impl Ns {
    fn build(&self) -> Vec<u8> {
        let mut icmp = vec![135, self.code, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&self.target.octets());
        icmp.extend_from_slice(&self.options);
        if self.fix_checksum {
            let sum = icmpv6_checksum(self.src, self.dst, &icmp);
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        let mut f = Vec::new();
        f.extend_from_slice(&multicast_mac(self.dst).octets());
        f.extend_from_slice(&self.eth_src.octets());
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
        f.extend_from_slice(&[58, self.hop_limit]);
        f.extend_from_slice(&self.src.octets());
        f.extend_from_slice(&self.dst.octets());
        f.extend_from_slice(&icmp);
        f
    }
}

#[test]
fn the_hand_written_solicitation_matches_the_test_builder() {
    assert_bytes(&Ns::default().build(), &ndisc6_solicitation());
}

#[test]
fn an_ndisc6_solicitation_is_parsed_and_answered_unicast() {
    let req = parse(&ndisc6_solicitation()).unwrap().unwrap();
    assert_eq!(
        req,
        Request::Ns {
            src_mac: CLIENT_MAC,
            src_ip: CLIENT6,
            target: VIP6,
            source_ll: Some(CLIENT_MAC),
        }
    );
    assert_eq!(req.target(), IpAddr::V6(VIP6));
    assert_bytes(
        &reply_for(&req, MAC),
        &solicited_na(MAC, VIP6, CLIENT_MAC, CLIENT6),
    );
}

#[test]
fn the_source_link_layer_option_wins_over_the_ethernet_source() {
    // RFC 4861 §7.2.4: the answer goes to the link-layer address of the option when present.
    let other = MacAddr(0x02, 0xfe, 0, 0, 0, 0x99);
    let frame = Ns {
        options: vec![1, 1, 2, 0xfe, 0, 0, 0, 0x99],
        ..Ns::default()
    }
    .build();
    let req = parse(&frame).unwrap().unwrap();
    assert_eq!(&reply_for(&req, MAC)[0..6], &other.octets());
}

#[test]
fn a_unicast_probe_without_source_link_layer_option_is_answered_to_its_ethernet_source() {
    let frame = Ns {
        dst: VIP6,
        options: vec![],
        ..Ns::default()
    }
    .build();
    let req = parse(&frame).unwrap().unwrap();
    assert_eq!(
        req,
        Request::Ns {
            src_mac: CLIENT_MAC,
            src_ip: CLIENT6,
            target: VIP6,
            source_ll: None,
        }
    );
    assert_bytes(
        &reply_for(&req, MAC),
        &solicited_na(MAC, VIP6, CLIENT_MAC, CLIENT6),
    );
}

#[test]
fn a_dad_solicitation_is_answered_to_all_nodes() {
    let frame = Ns {
        src: Ipv6Addr::UNSPECIFIED,
        options: vec![],
        ..Ns::default()
    }
    .build();
    let req = parse(&frame).unwrap().unwrap();
    assert_bytes(&reply_for(&req, MAC), &unsolicited_na(MAC, VIP6));
}

#[test]
fn unknown_options_are_skipped_and_padding_ignored() {
    // A nonce option (RFC 3971 §5.3.2, type 14) before the source link-layer address.
    let mut options = vec![14, 1, 1, 2, 3, 4, 5, 6];
    options.extend_from_slice(&[1, 1, 2, 0xfe, 0, 0, 0, 3]);
    let mut frame = Ns {
        options,
        ..Ns::default()
    }
    .build();
    frame.extend_from_slice(&[0; 10]);
    let Some(Request::Ns { source_ll, .. }) = parse(&frame).unwrap() else {
        panic!("not a solicitation");
    };
    assert_eq!(source_ll, Some(CLIENT_MAC));
}

#[test]
fn ns_validity_rules_of_rfc4861_7_1_1() {
    let err = |ns: Ns| parse(&ns.build()).unwrap_err();
    assert_eq!(
        err(Ns {
            hop_limit: 64,
            ..Ns::default()
        }),
        ParseError::NsHopLimit(64)
    );
    assert_eq!(
        err(Ns {
            code: 1,
            ..Ns::default()
        }),
        ParseError::NsCode(1)
    );
    assert_eq!(
        err(Ns {
            target: "ff02::1".parse().unwrap(),
            ..Ns::default()
        }),
        ParseError::NsMulticastTarget("ff02::1".parse().unwrap())
    );
    assert_eq!(
        err(Ns {
            options: vec![1, 0, 0, 0, 0, 0, 0, 0],
            ..Ns::default()
        }),
        ParseError::NsZeroLengthOption { kind: 1 }
    );
    assert_eq!(
        err(Ns {
            options: vec![1, 2, 2, 0xfe, 0, 0, 0, 3],
            ..Ns::default()
        }),
        ParseError::NsOptionOverrun { kind: 1 }
    );
    assert_eq!(
        err(Ns {
            options: vec![1, 1, 2, 0xfe, 0, 0, 0, 3, 9],
            ..Ns::default()
        }),
        ParseError::NsOptionOverrun { kind: 9 }
    );
    assert_eq!(
        err(Ns {
            options: vec![1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ..Ns::default()
        }),
        ParseError::NsMulticastSourceLl(MacAddr::broadcast())
    );
    assert_eq!(
        err(Ns {
            src: Ipv6Addr::UNSPECIFIED,
            ..Ns::default()
        }),
        ParseError::NsDadWithSourceLl
    );
    assert_eq!(
        err(Ns {
            src: Ipv6Addr::UNSPECIFIED,
            dst: VIP6,
            options: vec![],
            ..Ns::default()
        }),
        ParseError::NsDadDestination(VIP6)
    );
    assert_eq!(
        err(Ns {
            src: "ff02::2".parse().unwrap(),
            ..Ns::default()
        }),
        ParseError::NsMulticastSource("ff02::2".parse().unwrap())
    );
    assert_eq!(
        err(Ns {
            eth_src: MacAddr(0x33, 0x33, 0, 0, 0, 1),
            ..Ns::default()
        }),
        ParseError::NsMulticastSourceMac(MacAddr(0x33, 0x33, 0, 0, 0, 1))
    );
}

#[test]
fn a_bad_checksum_is_rejected_and_the_right_one_named() {
    let mut frame = ndisc6_solicitation();
    frame[56..58].copy_from_slice(&[0x12, 0x34]);
    assert_eq!(
        parse(&frame),
        Err(ParseError::NsChecksum {
            got: 0x1234,
            want: 0x1a47
        })
    );
    // A flipped bit in the target is caught by the checksum too.
    let mut frame = ndisc6_solicitation();
    frame[62 + 15] ^= 1;
    assert!(matches!(parse(&frame), Err(ParseError::NsChecksum { .. })));
}

#[test]
fn ipv6_framing_rules() {
    let base = ndisc6_solicitation();
    // Shorter than the payload length says.
    assert!(matches!(
        parse(&base[..base.len() - 1]),
        Err(ParseError::Truncated { .. })
    ));
    assert!(matches!(
        parse(&base[..30]),
        Err(ParseError::Truncated { .. })
    ));
    // An ICMPv6 message too short to hold a target.
    let mut short = base[..14 + 40 + 20].to_vec();
    short[18..20].copy_from_slice(&20u16.to_be_bytes());
    assert_eq!(parse(&short), Err(ParseError::NsTooShort(20)));
    // Version 4 in an IPv6 EtherType.
    let mut v4 = base.clone();
    v4[14] = 0x45;
    assert_eq!(parse(&v4), Err(ParseError::Ipv6Version(4)));
    // MLD reports come behind a hop-by-hop header: not ours.
    let mut hbh = base.clone();
    hbh[20] = 0;
    assert_eq!(parse(&hbh), Ok(None));
    // Other ICMPv6 types (an echo request) are not ours.
    let mut echo = base.clone();
    echo[54] = 128;
    assert_eq!(parse(&echo), Ok(None));
}

#[test]
fn addressing_helpers() {
    let to_client = arp_reply(MAC, VIP4, CLIENT_MAC, CLIENT4);
    assert!(addressed_to(&to_client, CLIENT_MAC));
    assert!(!addressed_to(&to_client, MAC));
    assert!(addressed_to(&garp_request(CLIENT_MAC, VIP4), MAC));
    assert!(addressed_to(&ndisc6_solicitation(), MAC));
    assert!(!addressed_to(&[0xff; 5], MAC));
    assert_eq!(eth_source(&to_client), Some(MAC));
    assert_eq!(eth_source(&[0; 11]), None);
}
