//! `kubectl ferrolb migrate from-metallb`: MetalLB's `metallb.io/v1beta1` objects in, ferrolb's
//! objects and the list of what does not map out. Pure; the caller lists and applies.
//!
//! MetalLB's fields (metallb.io/v1beta1, api/v1beta1 in github.com/metallb/metallb):
//! - IPAddressPool.spec: `addresses`, `autoAssign`, `avoidBuggyIPs`, `serviceAllocation`
//!   (`priority`, `namespaces`, `namespaceSelectors`, `serviceSelectors`);
//! - L2Advertisement.spec: `ipAddressPools`, `ipAddressPoolSelectors`, `nodeSelectors`,
//!   `interfaces`.
//!
//! ferrolb's CRDs (crds/src) carry every one of these with the same meaning, so they map field for
//! field. What does not map: anything else in a spec (a later MetalLB field), BGP mode
//! (BGPPeer, BGPAdvertisement, Community, BFDProfile: ferrolb is layer 2 only), and names that
//! collide, since MetalLB's objects are namespaced and ferrolb's are cluster-scoped. Each is
//! reported, never dropped silently. The objects produced are also run through ferrolb's own
//! validation (ferrolb-config), and what it rejects is reported too.

use std::collections::BTreeMap;

use ferrolb_config::{l2::parse_advertisement, pool::parse_pool};
use ferrolb_crds::pool::ServiceAllocation;
use ferrolb_crds::{IPAddressPool, IPAddressPoolSpec, L2Advertisement, L2AdvertisementSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One MetalLB object, as read from the API.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub spec: Value,
}

impl Source {
    fn id(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Something that was not carried over, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmapped {
    /// `Kind namespace/name`.
    pub object: String,
    /// The field, or `-` for the whole object.
    pub field: String,
    pub why: String,
}

impl std::fmt::Display for Unmapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field == "-" {
            write!(f, "{}: {}", self.object, self.why)
        } else {
            write!(f, "{} {}: {}", self.object, self.field, self.why)
        }
    }
}

/// The result of a migration.
#[derive(Clone, Debug, Default)]
pub struct Migration {
    pub pools: Vec<IPAddressPool>,
    pub advertisements: Vec<L2Advertisement>,
    pub unmapped: Vec<Unmapped>,
    /// Carried over, but ferrolb reads it differently: worth a look before switching.
    pub differences: Vec<Unmapped>,
}

/// MetalLB kinds ferrolb has no equivalent for, and why.
pub const UNSUPPORTED_KINDS: &[(&str, &str)] = &[
    (
        "BGPPeer",
        "BGP mode is not supported: ferrolb announces on layer 2 only",
    ),
    (
        "BGPAdvertisement",
        "BGP mode is not supported: ferrolb announces on layer 2 only",
    ),
    (
        "Community",
        "BGP communities are not supported: ferrolb announces on layer 2 only",
    ),
    (
        "BFDProfile",
        "BFD is not supported: ferrolb announces on layer 2 only",
    ),
];

const POOL_FIELDS: &[&str] = &[
    "addresses",
    "autoAssign",
    "avoidBuggyIPs",
    "serviceAllocation",
];
const ALLOCATION_FIELDS: &[&str] = &[
    "priority",
    "namespaces",
    "namespaceSelectors",
    "serviceSelectors",
];
const L2_FIELDS: &[&str] = &[
    "ipAddressPools",
    "ipAddressPoolSelectors",
    "nodeSelectors",
    "interfaces",
];

/// Reads `spec[field]` as `T`; a value of the wrong shape is reported and skipped.
fn field<T: DeserializeOwned>(
    spec: &Value,
    path: &str,
    key: &str,
    src: &Source,
    unmapped: &mut Vec<Unmapped>,
) -> Option<T> {
    let v = spec.get(key)?;
    if v.is_null() {
        return None;
    }
    match serde_json::from_value(v.clone()) {
        Ok(t) => Some(t),
        Err(e) => {
            unmapped.push(Unmapped {
                object: src.id(),
                field: format!("{path}.{key}"),
                why: format!("cannot be read ({e}); left out"),
            });
            None
        }
    }
}

/// Reports every key of `obj` not in `known`.
fn unknown_fields(
    obj: &Value,
    path: &str,
    known: &[&str],
    src: &Source,
    unmapped: &mut Vec<Unmapped>,
) {
    if let Some(map) = obj.as_object() {
        for k in map.keys().filter(|k| !known.contains(&k.as_str())) {
            unmapped.push(Unmapped {
                object: src.id(),
                field: format!("{path}.{k}"),
                why: "ferrolb has no equivalent field; left out".into(),
            });
        }
    }
}

fn pool(src: &Source, unmapped: &mut Vec<Unmapped>) -> IPAddressPool {
    let spec = &src.spec;
    unknown_fields(spec, "spec", POOL_FIELDS, src, unmapped);
    let allocation = spec.get("serviceAllocation").filter(|v| !v.is_null());
    let service_allocation = allocation.map(|a| {
        unknown_fields(
            a,
            "spec.serviceAllocation",
            ALLOCATION_FIELDS,
            src,
            unmapped,
        );
        let path = "spec.serviceAllocation";
        ServiceAllocation {
            priority: field(a, path, "priority", src, unmapped),
            namespaces: field(a, path, "namespaces", src, unmapped).unwrap_or_default(),
            namespace_selectors: field::<Vec<LabelSelector>>(
                a,
                path,
                "namespaceSelectors",
                src,
                unmapped,
            )
            .unwrap_or_default(),
            service_selectors: field::<Vec<LabelSelector>>(
                a,
                path,
                "serviceSelectors",
                src,
                unmapped,
            )
            .unwrap_or_default(),
        }
    });
    let mut p = IPAddressPool::new(
        &src.name,
        IPAddressPoolSpec {
            addresses: field(spec, "spec", "addresses", src, unmapped).unwrap_or_default(),
            // MetalLB's default is true, as ferrolb's.
            auto_assign: field(spec, "spec", "autoAssign", src, unmapped).unwrap_or(true),
            avoid_buggy_ips: field(spec, "spec", "avoidBuggyIPs", src, unmapped).unwrap_or(false),
            service_allocation,
        },
    );
    if !src.labels.is_empty() {
        // ipAddressPoolSelectors select pools by these labels.
        p.metadata.labels = Some(src.labels.clone());
    }
    p
}

fn advertisement(src: &Source, unmapped: &mut Vec<Unmapped>) -> L2Advertisement {
    let spec = &src.spec;
    unknown_fields(spec, "spec", L2_FIELDS, src, unmapped);
    let mut a = L2Advertisement::new(
        &src.name,
        L2AdvertisementSpec {
            ip_address_pools: field(spec, "spec", "ipAddressPools", src, unmapped)
                .unwrap_or_default(),
            ip_address_pool_selectors: field(spec, "spec", "ipAddressPoolSelectors", src, unmapped)
                .unwrap_or_default(),
            node_selectors: field(spec, "spec", "nodeSelectors", src, unmapped).unwrap_or_default(),
            interfaces: field(spec, "spec", "interfaces", src, unmapped).unwrap_or_default(),
            service_selectors: Vec::new(),
        },
    );
    if !src.labels.is_empty() {
        a.metadata.labels = Some(src.labels.clone());
    }
    a
}

/// Maps MetalLB's objects to ferrolb's. `others` are objects of kinds ferrolb cannot express.
pub fn migrate(pools: &[Source], advertisements: &[Source], others: &[Source]) -> Migration {
    let mut m = Migration::default();
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut first = |src: &Source, kind: &str, unmapped: &mut Vec<Unmapped>| -> bool {
        match seen.get(&(kind.to_string(), src.name.clone())) {
            Some(ns) => {
                unmapped.push(Unmapped {
                    object: src.id(),
                    field: "-".into(),
                    why: format!(
                        "a {kind} named {} already comes from namespace {ns}, and ferrolb's \
                         {kind}s are cluster-scoped; rename one and migrate again",
                        src.name
                    ),
                });
                false
            }
            None => {
                seen.insert((kind.to_string(), src.name.clone()), src.namespace.clone());
                true
            }
        }
    };
    let mut sorted_pools: Vec<&Source> = pools.iter().collect();
    sorted_pools.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for src in sorted_pools {
        if first(src, "IPAddressPool", &mut m.unmapped) {
            let p = pool(src, &mut m.unmapped);
            // ferrolb's validation, the one the controller runs: what it rejects is named here
            // rather than found later in the pool's Invalid condition.
            if let Err(errors) = parse_pool(&p, 0) {
                for e in errors {
                    m.unmapped.push(Unmapped {
                        object: src.id(),
                        field: e.field.clone(),
                        why: format!("ferrolb rejects it: {}", e.message),
                    });
                }
            }
            m.pools.push(p);
        }
    }
    let mut sorted_advs: Vec<&Source> = advertisements.iter().collect();
    sorted_advs.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for src in sorted_advs {
        if first(src, "L2Advertisement", &mut m.unmapped) {
            let a = advertisement(src, &mut m.unmapped);
            if a.spec.interfaces.is_empty() {
                m.differences.push(Unmapped {
                    object: src.id(),
                    field: "spec.interfaces".into(),
                    why: "empty: MetalLB announces from every interface of the node, ferrolb \
                          only from those with an address in the announced address's subnet; \
                          name the interfaces if that subnet is on none of them"
                        .into(),
                });
            }
            if let Err(errors) = parse_advertisement(&a) {
                for e in errors {
                    m.unmapped.push(Unmapped {
                        object: src.id(),
                        field: e.field.clone(),
                        why: format!("ferrolb rejects it: {}", e.message),
                    });
                }
            }
            m.advertisements.push(a);
        }
    }
    for src in others {
        let why = UNSUPPORTED_KINDS
            .iter()
            .find(|(k, _)| *k == src.kind)
            .map_or("ferrolb has no equivalent kind", |(_, why)| why);
        m.unmapped.push(Unmapped {
            object: src.id(),
            field: "-".into(),
            why: format!("{why}; not migrated"),
        });
    }
    m
}

/// The objects as one multi-document YAML stream.
pub fn to_yaml(m: &Migration) -> anyhow::Result<String> {
    let mut docs = Vec::new();
    for p in &m.pools {
        docs.push(serde_saphyr::to_string(p)?);
    }
    for a in &m.advertisements {
        docs.push(serde_saphyr::to_string(a)?);
    }
    Ok(docs
        .iter()
        .map(|d| format!("---\n{}", d.trim_end()))
        .collect::<Vec<_>>()
        .join("\n")
        + if docs.is_empty() { "" } else { "\n" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn src(kind: &str, ns: &str, name: &str, spec: Value) -> Source {
        Source {
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
            labels: BTreeMap::new(),
            spec,
        }
    }

    /// One row per MetalLB field: the spec in, what ferrolb's spec says, what is reported.
    #[test]
    fn pools_map_field_for_field() {
        let sel = json!([{"matchLabels": {"team": "a"}}]);
        let cases: Vec<(Value, Value, Vec<&str>)> = vec![
            (
                json!({"addresses": ["192.0.2.64/26"]}),
                json!({"addresses": ["192.0.2.64/26"], "autoAssign": true, "avoidBuggyIPs": false}),
                vec![],
            ),
            (
                json!({"addresses": ["192.0.2.10-192.0.2.20"], "autoAssign": false, "avoidBuggyIPs": true}),
                json!({"addresses": ["192.0.2.10-192.0.2.20"], "autoAssign": false, "avoidBuggyIPs": true}),
                vec![],
            ),
            (
                json!({"addresses": ["2001:db8::1:0/112"], "serviceAllocation": {
                    "priority": 10, "namespaces": ["team-a"],
                    "namespaceSelectors": sel, "serviceSelectors": sel}}),
                json!({"addresses": ["2001:db8::1:0/112"], "autoAssign": true, "avoidBuggyIPs": false,
                    "serviceAllocation": {"priority": 10, "namespaces": ["team-a"],
                        "namespaceSelectors": sel, "serviceSelectors": sel}}),
                vec![],
            ),
            (
                json!({"addresses": ["192.0.2.0/24"], "futureField": 1,
                    "serviceAllocation": {"priority": 1, "weight": 2}}),
                json!({"addresses": ["192.0.2.0/24"], "autoAssign": true, "avoidBuggyIPs": false,
                    "serviceAllocation": {"priority": 1}}),
                vec![
                    "IPAddressPool metallb-system/p spec.futureField: ferrolb has no equivalent field; left out",
                    "IPAddressPool metallb-system/p spec.serviceAllocation.weight: ferrolb has no equivalent field; left out",
                ],
            ),
            (
                json!({"addresses": ["not-an-address"]}),
                json!({"addresses": ["not-an-address"], "autoAssign": true, "avoidBuggyIPs": false}),
                vec!["IPAddressPool metallb-system/p spec.addresses[0]: ferrolb rejects it"],
            ),
            (
                json!({"addresses": "192.0.2.0/24"}),
                json!({"addresses": [], "autoAssign": true, "avoidBuggyIPs": false}),
                vec![
                    "IPAddressPool metallb-system/p spec.addresses: cannot be read",
                    "IPAddressPool metallb-system/p spec.addresses: ferrolb rejects it: at least one",
                ],
            ),
        ];
        for (input, want, reported) in cases {
            let m = migrate(
                &[src("IPAddressPool", "metallb-system", "p", input.clone())],
                &[],
                &[],
            );
            assert_eq!(
                serde_json::to_value(&m.pools[0].spec).unwrap(),
                want,
                "{input}"
            );
            let got: Vec<String> = m.unmapped.iter().map(ToString::to_string).collect();
            assert_eq!(got.len(), reported.len(), "{input}: {got:#?}");
            for (g, r) in got.iter().zip(&reported) {
                assert!(g.starts_with(r), "{input}: {g} vs {r}");
            }
        }
    }

    #[test]
    fn advertisements_map_field_for_field() {
        let sel = json!([{"matchLabels": {"zone": "a"}}]);
        let input = json!({"ipAddressPools": ["p"], "ipAddressPoolSelectors": sel,
            "nodeSelectors": sel, "interfaces": ["eth0"]});
        let m = migrate(
            &[],
            &[src(
                "L2Advertisement",
                "metallb-system",
                "l2",
                input.clone(),
            )],
            &[],
        );
        assert_eq!(
            serde_json::to_value(&m.advertisements[0].spec).unwrap(),
            input
        );
        assert!(m.unmapped.is_empty(), "{:?}", m.unmapped);
        assert!(m.differences.is_empty(), "{:?}", m.differences);
        // An empty MetalLB advertisement announces every pool from every node; so does ferrolb's,
        // but from the interfaces in the address's subnet rather than every one: said so.
        let m = migrate(
            &[],
            &[src("L2Advertisement", "metallb-system", "all", json!({}))],
            &[],
        );
        assert_eq!(
            serde_json::to_value(&m.advertisements[0].spec).unwrap(),
            json!({})
        );
        assert_eq!(m.differences.len(), 1);
        assert_eq!(m.differences[0].field, "spec.interfaces");
    }

    #[test]
    fn what_does_not_map_is_listed() {
        let pools = vec![
            src(
                "IPAddressPool",
                "b",
                "same",
                json!({"addresses": ["192.0.2.0/28"]}),
            ),
            src(
                "IPAddressPool",
                "a",
                "same",
                json!({"addresses": ["192.0.2.16/28"]}),
            ),
        ];
        let others = vec![
            src("BGPPeer", "metallb-system", "router", json!({})),
            src("Community", "metallb-system", "c", json!({})),
        ];
        let m = migrate(&pools, &[], &others);
        assert_eq!(m.pools.len(), 1);
        // The first by namespace wins, deterministically.
        assert_eq!(m.pools[0].spec.addresses, vec!["192.0.2.16/28"]);
        let got: Vec<String> = m.unmapped.iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(got[0].starts_with(
            "IPAddressPool b/same: a IPAddressPool named same already comes from namespace a"
        ));
        assert_eq!(
            got[1],
            "BGPPeer metallb-system/router: BGP mode is not supported: ferrolb announces on layer 2 only; not migrated"
        );
        assert!(got[2].starts_with("Community metallb-system/c: BGP communities"));
    }

    #[test]
    fn labels_are_kept_for_pool_selectors() {
        let mut s = src(
            "IPAddressPool",
            "metallb-system",
            "p",
            json!({"addresses": ["192.0.2.0/28"]}),
        );
        s.labels.insert("tier".into(), "web".into());
        let m = migrate(&[s], &[], &[]);
        assert_eq!(
            m.pools[0]
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("tier"))
                .map(String::as_str),
            Some("web")
        );
    }

    #[test]
    fn yaml_is_ferrolb_objects() {
        let m = migrate(
            &[src(
                "IPAddressPool",
                "metallb-system",
                "p",
                json!({"addresses": ["192.0.2.0/28"]}),
            )],
            &[src(
                "L2Advertisement",
                "metallb-system",
                "l2",
                json!({"ipAddressPools": ["p"]}),
            )],
            &[],
        );
        let y = to_yaml(&m).unwrap();
        assert!(
            y.starts_with("---\napiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\n"),
            "{y}"
        );
        assert!(
            y.contains("\n---\napiVersion: ferrolb.io/v1alpha1\nkind: L2Advertisement\n"),
            "{y}"
        );
        assert!(!y.contains("status"), "{y}");
        assert!(!y.contains("namespace"), "{y}");
    }
}
