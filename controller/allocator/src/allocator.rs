//! The allocator: pools and requests in, allocations or typed errors out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use crate::error::{AllocError, SharingConflict};
use crate::pools::{Location, PoolStats, PoolTable, PoolsReport};
use crate::range::{Family, PerFamily};
use crate::request::{
    FamilyPolicy, Holder, Need, PoolChoice, Request, ServiceKey, Sharing, sharing_conflict,
};
use crate::spec::{PoolName, PoolSpec};

/// One address held by a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    /// The address.
    pub ip: IpAddr,
    /// The pool it is usable in; `None` flags an address outside every pool (restored from an
    /// old status, or left behind by a pool change), still recorded so it is never handed out
    /// twice.
    pub pool: Option<PoolName>,
}

/// The addresses a service holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The service.
    pub service: ServiceKey,
    /// Its IPv4 address.
    pub v4: Option<Assigned>,
    /// Its IPv6 address.
    pub v6: Option<Assigned>,
    /// Its consent to share, as last requested.
    pub sharing: Option<Sharing>,
    /// What [`Allocator::assign`] released to get here; always `None` in stored allocations.
    pub moved: Option<Moved>,
}

impl Allocation {
    /// The address of `family`.
    pub fn get(&self, family: Family) -> Option<&Assigned> {
        match family {
            Family::V4 => self.v4.as_ref(),
            Family::V6 => self.v6.as_ref(),
        }
    }

    /// The addresses, IPv4 first.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.v4.iter().chain(&self.v6).map(|assigned| assigned.ip)
    }
}

/// Addresses a service lost in one [`Allocator::assign`], each with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The released addresses, IPv4 first.
    pub released: Vec<(IpAddr, MoveReason)>,
}

impl fmt::Display for Moved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (ip, reason)) in self.released.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "released {ip}: {reason}")?;
        }
        Ok(())
    }
}

/// Why a held address no longer suits its service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveReason {
    /// The address is in no pool any more.
    LeftPools,
    /// The address ends in .0 or .255 and its pool now avoids those.
    AvoidedByPool {
        /// The pool.
        pool: PoolName,
    },
    /// The address's pool is not one the request may use.
    PoolNotEligible {
        /// The pool.
        pool: PoolName,
    },
    /// The service now asks for another address of this family.
    RequestedAddressChanged {
        /// The address asked for.
        requested: IpAddr,
    },
    /// Another holder of the address and this service can no longer share it.
    SharingConflict {
        /// The other holder.
        holder: Holder,
        /// Why they cannot share.
        reason: SharingConflict,
    },
    /// The service's family policy excludes this family now.
    FamilyNotInPolicy {
        /// The policy.
        policy: FamilyPolicy,
    },
}

impl fmt::Display for MoveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoveReason::LeftPools => f.write_str("the address left every pool"),
            MoveReason::AvoidedByPool { pool } => {
                write!(
                    f,
                    "pool \"{pool}\" now avoids addresses ending in .0 or .255"
                )
            }
            MoveReason::PoolNotEligible { pool } => {
                write!(f, "pool \"{pool}\" is no longer one this service may use")
            }
            MoveReason::RequestedAddressChanged { requested } => {
                write!(f, "the service now requests {requested}")
            }
            MoveReason::SharingConflict { holder, reason } => {
                write!(
                    f,
                    "it can no longer be shared with service {holder}: {reason}"
                )
            }
            MoveReason::FamilyNotInPolicy { policy } => {
                write!(f, "IP family policy {policy} excludes its family")
            }
        }
    }
}

/// The allocator's state. See the crate documentation for the design.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocator {
    pools: PoolTable,
    /// Every held address with its holders (more than one only when shared).
    holders: BTreeMap<IpAddr, BTreeSet<Holder>>,
    services: BTreeMap<ServiceKey, Allocation>,
    /// Release holds ([`Holder::Releasing`]) by service and address, with the consent to share
    /// they hold their address under.
    releasing: BTreeMap<ServiceKey, BTreeMap<IpAddr, Option<Sharing>>>,
    /// Sharing key -> addresses held under it, for sharing by key.
    shared: BTreeMap<String, BTreeSet<IpAddr>>,
    /// Addresses never handed out ([`Allocator::set_reserved`]); whoever holds one keeps it.
    reserved: BTreeSet<IpAddr>,
}

impl Allocator {
    /// An allocator without pools or assignments.
    pub fn new() -> Allocator {
        Allocator::default()
    }

    /// Replaces the pools. Overlaps are resolved by age (see [`PoolsReport`]). Assignments stay as
    /// they are, even to addresses that left every pool, until the next [`Allocator::assign`] of
    /// their service moves them; pool labels and counters follow the new pools.
    pub fn set_pools(&mut self, specs: Vec<PoolSpec>) -> PoolsReport {
        let (mut table, report) = PoolTable::build(specs);
        for &ip in self.holders.keys() {
            table.take(ip);
        }
        for &ip in &self.reserved {
            if !self.holders.contains_key(&ip) {
                table.reserve(ip);
            }
        }
        self.pools = table;
        for allocation in self.services.values_mut() {
            for assigned in [&mut allocation.v4, &mut allocation.v6]
                .into_iter()
                .flatten()
            {
                assigned.pool = self
                    .pools
                    .locate(assigned.ip)
                    .pool()
                    .map(|p| p.name().clone());
            }
        }
        report
    }

    /// Replaces the reserved addresses: addresses of the pools that are never handed out, by
    /// [`Allocator::assign`] nor by sharing, as if taken by something that is not a service (the
    /// controller reserves the control-plane endpoint). A service that already holds one keeps it
    /// (reserving moves nothing; the caller reports the conflict); [`Allocator::restore`] records
    /// one all the same, as it records an address outside every pool. A reserved address held by
    /// no service is neither available nor assigned in [`Allocator::pool_stats`].
    pub fn set_reserved(&mut self, ips: BTreeSet<IpAddr>) {
        for &ip in self.reserved.difference(&ips) {
            if !self.holders.contains_key(&ip) {
                self.pools.unreserve(ip);
            }
        }
        for &ip in ips.difference(&self.reserved) {
            if !self.holders.contains_key(&ip) {
                self.pools.reserve(ip);
            }
        }
        self.reserved = ips;
    }

    /// Whether `ip` is reserved ([`Allocator::set_reserved`]).
    pub fn is_reserved(&self, ip: IpAddr) -> bool {
        self.reserved.contains(&ip)
    }

    /// The pool `ip` is usable in, if any (not one that avoids it, nor an older pool's overlap).
    pub fn pool_of(&self, ip: IpAddr) -> Option<&PoolName> {
        self.pools.usable_in(ip)
    }

    /// Gives `req.service` addresses satisfying `req`.
    ///
    /// Idempotent: addresses the service holds are kept, family by family, while they still suit
    /// the request (usable in a pool it may use, the requested address if one is given, shareable
    /// with their other holders); an unchanged holding comes back with `moved: None`. Each missing
    /// family gets, in this order of preference: the requested address; an address already held
    /// under the same sharing key that the service may share; the lowest free address of the most
    /// preferred pool (priority, then name), preferring the pool of the service's other-family
    /// address. Replaced and dropped addresses are listed in `moved`.
    ///
    /// What the service is releasing itself (its release holds, see [`Allocator::hold_release`])
    /// is free to it: it may get back the very address its status still shows. What it does not
    /// get back stays held.
    ///
    /// On error nothing changes: the service keeps what it held.
    pub fn assign(&mut self, req: &Request) -> Result<Allocation, AllocError> {
        let Some(own) = self.releasing.remove(&req.service) else {
            return self.assign_unheld(req);
        };
        for (&ip, sharing) in &own {
            let holder = Holder::Releasing {
                service: req.service.clone(),
                ip,
            };
            self.detach(ip, &holder, sharing.as_ref());
        }
        let result = self.assign_unheld(req);
        let now: Vec<IpAddr> = self
            .services
            .get(&req.service)
            .map(|allocation| allocation.ips().collect())
            .unwrap_or_default();
        // Held again as before: `assign` changed only what this service holds, so the other
        // holders of each address are the ones the hold shared it with a moment ago.
        for (ip, sharing) in own {
            if !now.contains(&ip) {
                self.attach_release(req.service.clone(), ip, sharing);
            }
        }
        result
    }

    /// [`Allocator::assign`] once the service's own release holds are out of the way.
    fn assign_unheld(&mut self, req: &Request) -> Result<Allocation, AllocError> {
        if let PoolChoice::Named(name) = &req.pool
            && self.pools.get(name).is_none()
        {
            return Err(AllocError::NoSuchPool(name.clone()));
        }
        let requested = one_per_family(&req.requested)?;
        for ip in req.requested.iter().copied() {
            if req.policy.need(Family::of(ip)) == Need::Excluded {
                return Err(AllocError::RequestedFamilyNotInPolicy {
                    ip,
                    policy: req.policy,
                });
            }
        }

        // Plan without touching state, so that an error leaves everything as it was.
        let current = self.services.get(&req.service);
        let mut chosen: PerFamily<Option<IpAddr>> = PerFamily::default();
        let mut released = Vec::new();
        for family in Family::ALL {
            let Some(held) = current.and_then(|c| c.get(family)) else {
                continue;
            };
            let verdict = match req.policy.need(family) {
                Need::Excluded => Err(MoveReason::FamilyNotInPolicy { policy: req.policy }),
                Need::Required | Need::Optional => self.check_held(req, held.ip, requested[family]),
            };
            match verdict {
                Ok(()) => chosen[family] = Some(held.ip),
                Err(reason) => released.push((held.ip, reason)),
            }
        }
        let primary = req.policy.primary();
        for family in [primary, primary.other()] {
            let need = req.policy.need(family);
            if need == Need::Excluded || chosen[family].is_some() {
                continue;
            }
            let picked = match requested[family] {
                Some(ip) => self.check_requested(req, ip).map(|()| ip),
                None => {
                    let affinity = chosen[family.other()]
                        .and_then(|ip| self.pools.locate(ip).pool())
                        .map(|pool| pool.name());
                    self.pick(req, family, affinity)
                }
            };
            match picked {
                Ok(ip) => chosen[family] = Some(ip),
                // The user asked for this address: say why it cannot be had.
                Err(err) if requested[family].is_some() => return Err(err),
                Err(_) if need == Need::Optional => {}
                Err(err) => {
                    return Err(match req.policy {
                        FamilyPolicy::RequireDualStack { .. } => {
                            AllocError::RequireDualStackUnsatisfiable {
                                missing: family,
                                source: Box::new(err),
                            }
                        }
                        FamilyPolicy::SingleStack(_) | FamilyPolicy::PreferDualStack { .. } => err,
                    });
                }
            }
        }

        if let Some(current) = current
            && released.is_empty()
            && current.sharing == req.sharing
            && Family::ALL
                .into_iter()
                .all(|family| current.get(family).map(|a| a.ip) == chosen[family])
        {
            return Ok(current.clone());
        }

        let allocation = self.commit(
            req.service.clone(),
            [chosen[Family::V4], chosen[Family::V6]],
            req.sharing.clone(),
        );
        Ok(Allocation {
            moved: (!released.is_empty()).then_some(Moved { released }),
            ..allocation
        })
    }

    /// Records that `service` holds `addrs` (at most one per family), as found in its status when
    /// the controller starts; call it for every service before the first [`Allocator::assign`].
    /// Replaces whatever the service held. An address outside every pool is recorded all the same,
    /// so it is never handed out twice, and flagged with `pool: None`. Refused, recording nothing,
    /// if another holder of an address cannot share it with this service.
    pub fn restore(
        &mut self,
        service: ServiceKey,
        addrs: Vec<IpAddr>,
        sharing: Option<Sharing>,
    ) -> Result<Allocation, AllocError> {
        if addrs.is_empty() {
            return Err(AllocError::NothingToRestore(service));
        }
        let addrs = one_per_family(&addrs)?;
        let me = Holder::Service(service.clone());
        for ip in Family::ALL.into_iter().filter_map(|family| addrs[family]) {
            if let Some((holder, reason)) = self.conflict(ip, &me, sharing.as_ref()) {
                return Err(conflict_error(ip, holder, reason));
            }
        }
        Ok(self.commit(service, [addrs[Family::V4], addrs[Family::V6]], sharing))
    }

    /// Holds `ip`, just released by `service`, from every other service until `service`'s
    /// status stops showing it ([`Holder::Releasing`]); [`Allocator::free_releases`] ends it.
    /// `sharing` is the consent to share the service held it under, so the services it shared
    /// the address with keep sharing it. Holding it again replaces the earlier hold. Refused,
    /// recording nothing, if another holder of `ip` cannot share it under `sharing`.
    pub fn hold_release(
        &mut self,
        service: &ServiceKey,
        ip: IpAddr,
        sharing: Option<Sharing>,
    ) -> Result<(), AllocError> {
        let me = Holder::Releasing {
            service: service.clone(),
            ip,
        };
        if let Some((holder, reason)) = self.conflict(ip, &me, sharing.as_ref()) {
            return Err(conflict_error(ip, holder, reason));
        }
        if let Some(old) = self
            .releasing
            .get_mut(service)
            .and_then(|held| held.remove(&ip))
        {
            self.detach(ip, &me, old.as_ref());
        }
        self.attach_release(service.clone(), ip, sharing);
        Ok(())
    }

    /// Ends every release hold of `service` (its status no longer shows what it released) and
    /// returns the addresses, in address order.
    pub fn free_releases(&mut self, service: &ServiceKey) -> Vec<IpAddr> {
        let Some(held) = self.releasing.remove(service) else {
            return Vec::new();
        };
        for (&ip, sharing) in &held {
            let holder = Holder::Releasing {
                service: service.clone(),
                ip,
            };
            self.detach(ip, &holder, sharing.as_ref());
        }
        held.into_keys().collect()
    }

    /// The addresses held for `service`'s releases, in address order.
    pub fn releases(&self, service: &ServiceKey) -> impl Iterator<Item = IpAddr> + '_ {
        self.releasing
            .get(service)
            .into_iter()
            .flat_map(|held| held.keys().copied())
    }

    /// Releases everything `service` holds and returns the addresses, IPv4 first.
    pub fn release(&mut self, service: &ServiceKey) -> Vec<IpAddr> {
        let Some(old) = self.services.remove(service) else {
            return Vec::new();
        };
        let ips: Vec<IpAddr> = old.ips().collect();
        let holder = Holder::Service(service.clone());
        for &ip in &ips {
            self.detach(ip, &holder, old.sharing.as_ref());
        }
        ips
    }

    /// Releases only the addresses of `service` that are in no pool any more (flagged
    /// `pool: None`) and returns them, IPv4 first; the service keeps the others. With nothing else
    /// left the service holds nothing.
    ///
    /// For a service whose held address left every pool and cannot be replaced: what is still in a
    /// pool stays with it (an address leaves a service only when it left every pool), even when
    /// that leaves a RequireDualStack service with one family until the other can be had.
    pub fn release_stranded(&mut self, service: &ServiceKey) -> Vec<IpAddr> {
        let Some(current) = self.services.get(service) else {
            return Vec::new();
        };
        let keep = |a: &Option<Assigned>| a.as_ref().filter(|a| a.pool.is_some()).map(|a| a.ip);
        let kept = [keep(&current.v4), keep(&current.v6)];
        let stranded: Vec<IpAddr> = [&current.v4, &current.v6]
            .into_iter()
            .flatten()
            .filter(|a| a.pool.is_none())
            .map(|a| a.ip)
            .collect();
        if stranded.is_empty() {
            return stranded;
        }
        if kept.iter().all(Option::is_none) {
            return self.release(service);
        }
        let sharing = current.sharing.clone();
        self.commit(service.clone(), kept, sharing);
        stranded
    }

    /// What `service` holds.
    pub fn allocation(&self, service: &ServiceKey) -> Option<&Allocation> {
        self.services.get(service)
    }

    /// Exact counts for the pool `name`.
    pub fn pool_stats(&self, name: &PoolName) -> Option<PoolStats> {
        self.pools.get(name).map(|pool| pool.stats())
    }

    /// The holders of `ip`, in order (by service, each service before its release holds).
    pub fn holders(&self, ip: IpAddr) -> impl Iterator<Item = &Holder> {
        self.holders.get(&ip).into_iter().flatten()
    }

    /// Why the held `ip` no longer suits `req`, if it does not; `requested` is the address of its
    /// family the request asks for.
    fn check_held(
        &self,
        req: &Request,
        ip: IpAddr,
        requested: Option<IpAddr>,
    ) -> Result<(), MoveReason> {
        if let Some(requested) = requested
            && requested != ip
        {
            return Err(MoveReason::RequestedAddressChanged { requested });
        }
        match self.pools.locate(ip) {
            Location::Outside => return Err(MoveReason::LeftPools),
            Location::Avoided(pool) => {
                return Err(MoveReason::AvoidedByPool {
                    pool: pool.name().clone(),
                });
            }
            Location::Pool(pool) => {
                if !req.may_use(pool.name(), pool.spec.auto_assign(), requested.is_some()) {
                    return Err(MoveReason::PoolNotEligible {
                        pool: pool.name().clone(),
                    });
                }
            }
        }
        match self.conflict(
            ip,
            &Holder::Service(req.service.clone()),
            req.sharing.as_ref(),
        ) {
            Some((holder, reason)) => Err(MoveReason::SharingConflict { holder, reason }),
            None => Ok(()),
        }
    }

    /// Whether `req` may have the address it asks for by value.
    fn check_requested(&self, req: &Request, ip: IpAddr) -> Result<(), AllocError> {
        if self.reserved.contains(&ip) {
            return Err(AllocError::RequestedReserved { ip });
        }
        match self.pools.locate(ip) {
            Location::Outside => return Err(AllocError::RequestedOutsidePools(ip)),
            Location::Avoided(pool) => {
                return Err(AllocError::RequestedAvoidedAddress {
                    ip,
                    pool: pool.name().clone(),
                });
            }
            Location::Pool(pool) => {
                if !req.may_use(pool.name(), pool.spec.auto_assign(), true) {
                    return Err(AllocError::RequestedPoolNotAllowed {
                        ip,
                        pool: pool.name().clone(),
                    });
                }
            }
        }
        match self.conflict(
            ip,
            &Holder::Service(req.service.clone()),
            req.sharing.as_ref(),
        ) {
            Some((holder, reason)) => Err(conflict_error(ip, holder, reason)),
            None => Ok(()),
        }
    }

    /// An address of `family` for `req`, which asks for none by value: one shared under its key,
    /// else the lowest free address of the `affinity` pool if the request may use it and it has
    /// one, else of the most preferred pool that has one. O(pools + log runs).
    fn pick(
        &self,
        req: &Request,
        family: Family,
        affinity: Option<&PoolName>,
    ) -> Result<IpAddr, AllocError> {
        if let Some(sharing) = &req.sharing
            && let Some(ip) = self.shared_candidate(req, sharing, family)
        {
            return Ok(ip);
        }
        let mut has_family = false;
        let mut best = None;
        for pool in self
            .pools
            .by_preference()
            .filter(|pool| req.may_use(pool.name(), pool.spec.auto_assign(), false))
        {
            let space = &pool.space[family];
            if space.usable == 0 {
                continue;
            }
            has_family = true;
            let Some(lowest) = space.free.lowest() else {
                continue;
            };
            if affinity == Some(pool.name()) {
                return Ok(family.addr(lowest));
            }
            if best.is_none() {
                best = Some(lowest);
                if affinity.is_none() {
                    break;
                }
            }
        }
        let named = match &req.pool {
            PoolChoice::Named(name) => Some(name.clone()),
            PoolChoice::Auto { .. } => None,
        };
        match best {
            Some(value) => Ok(family.addr(value)),
            None if has_family => Err(AllocError::Exhausted {
                pool: named,
                family,
            }),
            None => Err(AllocError::NoPoolForFamily {
                pool: named,
                family,
            }),
        }
    }

    /// The address of `family` held under `sharing`'s key that `req` may use and share, from the
    /// most preferred pool, lowest first. Linear in the addresses under that key only.
    fn shared_candidate(&self, req: &Request, sharing: &Sharing, family: Family) -> Option<IpAddr> {
        let me = Holder::Service(req.service.clone());
        self.shared
            .get(sharing.key())?
            .iter()
            .copied()
            .filter(|&ip| Family::of(ip) == family && !self.reserved.contains(&ip))
            .filter_map(|ip| match self.pools.locate(ip) {
                Location::Pool(pool)
                    if req.may_use(pool.name(), pool.spec.auto_assign(), false) =>
                {
                    Some((pool.preference, ip))
                }
                Location::Pool(_) | Location::Avoided(_) | Location::Outside => None,
            })
            .filter(|&(_, ip)| self.conflict(ip, &me, Some(sharing)).is_none())
            .min()
            .map(|(_, ip)| ip)
    }

    /// The first holder of `ip` other than `me` that `me`, with `sharing`, cannot share it
    /// with, and why.
    fn conflict(
        &self,
        ip: IpAddr,
        me: &Holder,
        sharing: Option<&Sharing>,
    ) -> Option<(Holder, SharingConflict)> {
        self.holders(ip)
            .filter(|&holder| holder != me)
            .find_map(|holder| {
                sharing_conflict(sharing, self.sharing_of(holder))
                    .map(|reason| (holder.clone(), reason))
            })
    }

    /// The consent to share `holder` holds its addresses under.
    fn sharing_of(&self, holder: &Holder) -> Option<&Sharing> {
        match holder {
            Holder::Service(service) => self
                .services
                .get(service)
                .and_then(|allocation| allocation.sharing.as_ref()),
            Holder::Releasing { service, ip } => self
                .releasing
                .get(service)
                .and_then(|held| held.get(ip))
                .and_then(Option::as_ref),
        }
    }

    /// Records the release hold of `ip` for `service` under `sharing` (no check).
    fn attach_release(&mut self, service: ServiceKey, ip: IpAddr, sharing: Option<Sharing>) {
        let holder = Holder::Releasing {
            service: service.clone(),
            ip,
        };
        self.attach(ip, &holder, sharing.as_ref());
        self.releasing
            .entry(service)
            .or_default()
            .insert(ip, sharing);
    }

    /// Replaces what `service` holds with `addrs` (IPv4, IPv6) under `sharing`; returns the
    /// stored allocation.
    fn commit(
        &mut self,
        service: ServiceKey,
        addrs: [Option<IpAddr>; 2],
        sharing: Option<Sharing>,
    ) -> Allocation {
        let assigned = |ip: IpAddr| Assigned {
            ip,
            pool: self.pools.locate(ip).pool().map(|pool| pool.name().clone()),
        };
        let [v4, v6] = addrs;
        let allocation = Allocation {
            service: service.clone(),
            v4: v4.map(assigned),
            v6: v6.map(assigned),
            sharing,
            moved: None,
        };
        let holder = Holder::Service(service.clone());
        // Store first: `detach` must see the other holders' records, never this service's old one.
        if let Some(old) = self.services.insert(service, allocation.clone()) {
            for ip in old.ips() {
                self.detach(ip, &holder, old.sharing.as_ref());
            }
        }
        for ip in addrs.into_iter().flatten() {
            self.attach(ip, &holder, allocation.sharing.as_ref());
        }
        allocation
    }

    /// Adds `holder` to the holders of `ip`; the first holder takes it from its pool.
    fn attach(&mut self, ip: IpAddr, holder: &Holder, sharing: Option<&Sharing>) {
        let holders = self.holders.entry(ip).or_default();
        if holders.is_empty() {
            if self.reserved.contains(&ip) {
                self.pools.take_reserved(ip);
            } else {
                self.pools.take(ip);
            }
        }
        holders.insert(holder.clone());
        if let Some(sharing) = sharing {
            self.shared
                .entry(sharing.key().to_owned())
                .or_default()
                .insert(ip);
        }
    }

    /// Removes `holder` from the holders of `ip`; the last holder gives it back to its pool.
    /// `holder`'s record is not consulted (it is gone or already replaced).
    fn detach(&mut self, ip: IpAddr, holder: &Holder, sharing: Option<&Sharing>) {
        let Some(holders) = self.holders.get_mut(&ip) else {
            return;
        };
        holders.remove(holder);
        if holders.is_empty() {
            self.holders.remove(&ip);
            if self.reserved.contains(&ip) {
                self.pools.give_back_reserved(ip);
            } else {
                self.pools.give_back(ip);
            }
        }
        let Some(sharing) = sharing else {
            return;
        };
        let key_still_held = self.holders(ip).any(|holder| {
            self.sharing_of(holder)
                .is_some_and(|theirs| theirs.key() == sharing.key())
        });
        if !key_still_held && let Some(ips) = self.shared.get_mut(sharing.key()) {
            ips.remove(&ip);
            if ips.is_empty() {
                self.shared.remove(sharing.key());
            }
        }
    }
}

/// `addrs` by family; two different addresses of one family are an error.
fn one_per_family(addrs: &[IpAddr]) -> Result<PerFamily<Option<IpAddr>>, AllocError> {
    let mut out: PerFamily<Option<IpAddr>> = PerFamily::default();
    for &ip in addrs {
        let family = Family::of(ip);
        match out[family] {
            Some(first) if first != ip => {
                return Err(AllocError::TwoAddressesOfOneFamily {
                    family,
                    first,
                    second: ip,
                });
            }
            _ => out[family] = Some(ip),
        }
    }
    Ok(out)
}

/// The error for a service that may not hold `ip` because of `holder`.
fn conflict_error(ip: IpAddr, holder: Holder, reason: SharingConflict) -> AllocError {
    match reason {
        SharingConflict::RequesterNotSharing => AllocError::RequestedInUse { ip, holder },
        reason => AllocError::SharingConflict { ip, holder, reason },
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
