//! Typed errors. Each carries the identifiers (address, pool, service, family) a user needs to act
//! on it; the controller turns `AllocError` into Kubernetes Events, so the Display texts are written
//! as sentences that say what to change. [`SpecError`] (invalid domain values) is the model's.

use std::net::IpAddr;

use thiserror::Error;

pub use ferrolb_model::SpecError;
use ferrolb_model::{Family, PoolName};

use crate::request::{FamilyPolicy, Holder, Protocol, ServiceKey};

/// Why one service may not hold an address that another service holds. Two services may hold one
/// address only if both share it, with the same key and backend, on disjoint ports.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SharingConflict {
    /// The service asking has no sharing key.
    #[error("this service does not allow address sharing")]
    RequesterNotSharing,
    /// The holder has no sharing key.
    #[error("the holder does not allow address sharing")]
    HolderNotSharing,
    /// The two sharing keys differ.
    #[error("sharing key \"{ours}\" differs from the holder's \"{theirs}\"")]
    KeyMismatch {
        /// This service's key.
        ours: String,
        /// The holder's key.
        theirs: String,
    },
    /// The two backends differ (externalTrafficPolicy Local services must select the same pods, as
    /// the address is announced from the nodes running them).
    #[error("backend \"{ours}\" differs from the holder's \"{theirs}\"")]
    BackendMismatch {
        /// This service's backend.
        ours: String,
        /// The holder's backend.
        theirs: String,
    },
    /// Both services use one protocol and port.
    #[error("both services use {protocol}/{port}")]
    PortsOverlap {
        /// Protocol of the first port in common.
        protocol: Protocol,
        /// First port in common.
        port: u16,
    },
}

/// Why an assignment or a restore was refused. A refused call changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AllocError {
    /// The request names a pool that does not exist.
    #[error("address pool \"{0}\" does not exist")]
    NoSuchPool(PoolName),
    /// A requested address is in no pool.
    #[error("requested address {0} is not in any address pool")]
    RequestedOutsidePools(IpAddr),
    /// A requested address ends in .0 or .255 and its pool avoids those.
    #[error(
        "requested address {ip} ends in .0 or .255, which pool \"{pool}\" does not hand out (avoidBuggyIPs)"
    )]
    RequestedAvoidedAddress {
        /// The address requested.
        ip: IpAddr,
        /// The pool that avoids it.
        pool: PoolName,
    },
    /// A requested address is in a pool this service may not use.
    #[error(
        "requested address {ip} belongs to pool \"{pool}\", which this service may not use; request that pool or an address of an allowed one"
    )]
    RequestedPoolNotAllowed {
        /// The address requested.
        ip: IpAddr,
        /// Its pool.
        pool: PoolName,
    },
    /// A requested address is reserved ([`crate::Allocator::set_reserved`]): never handed out.
    #[error(
        "requested address {ip} is reserved for something other than a service and never assigned; request another address"
    )]
    RequestedReserved {
        /// The address requested.
        ip: IpAddr,
    },
    /// An address is held by another service and this service does not share addresses.
    #[error(
        "address {ip} is already used by service {holder}; choose another address, or give both services the same sharing key"
    )]
    RequestedInUse {
        /// The address.
        ip: IpAddr,
        /// A service (or a service's release) holding it.
        holder: Holder,
    },
    /// An address is held by a service it cannot be shared with.
    #[error("address {ip} cannot be shared with service {holder}: {reason}")]
    SharingConflict {
        /// The address.
        ip: IpAddr,
        /// The service (or a service's release) it cannot be shared with.
        holder: Holder,
        /// Why.
        reason: SharingConflict,
    },
    /// Every address of the eligible pools for this family is taken.
    #[error("{}", exhausted(.pool.as_ref(), *.family))]
    Exhausted {
        /// The pool named by the request, `None` when any eligible pool would do.
        pool: Option<PoolName>,
        /// The family asked for.
        family: Family,
    },
    /// No pool the request may use has addresses of this family at all.
    #[error("{}", no_pool_for_family(.pool.as_ref(), *.family))]
    NoPoolForFamily {
        /// The pool named by the request, `None` when any eligible pool would do.
        pool: Option<PoolName>,
        /// The family asked for.
        family: Family,
    },
    /// Two addresses of one family were given.
    #[error("{first} and {second} are both {family} addresses; give at most one per family")]
    TwoAddressesOfOneFamily {
        /// Their family.
        family: Family,
        /// The first address given.
        first: IpAddr,
        /// The second address given.
        second: IpAddr,
    },
    /// A RequireDualStack service could not get an address of one family.
    #[error("RequireDualStack needs an {missing} address, but {source}")]
    RequireDualStackUnsatisfiable {
        /// The family that could not be allocated.
        missing: Family,
        /// Why not.
        source: Box<AllocError>,
    },
    /// A requested address is of a family the service's policy excludes.
    #[error("requested address {ip} is {}, which IP family policy {policy} excludes", Family::of(*.ip))]
    RequestedFamilyNotInPolicy {
        /// The address requested.
        ip: IpAddr,
        /// The service's policy.
        policy: FamilyPolicy,
    },
    /// `restore` was called without addresses.
    #[error("no address given to restore for service {0}")]
    NothingToRestore(ServiceKey),
}

fn exhausted(pool: Option<&PoolName>, family: Family) -> String {
    match pool {
        Some(pool) => format!("pool \"{pool}\" has no free {family} address left"),
        None => format!("every pool this service may use is out of {family} addresses"),
    }
}

fn no_pool_for_family(pool: Option<&PoolName>, family: Family) -> String {
    match pool {
        Some(pool) => format!("pool \"{pool}\" has no {family} addresses"),
        None => format!("no pool this service may use has {family} addresses"),
    }
}

impl AllocError {
    /// Why the request was refused, as one CamelCase word (a metric label, a machine-readable
    /// reason). Every variant has its own, and the match has no wildcard arm, so a new variant
    /// cannot be added without one. `RequestedInUse` is `AddressInUse`, the name the controller's
    /// error metric has always used for it.
    pub fn reason(&self) -> &'static str {
        match self {
            AllocError::NoSuchPool(_) => "NoSuchPool",
            AllocError::RequestedOutsidePools(_) => "RequestedOutsidePools",
            AllocError::RequestedAvoidedAddress { .. } => "RequestedAvoidedAddress",
            AllocError::RequestedPoolNotAllowed { .. } => "RequestedPoolNotAllowed",
            AllocError::RequestedReserved { .. } => "RequestedReserved",
            AllocError::RequestedInUse { .. } => "AddressInUse",
            AllocError::SharingConflict { .. } => "SharingConflict",
            AllocError::Exhausted { .. } => "Exhausted",
            AllocError::NoPoolForFamily { .. } => "NoPoolForFamily",
            AllocError::TwoAddressesOfOneFamily { .. } => "TwoAddressesOfOneFamily",
            AllocError::RequireDualStackUnsatisfiable { .. } => "RequireDualStackUnsatisfiable",
            AllocError::RequestedFamilyNotInPolicy { .. } => "RequestedFamilyNotInPolicy",
            AllocError::NothingToRestore(_) => "NothingToRestore",
        }
    }

    /// The error at the bottom: what made a RequireDualStack request unsatisfiable (an exhausted
    /// pool counts as `Exhausted` whichever request met it), else the error itself.
    pub fn cause(&self) -> &AllocError {
        let mut e = self;
        while let AllocError::RequireDualStackUnsatisfiable { source, .. } = e {
            e = source;
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// One error of every variant.
    fn every_variant() -> Vec<AllocError> {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let pool = PoolName::new("p");
        let svc = ServiceKey::new("ns", "a");
        vec![
            AllocError::NoSuchPool(pool.clone()),
            AllocError::RequestedOutsidePools(ip),
            AllocError::RequestedAvoidedAddress {
                ip,
                pool: pool.clone(),
            },
            AllocError::RequestedPoolNotAllowed {
                ip,
                pool: pool.clone(),
            },
            AllocError::RequestedInUse {
                ip,
                holder: Holder::Service(svc.clone()),
            },
            AllocError::SharingConflict {
                ip,
                holder: Holder::Service(svc.clone()),
                reason: SharingConflict::RequesterNotSharing,
            },
            AllocError::Exhausted {
                pool: None,
                family: Family::V4,
            },
            AllocError::NoPoolForFamily {
                pool: Some(pool),
                family: Family::V6,
            },
            AllocError::TwoAddressesOfOneFamily {
                family: Family::V4,
                first: ip,
                second: ip,
            },
            AllocError::RequireDualStackUnsatisfiable {
                missing: Family::V6,
                source: Box::new(AllocError::Exhausted {
                    pool: None,
                    family: Family::V6,
                }),
            },
            AllocError::RequestedFamilyNotInPolicy {
                ip,
                policy: FamilyPolicy::SingleStack(Family::V6),
            },
            AllocError::NothingToRestore(svc),
            AllocError::RequestedReserved { ip },
        ]
    }

    /// The position of `e`'s variant in the declaration. No wildcard arm: a new variant fails to
    /// compile here until `every_variant` has one of it.
    fn variant(e: &AllocError) -> usize {
        match e {
            AllocError::NoSuchPool(_) => 0,
            AllocError::RequestedOutsidePools(_) => 1,
            AllocError::RequestedAvoidedAddress { .. } => 2,
            AllocError::RequestedPoolNotAllowed { .. } => 3,
            AllocError::RequestedInUse { .. } => 4,
            AllocError::SharingConflict { .. } => 5,
            AllocError::Exhausted { .. } => 6,
            AllocError::NoPoolForFamily { .. } => 7,
            AllocError::TwoAddressesOfOneFamily { .. } => 8,
            AllocError::RequireDualStackUnsatisfiable { .. } => 9,
            AllocError::RequestedFamilyNotInPolicy { .. } => 10,
            AllocError::NothingToRestore(_) => 11,
            AllocError::RequestedReserved { .. } => 12,
        }
    }

    #[test]
    fn every_variant_has_its_own_camel_case_reason() {
        let all = every_variant();
        let variants: BTreeSet<usize> = all.iter().map(variant).collect();
        assert_eq!(variants, (0..13).collect(), "one error of every variant");
        let reasons: BTreeSet<&str> = all.iter().map(AllocError::reason).collect();
        assert_eq!(reasons.len(), all.len(), "{reasons:?}");
        for r in reasons {
            let mut chars = r.chars();
            assert!(
                chars.next().is_some_and(|c| c.is_ascii_uppercase())
                    && chars.all(|c| c.is_ascii_alphanumeric()),
                "{r} is not CamelCase"
            );
        }
    }

    #[test]
    fn the_cause_of_an_unsatisfiable_dual_stack_request_is_what_it_met() {
        let all = every_variant();
        let dual = &all[9];
        assert_eq!(dual.reason(), "RequireDualStackUnsatisfiable");
        assert_eq!(dual.cause().reason(), "Exhausted");
        assert_eq!(all[6].cause(), &all[6]);
    }
}
