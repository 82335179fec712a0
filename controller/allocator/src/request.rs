//! What a service asks for: the caller derives a [`Request`] from a Service of type LoadBalancer.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use crate::error::{SharingConflict, SpecError};
use crate::range::Family;
use crate::spec::PoolName;

/// A service's identity, `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey(String);

impl ServiceKey {
    /// The service `name` in `namespace`.
    pub fn new(namespace: &str, name: &str) -> ServiceKey {
        ServiceKey(format!("{namespace}/{name}"))
    }

    /// The key as text, `namespace/name`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who holds an address: a service, or a service's release that its status still shows.
///
/// A release hold keeps `ip`, just released by `service`, from every other service until
/// `service`'s status stops showing it (the caller frees it then, see
/// [`Allocator::free_releases`](crate::Allocator::free_releases)): without it another service
/// could get the address while the releasing service's status still shows it, and two statuses
/// would show one address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Holder {
    /// A service holding the address for itself.
    Service(ServiceKey),
    /// `ip`, released by `service` and held until its status stops showing it.
    Releasing {
        /// The service that released it.
        service: ServiceKey,
        /// The address.
        ip: IpAddr,
    },
}

impl Holder {
    /// The service this holder belongs to.
    pub fn service(&self) -> &ServiceKey {
        match self {
            Holder::Service(service) | Holder::Releasing { service, .. } => service,
        }
    }

    /// Ordering key: by service, the service itself before its release holds. This is the order
    /// of the holders' texts (a service's key is a prefix of its release holds' texts, and no
    /// character of a Kubernetes name sorts before the space that follows it), so the holder
    /// that messages name first is the same as when release holds were keys of their own.
    fn rank(&self) -> (&ServiceKey, Option<IpAddr>) {
        match self {
            Holder::Service(service) => (service, None),
            Holder::Releasing { service, ip } => (service, Some(*ip)),
        }
    }
}

impl Ord for Holder {
    fn cmp(&self, other: &Holder) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl PartialOrd for Holder {
    fn partial_cmp(&self, other: &Holder) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl From<ServiceKey> for Holder {
    fn from(service: ServiceKey) -> Holder {
        Holder::Service(service)
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Service(service) => write!(f, "{service}"),
            // Names both, for messages such as "already used by …".
            Holder::Releasing { service, ip } => write!(
                f,
                "{service} (which released {ip}; its status still shows it)"
            ),
        }
    }
}

/// A transport protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// A service's consent to share its address (MetalLB's `allow-shared-ip`). Two services may hold
/// one address iff both share with the same key and backend, on disjoint ports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sharing {
    key: String,
    ports: BTreeSet<(Protocol, u16)>,
    backend: String,
}

impl Sharing {
    /// Sharing under `key` for `ports`. `backend` is the canonical pod selector of a service with
    /// externalTrafficPolicy Local and empty otherwise: an address is announced from the nodes
    /// running the backends, so Local services on one address must select the same pods.
    pub fn new(
        key: impl Into<String>,
        ports: BTreeSet<(Protocol, u16)>,
        backend: impl Into<String>,
    ) -> Result<Sharing, SpecError> {
        let key = key.into();
        if key.is_empty() {
            return Err(SpecError::EmptySharingKey);
        }
        Ok(Sharing {
            key,
            ports,
            backend: backend.into(),
        })
    }

    /// The sharing key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The ports the service uses.
    pub fn ports(&self) -> &BTreeSet<(Protocol, u16)> {
        &self.ports
    }

    /// The canonical backend selector, empty unless externalTrafficPolicy is Local.
    pub fn backend(&self) -> &str {
        &self.backend
    }
}

/// Why a service with sharing `ours` may not hold an address that a service with sharing `theirs`
/// holds, or `None` if it may.
pub(crate) fn sharing_conflict(
    ours: Option<&Sharing>,
    theirs: Option<&Sharing>,
) -> Option<SharingConflict> {
    let Some(ours) = ours else {
        return Some(SharingConflict::RequesterNotSharing);
    };
    let Some(theirs) = theirs else {
        return Some(SharingConflict::HolderNotSharing);
    };
    if ours.key != theirs.key {
        return Some(SharingConflict::KeyMismatch {
            ours: ours.key.clone(),
            theirs: theirs.key.clone(),
        });
    }
    if ours.backend != theirs.backend {
        return Some(SharingConflict::BackendMismatch {
            ours: ours.backend.clone(),
            theirs: theirs.backend.clone(),
        });
    }
    ours.ports
        .intersection(&theirs.ports)
        .next()
        .map(|&(protocol, port)| SharingConflict::PortsOverlap { protocol, port })
}

/// Which families a service wants (Kubernetes' `ipFamilyPolicy` with the first of `ipFamilies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FamilyPolicy {
    /// One address of this family.
    SingleStack(Family),
    /// Both families if possible, else the primary one only.
    PreferDualStack {
        /// The family that must be allocated.
        primary: Family,
    },
    /// Both families, or nothing.
    RequireDualStack {
        /// The family listed first.
        primary: Family,
    },
}

/// How much a policy needs one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    Required,
    Optional,
    Excluded,
}

impl FamilyPolicy {
    /// The family allocated first; the other family prefers the pool it came from.
    pub fn primary(&self) -> Family {
        match *self {
            FamilyPolicy::SingleStack(primary)
            | FamilyPolicy::PreferDualStack { primary }
            | FamilyPolicy::RequireDualStack { primary } => primary,
        }
    }

    /// How much the policy needs `family`.
    pub(crate) fn need(&self, family: Family) -> Need {
        let primary = self.primary() == family;
        match self {
            _ if primary => Need::Required,
            FamilyPolicy::SingleStack(_) => Need::Excluded,
            FamilyPolicy::PreferDualStack { .. } => Need::Optional,
            FamilyPolicy::RequireDualStack { .. } => Need::Required,
        }
    }
}

impl fmt::Display for FamilyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FamilyPolicy::SingleStack(family) => write!(f, "SingleStack {family}"),
            FamilyPolicy::PreferDualStack { primary } => {
                write!(f, "PreferDualStack ({primary} first)")
            }
            FamilyPolicy::RequireDualStack { primary } => {
                write!(f, "RequireDualStack ({primary} first)")
            }
        }
    }
}

/// Which pools a request may draw from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolChoice {
    /// Any pool with auto-assign on, restricted to `eligible` when given (the caller computes the
    /// pools whose namespace and service selectors admit the service). For requested addresses,
    /// pools with auto-assign off are allowed too, as in MetalLB.
    Auto {
        /// The pools the service may use; `None` for all.
        eligible: Option<BTreeSet<PoolName>>,
    },
    /// Only this pool, whatever its auto-assign setting.
    Named(PoolName),
}

/// A service's request for addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The service asking.
    pub service: ServiceKey,
    /// The families it wants.
    pub policy: FamilyPolicy,
    /// Specific addresses asked for, at most one per family; each decides its family's address.
    pub requested: Vec<IpAddr>,
    /// The pools it may draw from.
    pub pool: PoolChoice,
    /// Its consent to share addresses.
    pub sharing: Option<Sharing>,
}

impl Request {
    /// Whether the request may take addresses from the pool `name` (with `auto_assign` its
    /// setting); `requested` is whether the address was asked for by value.
    pub(crate) fn may_use(&self, name: &PoolName, auto_assign: bool, requested: bool) -> bool {
        match &self.pool {
            PoolChoice::Named(named) => named == name,
            PoolChoice::Auto { eligible } => {
                (auto_assign || requested) && eligible.as_ref().is_none_or(|set| set.contains(name))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sharing(key: &str, ports: &[(Protocol, u16)], backend: &str) -> Sharing {
        Sharing::new(key, ports.iter().copied().collect(), backend).unwrap()
    }

    #[test]
    fn sharing_rules() {
        use Protocol::{Tcp, Udp};
        let web = sharing("k", &[(Tcp, 80), (Tcp, 443)], "");
        let cases = [
            (
                None,
                Some(web.clone()),
                Some(SharingConflict::RequesterNotSharing),
            ),
            (
                Some(web.clone()),
                None,
                Some(SharingConflict::HolderNotSharing),
            ),
            (
                Some(sharing("other", &[(Udp, 53)], "")),
                Some(web.clone()),
                Some(SharingConflict::KeyMismatch {
                    ours: "other".into(),
                    theirs: "k".into(),
                }),
            ),
            (
                Some(sharing("k", &[(Udp, 53)], "app=dns")),
                Some(web.clone()),
                Some(SharingConflict::BackendMismatch {
                    ours: "app=dns".into(),
                    theirs: "".into(),
                }),
            ),
            (
                Some(sharing("k", &[(Tcp, 443), (Tcp, 8443)], "")),
                Some(web.clone()),
                Some(SharingConflict::PortsOverlap {
                    protocol: Tcp,
                    port: 443,
                }),
            ),
            // Same port number, other protocol: disjoint.
            (
                Some(sharing("k", &[(Udp, 443)], "")),
                Some(web.clone()),
                None,
            ),
        ];
        for (ours, theirs, want) in cases {
            assert_eq!(
                sharing_conflict(ours.as_ref(), theirs.as_ref()),
                want,
                "{ours:?} vs {theirs:?}"
            );
        }
        assert_eq!(
            Sharing::new("", BTreeSet::new(), ""),
            Err(SpecError::EmptySharingKey)
        );
    }

    #[test]
    fn policy_needs() {
        use Family::{V4, V6};
        let cases = [
            (
                FamilyPolicy::SingleStack(V4),
                Need::Required,
                Need::Excluded,
            ),
            (
                FamilyPolicy::SingleStack(V6),
                Need::Excluded,
                Need::Required,
            ),
            (
                FamilyPolicy::PreferDualStack { primary: V6 },
                Need::Optional,
                Need::Required,
            ),
            (
                FamilyPolicy::RequireDualStack { primary: V4 },
                Need::Required,
                Need::Required,
            ),
        ];
        for (policy, v4, v6) in cases {
            assert_eq!((policy.need(V4), policy.need(V6)), (v4, v6), "{policy}");
        }
    }
}
