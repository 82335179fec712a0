//! `L2Advertisement`: which addresses the speakers announce on the layer-2 segment, from which
//! nodes and on which interfaces.
//!
//! Every list empty means "everything": every pool, every node, the interfaces that have an address
//! in the subnet of the VIP, every Service. Several advertisements add up: a node announces an
//! address when at least one advertisement selects both. The schema rejects what it can express (an
//! interface name longer than the kernel allows); `ferrolb-config` catches malformed selectors, and
//! the speakers report per node what they could not do (an interface that does not exist) in
//! `status.nodes` and as Events.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Announce addresses of some pools from some nodes with ARP (IPv4) and NDP (IPv6).
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "ferrolb.io",
    version = "v1alpha1",
    kind = "L2Advertisement",
    plural = "l2advertisements",
    shortname = "l2adv",
    doc = "Announces the addresses of some IPAddressPools from some nodes on the layer-2 segment.",
    status = "L2AdvertisementStatus",
    printcolumn = r#"{"name":"Pools","type":"string","jsonPath":".spec.ipAddressPools"}"#,
    printcolumn = r#"{"name":"Interfaces","type":"string","jsonPath":".spec.interfaces"}"#,
    printcolumn = r#"{"name":"Nodes","type":"integer","jsonPath":".status.nodeCount"}"#,
    printcolumn = r#"{"name":"Problems","type":"string","jsonPath":".status.problems"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// Names of the pools whose addresses are announced. Empty together with
    /// `ipAddressPoolSelectors`: every pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 253)))]
    pub ip_address_pools: Vec<String>,

    /// Label selectors on pools whose addresses are announced (in addition to `ipAddressPools`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,

    /// Label selectors on the Nodes that may announce. Empty: every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_selectors: Vec<LabelSelector>,

    /// Interfaces to announce on. Empty: each interface that has an address in the subnet of the
    /// VIP, except the excluded ones (the speaker's `--exclude-interfaces`: docker*, veth*, cni*, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(length(min = 1, max = 15), regex(pattern = r"^[^\s/:]+$"))
    )]
    pub interfaces: Vec<String>,

    /// Label selectors on the Services whose addresses are announced. Empty: every Service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_selectors: Vec<LabelSelector>,
}

/// What the speakers found when applying the advertisement, written by them.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementStatus {
    /// One entry per node whose speaker applies this advertisement; each speaker writes only its own
    /// entry (server-side apply, list keyed by `node`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["node".into()]))]
    pub nodes: Vec<L2NodeStatus>,

    /// Number of entries in `nodes` (for `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_count: Option<i32>,

    /// Short summary of problems (`spec.interfaces: eth9 missing on node-1`), empty when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problems: Option<String>,

    /// `Valid` (the spec parses) — written by the speaker that reports for the cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// How one node applies the advertisement.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L2NodeStatus {
    /// Node name.
    pub node: String,
    /// Whether the node is selected by `nodeSelectors`.
    pub selected: bool,
    /// Interfaces of `spec.interfaces` that exist on the node (or, with none named, the interfaces
    /// the speaker found for the VIPs it announces).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// Interfaces of `spec.interfaces` that do not exist on the node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_interfaces: Vec<String>,
    /// `InterfacesReady`: every named interface exists and is up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}
