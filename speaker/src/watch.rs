//! The speaker's view of the API: reflectors for Services, EndpointSlices, Nodes, pools and
//! advertisements, and the conversion of what they hold into the election core's [`World`].
//!
//! The stores keep the last state they saw. When the API server goes away the watchers retry with
//! backoff and the stores stay as they were, so the speaker keeps announcing what it announced
//! and can still move addresses when gossip reports a node dead.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ferrolb_config::l2::{label_syntax, parse_advertisement, unknown_pools};
use ferrolb_config::pool::{FieldError, check_pool, ranks};
use ferrolb_config::service::ASSIGNED_POOL;
use ferrolb_crds::{IPAddressPool, L2Advertisement};
pub use ferrolb_daemon::service::CachedService;
use ferrolb_speaker_core::{NodeInfo, PoolInfo, ServiceInfo, World};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use tokio::sync::Notify;
use tracing::warn;

/// Condition type the owning speaker writes on a Service it announces.
pub const ANNOUNCED: &str = "ferrolb.io/Announced";

/// The reflector stores.
#[derive(Clone)]
pub struct Stores {
    pub services: Store<CachedService>,
    pub slices: Store<EndpointSlice>,
    pub nodes: Store<Node>,
    pub pools: Store<IPAddressPool>,
    pub advertisements: Store<L2Advertisement>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}

/// Drops what the speaker never reads from a cached object, before it is stored: managed fields
/// and kubectl's last-applied copy everywhere, and per kind every field the election and the
/// reports do not use (a Node's image list alone is often tens of kilobytes).
trait Slim: Resource {
    fn slim(&mut self) {
        let meta = self.meta_mut();
        meta.managed_fields = None;
        if let Some(a) = meta.annotations.as_mut() {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
}

impl Slim for IPAddressPool {}
impl Slim for L2Advertisement {}

/// Its `ferrolb.io/Announced` condition.
pub fn announced(
    svc: &CachedService,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    svc.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ANNOUNCED)
}

impl Slim for CachedService {
    fn slim(&mut self) {
        // The controller's fields: a one-entry selector map alone is ~0.5 KiB.
        self.spec.selector = None;
        self.spec.ports = None;
        self.spec.ip_families = None;
        self.spec.ip_family_policy = None;
        self.spec.load_balancer_ip = None;
        let meta = &mut self.metadata;
        meta.managed_fields = None;
        meta.finalizers = None;
        meta.owner_references = None;
        meta.generate_name = None;
        // Only the assigned pool is read; a map for one entry costs ~0.5 KiB.
        self.pool = meta
            .annotations
            .take()
            .and_then(|mut a| a.remove(ASSIGNED_POOL));
        if let Some(status) = self.status.as_mut()
            && let Some(conds) = status.conditions.as_mut()
        {
            conds.retain(|c| c.type_ == ANNOUNCED);
        }
    }
}

impl Slim for EndpointSlice {
    fn slim(&mut self) {
        self.metadata.managed_fields = None;
        self.metadata.annotations = None;
        self.ports = None;
        for ep in &mut self.endpoints {
            ep.addresses.clear();
            ep.target_ref = None;
            ep.hints = None;
            ep.hostname = None;
            ep.deprecated_topology = None;
        }
    }
}

impl Slim for Node {
    fn slim(&mut self) {
        self.metadata.managed_fields = None;
        self.metadata.annotations = None;
        if let Some(spec) = self.spec.take() {
            self.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
                unschedulable: spec.unschedulable,
                ..Default::default()
            });
        }
        if let Some(status) = self.status.take() {
            self.status = Some(k8s_openapi::api::core::v1::NodeStatus {
                addresses: status.addresses,
                conditions: status.conditions.map(|cs| {
                    cs.into_iter()
                        .filter(|c| c.type_ == "Ready" || c.type_ == "NetworkUnavailable")
                        .map(|c| k8s_openapi::api::core::v1::NodeCondition {
                            type_: c.type_,
                            status: c.status,
                            ..Default::default()
                        })
                        .collect()
                }),
                ..Default::default()
            });
        }
    }
}

/// Starts one reflector per kind; each change wakes `changed`.
pub fn start(client: &Client, changed: Arc<Notify>) -> Stores {
    fn spawn<K>(api: Api<K>, changed: Arc<Notify>, cfg: watcher::Config) -> Store<K>
    where
        K: Slim + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
    {
        let (reader, writer) = reflector::store();
        let kind = K::kind(&K::DynamicType::default()).to_string();
        let stream = reflector::reflector(
            writer,
            watcher::watcher(api, cfg).default_backoff().modify(K::slim),
        );
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(_) => changed.notify_one(),
                    Err(e) => {
                        warn!(%kind, error = %e, "watch failed; keeping the last state and retrying")
                    }
                }
            }
        });
        reader
    }
    let cfg = watcher::Config::default();
    Stores {
        services: spawn(Api::all(client.clone()), changed.clone(), cfg.clone()),
        slices: spawn(
            Api::all(client.clone()),
            changed.clone(),
            // Only EndpointSlices managed for Services (the label every slice controller sets).
            cfg.clone().labels("kubernetes.io/service-name"),
        ),
        nodes: spawn(Api::all(client.clone()), changed.clone(), cfg.clone()),
        pools: spawn(Api::all(client.clone()), changed.clone(), cfg.clone()),
        advertisements: spawn(Api::all(client.clone()), changed, cfg),
    }
}

impl Stores {
    /// Waits until every store has its first list.
    pub async fn ready(&self) -> anyhow::Result<()> {
        self.services.wait_until_ready().await?;
        self.slices.wait_until_ready().await?;
        self.nodes.wait_until_ready().await?;
        self.pools.wait_until_ready().await?;
        self.advertisements.wait_until_ready().await?;
        Ok(())
    }
}

/// Problems found while building the world, to report.
#[derive(Debug, Default)]
pub struct Problems {
    /// Advertisement name → its invalid fields (the advertisement is ignored).
    pub advertisements: BTreeMap<String, Vec<FieldError>>,
    /// Advertisement name → problems that do not stop it from applying, shown in its
    /// `status.problems`: `spec.ipAddressPools` entries that name no pool, label keys or values
    /// of bad syntax in its selectors (which earlier versions accepted).
    pub notes: BTreeMap<String, Vec<FieldError>>,
}

pub fn key_of<K: Resource>(obj: &K) -> String {
    let m = obj.meta();
    format!(
        "{}/{}",
        m.namespace.as_deref().unwrap_or(""),
        m.name.as_deref().unwrap_or("")
    )
}

/// Builds the election's input from the stores.
pub fn world(stores: &Stores, class: Option<&str>) -> (World, Problems) {
    let mut world = World::default();
    let mut problems = Problems::default();
    for node in stores.nodes.state() {
        let name = node.metadata.name.clone().unwrap_or_default();
        let conds = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .cloned()
            .unwrap_or_default();
        let cond = |t: &str| {
            conds
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| c.status == "True")
        };
        world.nodes.insert(
            name,
            NodeInfo {
                labels: node.metadata.labels.clone().unwrap_or_default(),
                network_unavailable: cond("NetworkUnavailable") == Some(true),
                ready: cond("Ready"),
                unschedulable: node
                    .spec
                    .as_ref()
                    .and_then(|s| s.unschedulable)
                    .unwrap_or(false),
            },
        );
    }
    let pools = stores.pools.state();
    let rank = ranks(pools.iter().map(|p| p.as_ref()));
    for pool in &pools {
        let name = pool.metadata.name.clone().unwrap_or_default();
        // An invalid pool contributes no ranges: its addresses are not announced (the controller
        // reports it on the pool). A pool whose only problems are ones earlier versions accepted
        // (overlapping entries, bad label syntax in a selector) is announced as they announced it,
        // so that reporting them silences no address.
        let ranges = check_pool(pool, rank.get(&name).copied().unwrap_or(u64::MAX))
            .pool
            .map(|v| v.spec.ranges().to_vec())
            .unwrap_or_default();
        world.pools.insert(
            name,
            PoolInfo {
                labels: pool.metadata.labels.clone().unwrap_or_default(),
                ranges,
            },
        );
    }
    for adv in stores.advertisements.state() {
        let mut notes = unknown_pools(&adv, |n| world.pools.contains_key(n));
        notes.extend(label_syntax(&adv));
        if !notes.is_empty() {
            problems
                .notes
                .insert(adv.metadata.name.clone().unwrap_or_default(), notes);
        }
        match parse_advertisement(&adv) {
            Ok(a) => world.advertisements.push(a),
            Err(errors) => {
                problems
                    .advertisements
                    .insert(adv.metadata.name.clone().unwrap_or_default(), errors);
            }
        }
    }
    // Nodes with a ready or serving endpoint, per Service (EndpointSlice conditions: `ready`
    // absent means ready; `serving` covers terminating endpoints that still serve).
    let mut endpoints: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for slice in stores.slices.state() {
        let Some(svc) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
        else {
            continue;
        };
        let key = format!(
            "{}/{svc}",
            slice.metadata.namespace.as_deref().unwrap_or("")
        );
        for ep in &slice.endpoints {
            let c = ep.conditions.as_ref();
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(ready);
            if let (true, Some(node)) = (ready || serving, ep.node_name.as_ref()) {
                endpoints
                    .entry(key.clone())
                    .or_default()
                    .insert(node.clone());
            }
        }
    }
    for svc in stores.services.state() {
        if !svc.is_ours(class) {
            continue;
        }
        let ips = svc.ips();
        if ips.is_empty() {
            continue;
        }
        let key = key_of(svc.as_ref());
        world.services.push(ServiceInfo {
            labels: svc.metadata.labels.clone().unwrap_or_default(),
            ips,
            pool: svc.pool.clone(),
            local: svc.spec.external_traffic_policy.as_deref() == Some("Local"),
            endpoint_nodes: endpoints.remove(&key).unwrap_or_default(),
            key,
        });
    }
    (world, problems)
}

/// The node named in the `ferrolb.io/Announced` condition of each Service, by the Service's
/// addresses: sticky mode keeps it.
pub fn previous_owners(stores: &Stores) -> BTreeMap<IpAddr, String> {
    let mut out = BTreeMap::new();
    for svc in stores.services.state() {
        let node = announced(&svc)
            .filter(|c| c.status == "True")
            .and_then(|c| crate::report::announcer_in(&c.message).map(str::to_string));
        if let Some(node) = node {
            for ip in svc.ips() {
                out.insert(ip, node.clone());
            }
        }
    }
    out
}
