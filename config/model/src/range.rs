//! Address families, inclusive address ranges, and the mapping of addresses onto `u128`.
//!
//! Every address is handled as a `(Family, u128)` pair: IPv4 addresses occupy `0..=u32::MAX` of
//! their own number line, IPv6 addresses all of `u128`. Arithmetic on these numbers replaces any
//! address library and never materialises a range.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::{Index, IndexMut};

use crate::error::SpecError;

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// Both families, IPv4 first: the order used whenever families are iterated.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The other family.
    pub fn other(self) -> Family {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }

    /// The address numbered `value` in this family. Callers only pass IPv4 numbers that came from
    /// an IPv4 address (so at most `u32::MAX`); the truncating cast never drops set bits.
    pub fn addr(self, value: u128) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(value as u32)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(value)),
        }
    }

    /// The number of bits in an address of this family.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// `ip` as its family and its number within that family.
pub fn split(ip: IpAddr) -> (Family, u128) {
    match ip {
        IpAddr::V4(v4) => (Family::V4, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (Family::V6, u128::from(v6)),
    }
}

/// One value per address family, indexed by [`Family`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerFamily<T> {
    v4: T,
    v6: T,
}

impl<T> PerFamily<T> {
    /// `f(V4)` and `f(V6)`, called in that order.
    pub fn from_fn(mut f: impl FnMut(Family) -> T) -> PerFamily<T> {
        let v4 = f(Family::V4);
        let v6 = f(Family::V6);
        PerFamily { v4, v6 }
    }
}

impl<T> Index<Family> for PerFamily<T> {
    type Output = T;

    fn index(&self, family: Family) -> &T {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

impl<T> IndexMut<Family> for PerFamily<T> {
    fn index_mut(&mut self, family: Family) -> &mut T {
        match family {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        }
    }
}

/// An inclusive range of addresses of one family, `start <= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpRange {
    start: IpAddr,
    end: IpAddr,
}

impl IpRange {
    /// The addresses from `start` to `end`, both included.
    pub fn new(start: IpAddr, end: IpAddr) -> Result<IpRange, SpecError> {
        if Family::of(start) != Family::of(end) {
            return Err(SpecError::MixedFamilies { start, end });
        }
        if start > end {
            return Err(SpecError::Reversed { start, end });
        }
        Ok(IpRange { start, end })
    }

    /// The network `base/prefix_len`, e.g. `192.0.2.0/24`. Host bits of `base` must be zero, as a
    /// set host bit is almost always a typo for a different network.
    pub fn cidr(base: IpAddr, prefix_len: u8) -> Result<IpRange, SpecError> {
        let (family, value) = split(base);
        let host_bits = family
            .bits()
            .checked_sub(prefix_len)
            .ok_or(SpecError::PrefixTooLong { base, prefix_len })?;
        // `checked_shl` is `None` for a shift by 128 (a ::/0 network): then every bit is a host bit.
        let host_mask = 1u128
            .checked_shl(u32::from(host_bits))
            .map_or(u128::MAX, |size| size - 1);
        if value & host_mask != 0 {
            return Err(SpecError::HostBitsSet { base, prefix_len });
        }
        Ok(IpRange {
            start: base,
            end: family.addr(value | host_mask),
        })
    }

    /// The first address of the range.
    pub fn start(&self) -> IpAddr {
        self.start
    }

    /// The last address of the range.
    pub fn end(&self) -> IpAddr {
        self.end
    }

    /// The family of the range's addresses.
    pub fn family(&self) -> Family {
        Family::of(self.start)
    }

    /// The range from the numbers `start` to `end` of `family`; the caller guarantees the order.
    pub fn from_numbers(family: Family, start: u128, end: u128) -> IpRange {
        IpRange {
            start: family.addr(start),
            end: family.addr(end),
        }
    }

    /// The range as numbers `(start, end)` within its family.
    pub fn numbers(&self) -> (u128, u128) {
        (split(self.start).1, split(self.end).1)
    }

    /// Whether the two ranges share at least one address (never across families).
    pub fn overlaps(&self, other: &IpRange) -> bool {
        self.family() == other.family() && self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn range_validation() {
        let cases = [
            ("192.0.2.1", "192.0.2.9", None),
            ("192.0.2.9", "192.0.2.9", None),
            (
                "192.0.2.9",
                "192.0.2.1",
                Some(SpecError::Reversed {
                    start: ip("192.0.2.9"),
                    end: ip("192.0.2.1"),
                }),
            ),
            (
                "192.0.2.1",
                "2001:db8::1",
                Some(SpecError::MixedFamilies {
                    start: ip("192.0.2.1"),
                    end: ip("2001:db8::1"),
                }),
            ),
        ];
        for (start, end, want) in cases {
            let got = IpRange::new(ip(start), ip(end));
            assert_eq!(got.err(), want, "{start}-{end}");
        }
    }

    #[test]
    fn cidr() {
        let r = IpRange::cidr(ip("192.0.2.0"), 24).unwrap();
        assert_eq!((r.start(), r.end()), (ip("192.0.2.0"), ip("192.0.2.255")));
        let r = IpRange::cidr(ip("2001:db8:1::"), 64).unwrap();
        assert_eq!(r.end(), ip("2001:db8:1:0:ffff:ffff:ffff:ffff"));
        let r = IpRange::cidr(ip("2001:db8::5"), 128).unwrap();
        assert_eq!(r.start(), r.end());
        // The whole IPv6 space, written as numbers: only documentation addresses appear as text.
        let r = IpRange::cidr(Family::V6.addr(0), 0).unwrap();
        assert_eq!(r.end(), Family::V6.addr(u128::MAX));
        assert_eq!(
            IpRange::cidr(ip("192.0.2.1"), 24),
            Err(SpecError::HostBitsSet {
                base: ip("192.0.2.1"),
                prefix_len: 24
            })
        );
        assert_eq!(
            IpRange::cidr(ip("192.0.2.0"), 33),
            Err(SpecError::PrefixTooLong {
                base: ip("192.0.2.0"),
                prefix_len: 33
            })
        );
    }

    #[test]
    fn overlaps() {
        let r = |s: &str, e: &str| IpRange::new(ip(s), ip(e)).unwrap();
        let cases = [
            (
                r("192.0.2.64", "192.0.2.127"),
                r("192.0.2.70", "192.0.2.80"),
                true,
            ),
            (
                r("192.0.2.64", "192.0.2.127"),
                r("192.0.2.64", "192.0.2.127"),
                true,
            ),
            (
                r("192.0.2.1", "192.0.2.9"),
                r("192.0.2.9", "192.0.2.20"),
                true,
            ),
            (
                r("192.0.2.1", "192.0.2.9"),
                r("192.0.2.10", "192.0.2.20"),
                false,
            ),
            (
                r("2001:db8::1", "2001:db8::9"),
                r("2001:db8::5", "2001:db8::5"),
                true,
            ),
            // 192.0.2.1 and ::c000:201 are the same number in different families.
            (
                r("192.0.2.1", "192.0.2.9"),
                r("::c000:201", "::c000:209"),
                false,
            ),
        ];
        for (a, b, want) in cases {
            assert_eq!(a.overlaps(&b), want, "{a} {b}");
            assert_eq!(b.overlaps(&a), want, "{b} {a}");
        }
    }

    #[test]
    fn numbers_round_trip() {
        for s in ["192.0.2.0", "192.0.2.255", "2001:db8::1"] {
            let (family, value) = split(ip(s));
            assert_eq!(family.addr(value), ip(s));
        }
    }
}
