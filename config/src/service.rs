//! What a Service asks of the allocator, read from its annotations and `spec.loadBalancerIP`.
//!
//! Annotations are read in the `ferrolb.io/` form and, for migration, in MetalLB's `metallb.io/` and
//! `metallb.universe.tf/` forms; the requested addresses also in kube-vip's
//! `kube-vip.io/loadbalancerIPs` (its spelling: lower-case `b`). Two forms of one annotation with
//! different values are an error, never a silent choice: the Service gets an `AllocationFailed`
//! Event naming both, and keeps what it holds. ferrolb's own form does not win over the others,
//! because during a migration the stale one is as likely to be either, and picking one could
//! move a Service to an address nobody meant (the same rule as for MetalLB's forms).

use std::collections::BTreeMap;
use std::net::IpAddr;

/// Requested addresses, comma-separated, at most one per family.
pub const LOAD_BALANCER_IPS: &str = "loadBalancerIPs";
/// Name of the pool to allocate from.
pub const ADDRESS_POOL: &str = "address-pool";
/// Sharing key: Services with the same key may share an address.
pub const ALLOW_SHARED_IP: &str = "allow-shared-ip";
/// Annotation written by the controller naming the pool an address came from.
pub const ASSIGNED_POOL: &str = "ferrolb.io/ip-allocated-from-pool";
/// Annotation prefixes, in order of precedence.
pub const PREFIXES: [&str; 3] = ["ferrolb.io/", "metallb.io/", "metallb.universe.tf/"];
/// kube-vip's annotation for requested addresses, read after the [`PREFIXES`] forms of
/// [`LOAD_BALANCER_IPS`]. kube-vip reads `0.0.0.0` in it as "ask DHCP", which ferrolb does not
/// do: such a request names an address in no pool and is reported as any other.
pub const KUBE_VIP_LOAD_BALANCER_IPS: &str = "kube-vip.io/loadbalancerIPs";

/// What a Service asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceIntent {
    /// Specific addresses, at most one per family.
    pub requested: Vec<IpAddr>,
    /// A pool named by annotation.
    pub pool: Option<String>,
    /// The sharing key, if the Service allows sharing.
    pub sharing_key: Option<String>,
}

/// Why a Service's request is invalid. Each names the annotation or field to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IntentError {
    #[error("annotation {annotation}: {value:?} is not an IP address")]
    BadAddress { annotation: String, value: String },
    #[error(
        "annotation {annotation}: more than one {family} address ({first}, {second}); at most one per family"
    )]
    TwoOfOneFamily {
        annotation: String,
        family: &'static str,
        first: IpAddr,
        second: IpAddr,
    },
    #[error("spec.loadBalancerIP {value:?} is not an IP address")]
    BadLoadBalancerIp { value: String },
    #[error(
        "both spec.loadBalancerIP and annotation {annotation} are set; use only the annotation"
    )]
    BothRequestForms { annotation: String },
    #[error(
        "annotations {first} and {second} disagree ({first_value:?} vs {second_value:?}); keep one"
    )]
    Conflicting {
        first: String,
        second: String,
        first_value: String,
        second_value: String,
    },
    #[error("annotation {annotation} is empty")]
    Empty { annotation: String },
}

/// Reads the intent of a Service from its annotations and `spec.loadBalancerIP`.
pub fn parse_intent(
    annotations: &BTreeMap<String, String>,
    load_balancer_ip: Option<&str>,
) -> Result<ServiceIntent, IntentError> {
    let mut intent = ServiceIntent::default();
    if let Some((annotation, value)) = lookup(annotations, LOAD_BALANCER_IPS)? {
        if load_balancer_ip.is_some_and(|v| !v.trim().is_empty()) {
            return Err(IntentError::BothRequestForms { annotation });
        }
        intent.requested = parse_ips(&annotation, &value)?;
    } else if let Some(v) = load_balancer_ip.map(str::trim).filter(|v| !v.is_empty()) {
        let ip = v.parse().map_err(|_| IntentError::BadLoadBalancerIp {
            value: v.to_string(),
        })?;
        intent.requested = vec![ip];
    }
    intent.pool = lookup(annotations, ADDRESS_POOL)?.map(|(_, v)| v);
    intent.sharing_key = lookup(annotations, ALLOW_SHARED_IP)?.map(|(_, v)| v);
    Ok(intent)
}

/// Only the sharing key: what a restart needs to rebuild an assignment, even when another
/// annotation of the Service has become invalid.
pub fn sharing_key(annotations: &BTreeMap<String, String>) -> Result<Option<String>, IntentError> {
    Ok(lookup(annotations, ALLOW_SHARED_IP)?.map(|(_, v)| v))
}

/// The value of annotation `name` in the first form present; an error if forms disagree or the
/// value is blank.
fn lookup(
    annotations: &BTreeMap<String, String>,
    name: &str,
) -> Result<Option<(String, String)>, IntentError> {
    let mut found: Option<(String, String)> = None;
    let extra = (name == LOAD_BALANCER_IPS).then(|| KUBE_VIP_LOAD_BALANCER_IPS.to_string());
    let keys = PREFIXES
        .iter()
        .map(|prefix| format!("{prefix}{name}"))
        .chain(extra);
    for key in keys {
        let Some(value) = annotations.get(&key) else {
            continue;
        };
        let value = value.trim().to_string();
        if value.is_empty() {
            return Err(IntentError::Empty { annotation: key });
        }
        match &found {
            None => found = Some((key, value)),
            Some((first, first_value)) if *first_value != value => {
                return Err(IntentError::Conflicting {
                    first: first.clone(),
                    second: key,
                    first_value: first_value.clone(),
                    second_value: value,
                });
            }
            Some(_) => {}
        }
    }
    Ok(found)
}

fn parse_ips(annotation: &str, value: &str) -> Result<Vec<IpAddr>, IntentError> {
    let mut out: Vec<IpAddr> = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let ip: IpAddr = part.parse().map_err(|_| IntentError::BadAddress {
            annotation: annotation.to_string(),
            value: part.to_string(),
        })?;
        if let Some(prev) = out.iter().find(|p| p.is_ipv4() == ip.is_ipv4()) {
            return Err(IntentError::TwoOfOneFamily {
                annotation: annotation.to_string(),
                family: if ip.is_ipv4() { "IPv4" } else { "IPv6" },
                first: *prev,
                second: ip,
            });
        }
        out.push(ip);
    }
    if out.is_empty() {
        return Err(IntentError::Empty {
            annotation: annotation.to_string(),
        });
    }
    Ok(out)
}

/// Whether ferrolb handles a Service, from its `spec.type` and `spec.loadBalancerClass`:
/// `type: LoadBalancer` and a class that is unset or `class` (the daemons' `--load-balancer-class`).
pub fn handles(type_: Option<&str>, service_class: Option<&str>, class: Option<&str>) -> bool {
    type_ == Some("LoadBalancer")
        && match service_class {
            None => true,
            Some(c) => Some(c) == class,
        }
}

/// The addresses a Service's status shows now.
pub fn ingress_ips(status: Option<&k8s_openapi::api::core::v1::ServiceStatus>) -> Vec<IpAddr> {
    status
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_every_form() {
        let i = parse_intent(
            &ann(&[
                ("ferrolb.io/loadBalancerIPs", "192.0.2.70, 2001:db8::1:70"),
                ("metallb.universe.tf/address-pool", "blue"),
                ("metallb.io/allow-shared-ip", "web"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(
            i.requested,
            vec![
                "192.0.2.70".parse::<IpAddr>().unwrap(),
                "2001:db8::1:70".parse().unwrap()
            ]
        );
        assert_eq!(i.pool.as_deref(), Some("blue"));
        assert_eq!(i.sharing_key.as_deref(), Some("web"));

        let i = parse_intent(&ann(&[]), Some("192.0.2.71")).unwrap();
        assert_eq!(i.requested, vec!["192.0.2.71".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            parse_intent(&ann(&[]), Some("")).unwrap(),
            ServiceIntent::default()
        );
        // Same value in two forms is fine.
        let same = ann(&[
            ("ferrolb.io/address-pool", "a"),
            ("metallb.io/address-pool", "a"),
        ]);
        assert_eq!(
            parse_intent(&same, None).unwrap().pool.as_deref(),
            Some("a")
        );
    }

    #[test]
    fn reads_kube_vips_requested_addresses() {
        let i = parse_intent(
            &ann(&[("kube-vip.io/loadbalancerIPs", "192.0.2.70,2001:db8::1:70")]),
            None,
        )
        .unwrap();
        assert_eq!(
            i.requested,
            vec![
                "192.0.2.70".parse::<IpAddr>().unwrap(),
                "2001:db8::1:70".parse().unwrap()
            ]
        );
        // The same value in ferrolb's form too is fine.
        let both = ann(&[
            ("ferrolb.io/loadBalancerIPs", "192.0.2.70"),
            ("kube-vip.io/loadbalancerIPs", "192.0.2.70"),
        ]);
        assert_eq!(parse_intent(&both, None).unwrap().requested.len(), 1);
        // Different values: refused, naming both (ferrolb's own does not silently win).
        let differ = ann(&[
            ("ferrolb.io/loadBalancerIPs", "192.0.2.70"),
            ("kube-vip.io/loadbalancerIPs", "192.0.2.71"),
        ]);
        assert_eq!(
            parse_intent(&differ, None).unwrap_err().to_string(),
            "annotations ferrolb.io/loadBalancerIPs and kube-vip.io/loadbalancerIPs disagree (\"192.0.2.70\" vs \"192.0.2.71\"); keep one"
        );
        // kube-vip's spelling only: the MetalLB-style capital B under kube-vip.io is not read.
        let other = ann(&[("kube-vip.io/loadBalancerIPs", "192.0.2.70")]);
        assert!(parse_intent(&other, None).unwrap().requested.is_empty());
        let with_field = ann(&[("kube-vip.io/loadbalancerIPs", "192.0.2.70")]);
        assert!(
            parse_intent(&with_field, Some("192.0.2.70"))
                .unwrap_err()
                .to_string()
                .contains("both spec.loadBalancerIP and annotation kube-vip.io/loadbalancerIPs")
        );
    }

    #[test]
    fn bad_requests_name_the_annotation() {
        let table: Vec<(BTreeMap<String, String>, Option<&str>, &str)> = vec![
            (
                ann(&[("ferrolb.io/loadBalancerIPs", "192.0.2.70,nope")]),
                None,
                "ferrolb.io/loadBalancerIPs: \"nope\"",
            ),
            (
                ann(&[("ferrolb.io/loadBalancerIPs", "192.0.2.70,192.0.2.71")]),
                None,
                "more than one IPv4",
            ),
            (
                ann(&[("metallb.io/loadBalancerIPs", "192.0.2.70")]),
                Some("192.0.2.70"),
                "both spec.loadBalancerIP and annotation metallb.io/loadBalancerIPs",
            ),
            (ann(&[]), Some("192.0.2.999"), "spec.loadBalancerIP"),
            (
                ann(&[
                    ("ferrolb.io/address-pool", "a"),
                    ("metallb.io/address-pool", "b"),
                ]),
                None,
                "disagree",
            ),
            (
                ann(&[("ferrolb.io/allow-shared-ip", " ")]),
                None,
                "ferrolb.io/allow-shared-ip is empty",
            ),
            (
                ann(&[("ferrolb.io/loadBalancerIPs", ",")]),
                None,
                "ferrolb.io/loadBalancerIPs is empty",
            ),
        ];
        for (a, lb, want) in table {
            let err = parse_intent(&a, lb).unwrap_err().to_string();
            assert!(err.contains(want), "{err} lacks {want}");
        }
    }
}
