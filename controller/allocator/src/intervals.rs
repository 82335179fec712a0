//! Sets of addresses held as runs of numbers, never as addresses.
//!
//! [`Intervals`] is an immutable, sorted set of runs used while pools are built (merge, subtract,
//! intersect in one pass each). [`FreeSet`] is the mutable set of free addresses of one pool and
//! family: a `BTreeMap` from run start to run end, so taking the lowest address, taking a given
//! address and giving one back are each O(log runs), whatever the size of the pool.
//!
//! Avoiding buggy addresses (IPv4 .0 and .255, MetalLB's `avoidBuggyIPs`) is arithmetic: a
//! [`FreeSet`] that skips them keeps every run's ends on usable addresses, so the lowest free
//! address is always the first run's start; a run may span .255/.0 pairs in its middle (they are
//! never handed out), which lets a run cross /24 boundaries instead of splitting at each.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::range::{Family, IpRange};

/// A sorted set of disjoint, non-adjacent inclusive runs `(start, end)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Intervals(Vec<(u128, u128)>);

impl Intervals {
    /// The addresses of `family` in `ranges`, merged.
    pub(crate) fn of_ranges(ranges: &[IpRange], family: Family) -> Intervals {
        let mut runs: Vec<(u128, u128)> = ranges
            .iter()
            .filter(|range| range.family() == family)
            .map(IpRange::numbers)
            .collect();
        runs.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(runs.len());
        for (start, end) in runs {
            match merged.last_mut() {
                // Overlapping or adjacent: extend. `saturating_add` keeps a run ending at the top
                // of the number line from overflowing.
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Intervals(merged)
    }

    /// The runs, in order.
    pub(crate) fn runs(&self) -> impl Iterator<Item = (u128, u128)> + '_ {
        self.0.iter().copied()
    }

    /// Whether the set is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The numbers in `self` or `other`.
    pub(crate) fn union(&self, other: &Intervals) -> Intervals {
        let mut all = self.0.clone();
        all.extend_from_slice(&other.0);
        all.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(all.len());
        for (start, end) in all {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Intervals(merged)
    }

    /// The numbers in `self` but not in `other`.
    pub(crate) fn subtract(&self, other: &Intervals) -> Intervals {
        let mut out = Vec::new();
        let mut next = 0;
        for &(start, end) in &self.0 {
            // Runs of `other` ending before this run cannot touch later runs either.
            while other.0.get(next).is_some_and(|&(_, e)| e < start) {
                next += 1;
            }
            let mut cursor = Some(start);
            for &(cut_start, cut_end) in &other.0[next..] {
                let Some(from) = cursor else { break };
                if cut_start > end {
                    break;
                }
                if cut_start > from {
                    out.push((from, cut_start - 1));
                }
                // `None` once the cut reaches the end of this run.
                cursor = (cut_end < end).then(|| cut_end + 1);
            }
            if let Some(from) = cursor {
                out.push((from, end));
            }
        }
        Intervals(out)
    }

    /// The numbers in both `self` and `other`.
    pub(crate) fn intersect(&self, other: &Intervals) -> Intervals {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while let (Some(&(a_start, a_end)), Some(&(b_start, b_end))) =
            (self.0.get(i), other.0.get(j))
        {
            let (start, end) = (a_start.max(b_start), a_end.min(b_end));
            if start <= end {
                out.push((start, end));
            }
            if a_end < b_end {
                i += 1;
            } else {
                j += 1;
            }
        }
        Intervals(out)
    }
}

/// Whether `value` is an IPv4 number ending in .0 or .255.
pub(crate) fn is_buggy(value: u128) -> bool {
    matches!(value % 256, 0 | 255)
}

/// The number of .0 and .255 numbers in `0..n`: two per whole /24 block, plus the .0 of a partial
/// last block.
fn buggy_below(n: u128) -> u128 {
    2 * (n / 256) + u128::from(!n.is_multiple_of(256))
}

/// The number of addresses in `set` that a pool can hand out: all of them, less the .0 and .255
/// ones when `skip_buggy`. Counted per run, never per address.
pub(crate) fn usable_count(set: &Intervals, skip_buggy: bool) -> u128 {
    set.runs()
        .map(|(start, end)| {
            // A run is never all of IPv6 (PoolSpec rejects that), so the +1 cannot saturate.
            let len = (end - start).saturating_add(1);
            if skip_buggy {
                len - (buggy_below(end + 1) - buggy_below(start))
            } else {
                len
            }
        })
        .fold(0, u128::saturating_add)
}

/// The free addresses of one pool and family.
///
/// Invariants: runs are disjoint and sorted; every free usable address lies in exactly one run;
/// every number in a run is a free usable address or, when skipping buggy addresses, a .0/.255
/// one; run ends are usable; two runs separated only by buggy numbers are merged. The last
/// invariant makes the layout a function of the free set alone, so equal free sets compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FreeSet {
    runs: BTreeMap<u128, u128>,
    skip_buggy: bool,
}

impl FreeSet {
    /// All of `set` free, less buggy addresses when `skip_buggy`.
    pub(crate) fn new(set: &Intervals, skip_buggy: bool) -> FreeSet {
        let mut free = FreeSet {
            runs: BTreeMap::new(),
            skip_buggy,
        };
        for (start, end) in set.runs() {
            free.insert(start, end);
        }
        free
    }

    /// Whether this set may ever hold `value`.
    pub(crate) fn usable(&self, value: u128) -> bool {
        !(self.skip_buggy && is_buggy(value))
    }

    /// The lowest free address.
    pub(crate) fn lowest(&self) -> Option<u128> {
        self.runs.first_key_value().map(|(&start, _)| start)
    }

    /// Takes `value` out of the set; `false` if it was not free (or not usable).
    pub(crate) fn take(&mut self, value: u128) -> bool {
        if !self.usable(value) {
            return false;
        }
        let Some((&start, &end)) = self.runs.range(..=value).next_back() else {
            return false;
        };
        if end < value {
            return false;
        }
        self.runs.remove(&start);
        if value > start
            && let Some((start, end)) = self.trim(start, value - 1)
        {
            self.runs.insert(start, end);
        }
        if value < end
            && let Some((start, end)) = self.trim(value + 1, end)
        {
            self.runs.insert(start, end);
        }
        true
    }

    /// Gives `value` back; `false` if it was already free (or is not usable).
    pub(crate) fn put(&mut self, value: u128) -> bool {
        if !self.usable(value) {
            return false;
        }
        if self
            .runs
            .range(..=value)
            .next_back()
            .is_some_and(|(_, &end)| end >= value)
        {
            return false;
        }
        self.insert(value, value);
        true
    }

    /// Adds the free numbers `start..=end`, disjoint from every run, merging with neighbours
    /// separated from it by buggy numbers only.
    fn insert(&mut self, start: u128, end: u128) {
        let Some((mut start, mut end)) = self.trim(start, end) else {
            return;
        };
        // A run before `start` ends below it, so `+ 1` cannot overflow; likewise after `end`.
        if let Some((&before_start, &before_end)) = self.runs.range(..start).next_back()
            && self.first_usable(before_end + 1) == start
        {
            self.runs.remove(&before_start);
            start = before_start;
        }
        if let Some((&after_start, &after_end)) = self
            .runs
            .range((Bound::Excluded(end), Bound::Unbounded))
            .next()
            && self.first_usable(end + 1) == after_start
        {
            self.runs.remove(&after_start);
            end = after_end;
        }
        self.runs.insert(start, end);
    }

    /// `start..=end` with buggy numbers cut off both ends; `None` if nothing usable is left.
    fn trim(&self, start: u128, end: u128) -> Option<(u128, u128)> {
        let start = self.first_usable(start);
        let end = self.last_usable(end)?;
        (start <= end).then_some((start, end))
    }

    /// The first usable number at or after `value`. Skipping only applies to IPv4 numbers, far
    /// below the top of `u128`.
    fn first_usable(&self, value: u128) -> u128 {
        match value % 256 {
            0 if self.skip_buggy => value + 1,
            255 if self.skip_buggy => value + 2,
            _ => value,
        }
    }

    /// The last usable number at or before `value`, if any.
    fn last_usable(&self, value: u128) -> Option<u128> {
        match value % 256 {
            255 if self.skip_buggy => value.checked_sub(1),
            0 if self.skip_buggy => value.checked_sub(2),
            _ => Some(value),
        }
    }

    /// The number of free usable addresses, counted run by run (tests check the pool counters
    /// against it).
    #[cfg(test)]
    pub(crate) fn count(&self) -> u128 {
        let runs = Intervals(self.runs.iter().map(|(&s, &e)| (s, e)).collect());
        usable_count(&runs, self.skip_buggy)
    }

    /// The number of runs.
    #[cfg(test)]
    pub(crate) fn run_count(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn set(runs: &[(u128, u128)]) -> Intervals {
        Intervals(runs.to_vec())
    }

    #[test]
    fn set_operations() {
        let a = set(&[(0, 9), (20, 29), (40, 49)]);
        let b = set(&[(5, 24), (27, 27), (45, 60)]);
        assert_eq!(a.subtract(&b), set(&[(0, 4), (25, 26), (28, 29), (40, 44)]));
        assert_eq!(
            a.intersect(&b),
            set(&[(5, 9), (20, 24), (27, 27), (45, 49)])
        );
        assert_eq!(a.union(&b), set(&[(0, 29), (40, 60)]));
        assert_eq!(
            set(&[(0, u128::MAX)]).subtract(&set(&[(0, u128::MAX)])),
            set(&[])
        );
        assert_eq!(
            set(&[(0, u128::MAX)]).subtract(&set(&[(1, u128::MAX - 1)])),
            set(&[(0, 0), (u128::MAX, u128::MAX)])
        );
    }

    #[test]
    fn buggy_counts_per_block() {
        // Numbers, not addresses: block 3 is x.x.3.0/24 of some network.
        let cases = [
            ((0, 255), 2),
            ((1, 254), 0),
            ((0, 1023), 8),
            ((255, 256), 2),
            ((3 * 256 + 7, 3 * 256 + 7), 0),
            ((3 * 256 + 200, 5 * 256 + 10), 4),
        ];
        for ((start, end), buggy) in cases {
            let len = end - start + 1;
            assert_eq!(
                usable_count(&set(&[(start, end)]), true),
                len - buggy,
                "{start}..={end}"
            );
            // Cross-check against counting one by one.
            let slow = (start..=end).filter(|&v| is_buggy(v)).count() as u128;
            assert_eq!(slow, buggy, "{start}..={end}");
        }
    }

    #[test]
    fn skipping_buggy_numbers() {
        let mut free = FreeSet::new(&set(&[(0, 767)]), true);
        // One run spanning the .255/.0 pairs in its middle.
        assert_eq!(free.run_count(), 1);
        assert_eq!(free.count(), 768 - 6);
        assert_eq!(free.lowest(), Some(1));
        assert!(!free.take(255));
        assert!(!free.put(256));
        // Taking 254 and 257 leaves the 255/256 pair unreachable: the runs around it end on
        // usable numbers.
        assert!(free.take(254));
        assert!(free.take(257));
        assert_eq!(free.count(), 768 - 8);
        assert!(free.put(254));
        assert!(free.put(257));
        assert_eq!(free, FreeSet::new(&set(&[(0, 767)]), true));
        // Emptying the first block moves the lowest address past the pair.
        for v in 1..=254 {
            assert!(free.take(v));
        }
        assert_eq!(free.lowest(), Some(257));
    }

    #[test]
    fn lowest_take_put_match_a_model() {
        // A deterministic walk over a small set, checked against a BTreeSet of numbers.
        for skip in [false, true] {
            let universe = set(&[(250, 530), (600, 610)]);
            let mut free = FreeSet::new(&universe, skip);
            let mut model: BTreeSet<u128> = universe
                .runs()
                .flat_map(|(s, e)| s..=e)
                .filter(|&v| !(skip && is_buggy(v)))
                .collect();
            let mut seed = 7u64;
            for _ in 0..5000 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = 245 + u128::from(seed >> 33) % 375;
                let in_universe = universe.runs().any(|(s, e)| (s..=e).contains(&v));
                if seed & 1 == 0 {
                    assert_eq!(free.take(v), model.remove(&v), "take {v}");
                } else {
                    let was_free = model.contains(&v);
                    let usable = in_universe && !(skip && is_buggy(v));
                    if usable {
                        assert_eq!(free.put(v), !was_free, "put {v}");
                        model.insert(v);
                    }
                }
                assert_eq!(free.lowest(), model.first().copied());
                assert_eq!(free.count(), model.len() as u128);
            }
        }
    }
}
