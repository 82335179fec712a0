//! Kubernetes objects into allocator requests: the one place where the controller reads Services.

use std::collections::{BTreeMap, BTreeSet};

use ferrolb_allocator::{
    Family, FamilyPolicy, PoolChoice, PoolName, Protocol, Request, ServiceKey, Sharing,
};
use ferrolb_config::pool::ValidPool;
use ferrolb_config::service::{ASSIGNED_POOL, parse_intent, sharing_key};
use ferrolb_daemon::service::CachedService as Service;

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

/// The pool annotation the Service carries now.
pub fn status_pool(svc: &Service) -> Option<&str> {
    svc.metadata
        .annotations
        .as_ref()?
        .get(ASSIGNED_POOL)
        .map(String::as_str)
}

/// The sharing of a Service, if it has a valid sharing key (other annotations are not read: an
/// invalid one elsewhere must not make a restored Service lose its sharing).
pub fn sharing(svc: &Service) -> Option<Sharing> {
    let key = sharing_key(
        svc.metadata
            .annotations
            .as_ref()
            .unwrap_or(&BTreeMap::new()),
    )
    .ok()??;
    sharing_of(svc, key).ok()
}

fn sharing_of(svc: &Service, key: String) -> Result<Sharing, String> {
    let spec = &svc.spec;
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
    if !svc.is_ours(class) {
        return Want::Nothing;
    }
    let empty = BTreeMap::new();
    let annotations = svc.metadata.annotations.as_ref().unwrap_or(&empty);
    let spec = &svc.spec;
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

#[cfg(test)]
mod tests {
    use super::*;
    use ferrolb_config::pool::parse_pool;
    use ferrolb_crds::{IPAddressPool, IPAddressPoolSpec, pool::ServiceAllocation};
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn pools() -> Pools {
        let mk = |name: &str, addrs: &[&str], sa: Option<ServiceAllocation>| {
            let p = IPAddressPool::new(
                name,
                IPAddressPoolSpec {
                    addresses: addrs.iter().map(|s| s.to_string()).collect(),
                    auto_assign: true,
                    avoid_buggy_ips: false,
                    service_allocation: sa,
                },
            );
            let v = parse_pool(&p, 0).unwrap();
            (v.spec.name().clone(), v)
        };
        let team = ServiceAllocation {
            namespaces: vec!["team-a".into()],
            ..Default::default()
        };
        [
            mk("all", &["192.0.2.64/28"], None),
            mk("team", &["192.0.2.80/28"], Some(team)),
        ]
        .into_iter()
        .collect()
    }

    fn lb(extra: serde_json::Value) -> serde_json::Value {
        let mut spec = json!({"type": "LoadBalancer", "selector": {"app": "x", "tier": "web"}, "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        spec
    }

    #[test]
    fn class_and_type_decide_ownership() {
        let none = BTreeMap::new();
        let ours =
            svc(json!({"metadata": {"name": "a", "namespace": "default"}, "spec": lb(json!({}))}));
        assert!(matches!(
            want(&ours, None, &pools(), &none),
            Want::Allocate(_)
        ));
        let classed = svc(
            json!({"metadata": {"name": "a", "namespace": "default"}, "spec": lb(json!({"loadBalancerClass": "ferrolb.io/l2"}))}),
        );
        assert!(matches!(
            want(&classed, None, &pools(), &none),
            Want::Nothing
        ));
        assert!(matches!(
            want(&classed, Some("ferrolb.io/l2"), &pools(), &none),
            Want::Allocate(_)
        ));
        let cluster_ip = svc(
            json!({"metadata": {"name": "a", "namespace": "default"}, "spec": {"type": "ClusterIP"}}),
        );
        assert!(matches!(
            want(&cluster_ip, None, &pools(), &none),
            Want::Nothing
        ));
    }

    #[test]
    fn request_follows_families_pools_and_sharing() {
        let none = BTreeMap::new();
        let s = svc(json!({
            "metadata": {"name": "a", "namespace": "team-a", "annotations": {"ferrolb.io/allow-shared-ip": "k"}},
            "spec": lb(json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"], "externalTrafficPolicy": "Local"}))
        }));
        let Want::Allocate(req) = want(&s, None, &pools(), &none) else {
            panic!("not allocated")
        };
        assert_eq!(req.service.as_str(), "team-a/a");
        assert_eq!(
            req.policy,
            FamilyPolicy::PreferDualStack {
                primary: Family::V6
            }
        );
        let PoolChoice::Auto { eligible: Some(e) } = &req.pool else {
            panic!("{:?}", req.pool)
        };
        assert_eq!(
            e.iter().map(PoolName::as_str).collect::<Vec<_>>(),
            vec!["all", "team"]
        );
        let sharing = req.sharing.unwrap();
        assert_eq!(sharing.key(), "k");
        assert_eq!(
            sharing.backend(),
            "app=x,tier=web",
            "Local Services share only with the same selector"
        );
        assert!(
            sharing.ports().contains(&(Protocol::Udp, 53))
                && sharing.ports().contains(&(Protocol::Tcp, 80))
        );

        // Elsewhere the restricted pool is not eligible, and naming it is refused with a reason.
        let other =
            svc(json!({"metadata": {"name": "b", "namespace": "default"}, "spec": lb(json!({}))}));
        let Want::Allocate(req) = want(&other, None, &pools(), &none) else {
            panic!()
        };
        let PoolChoice::Auto { eligible: Some(e) } = &req.pool else {
            panic!()
        };
        assert_eq!(e.len(), 1);
        let named = svc(
            json!({"metadata": {"name": "b", "namespace": "default", "annotations": {"ferrolb.io/address-pool": "team"}}, "spec": lb(json!({}))}),
        );
        let Want::Invalid(msg) = want(&named, None, &pools(), &none) else {
            panic!()
        };
        assert!(
            msg.contains("\"team\" does not serve this Service"),
            "{msg}"
        );
        // Cluster traffic policy: no backend constraint on sharing.
        let cluster = svc(
            json!({"metadata": {"name": "c", "namespace": "default", "annotations": {"ferrolb.io/allow-shared-ip": "k"}}, "spec": lb(json!({}))}),
        );
        let Want::Allocate(req) = want(&cluster, None, &pools(), &none) else {
            panic!()
        };
        assert_eq!(req.sharing.unwrap().backend(), "");
    }
}
