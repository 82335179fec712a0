//! `IPAddressPool`: a set of addresses the controller hands out to LoadBalancer Services.
//!
//! Validation happens in two places, and never in an admission webhook that could fail:
//! - the CRD schema and its CEL rules reject at `kubectl apply` what they can express (empty list,
//!   text that is neither a CIDR nor a range of two addresses of one family, negative priority);
//! - `ferrolb-config` catches the rest (a range whose start is above its end, a malformed label
//!   selector) and the controller reports it as the pool's `Invalid` condition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// CEL rule for one entry of `spec.addresses`: an address, a CIDR, or `start-end` with two addresses of one
/// family (Kubernetes ≥ 1.31 CEL IP/CIDR library).
const ADDRESS_RULE: &str = "self.all(a, isIP(a) || isCIDR(a) || (size(a.split('-')) == 2 \
    && isIP(a.split('-')[0].trim()) && isIP(a.split('-')[1].trim()) \
    && ip(a.split('-')[0].trim()).family() == ip(a.split('-')[1].trim()).family()))";

/// A pool of addresses for Services of `type: LoadBalancer`.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "ferrolb.io",
    version = "v1alpha1",
    kind = "IPAddressPool",
    plural = "ipaddresspools",
    shortname = "ipp",
    doc = "A pool of addresses that the ferrolb controller assigns to Services of type LoadBalancer.",
    status = "IPAddressPoolStatus",
    printcolumn = r#"{"name":"Addresses","type":"string","jsonPath":".spec.addresses"}"#,
    printcolumn = r#"{"name":"Auto-Assign","type":"boolean","jsonPath":".spec.autoAssign"}"#,
    printcolumn = r#"{"name":"Assigned","type":"string","jsonPath":".status.assigned"}"#,
    printcolumn = r#"{"name":"Available","type":"string","jsonPath":".status.available"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolSpec {
    /// Addresses of the pool: CIDRs (`192.0.2.64/26`, `2001:db8::/120`), inclusive ranges
    /// (`192.0.2.10-192.0.2.20`) or single addresses, IPv4 or IPv6. At least one. Entries may not
    /// repeat or overlap each other: such a pool is reported on its `Invalid` condition.
    #[schemars(length(min = 1, max = 64), inner(length(max = 100)))]
    #[x_kube(validation = kube::core::Rule::new(ADDRESS_RULE).message(
        "each entry of spec.addresses must be an address, a CIDR (192.0.2.0/24) or a range of two addresses of one family (192.0.2.10-192.0.2.20)"
    ))]
    pub addresses: Vec<String>,

    /// Whether Services that do not ask for this pool may get addresses from it.
    #[serde(default = "default_true")]
    #[schemars(default = "default_true")]
    pub auto_assign: bool,

    /// Skip IPv4 addresses ending in `.0` or `.255`, which some old clients mistake for network or
    /// broadcast addresses.
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,

    /// Which Services may get addresses from this pool, and how much this pool is preferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_allocation: Option<ServiceAllocation>,
}

/// Restricts a pool to some Services and orders it against other pools.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAllocation {
    /// Preference among eligible pools: the lowest number wins; pools without a priority come
    /// after those with one, then pools are ordered by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub priority: Option<i32>,

    /// Namespaces whose Services may use this pool (in addition to `namespaceSelectors`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 63)))]
    pub namespaces: Vec<String>,

    /// Label selectors on Namespaces whose Services may use this pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_selectors: Vec<LabelSelector>,

    /// Label selectors on Services that may use this pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_selectors: Vec<LabelSelector>,
}

/// Observed state of a pool, written by the controller. Counts are decimal strings: a /64 holds
/// 2^64 addresses, more than a JSON integer (int64) can carry exactly.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolStatus {
    /// Addresses assigned to Services, all families (e.g. `3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned: Option<String>,
    /// Addresses still free, all families.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<String>,
    #[serde(
        default,
        rename = "assignedIPv4",
        skip_serializing_if = "Option::is_none"
    )]
    pub assigned_ipv4: Option<String>,
    #[serde(
        default,
        rename = "availableIPv4",
        skip_serializing_if = "Option::is_none"
    )]
    pub available_ipv4: Option<String>,
    #[serde(
        default,
        rename = "assignedIPv6",
        skip_serializing_if = "Option::is_none"
    )]
    pub assigned_ipv6: Option<String>,
    #[serde(
        default,
        rename = "availableIPv6",
        skip_serializing_if = "Option::is_none"
    )]
    pub available_ipv6: Option<String>,
    /// Generation of the spec these counts and conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Invalid`, `Overlapping`, `Exhausted`; `ControlPlaneConflict` while the pool
    /// contains the control-plane endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

fn default_true() -> bool {
    true
}
