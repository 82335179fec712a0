//! The controller's decision core: watch events, `now` and the outcome of each write in; the
//! writes to make (Service status and pool annotation, Events, pool status) out, as values.
//!
//! No I/O, no clock, no async: the runtime loop ([`crate::run`]) feeds it and carries out what it
//! returns, so the rules (restore before allocating, release holds, retries, Events) are tested
//! here as stories, without a cluster (see `stories.rs`). It imports no kube client, tokio or
//! futures; only the allocator, the config model, the API types (k8s-openapi, the CRDs and
//! `ferrolb_daemon`'s `CachedService`, a plain deserialised struct) and `tracing`, whose log
//! lines are part of what users see. A module rather than a crate of its own for now: the
//! Service type it reads lives in `ferrolb_daemon`, which carries the kube client.
//!
//! One pass of the runtime:
//! 1. [`Core::input`] for every watch event of a batch;
//! 2. once [`Core::synced`], [`Core::restore`] (once), then [`Core::decide`]: the writes of every
//!    dirty Service, decided in order (allocation is one global, ordered decision);
//! 3. [`Core::service_done`] with the outcome of each write, in any order;
//! 4. [`Core::finish`]: Services waiting for an address are retried if one was freed, and the
//!    pools' status to write; [`Core::pool_failed`] for each pool write that failed.
//!
//! While [`Core::pending`], the runtime runs a pass after `RETRY` even without a watch event.

mod key;
mod mirror;
mod pool_status;

#[cfg(test)]
mod stories;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use ferrolb_allocator::{Allocator, PoolName, PoolsReport, ServiceKey, Sharing};
use ferrolb_config::conditions;
use ferrolb_config::pool::{Checked, FieldError, check_pool, ranks};
use ferrolb_crds::{IPAddressPool, IPAddressPoolStatus};
use ferrolb_daemon::service::CachedService as Service;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use tracing::{debug, info, warn};

use crate::model::{self, Pools, Want};

pub use key::ObjectKey;
pub use mirror::Watch;
pub use pool_status::PoolGauge;

use mirror::Mirror;
use pool_status::{Facts, join, pool_status};

/// A watch event of one of the kinds the controller reads.
#[derive(Debug, Clone)]
pub enum Input {
    /// A Service.
    Service(Watch<Service>),
    /// An IPAddressPool.
    Pool(Watch<IPAddressPool>),
    /// A Namespace (its labels select pools).
    Namespace(Watch<Namespace>),
    /// The control-plane endpoint as kubeadm's `kube-public/cluster-info` ConfigMap shows it
    /// (parsed at the edge). A watch that cannot list it sends `InitDone` alone: the core then
    /// knows no address from it, and does not wait for it.
    ClusterInfo(Watch<ClusterInfo>),
}

/// The control-plane endpoint addresses the `kube-public/cluster-info` ConfigMap names: the IP
/// literals among the `server` URLs of its kubeconfig (a DNS name names no address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The addresses, in the order the kubeconfig names them.
    pub addresses: Vec<IpAddr>,
}

/// Where the control-plane address came from, as messages name it.
pub const FROM_CLUSTER_INFO: &str = "kube-public/cluster-info";
/// The flag that names control-plane addresses, as messages name it.
pub const FROM_FLAG: &str = "--control-plane-address";

/// The reason of a Service's [`ALLOCATED`] condition (and Warning Event) while it holds a
/// control-plane address, and the type of the pool condition that reports one in the pool.
pub const CONTROL_PLANE_CONFLICT: &str = "ControlPlaneConflict";

/// The type of an Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Something went as asked.
    Normal,
    /// Something the user should look at.
    Warning,
}

/// An Event about a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its type.
    pub type_: EventType,
    /// Its reason (also its action).
    pub reason: &'static str,
    /// Its note.
    pub note: String,
}

/// A write of a Service's `status.loadBalancer.ingress` and pool annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusWrite {
    /// The addresses, exactly (empty clears them).
    pub ips: Vec<IpAddr>,
    /// The pool annotation (`None` removes it).
    pub pool: Option<String>,
    /// Whether the annotation differs from what the Service carries now.
    pub annotation_changed: bool,
}

/// The type of the condition the controller keeps on each Service it handles: `True` with the
/// addresses and their pool, or `False` with the reason (the reason strings of the Events), so
/// that what happened is still visible after the Events have expired (an hour, by default).
pub const ALLOCATED: &str = "ferrolb.io/Allocated";

/// A change of a Service's [`ALLOCATED`] condition.
#[derive(Debug, Clone, PartialEq)]
pub enum ConditionWrite {
    /// Set it to this.
    Set(Condition),
    /// Remove it: the Service is no longer ferrolb's.
    Remove,
}

/// The API side of one Service's reconciliation. It carries what the writes need, not the
/// Service: with 10,000 Services to assign, clones of the cached objects were most of the
/// controller's peak memory (heaptrack).
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// The Service.
    pub key: ObjectKey,
    /// The Service, for the Event.
    pub reference: ObjectReference,
    /// When the change was first seen (the allocation latency runs from here).
    pub since: Instant,
    /// The status to write.
    pub write: Option<StatusWrite>,
    /// The Event to publish, only once the write (if any) succeeded.
    pub event: Option<Event>,
    /// The change of the Service's [`ALLOCATED`] condition, written with `write` (in the same
    /// request) or alone.
    pub condition: Option<ConditionWrite>,
}

/// What carrying out an [`Action`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to write (an Event at most).
    NoWrite,
    /// The status was written.
    Written,
    /// The write failed: retried at the next pass.
    Failed,
}

/// What a [`Core::decide`] pass returns.
#[derive(Debug, Default, PartialEq)]
pub struct Decisions {
    /// The Services' writes, in key order.
    pub actions: Vec<Action>,
    /// The reason of every request refused in this pass (for the error counter).
    pub errors: Vec<&'static str>,
}

/// What [`Core::finish`] returns.
#[derive(Debug, Default, PartialEq)]
pub struct PoolWrites {
    /// The size and use of every pool in use (for the metrics).
    pub gauges: Vec<PoolGauge>,
    /// The pools whose status differs from what they show, by name, with the status to write.
    pub writes: Vec<(String, IPAddressPoolStatus)>,
}

/// The controller's state: the watch cache, the allocator and the bookkeeping of writes.
#[derive(Debug)]
pub struct Core {
    /// `spec.loadBalancerClass` handled besides unset.
    class: Option<String>,
    services: Mirror<Service>,
    pools: Mirror<IPAddressPool>,
    namespaces: Mirror<Namespace>,
    cluster_info: Mirror<ClusterInfo>,
    /// Control-plane addresses given by flag.
    flagged: BTreeSet<IpAddr>,
    /// Every control-plane address known, with where it was learnt; reserved in the allocator.
    control_plane: BTreeMap<IpAddr, &'static str>,
    /// Also keeps the release holds: addresses a Service released while its status still shows
    /// them ([`ferrolb_allocator::Holder::Releasing`]), so that no other Service gets one before
    /// the releasing Service's status stops showing it (after its write lands, or when the watch
    /// shows a status without them). Without this a Service could get an address in the same
    /// pass, or while the releasing Service's write is refused, and two statuses would show it.
    allocator: Allocator,
    valid: Pools,
    invalid: BTreeMap<String, Vec<FieldError>>,
    report: PoolsReport,
    restored: bool,
    dirty: BTreeMap<ObjectKey, Instant>,
    pools_dirty: bool,
    last_event: BTreeMap<ObjectKey, String>,
    /// Services whose allocation failed; retried whenever an address is freed.
    waiting: BTreeSet<ObjectKey>,
    /// An address was freed in this pass.
    freed: bool,
    /// Reasons of refused requests, since the last [`Core::decide`] returned them.
    errors: Vec<&'static str>,
}

impl Core {
    /// A core that has seen nothing; `class` is the `spec.loadBalancerClass` handled besides
    /// unset.
    pub fn new(class: Option<String>) -> Core {
        Core {
            class,
            services: Mirror::new(),
            pools: Mirror::new(),
            namespaces: Mirror::new(),
            cluster_info: Mirror::new(),
            flagged: BTreeSet::new(),
            control_plane: BTreeMap::new(),
            allocator: Allocator::new(),
            valid: Pools::new(),
            invalid: BTreeMap::new(),
            report: PoolsReport::default(),
            restored: false,
            dirty: BTreeMap::new(),
            pools_dirty: false,
            last_event: BTreeMap::new(),
            waiting: BTreeSet::new(),
            freed: false,
            errors: Vec::new(),
        }
    }

    /// The core with the control-plane addresses given by flag (`--control-plane-address`), for
    /// clusters whose `kube-public/cluster-info` does not name them.
    pub fn with_control_plane(mut self, ips: impl IntoIterator<Item = IpAddr>) -> Core {
        self.flagged = ips.into_iter().collect();
        // No Service is known yet: none to decide again.
        self.refresh_control_plane();
        self
    }

    /// Whether every watch has listed its objects once. Nothing is allocated before
    /// `cluster-info` was read (or found unreadable): the control-plane address could go first.
    pub fn synced(&self) -> bool {
        self.services.synced
            && self.pools.synced
            && self.namespaces.synced
            && self.cluster_info.synced
    }

    /// Whether the allocator was rebuilt from the Services' status ([`Core::restore`]).
    pub fn restored(&self) -> bool {
        self.restored
    }

    /// Whether work is left over (a failed write, a Service waiting for its Namespace or for a
    /// free address, a pool status to write): the runtime runs a pass after a while even if no
    /// watch event comes, as the watcher has no periodic resync.
    pub fn pending(&self) -> bool {
        !self.dirty.is_empty() || self.pools_dirty
    }

    /// Applies one watch event seen at `now`.
    pub fn input(&mut self, input: Input, now: Instant) {
        match input {
            Input::Service(ev) => {
                for k in self.services.apply(ev) {
                    self.dirty.entry(k).or_insert(now);
                }
            }
            Input::Pool(ev) => {
                // Our own status writes come back as pool events; only a changed spec, or a pool
                // appearing, going or being re-created (its age decides overlaps), changes
                // allocations.
                if self.pools.apply_changes_identity(ev) {
                    self.load_pools(now);
                }
            }
            Input::ClusterInfo(ev) => {
                let first = !self.cluster_info.synced;
                self.cluster_info.apply(ev);
                if first && self.cluster_info.synced && self.cluster_info.objects.is_empty() {
                    info!(
                        "no kube-public/cluster-info ConfigMap: the control-plane endpoint is known only from --control-plane-address"
                    );
                }
                let changed = self.refresh_control_plane();
                if !changed.is_empty() {
                    self.decide_again_holders_of(&changed, now);
                }
            }
            Input::Namespace(ev) => {
                let changed = self.namespaces.apply(ev);
                for svc in self.services.objects.keys() {
                    if changed.contains(&svc.namespace) {
                        self.dirty.entry(svc.clone()).or_insert(now);
                    }
                }
            }
        }
    }

    /// Recomputes the control-plane addresses from the flag and `cluster-info`; if they changed,
    /// reserves them in the allocator and marks the pools' status to be written again. Returns
    /// the addresses that came or went. No address moves: a Service holding one keeps it and is
    /// told about the conflict.
    fn refresh_control_plane(&mut self) -> BTreeSet<IpAddr> {
        let mut known = BTreeMap::new();
        for info in self.cluster_info.objects.values() {
            for &ip in &info.addresses {
                known.insert(ip, FROM_CLUSTER_INFO);
            }
        }
        for &ip in &self.flagged {
            known.entry(ip).or_insert(FROM_FLAG);
        }
        if known == self.control_plane {
            return BTreeSet::new();
        }
        let changed: BTreeSet<IpAddr> = known
            .keys()
            .chain(self.control_plane.keys())
            .copied()
            .collect();
        info!(addresses = %known.iter().map(|(ip, from)| format!("{ip} ({from})")).collect::<Vec<_>>().join(", "), "control-plane endpoint addresses: never assigned to a Service");
        // An address no longer reserved is free for the Services waiting for one.
        if self.control_plane.keys().any(|ip| !known.contains_key(ip)) {
            self.freed = true;
        }
        self.allocator.set_reserved(known.keys().copied().collect());
        self.control_plane = known;
        self.pools_dirty = true;
        changed
    }

    /// Marks the Services that hold or show one of `ips` to be decided again (their condition
    /// names the conflict, or stops naming it).
    fn decide_again_holders_of(&mut self, ips: &BTreeSet<IpAddr>, now: Instant) {
        for (k, svc) in &self.services.objects {
            let holds = self
                .allocator
                .allocation(&k.service())
                .is_some_and(|a| a.ips().any(|ip| ips.contains(&ip)));
            if holds || svc.ips().iter().any(|ip| ips.contains(ip)) {
                self.dirty.entry(k.clone()).or_insert(now);
            }
        }
    }

    /// Re-reads every pool into the allocator; every Service may be affected.
    fn load_pools(&mut self, now: Instant) {
        let ranks = ranks(self.pools.objects.values());
        // A pool that becomes invalid keeps serving with its last valid spec: a typo in one
        // range must not take every address of the pool away from its Services. So does a pool
        // edited so that its entries overlap, or given a selector of bad label syntax: no
        // Service loses or moves its address, new ones come from the last valid spec, and the
        // Invalid condition says so. Before the first restore there is no last valid spec; a pool
        // whose only problems are ones earlier versions accepted (those two) is then served as
        // they served it, so that upgrading the controller moves no Service.
        let mut previous = std::mem::take(&mut self.valid);
        self.invalid.clear();
        for (name, obj) in &self.pools.objects {
            let checked = check_pool(obj, ranks.get(name).copied().unwrap_or(u64::MAX));
            match checked {
                Checked {
                    pool: Some(p),
                    errors,
                } if errors.is_empty() => {
                    self.valid.insert(p.spec.name().clone(), p);
                }
                Checked { pool, errors } => {
                    let mut kept = previous.remove(&PoolName::new(name.clone()));
                    if kept.is_none() && !self.restored {
                        kept = pool;
                    }
                    warn!(pool = %name, errors = %join(&errors), last_valid_kept = kept.is_some(), "invalid IPAddressPool");
                    if let Some(p) = kept {
                        self.valid.insert(p.spec.name().clone(), p);
                    }
                    self.invalid.insert(name.clone(), errors);
                }
            }
        }
        self.report = self
            .allocator
            .set_pools(self.valid.values().map(|p| p.spec.clone()).collect());
        for k in self.services.objects.keys() {
            self.dirty.entry(k.clone()).or_insert(now);
        }
        self.pools_dirty = true;
    }

    /// Rebuilds the allocator from Service status, before anything new is allocated: oldest
    /// Services first, so that if two statuses ever claimed one address, the older keeps it.
    /// Call it once, when [`Core::synced`] first holds; returns how many Services were restored.
    pub fn restore(&mut self, now: Instant) -> usize {
        self.load_pools(now);
        let mut order: Vec<(&Service, ObjectKey)> = self
            .services
            .objects
            .iter()
            .filter(|(_, s)| s.is_ours(self.class.as_deref()))
            .map(|(k, s)| (s, k.clone()))
            .collect();
        order.sort_by_key(|(s, k)| {
            (
                s.metadata.creation_timestamp.as_ref().map(|t| t.0),
                k.clone(),
            )
        });
        let mut restored = 0;
        for (svc, k) in order {
            let ips = svc.ips();
            if ips.is_empty() {
                continue;
            }
            match self
                .allocator
                .restore(k.service(), ips.clone(), model::sharing(svc))
            {
                Ok(_) => restored += 1,
                Err(e) => {
                    warn!(service = %k, ?ips, error = %e, "could not restore the address in the Service status")
                }
            }
        }
        info!(
            restored,
            services = self.services.objects.len(),
            pools = self.valid.len(),
            "assignments rebuilt from Service status"
        );
        self.restored = true;
        restored
    }

    /// Decides every dirty Service: allocator changes happen here, API writes are returned.
    /// `wall`, the time of day, stamps changed Service conditions.
    pub fn decide(&mut self, wall: Timestamp) -> Decisions {
        let dirty = std::mem::take(&mut self.dirty);
        let actions = dirty
            .into_iter()
            .filter_map(|(k, since)| self.decide_one(&k, since, wall))
            .collect();
        Decisions {
            actions,
            errors: std::mem::take(&mut self.errors),
        }
    }

    /// Records what carrying out the [`Action`] of Service `key`, first seen at `since`, did.
    pub fn service_done(&mut self, key: &ObjectKey, since: Instant, outcome: Outcome) {
        match outcome {
            Outcome::NoWrite => {}
            Outcome::Written => {
                self.pools_dirty = true;
                // The status written shows none of what the Service released.
                self.free_released(key);
            }
            Outcome::Failed => {
                self.pools_dirty = true;
                // Retried at the next pass: the next watch event, or after RETRY.
                self.dirty.insert(key.clone(), since);
                self.last_event.remove(key);
            }
        }
    }

    /// Ends a pass at `now` (`wall`, the time of day, stamps changed pool conditions): Services
    /// waiting for an address are retried if one was freed, and the pools' status is returned
    /// if anything changed it (only the pools whose status differs are to be written).
    pub fn finish(&mut self, now: Instant, wall: Timestamp) -> Option<PoolWrites> {
        if std::mem::take(&mut self.freed) {
            for k in &self.waiting {
                self.dirty.entry(k.clone()).or_insert(now);
            }
        }
        if !std::mem::take(&mut self.pools_dirty) {
            return None;
        }
        let mut out = PoolWrites::default();
        for obj in self.pools.objects.values() {
            let name = obj.metadata.name.clone().unwrap_or_default();
            let facts = Facts {
                valid: &self.valid,
                invalid: self.invalid.get(&name),
                allocator: &self.allocator,
                report: &self.report,
                control_plane: &self.control_plane,
            };
            let (status, gauges) = pool_status(obj, &facts, wall);
            out.gauges.extend(gauges);
            if obj.status.as_ref() != Some(&status) {
                out.writes.push((name, status));
            }
        }
        Some(out)
    }

    /// Records that writing a pool's status failed: retried at the next pass.
    pub fn pool_failed(&mut self) {
        self.pools_dirty = true;
    }

    /// What to do for one Service.
    fn decide_one(&mut self, k: &ObjectKey, since: Instant, wall: Timestamp) -> Option<Action> {
        let Some(svc) = self.services.objects.get(k).cloned() else {
            let key = k.service();
            let released = self.allocator.release(&key);
            if !released.is_empty() {
                info!(service = %k, ?released, "Service deleted: addresses released");
                self.pools_dirty = true;
                self.freed = true;
            }
            self.waiting.remove(k);
            self.last_event.remove(k);
            self.free_released(k);
            return None;
        };
        let key = k.service();
        let ns = &k.namespace;
        // A Service can be seen before its (new) Namespace: deciding without the Namespace's
        // labels could pick a pool its selectors exclude and move the address a moment later.
        // Wait for the Namespace (retried every RETRY).
        let Some(namespace) = self.namespaces.objects.get(ns) else {
            debug!(service = %k, namespace = %ns, "Namespace not seen yet; waiting");
            self.dirty.insert(k.clone(), since);
            return None;
        };
        let ns_labels = namespace.metadata.labels.clone().unwrap_or_default();
        // The consent to share stored for what the Service holds now: an address it releases is
        // held as it held it, so the Services it shared that address with keep sharing it.
        let sharing = self
            .allocator
            .allocation(&key)
            .and_then(|a| a.sharing.clone());
        // The addresses its status shows (as last seen by the watch).
        let shown = svc.ips();
        let pool_now = model::status_pool(&svc);
        let mut action = Action {
            key: k.clone(),
            reference: object_ref(&svc),
            since,
            write: None,
            event: None,
            condition: None,
        };
        // The ALLOCATED condition wanted: (holds, reason, message); `None` for no condition.
        let allocated: Option<(bool, &'static str, String)>;
        let write = |ips: Vec<IpAddr>, pool: Option<String>| StatusWrite {
            annotation_changed: pool_now != pool.as_deref(),
            ips,
            pool,
        };
        match model::want(&svc, self.class.as_deref(), &self.valid, &ns_labels) {
            Want::Nothing => {
                allocated = None;
                self.waiting.remove(k);
                let released = self.allocator.release(&key);
                self.hold_released(k, &key, &released, sharing);
                // After a failed clearing write the retry releases nothing: name what the status
                // still shows.
                let gone = if released.is_empty() && self.releasing(&key) {
                    shown.clone()
                } else {
                    released
                };
                if !gone.is_empty() {
                    let note = format!(
                        "released {} (no longer a LoadBalancer Service of this class)",
                        list(&gone)
                    );
                    action.event = self.event(k, EventType::Normal, "IPReleased", note);
                }
                // Decided from what the Service shows, not from what was just released, so a
                // failed clearing write is retried.
                if pool_now.is_some() {
                    action.write = Some(write(Vec::new(), None));
                }
            }
            Want::Invalid(msg) => {
                self.errors.push("InvalidRequest");
                let (held, _) = self.held(&key);
                allocated = Some((false, "AllocationFailed", keeps(&msg, &held)));
                action.event = self.event(k, EventType::Warning, "AllocationFailed", msg);
            }
            // What the Service is releasing itself is free to it (`Allocator::assign`): it may
            // get back the very address its status still shows.
            Want::Allocate(req) => match self.allocator.assign(&req) {
                Ok(alloc) => {
                    self.waiting.remove(k);
                    if let Some(moved) = &alloc.moved {
                        let released: Vec<IpAddr> = moved.released.iter().map(|r| r.0).collect();
                        self.hold_released(k, &key, &released, sharing);
                    }
                    // What the allocator now stores for the Service, as `alloc` says.
                    let (ips, pool) = self.held(&key);
                    let from =
                        format!("{} from pool {}", list(&ips), pool.as_deref().unwrap_or(""));
                    // A Service that held a control-plane address before it was known keeps it
                    // (nothing moves an address that answers: a new one would break its clients
                    // just as surely), but says so in its condition and a Warning Event.
                    let conflict = self.control_plane_conflict(&ips);
                    allocated = Some(match &conflict {
                        None => (true, "IPAllocated", from),
                        Some(why) => (true, CONTROL_PLANE_CONFLICT, format!("{from}; {why}")),
                    });
                    let conflict_event = |core: &mut Core| {
                        conflict.clone().and_then(|why| {
                            core.event(k, EventType::Warning, CONTROL_PLANE_CONFLICT, why)
                        })
                    };
                    if shown == ips && pool_now == pool.as_deref() {
                        self.free_released_unless_shown(k, &key, &shown);
                        action.condition = condition_change(&svc, allocated, wall);
                        action.event = conflict_event(self);
                        return (action.condition.is_some() || action.event.is_some())
                            .then_some(action);
                    }
                    let pool = pool.unwrap_or_default();
                    let gone = missing_from(&shown, &ips);
                    let note = if let Some(moved) = &alloc.moved {
                        Some((
                            EventType::Warning,
                            "IPReassigned",
                            format!("now {} from pool {pool}: {moved}", list(&ips)),
                        ))
                    } else if !gone.is_empty() && self.releasing(&key) {
                        // Moved by an earlier pass whose write failed. (Without a hold, the cached
                        // status is only older than a write that landed.)
                        Some((
                            EventType::Warning,
                            "IPReassigned",
                            format!(
                                "now {} from pool {pool}: {} is no longer held for this Service",
                                list(&ips),
                                list(&gone)
                            ),
                        ))
                    } else if shown != ips {
                        // A first address, or one more family (PreferDualStack).
                        Some((
                            EventType::Normal,
                            "IPAllocated",
                            format!("assigned {} from pool {pool}", list(&ips)),
                        ))
                    } else {
                        None
                    };
                    action.event = match note {
                        Some((t, r, n)) => self.event(k, t, r, n),
                        None => conflict_event(self),
                    };
                    action.write = Some(write(ips, Some(pool)));
                }
                Err(e) => {
                    // Counted by what the request met: a RequireDualStack request refused because a pool
                    // is exhausted counts as `Exhausted`, as any other request would.
                    self.errors.push(e.cause().reason());
                    // An address that left every pool leaves the Service when nothing can replace
                    // it; anything else it holds stays (a RequireDualStack Service keeps its other
                    // family and waits for the missing one).
                    debug!(service = %k, error = %e, "allocation failed; waiting for a free address");
                    self.waiting.insert(k.clone());
                    let released = self.allocator.release_stranded(&key);
                    self.hold_released(k, &key, &released, sharing);
                    let (ips, pool) = self.held(&key);
                    allocated = Some((false, "AllocationFailed", keeps(&e.to_string(), &ips)));
                    // What the status shows beyond what the allocator gives this Service: just
                    // released, released by a pass whose write failed, or lost at restore. The
                    // status must stop showing it before another Service may get it.
                    let gone = missing_from(&shown, &ips);
                    if shown != ips || pool_now != pool.as_deref() {
                        action.write = Some(write(ips.clone(), pool));
                    }
                    // Without a hold the cached status is only older than a write that landed.
                    let releasing = !released.is_empty() || self.releasing(&key);
                    action.event = if gone.is_empty() || !releasing {
                        self.event(k, EventType::Warning, "AllocationFailed", e.to_string())
                    } else {
                        let why = if released.is_empty() {
                            "it is no longer held for this Service"
                        } else {
                            "it left every address pool and no other address is available"
                        };
                        let kept = if ips.is_empty() {
                            String::new()
                        } else {
                            format!("; keeps {}", list(&ips))
                        };
                        let note = format!("released {}: {why} ({e}){kept}", list(&gone));
                        self.event(k, EventType::Warning, "IPReleased", note)
                    };
                }
            },
        }
        if action.write.is_none() {
            self.free_released_unless_shown(k, &key, &shown);
        }
        action.condition = condition_change(&svc, allocated, wall);
        (action.write.is_some() || action.event.is_some() || action.condition.is_some())
            .then_some(action)
    }

    /// What is wrong with holding `ips` if one of them is a control-plane address.
    fn control_plane_conflict(&self, ips: &[IpAddr]) -> Option<String> {
        let why: Vec<String> = ips
            .iter()
            .filter_map(|ip| {
                self.control_plane
                    .get(ip)
                    .map(|from| format!("{ip} is the control-plane endpoint ({from})"))
            })
            .collect();
        (!why.is_empty()).then(|| {
            format!(
                "{}: the API servers answer for it too; delete and re-create the Service (or request another address) to move it",
                why.join(", ")
            )
        })
    }

    /// Whether the allocator holds addresses `key` released.
    fn releasing(&self, key: &ServiceKey) -> bool {
        self.allocator.releases(key).next().is_some()
    }

    /// Holds `ips`, just released by Service `k`, from every other Service until `k`'s status
    /// stops showing them. `sharing` is the Service's consent to share as the allocator stored it
    /// with them.
    fn hold_released(
        &mut self,
        k: &ObjectKey,
        key: &ServiceKey,
        ips: &[IpAddr],
        sharing: Option<Sharing>,
    ) {
        for &ip in ips {
            // Not expected to fail: the Services holding it shared it with this one.
            if let Err(e) = self.allocator.hold_release(key, ip, sharing.clone()) {
                warn!(service = %k, %ip, error = %e, "could not hold a released address until the status stops showing it")
            }
        }
    }

    /// Frees what Service `k` released: its status no longer shows it.
    fn free_released(&mut self, k: &ObjectKey) {
        let held = self.allocator.free_releases(&k.service());
        if held.is_empty() {
            return;
        }
        for ip in held {
            debug!(service = %k, %ip, "released address free: the status no longer shows it");
        }
        self.pools_dirty = true;
        self.freed = true;
    }

    /// [`Core::free_released`] when the status `shown` has none of what `k` released.
    fn free_released_unless_shown(&mut self, k: &ObjectKey, key: &ServiceKey, shown: &[IpAddr]) {
        let still_shown = self.allocator.releases(key).any(|ip| shown.contains(&ip));
        if !still_shown {
            self.free_released(k);
        }
    }

    /// The addresses the allocator gives `key` (IPv4 first) and their pools as the annotation
    /// names them; nothing and `None` when it holds nothing.
    fn held(&self, key: &ServiceKey) -> (Vec<IpAddr>, Option<String>) {
        let held = self.allocator.allocation(key);
        let ips: Vec<IpAddr> = held.map(|a| a.ips().collect()).unwrap_or_default();
        let pool = held
            .into_iter()
            .flat_map(|a| [a.v4.as_ref(), a.v6.as_ref()])
            .flatten()
            .filter_map(|a| a.pool.as_ref().map(PoolName::as_str))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join(",");
        (ips, (!pool.is_empty()).then_some(pool))
    }

    /// An Event to publish, unless it repeats the last one for this Service.
    fn event(
        &mut self,
        k: &ObjectKey,
        type_: EventType,
        reason: &'static str,
        note: String,
    ) -> Option<Event> {
        let line = format!("{reason}: {note}");
        if self.last_event.get(k) == Some(&line) {
            return None;
        }
        match type_ {
            EventType::Warning => warn!(service = %k, reason, %note, "event"),
            EventType::Normal => debug!(service = %k, reason, %note, "event"),
        }
        self.last_event.insert(k.clone(), line);
        Some(Event {
            type_,
            reason,
            note,
        })
    }
}

/// A reference to the Service, as `kube::Resource::object_ref` makes it (checked by a test in
/// `run.rs`).
pub fn object_ref(svc: &Service) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        name: svc.metadata.name.clone(),
        namespace: svc.metadata.namespace.clone(),
        uid: svc.metadata.uid.clone(),
        ..Default::default()
    }
}

/// How the [`ALLOCATED`] condition the Service shows must change to be `wanted` (holds, reason,
/// message; `None`: no condition), stamped `wall` if its status changes; `None` if it need not.
fn condition_change(
    svc: &Service,
    wanted: Option<(bool, &'static str, String)>,
    wall: Timestamp,
) -> Option<ConditionWrite> {
    let shown = svc
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let current = shown.iter().find(|c| c.type_ == ALLOCATED);
    let Some((holds, reason, message)) = wanted else {
        return current.map(|_| ConditionWrite::Remove);
    };
    let status = conditions::Status::from(holds);
    let generation = svc.metadata.generation;
    if current.is_some_and(|c| {
        c.status == status.as_str()
            && c.reason == reason
            && c.message == message
            && c.observed_generation == generation
    }) {
        return None;
    }
    Some(ConditionWrite::Set(conditions::condition(
        shown, ALLOCATED, status, reason, message, generation, wall,
    )))
}

/// `why`, and what the Service keeps meanwhile.
fn keeps(why: &str, held: &[IpAddr]) -> String {
    if held.is_empty() {
        why.to_string()
    } else {
        format!("{why}; keeps {}", list(held))
    }
}

/// The addresses of `shown` that are not in `held`.
fn missing_from(shown: &[IpAddr], held: &[IpAddr]) -> Vec<IpAddr> {
    shown
        .iter()
        .filter(|ip| !held.contains(ip))
        .copied()
        .collect()
}

/// Addresses as a list, `a, b`.
pub fn list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
