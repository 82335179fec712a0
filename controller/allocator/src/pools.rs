//! The pool table: validated specs resolved into disjoint effective address sets, with their free
//! space and counters.
//!
//! Overlaps are resolved by age: pools are taken oldest first (rank, then name) and each keeps
//! only what no older pool claimed. Effective sets are therefore disjoint, every address belongs
//! to at most one pool, and an index from run start to pool answers "which pool?" in O(log runs).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::intervals::{FreeSet, Intervals, usable_count};
use crate::range::{Family, IpRange, PerFamily, split};
use crate::spec::{PoolName, PoolSpec};

/// What [`crate::Allocator::set_pools`] found in the pools it was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolsReport {
    /// For each pool that overlaps older pools (only those), the overlaps, older pool by older
    /// pool, IPv4 first. The addresses in them stay with the older pool.
    pub overlaps: BTreeMap<PoolName, Vec<Overlap>>,
    /// Names given to more than one pool; only the oldest of each name was kept (first given on a
    /// tie).
    pub duplicates: BTreeSet<PoolName>,
}

/// Addresses a pool shares with an older pool, which keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The older pool, which keeps the addresses.
    pub older: PoolName,
    /// The addresses in common.
    pub range: IpRange,
}

/// Address counts of one pool and family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FamilyStats {
    /// Addresses of the pool held by at least one service (a shared address counts once).
    pub assigned: u128,
    /// Addresses the pool can still hand out.
    pub available: u128,
}

/// Address counts of one pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// IPv4 counts.
    pub v4: FamilyStats,
    /// IPv6 counts.
    pub v6: FamilyStats,
}

/// One family of one pool: its free space and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FamilySpace {
    pub(crate) free: FreeSet,
    /// Addresses the pool can ever hand out (effective set less avoided addresses).
    pub(crate) usable: u128,
    /// Usable addresses held by at least one service.
    pub(crate) assigned: u128,
    /// Usable addresses reserved and held by no service: out of the free set, not assigned.
    pub(crate) reserved: u128,
}

/// A pool with its effective space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pool {
    pub(crate) spec: PoolSpec,
    /// Position in the preference order (priority, then name): lower is preferred.
    pub(crate) preference: usize,
    pub(crate) space: PerFamily<FamilySpace>,
}

impl Pool {
    pub(crate) fn name(&self) -> &PoolName {
        self.spec.name()
    }

    pub(crate) fn stats(&self) -> PoolStats {
        let family = |family| {
            let space: &FamilySpace = &self.space[family];
            FamilyStats {
                assigned: space.assigned,
                available: space
                    .usable
                    .saturating_sub(space.assigned)
                    .saturating_sub(space.reserved),
            }
        };
        PoolStats {
            v4: family(Family::V4),
            v6: family(Family::V6),
        }
    }
}

/// Where an address stands with respect to the pools.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Location<'a> {
    /// Usable in this pool.
    Pool(&'a Pool),
    /// In this pool's effective set, but an address the pool avoids.
    Avoided(&'a Pool),
    /// In no pool.
    Outside,
}

impl<'a> Location<'a> {
    /// The pool the address is usable in, if any.
    pub(crate) fn pool(self) -> Option<&'a Pool> {
        match self {
            Location::Pool(pool) => Some(pool),
            Location::Avoided(_) | Location::Outside => None,
        }
    }
}

/// All pools, resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PoolTable {
    /// Oldest first.
    pools: Vec<Pool>,
    by_name: BTreeMap<PoolName, usize>,
    /// Indices into `pools`, most preferred first.
    preference: Vec<usize>,
    /// Effective run start -> (run end, index into `pools`). Runs of all pools, disjoint.
    owners: PerFamily<BTreeMap<u128, (u128, usize)>>,
}

impl PoolTable {
    /// Resolves `specs` into a table with every address free.
    pub(crate) fn build(mut specs: Vec<PoolSpec>) -> (PoolTable, PoolsReport) {
        let mut report = PoolsReport::default();
        // Oldest first; the sort is stable, so among equal ranks and names the first given wins.
        specs.sort_by(|a, b| (a.rank(), a.name()).cmp(&(b.rank(), b.name())));
        let mut seen = BTreeSet::new();
        specs.retain(|spec| {
            let first = seen.insert(spec.name().clone());
            if !first {
                report.duplicates.insert(spec.name().clone());
            }
            first
        });

        let mut order: Vec<usize> = (0..specs.len()).collect();
        // Priority first (pools without one last), then name.
        order.sort_by_key(|&index| {
            let spec = &specs[index];
            (spec.priority().is_none(), spec.priority(), spec.name())
        });
        let mut preference_of = vec![0; specs.len()];
        for (position, &index) in order.iter().enumerate() {
            preference_of[index] = position;
        }

        let own: Vec<PerFamily<Intervals>> = specs
            .iter()
            .map(|spec| PerFamily::from_fn(|family| Intervals::of_ranges(spec.ranges(), family)))
            .collect();

        let mut table = PoolTable {
            preference: order,
            ..PoolTable::default()
        };
        let mut claimed: PerFamily<Intervals> = PerFamily::default();
        for (index, spec) in specs.into_iter().enumerate() {
            let mut overlaps = Vec::new();
            let space = PerFamily::from_fn(|family| {
                let mine = &own[index][family];
                if !mine.intersect(&claimed[family]).is_empty() {
                    // Pool counts are configuration-sized (tens), so naming every older pool
                    // involved, pair by pair, is cheap. `table.pools` holds exactly the older
                    // pools so far, and `own` is in the same order.
                    for (older, older_own) in table.pools.iter().zip(&own) {
                        for (start, end) in mine.intersect(&older_own[family]).runs() {
                            overlaps.push(Overlap {
                                older: older.name().clone(),
                                range: IpRange::from_numbers(family, start, end),
                            });
                        }
                    }
                }
                let effective = mine.subtract(&claimed[family]);
                claimed[family] = claimed[family].union(mine);
                for (start, end) in effective.runs() {
                    table.owners[family].insert(start, (end, index));
                }
                // Only IPv4 has buggy addresses (MetalLB's ipConfusesBuggyFirmwares).
                let skip_buggy = spec.avoid_buggy_ips() && family == Family::V4;
                FamilySpace {
                    free: FreeSet::new(&effective, skip_buggy),
                    usable: usable_count(&effective, skip_buggy),
                    assigned: 0,
                    reserved: 0,
                }
            });
            if !overlaps.is_empty() {
                report.overlaps.insert(spec.name().clone(), overlaps);
            }
            table.by_name.insert(spec.name().clone(), index);
            table.pools.push(Pool {
                spec,
                preference: preference_of[index],
                space,
            });
        }
        (table, report)
    }

    /// The pool called `name`.
    pub(crate) fn get(&self, name: &PoolName) -> Option<&Pool> {
        self.by_name
            .get(name)
            .and_then(|&index| self.pools.get(index))
    }

    /// The pools, most preferred first.
    pub(crate) fn by_preference(&self) -> impl Iterator<Item = &Pool> {
        self.preference
            .iter()
            .filter_map(|&index| self.pools.get(index))
    }

    /// Where `ip` stands: O(log runs).
    pub(crate) fn locate(&self, ip: IpAddr) -> Location<'_> {
        let (family, value) = split(ip);
        match self
            .owner(family, value)
            .and_then(|index| self.pools.get(index))
        {
            None => Location::Outside,
            Some(pool) if pool.space[family].free.usable(value) => Location::Pool(pool),
            Some(pool) => Location::Avoided(pool),
        }
    }

    /// Marks `ip` held in the pool it is usable in, if any.
    pub(crate) fn take(&mut self, ip: IpAddr) {
        if let Some((value, space)) = self.space_mut(ip)
            && space.free.take(value)
        {
            space.assigned += 1;
        }
    }

    /// Marks `ip` free again in the pool it is usable in, if any.
    pub(crate) fn give_back(&mut self, ip: IpAddr) {
        if let Some((value, space)) = self.space_mut(ip)
            && space.free.put(value)
        {
            space.assigned = space.assigned.saturating_sub(1);
        }
    }

    /// Marks the free `ip` reserved (out of the free set, not assigned), if it is usable in a pool.
    pub(crate) fn reserve(&mut self, ip: IpAddr) {
        if let Some((value, space)) = self.space_mut(ip)
            && space.free.take(value)
        {
            space.reserved += 1;
        }
    }

    /// Frees the reserved, unheld `ip` again, if it is usable in a pool.
    pub(crate) fn unreserve(&mut self, ip: IpAddr) {
        if let Some((value, space)) = self.space_mut(ip)
            && space.free.put(value)
        {
            space.reserved = space.reserved.saturating_sub(1);
        }
    }

    /// The reserved, unheld `ip` gets its first holder: reserved becomes assigned. It stays out of
    /// the free set.
    pub(crate) fn take_reserved(&mut self, ip: IpAddr) {
        if let Some((_, space)) = self.space_mut(ip) {
            space.reserved = space.reserved.saturating_sub(1);
            space.assigned += 1;
        }
    }

    /// The reserved `ip` lost its last holder: assigned becomes reserved. It stays out of the
    /// free set.
    pub(crate) fn give_back_reserved(&mut self, ip: IpAddr) {
        if let Some((_, space)) = self.space_mut(ip) {
            space.assigned = space.assigned.saturating_sub(1);
            space.reserved += 1;
        }
    }

    /// The name of the pool `ip` is usable in, if any.
    pub(crate) fn usable_in(&self, ip: IpAddr) -> Option<&PoolName> {
        self.locate(ip).pool().map(Pool::name)
    }

    /// The index of the pool whose effective set holds `value`.
    fn owner(&self, family: Family, value: u128) -> Option<usize> {
        self.owners[family]
            .range(..=value)
            .next_back()
            .filter(|(_, (end, _))| *end >= value)
            .map(|(_, &(_, index))| index)
    }

    /// `ip`'s number and the space of its pool, if any.
    fn space_mut(&mut self, ip: IpAddr) -> Option<(u128, &mut FamilySpace)> {
        let (family, value) = split(ip);
        let index = self.owner(family, value)?;
        let pool = self.pools.get_mut(index)?;
        Some((value, &mut pool.space[family]))
    }

    /// Every pool, oldest first (tests check counters against free sets).
    #[cfg(test)]
    pub(crate) fn pools(&self) -> &[Pool] {
        &self.pools
    }
}
