//! `IPAddressPool`: a set of addresses the controller hands out to LoadBalancer Services.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A pool of addresses for Services of `type: LoadBalancer`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolSpec {
    /// Addresses of the pool: CIDRs (`192.0.2.64/26`, `2001:db8::/120`) or inclusive ranges
    /// (`192.0.2.10-192.0.2.20`), IPv4 or IPv6. At least one.
    #[schemars(length(min = 1))]
    pub addresses: Vec<String>,

    /// Whether Services that do not ask for this pool may get addresses from it.
    #[serde(default = "default_true")]
    #[schemars(default = "default_true")]
    pub auto_assign: bool,

    /// Skip IPv4 addresses ending in `.0` or `.255`, which some old clients mistake for network or
    /// broadcast addresses.
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,
}

/// Observed state of a pool, written by the controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolStatus {
    /// `Ready`, `Invalid`, `Overlapping`, `Exhausted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

fn default_true() -> bool {
    true
}
