//! Kubernetes objects into allocator requests: the one place where the controller reads Services.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_allocator::{
    Family, FamilyPolicy, PoolChoice, PoolName, Protocol, Request, ServiceKey, Sharing,
};
use ferrolb_config::pool::ValidPool;
use ferrolb_config::service::{ASSIGNED_POOL, parse_intent};
use k8s_openapi::api::core::v1::Service;

/// Valid pools by name.
pub type Pools = BTreeMap<PoolName, ValidPool>;

/// What the controller should do with a Service.
#[derive(Debug)]
pub enum Want {
    /// Not ours: not a LoadBalancer, or another load-balancer class.
    Nothing,
    /// Allocate as requested.
    Allocate(Request),
    /// Ours, but the request is invalid: report it, change nothing.
    Invalid(String),
}

/// The key of a Service.
pub fn key(svc: &Service) -> ServiceKey {
    ServiceKey::new(
        svc.metadata.namespace.as_deref().unwrap_or("default"),
        svc.metadata.name.as_deref().unwrap_or(""),
    )
}

/// Whether the controller handles this Service: `type: LoadBalancer` and a class that is unset or
/// ours.
pub fn is_ours(svc: &Service, class: Option<&str>) -> bool {
    let Some(spec) = &svc.spec else { return false };
    spec.type_.as_deref() == Some("LoadBalancer")
        && match spec.load_balancer_class.as_deref() {
            None => true,
            Some(c) => Some(c) == class,
        }
}

/// Addresses the Service's status shows now.
pub fn status_ips(svc: &Service) -> Vec<IpAddr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

/// The pool annotation the Service carries now.
pub fn status_pool(svc: &Service) -> Option<&str> {
    svc.metadata
        .annotations
        .as_ref()?
        .get(ASSIGNED_POOL)
        .map(String::as_str)
}

/// The sharing of a Service, if it has a valid sharing key.
pub fn sharing(svc: &Service) -> Option<Sharing> {
    let intent = parse_intent(
        svc.metadata
            .annotations
            .as_ref()
            .unwrap_or(&BTreeMap::new()),
        None,
    )
    .ok()?;
    sharing_of(svc, intent.sharing_key?).ok()
}

fn sharing_of(svc: &Service, key: String) -> Result<Sharing, String> {
    let spec = svc.spec.clone().unwrap_or_default();
    let ports: BTreeSet<(Protocol, u16)> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let proto = match p.protocol.as_deref() {
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                _ => Protocol::Tcp,
            };
            (proto, u16::try_from(p.port).unwrap_or(0))
        })
        .collect();
    // Services with externalTrafficPolicy Local are announced from the nodes running their pods,
    // so only Services selecting the same pods may share an address.
    let backend = if spec.external_traffic_policy.as_deref() == Some("Local") {
        spec.selector
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    } else {
        String::new()
    };
    Sharing::new(key, ports, backend).map_err(|e| e.to_string())
}

/// What the Service asks for, given the valid pools and its namespace's labels.
pub fn want(
    svc: &Service,
    class: Option<&str>,
    pools: &Pools,
    namespace_labels: &BTreeMap<String, String>,
) -> Want {
    if !is_ours(svc, class) {
        return Want::Nothing;
    }
    let empty = BTreeMap::new();
    let annotations = svc.metadata.annotations.as_ref().unwrap_or(&empty);
    let spec = svc.spec.clone().unwrap_or_default();
    let intent = match parse_intent(annotations, spec.load_balancer_ip.as_deref()) {
        Ok(i) => i,
        Err(e) => return Want::Invalid(e.to_string()),
    };
    let namespace = svc.metadata.namespace.as_deref().unwrap_or("default");
    let labels = svc.metadata.labels.as_ref().unwrap_or(&empty);
    let allowed = |p: &ValidPool| p.selection.allows(namespace, namespace_labels, labels);
    let pool = match intent.pool {
        Some(name) => {
            let name = PoolName::new(name);
            if let Some(p) = pools.get(&name)
                && !allowed(p)
            {
                return Want::Invalid(format!(
                    "address pool \"{name}\" does not serve this Service (see its spec.serviceAllocation)"
                ));
            }
            PoolChoice::Named(name)
        }
        None => PoolChoice::Auto {
            eligible: Some(
                pools
                    .iter()
                    .filter(|(_, p)| allowed(p))
                    .map(|(n, _)| n.clone())
                    .collect(),
            ),
        },
    };
    let primary = match spec
        .ip_families
        .as_ref()
        .and_then(|f| f.first())
        .map(String::as_str)
    {
        Some("IPv6") => Family::V6,
        _ => Family::V4,
    };
    let policy = match spec.ip_family_policy.as_deref() {
        Some("PreferDualStack") => FamilyPolicy::PreferDualStack { primary },
        Some("RequireDualStack") => FamilyPolicy::RequireDualStack { primary },
        _ => FamilyPolicy::SingleStack(primary),
    };
    let sharing = match intent.sharing_key {
        Some(k) => match sharing_of(svc, k) {
            Ok(s) => Some(s),
            Err(e) => return Want::Invalid(e),
        },
        None => None,
    };
    Want::Allocate(Request {
        service: key(svc),
        policy,
        requested: intent.requested,
        pool,
        sharing,
    })
}
