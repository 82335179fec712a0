//! Pool specifications: what the caller derives from IPAddressPool objects.

use std::fmt;

use crate::error::SpecError;
use crate::range::{Family, IpRange};

/// The name of an address pool.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolName(String);

impl PoolName {
    /// The pool called `name`.
    pub fn new(name: impl Into<String>) -> PoolName {
        PoolName(name.into())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PoolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for PoolName {
    fn from(name: &str) -> PoolName {
        PoolName::new(name)
    }
}

/// A validated address pool. Built with [`PoolSpec::new`], then adjusted with the `with_*`
/// methods, whose defaults follow MetalLB's: auto-assign on, buggy addresses not avoided, no
/// priority, rank 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    name: PoolName,
    ranges: Vec<IpRange>,
    auto_assign: bool,
    avoid_buggy_ips: bool,
    priority: Option<i32>,
    rank: u64,
}

impl PoolSpec {
    /// The pool `name` holding `ranges`. Ranges may overlap each other (they are merged); the pool
    /// needs at least one, and may not cover all of IPv6 (its size would not fit a `u128`).
    pub fn new(name: PoolName, ranges: Vec<IpRange>) -> Result<PoolSpec, SpecError> {
        if ranges.is_empty() {
            return Err(SpecError::NoRanges(name));
        }
        if covers_all_ipv6(&ranges) {
            return Err(SpecError::CoversAllIpv6(name));
        }
        Ok(PoolSpec {
            name,
            ranges,
            auto_assign: true,
            avoid_buggy_ips: false,
            priority: None,
            rank: 0,
        })
    }

    /// Whether services that do not name a pool or an address may get addresses from it.
    pub fn with_auto_assign(mut self, auto_assign: bool) -> PoolSpec {
        self.auto_assign = auto_assign;
        self
    }

    /// Whether IPv4 addresses ending in .0 or .255 are withheld, for clients whose firmware
    /// mistakes them for network or broadcast addresses (MetalLB's `avoidBuggyIPs`).
    pub fn with_avoid_buggy_ips(mut self, avoid_buggy_ips: bool) -> PoolSpec {
        self.avoid_buggy_ips = avoid_buggy_ips;
        self
    }

    /// The pool's priority among auto-assignable pools: lower is preferred; pools without one
    /// come after all pools with one.
    pub fn with_priority(mut self, priority: Option<i32>) -> PoolSpec {
        self.priority = priority;
        self
    }

    /// The pool's age rank, computed by the caller from creation time then name: lower is older.
    /// Where pools overlap, the older keeps the addresses.
    pub fn with_rank(mut self, rank: u64) -> PoolSpec {
        self.rank = rank;
        self
    }

    /// The pool's name.
    pub fn name(&self) -> &PoolName {
        &self.name
    }

    /// The ranges as given.
    pub fn ranges(&self) -> &[IpRange] {
        &self.ranges
    }

    /// See [`PoolSpec::with_auto_assign`].
    pub fn auto_assign(&self) -> bool {
        self.auto_assign
    }

    /// See [`PoolSpec::with_avoid_buggy_ips`].
    pub fn avoid_buggy_ips(&self) -> bool {
        self.avoid_buggy_ips
    }

    /// See [`PoolSpec::with_priority`].
    pub fn priority(&self) -> Option<i32> {
        self.priority
    }

    /// See [`PoolSpec::with_rank`].
    pub fn rank(&self) -> u64 {
        self.rank
    }
}

/// Whether `ranges` together cover every IPv6 address: merged in order of their starts, the runs
/// leave no gap from `::` to the last address.
fn covers_all_ipv6(ranges: &[IpRange]) -> bool {
    let mut v6: Vec<(u128, u128)> = ranges
        .iter()
        .filter(|r| r.family() == Family::V6)
        .map(IpRange::numbers)
        .collect();
    v6.sort_unstable();
    // `covered`: every number from 0 to it is in some range seen so far.
    let mut covered: Option<u128> = None;
    for (start, end) in v6 {
        let contiguous = match covered {
            None => start == 0,
            Some(c) => c == u128::MAX || start <= c + 1,
        };
        if !contiguous {
            // Sorted by start: no later range can fill the gap.
            return false;
        }
        covered = Some(covered.map_or(end, |c| c.max(end)));
    }
    covered == Some(u128::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(a: &str, b: &str) -> IpRange {
        IpRange::new(a.parse().unwrap(), b.parse().unwrap()).unwrap()
    }

    #[test]
    fn pool_validation() {
        let name = PoolName::from("p");
        assert_eq!(
            PoolSpec::new(name.clone(), vec![]),
            Err(SpecError::NoRanges(name.clone()))
        );
        // Two halves that together cover all of IPv6 (written as numbers: only documentation
        // addresses appear as text).
        let low = IpRange::new(Family::V6.addr(0), Family::V6.addr(u128::MAX / 2)).unwrap();
        let high = IpRange::new(
            Family::V6.addr(u128::MAX / 2 + 1),
            Family::V6.addr(u128::MAX),
        )
        .unwrap();
        assert_eq!(
            PoolSpec::new(name.clone(), vec![high, low]),
            Err(SpecError::CoversAllIpv6(name.clone()))
        );
        // All of IPv6 but one address is fine, and so is a /64.
        let almost = IpRange::new(Family::V6.addr(1), Family::V6.addr(u128::MAX)).unwrap();
        assert!(PoolSpec::new(name.clone(), vec![almost]).is_ok());
        let spec = PoolSpec::new(
            name,
            vec![
                range("192.0.2.0", "192.0.2.9"),
                range("2001:db8:1::", "2001:db8:1::ffff:ffff:ffff:ffff"),
            ],
        )
        .unwrap()
        .with_priority(Some(3))
        .with_rank(7)
        .with_auto_assign(false)
        .with_avoid_buggy_ips(true);
        assert_eq!(spec.priority(), Some(3));
        assert_eq!(spec.rank(), 7);
        assert!(!spec.auto_assign());
        assert!(spec.avoid_buggy_ips());
        assert_eq!(spec.ranges().len(), 2);
    }
}
