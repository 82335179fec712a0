//! `spec.addresses` entries: a CIDR or an inclusive `start-end` range, IPv4 or IPv6.
//!
//! The CRD's CEL rule already rejects text that is neither; this parser is the one authority (the
//! schema may be older than the controller, or objects may predate a rule), and it also catches
//! what CEL cannot express: a range whose start is above its end.

use std::net::IpAddr;
use std::str::FromStr;

use ferrolb_model::IpRange;
use ipnetwork::IpNetwork;

/// Why one entry does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("not a CIDR ({0})")]
    BadCidr(String),
    #[error("{0:?} is not an IP address")]
    BadAddress(String),
    #[error("a range needs exactly two addresses separated by '-'")]
    BadRange,
    #[error("range mixes IPv4 and IPv6")]
    MixedFamilies,
    #[error("range start {start} is above its end {end}")]
    StartAboveEnd { start: IpAddr, end: IpAddr },
    #[error("covers the whole IPv6 address space, which cannot be a pool")]
    WholeIpv6Space,
}

/// Parses one entry: `192.0.2.0/24`, `2001:db8::/120`, `192.0.2.10-192.0.2.20` (spaces around `-`
/// allowed). A CIDR with host bits set (`192.0.2.7/24`) means its whole network, as MetalLB reads it.
pub fn parse_range(text: &str) -> Result<IpRange, AddressError> {
    let (start, end) = parse_bounds(text)?;
    // The checks above leave nothing for IpRange::new to refuse; map defensively all the same.
    IpRange::new(start, end).map_err(|_| AddressError::StartAboveEnd { start, end })
}

fn parse_bounds(text: &str) -> Result<(IpAddr, IpAddr), AddressError> {
    let text = text.trim();
    if text.contains('/') {
        let net = IpNetwork::from_str(text).map_err(|e| AddressError::BadCidr(e.to_string()))?;
        return match net {
            IpNetwork::V4(n) => Ok((n.network().into(), n.broadcast().into())),
            IpNetwork::V6(n) => {
                if n.prefix() == 0 {
                    return Err(AddressError::WholeIpv6Space);
                }
                let start = u128::from(n.network());
                let host_bits = 128 - u32::from(n.prefix());
                let end = start | ((1u128 << host_bits) - 1);
                Ok((IpAddr::V6(start.into()), IpAddr::V6(end.into())))
            }
        };
    }
    let parts: Vec<&str> = text.split('-').collect();
    let [a, b] = parts.as_slice() else {
        return match parts.as_slice() {
            [one] => {
                // A bare address is a range of one.
                let ip = parse_ip(one)?;
                Ok((ip, ip))
            }
            _ => Err(AddressError::BadRange),
        };
    };
    let (start, end) = (parse_ip(a)?, parse_ip(b)?);
    match (start, end) {
        (IpAddr::V4(s), IpAddr::V4(e)) if s > e => Err(AddressError::StartAboveEnd { start, end }),
        (IpAddr::V6(s), IpAddr::V6(e)) if s > e => Err(AddressError::StartAboveEnd { start, end }),
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => Ok((start, end)),
        _ => Err(AddressError::MixedFamilies),
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, AddressError> {
    let s = s.trim();
    IpAddr::from_str(s).map_err(|_| AddressError::BadAddress(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str, e: &str) -> (IpAddr, IpAddr) {
        (s.parse().unwrap(), e.parse().unwrap())
    }

    #[test]
    fn parses_every_accepted_form() {
        let table = [
            ("192.0.2.64/26", r("192.0.2.64", "192.0.2.127")),
            ("192.0.2.70/26", r("192.0.2.64", "192.0.2.127")),
            ("192.0.2.9/32", r("192.0.2.9", "192.0.2.9")),
            ("192.0.2.10-192.0.2.20", r("192.0.2.10", "192.0.2.20")),
            (" 192.0.2.10 - 192.0.2.20 ", r("192.0.2.10", "192.0.2.20")),
            ("192.0.2.5", r("192.0.2.5", "192.0.2.5")),
            ("2001:db8::1:0/112", r("2001:db8::1:0", "2001:db8::1:ffff")),
            (
                "2001:db8:1::/64",
                r("2001:db8:1::", "2001:db8:1::ffff:ffff:ffff:ffff"),
            ),
            (
                "2001:db8::/32",
                r("2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
            ),
            (
                "2001:db8::2:1-2001:db8::2:9",
                r("2001:db8::2:1", "2001:db8::2:9"),
            ),
        ];
        for (text, want) in table {
            let got = parse_range(text).unwrap();
            assert_eq!((got.start(), got.end()), want, "{text}");
        }
    }

    #[test]
    fn rejects_with_a_reason() {
        type Check = fn(&AddressError) -> bool;
        let table: [(&str, Check); 8] = [
            ("192.0.2.0/33", |e| matches!(e, AddressError::BadCidr(_))),
            ("192.0.2.300/24", |e| matches!(e, AddressError::BadCidr(_))),
            ("hello", |e| matches!(e, AddressError::BadAddress(_))),
            ("192.0.2.20-192.0.2.10", |e| {
                matches!(e, AddressError::StartAboveEnd { .. })
            }),
            ("2001:db8::9-2001:db8::1", |e| {
                matches!(e, AddressError::StartAboveEnd { .. })
            }),
            ("192.0.2.10-2001:db8::10", |e| {
                matches!(e, AddressError::MixedFamilies)
            }),
            ("192.0.2.1-192.0.2.2-192.0.2.3", |e| {
                matches!(e, AddressError::BadRange)
            }),
            ("::/0", |e| matches!(e, AddressError::WholeIpv6Space)),
        ];
        for (text, ok) in table {
            let err = parse_range(text).unwrap_err();
            assert!(ok(&err), "{text}: {err:?}");
            assert!(!err.to_string().is_empty());
        }
    }
}
