//! The controller's loop.
//!
//! Allocation is one global, ordered decision (an address given to one Service constrains all the
//! others), so a single task owns the allocator and consumes the watch streams of Services, pools
//! and Namespaces directly, instead of a per-object `kube::runtime::Controller` behind a lock. This
//! also gives the two guarantees that matter most:
//! - restart safety: nothing is allocated until every Service and pool has been listed and every
//!   address in a Service status has been restored into the allocator;
//! - deletions are seen: a Service missing from a re-list, or deleted, frees its address.
//!
//! The loop is level-triggered: every change marks Services dirty, and reconciling a Service
//! compares what the allocator decides with what its status shows, writing only differences.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrolb_allocator::{Allocator, Family, PoolName, PoolsReport, ServiceKey, Sharing};
use ferrolb_config::pool::{FieldError, parse_pool, ranks};
use ferrolb_crds::{IPAddressPool, IPAddressPoolStatus};
use ferrolb_daemon::service::CachedService as Service;
use futures::{FutureExt, StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::WatchStreamExt;
use kube::runtime::events::EventType;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use tracing::{debug, info, warn};

use crate::metrics::{Metrics, PoolLabels, ReasonLabels};
use crate::model::{self, Pools, Want};
use crate::status::Writer;

/// Most watch events handled before the dirty Services are reconciled.
const BATCH: usize = 2000;
/// How soon left-over work (failed writes, Services waiting for an address) is retried.
const RETRY: Duration = Duration::from_secs(1);
/// Service writes in flight at once (each is two requests, plus an Event).
const WRITES_IN_FLIGHT: usize = 32;

/// The API side of one Service's reconciliation, decided before any I/O. It carries what the
/// writes need, not the Service: with 10,000 Services to assign, clones of the cached objects
/// were most of the controller's peak memory (heaptrack).
struct Action {
    key: String,
    /// The Service, for the Event.
    reference: ObjectReference,
    /// The pool annotation it carries now.
    pool_now: Option<String>,
    since: Instant,
    /// New ingress addresses and pool annotation.
    write: Option<(Vec<IpAddr>, Option<String>)>,
    event: Option<(EventType, &'static str, String)>,
}

/// What executing an [`Action`] did.
enum Outcome {
    /// Nothing to write (an Event at most).
    NoWrite,
    /// The status was written this long after the change was seen.
    Written(Duration),
    /// The write failed: retried at the next pass.
    Failed,
}

impl Action {
    /// Writes, then (only if the write succeeded) publishes the Event.
    async fn execute(&self, writer: &Writer) -> Outcome {
        let ns = self.reference.namespace.as_deref().unwrap_or("default");
        let name = self.reference.name.as_deref().unwrap_or("");
        let mut outcome = Outcome::NoWrite;
        if let Some((ips, pool)) = &self.write {
            let annotation_changed = self.pool_now != *pool;
            if let Err(e) = writer
                .service(ns, name, ips, pool.as_deref(), annotation_changed)
                .await
            {
                warn!(service = %self.key, error = %e, "writing the Service status failed; will retry");
                return Outcome::Failed;
            }
            // Measured before the Event: its request is not part of the allocation.
            outcome = Outcome::Written(self.since.elapsed());
            info!(service = %self.key, ips = %list(ips), pool = pool.as_deref().unwrap_or(""), "status written");
        }
        if let Some((type_, reason, note)) = &self.event {
            writer
                .event(&self.reference, *type_, reason, note.clone())
                .await;
        }
        outcome
    }
}

enum Input {
    Service(Event<Service>),
    Pool(Event<IPAddressPool>),
    Namespace(Event<Namespace>),
}

/// A kind's objects, with the buffer of a re-list in progress.
struct Mirror<K> {
    objects: BTreeMap<String, K>,
    relist: Option<BTreeMap<String, K>>,
    synced: bool,
}

impl<K: kube::Resource + Clone> Mirror<K> {
    fn new() -> Self {
        Mirror {
            objects: BTreeMap::new(),
            relist: None,
            synced: false,
        }
    }

    fn name(obj: &K) -> String {
        let meta = obj.meta();
        match &meta.namespace {
            Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or("")),
            None => meta.name.clone().unwrap_or_default(),
        }
    }

    /// Applies one event; returns the keys whose object changed or disappeared.
    fn apply(&mut self, ev: Event<K>) -> Vec<String> {
        match ev {
            Event::Apply(o) => {
                let k = Self::name(&o);
                self.objects.insert(k.clone(), o);
                vec![k]
            }
            Event::Delete(o) => {
                let k = Self::name(&o);
                self.objects.remove(&k);
                vec![k]
            }
            Event::Init => {
                self.relist = Some(BTreeMap::new());
                vec![]
            }
            Event::InitApply(o) => {
                if let Some(buf) = self.relist.as_mut() {
                    buf.insert(Self::name(&o), o);
                }
                vec![]
            }
            Event::InitDone => {
                self.synced = true;
                let new = self.relist.take().unwrap_or_default();
                let old = std::mem::replace(&mut self.objects, new);
                // Everything that existed before or exists now may have changed while unwatched.
                old.into_keys()
                    .chain(self.objects.keys().cloned())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            }
        }
    }
}

impl Mirror<IPAddressPool> {
    /// Applies one event; returns whether a pool appeared, went, was re-created (possibly
    /// unseen, between two lists) or changed its spec, as opposed to only its status.
    fn apply_changes_identity(&mut self, ev: Event<IPAddressPool>) -> bool {
        let identity = |p: &IPAddressPool| {
            (
                p.metadata.uid.clone(),
                p.metadata.creation_timestamp.clone(),
                p.spec.clone(),
            )
        };
        let before: BTreeMap<String, _> = self
            .objects
            .iter()
            .map(|(k, p)| (k.clone(), identity(p)))
            .collect();
        self.apply(ev)
            .iter()
            .any(|k| before.get(k) != self.objects.get(k).map(identity).as_ref())
    }
}

/// Drops what the controller never reads from a cached Service's metadata: managed fields and
/// kubectl's last-applied copy of the whole object are most of its size (kube-rs' advice for
/// reflectors). Of spec and status only the fields read are deserialised at all
/// ([`ferrolb_daemon::service::CachedService`]).
fn slim(svc: &mut Service) {
    svc.metadata.managed_fields = None;
    svc.metadata.finalizers = None;
    svc.metadata.owner_references = None;
    svc.metadata.generate_name = None;
    if let Some(a) = svc.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Settings of the loop.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `spec.loadBalancerClass` handled besides unset.
    pub class: Option<String>,
}

struct State {
    settings: Settings,
    writer: Writer,
    metrics: Arc<Metrics>,
    services: Mirror<Service>,
    pools: Mirror<IPAddressPool>,
    namespaces: Mirror<Namespace>,
    allocator: Allocator,
    valid: Pools,
    invalid: BTreeMap<String, Vec<FieldError>>,
    report: PoolsReport,
    restored: bool,
    dirty: BTreeMap<String, Instant>,
    pools_dirty: bool,
    last_event: BTreeMap<String, String>,
    /// Services whose allocation failed; retried whenever an address is freed.
    waiting: BTreeSet<String>,
    /// An address was freed in this pass.
    freed: bool,
    /// Addresses a Service released while its status still shows them, held in the allocator
    /// under [`ServiceKey::releasing`] so that no other Service gets one before the releasing
    /// Service's status stops showing it (after its write lands, or when the watch shows a status
    /// without them). Without this a Service could get an address in the same pass, or while the
    /// releasing Service's write is refused, and two statuses would show it.
    releasing: BTreeMap<String, Vec<IpAddr>>,
}

/// Runs until the watches end (they do not, short of the process ending).
pub async fn run(
    client: Client,
    writer: Writer,
    metrics: Arc<Metrics>,
    settings: Settings,
) -> anyhow::Result<()> {
    let cfg = watcher::Config::default();
    let services = watcher::watcher(Api::<Service>::all(client.clone()), cfg.clone())
        .default_backoff()
        .modify(slim)
        .map(|r| r.map(Input::Service));
    let pools = watcher::watcher(Api::<IPAddressPool>::all(client.clone()), cfg.clone())
        .default_backoff()
        .map(|r| r.map(Input::Pool));
    let namespaces = watcher::watcher(Api::<Namespace>::all(client), cfg)
        .default_backoff()
        .map(|r| r.map(Input::Namespace));
    let mut inputs = stream::select_all([services.boxed(), pools.boxed(), namespaces.boxed()]);
    let mut st = State {
        settings,
        writer,
        metrics,
        services: Mirror::new(),
        pools: Mirror::new(),
        namespaces: Mirror::new(),
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
        releasing: BTreeMap::new(),
    };
    loop {
        // With work left over (a failed write, a Service waiting for a free address), wake up
        // after RETRY even if no watch event comes: the watcher has no periodic resync.
        let pending = !st.dirty.is_empty() || st.pools_dirty;
        let first = if pending {
            match tokio::time::timeout(RETRY, inputs.next()).await {
                Ok(Some(x)) => Some(x),
                Ok(None) => break,
                // Timed out: a retry pass with no new input.
                Err(_) => None,
            }
        } else {
            match inputs.next().await {
                Some(x) => Some(x),
                None => break,
            }
        };
        let mut batch: Vec<_> = first.into_iter().collect();
        while batch.len() < BATCH {
            match inputs.next().now_or_never() {
                Some(Some(x)) => batch.push(x),
                _ => break,
            }
        }
        for input in batch {
            match input {
                Ok(i) => st.input(i),
                Err(e) => warn!(error = %e, "watch failed; retrying with backoff"),
            }
        }
        if !(st.services.synced && st.pools.synced && st.namespaces.synced) {
            continue;
        }
        if !st.restored {
            st.restore();
        }
        st.reconcile().await;
    }
    anyhow::bail!("watch streams ended")
}

impl State {
    fn input(&mut self, input: Input) {
        let now = Instant::now();
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
                    self.load_pools();
                }
            }
            Input::Namespace(ev) => {
                let changed = self.namespaces.apply(ev);
                for svc in self.services.objects.keys() {
                    if changed
                        .iter()
                        .any(|ns| svc.split('/').next() == Some(ns.as_str()))
                    {
                        self.dirty.entry(svc.clone()).or_insert(now);
                    }
                }
            }
        }
    }

    /// Re-reads every pool into the allocator; every Service may be affected.
    fn load_pools(&mut self) {
        let ranks = ranks(self.pools.objects.values());
        // A pool that becomes invalid keeps serving with its last valid spec: a typo in one
        // range must not take every address of the pool away from its Services.
        let mut previous = std::mem::take(&mut self.valid);
        self.invalid.clear();
        for (name, obj) in &self.pools.objects {
            match parse_pool(obj, ranks.get(name).copied().unwrap_or(u64::MAX)) {
                Ok(p) => {
                    self.valid.insert(p.spec.name().clone(), p);
                }
                Err(errors) => {
                    let kept = previous.remove(&PoolName::new(name.clone()));
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
        let now = Instant::now();
        for k in self.services.objects.keys() {
            self.dirty.entry(k.clone()).or_insert(now);
        }
        self.pools_dirty = true;
    }

    /// Rebuilds the allocator from Service status, before anything new is allocated: oldest
    /// Services first, so that if two statuses ever claimed one address, the older keeps it.
    fn restore(&mut self) {
        self.load_pools();
        let mut order: Vec<(&Service, String)> = self
            .services
            .objects
            .iter()
            .filter(|(_, s)| s.is_ours(self.settings.class.as_deref()))
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
                .restore(model::key(svc), ips.clone(), model::sharing(svc))
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
        self.metrics.set_ready(true);
    }

    /// Decides every dirty Service (the allocator is synchronous and owned here), then performs
    /// the resulting writes concurrently: decisions in order, I/O in parallel.
    async fn reconcile(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        let actions: Vec<Action> = dirty
            .into_iter()
            .filter_map(|(k, since)| self.decide(&k, since))
            .collect();
        let writer = self.writer.clone();
        let mut done = stream::iter(actions)
            .map(|a| {
                let writer = writer.clone();
                async move {
                    let outcome = a.execute(&writer).await;
                    (a.key, a.since, outcome)
                }
            })
            .buffer_unordered(WRITES_IN_FLIGHT);
        while let Some((key, since, outcome)) = done.next().await {
            match outcome {
                Outcome::NoWrite => {}
                Outcome::Written(took) => {
                    self.pools_dirty = true;
                    self.metrics.allocation_seconds.observe(took.as_secs_f64());
                    // The status written shows none of what the Service released.
                    self.free_released(&key);
                }
                Outcome::Failed => {
                    self.pools_dirty = true;
                    // Retried at the next pass: the next watch event, or after RETRY.
                    self.dirty.insert(key.clone(), since);
                    self.last_event.remove(&key);
                }
            }
        }
        if std::mem::take(&mut self.freed) {
            let now = Instant::now();
            for k in &self.waiting {
                self.dirty.entry(k.clone()).or_insert(now);
            }
        }
        if self.pools_dirty {
            self.pools_dirty = false;
            self.write_pools().await;
        }
    }

    /// What to do for one Service: allocator changes happen here, API writes are returned.
    fn decide(&mut self, k: &str, since: Instant) -> Option<Action> {
        let Some(svc) = self.services.objects.get(k).cloned() else {
            let released = self.allocator.release(&service_key(k));
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
        let key = model::key(&svc);
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        // A Service can be seen before its (new) Namespace: deciding without the Namespace's
        // labels could pick a pool its selectors exclude and move the address a moment later.
        // Wait for the Namespace (retried every RETRY).
        let Some(namespace) = self.namespaces.objects.get(&ns) else {
            debug!(service = %k, namespace = %ns, "Namespace not seen yet; waiting");
            self.dirty.insert(k.to_string(), since);
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
        let mut action = Action {
            key: k.to_string(),
            reference: svc.object_ref(&()),
            pool_now: model::status_pool(&svc).map(str::to_string),
            since,
            write: None,
            event: None,
        };
        match model::want(
            &svc,
            self.settings.class.as_deref(),
            &self.valid,
            &ns_labels,
        ) {
            Want::Nothing => {
                self.waiting.remove(k);
                let released = self.allocator.release(&key);
                self.hold_released(k, &key, &released, sharing);
                // After a failed clearing write the retry releases nothing: name what the status
                // still shows.
                let gone = if released.is_empty() && self.releasing.contains_key(k) {
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
                if model::status_pool(&svc).is_some() {
                    action.write = Some((Vec::new(), None));
                }
            }
            Want::Invalid(msg) => {
                self.metrics
                    .errors
                    .get_or_create(&ReasonLabels {
                        reason: "InvalidRequest".into(),
                    })
                    .inc();
                action.event = self.event(k, EventType::Warning, "AllocationFailed", msg);
            }
            Want::Allocate(req) => match self.assign(k, &key, &req) {
                Ok(alloc) => {
                    self.waiting.remove(k);
                    if let Some(moved) = &alloc.moved {
                        let released: Vec<IpAddr> = moved.released.iter().map(|r| r.0).collect();
                        self.hold_released(k, &key, &released, sharing);
                    }
                    // What the allocator now stores for the Service, as `alloc` says.
                    let (ips, pool) = self.held(&key);
                    if shown == ips && model::status_pool(&svc) == pool.as_deref() {
                        self.free_released_unless_shown(k, &shown);
                        return None;
                    }
                    let pool = pool.unwrap_or_default();
                    let gone = missing_from(&shown, &ips);
                    let note = if let Some(moved) = &alloc.moved {
                        Some((
                            EventType::Warning,
                            "IPReassigned",
                            format!("now {} from pool {pool}: {moved}", list(&ips)),
                        ))
                    } else if !gone.is_empty() && self.releasing.contains_key(k) {
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
                    action.event = note.and_then(|(t, r, n)| self.event(k, t, r, n));
                    action.write = Some((ips, Some(pool)));
                }
                Err(e) => {
                    self.metrics
                        .errors
                        .get_or_create(&ReasonLabels {
                            reason: reason_of(&e).into(),
                        })
                        .inc();
                    // An address that left every pool leaves the Service when nothing can replace
                    // it; anything else it holds stays (a RequireDualStack Service keeps its other
                    // family and waits for the missing one).
                    debug!(service = %k, error = %e, "allocation failed; waiting for a free address");
                    self.waiting.insert(k.to_string());
                    let released = self.allocator.release_stranded(&key);
                    self.hold_released(k, &key, &released, sharing);
                    let (ips, pool) = self.held(&key);
                    // What the status shows beyond what the allocator gives this Service: just
                    // released, released by a pass whose write failed, or lost at restore. The
                    // status must stop showing it before another Service may get it.
                    let gone = missing_from(&shown, &ips);
                    if shown != ips || model::status_pool(&svc) != pool.as_deref() {
                        action.write = Some((ips.clone(), pool));
                    }
                    // Without a hold the cached status is only older than a write that landed.
                    let releasing = !released.is_empty() || self.releasing.contains_key(k);
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
            self.free_released_unless_shown(k, &shown);
        }
        (action.write.is_some() || action.event.is_some()).then_some(action)
    }

    /// Holds `ips`, just released by Service `k`, from every other Service until `k`'s status
    /// stops showing them (see `releasing`).
    /// `sharing` is the Service's consent to share as the allocator stored it with them.
    fn hold_released(
        &mut self,
        k: &str,
        key: &ServiceKey,
        ips: &[IpAddr],
        sharing: Option<Sharing>,
    ) {
        for &ip in ips {
            let holder = ServiceKey::releasing(key, ip);
            match self.allocator.restore(holder, vec![ip], sharing.clone()) {
                Ok(_) => self.releasing.entry(k.to_string()).or_default().push(ip),
                // Not expected: the Services holding it shared it with this one.
                Err(e) => {
                    warn!(service = %k, %ip, error = %e, "could not hold a released address until the status stops showing it")
                }
            }
        }
    }

    /// [`Allocator::assign`] for Service `k`, to which what it is releasing itself is free: it
    /// may get back the very address its status still shows. What it does not get back stays
    /// held. (`decide` is synchronous: no other Service comes in between.)
    fn assign(
        &mut self,
        k: &str,
        key: &ServiceKey,
        req: &ferrolb_allocator::Request,
    ) -> Result<ferrolb_allocator::Allocation, ferrolb_allocator::AllocError> {
        let Some(own) = self.releasing.remove(k) else {
            return self.allocator.assign(req);
        };
        let own: Vec<(IpAddr, Option<Sharing>)> = own
            .into_iter()
            .map(|ip| {
                let holder = ServiceKey::releasing(key, ip);
                let sharing = self
                    .allocator
                    .allocation(&holder)
                    .and_then(|a| a.sharing.clone());
                self.allocator.release(&holder);
                (ip, sharing)
            })
            .collect();
        let result = self.allocator.assign(req);
        let now: Vec<IpAddr> = self
            .allocator
            .allocation(key)
            .map(|a| a.ips().collect())
            .unwrap_or_default();
        for (ip, sharing) in own {
            if !now.contains(&ip) {
                self.hold_released(k, key, &[ip], sharing);
            }
        }
        result
    }

    /// Frees what Service `k` released: its status no longer shows it.
    fn free_released(&mut self, k: &str) {
        let Some(held) = self.releasing.remove(k) else {
            return;
        };
        let key = service_key(k);
        for ip in held {
            self.allocator.release(&ServiceKey::releasing(&key, ip));
            debug!(service = %k, %ip, "released address free: the status no longer shows it");
        }
        self.pools_dirty = true;
        self.freed = true;
    }

    /// [`State::free_released`] when the status `shown` has none of what `k` released.
    fn free_released_unless_shown(&mut self, k: &str, shown: &[IpAddr]) {
        let still_shown = self
            .releasing
            .get(k)
            .is_some_and(|held| held.iter().any(|ip| shown.contains(ip)));
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
        k: &str,
        type_: EventType,
        reason: &'static str,
        note: String,
    ) -> Option<(EventType, &'static str, String)> {
        let line = format!("{reason}: {note}");
        if self.last_event.get(k) == Some(&line) {
            return None;
        }
        match type_ {
            EventType::Warning => warn!(service = %k, reason, %note, "event"),
            EventType::Normal => debug!(service = %k, reason, %note, "event"),
        }
        self.last_event.insert(k.to_string(), line);
        Some((type_, reason, note))
    }

    async fn write_pools(&mut self) {
        let objects: Vec<IPAddressPool> = self.pools.objects.values().cloned().collect();
        for obj in objects {
            let name = obj.metadata.name.clone().unwrap_or_default();
            let status = self.pool_status(&obj);
            if obj.status.as_ref() == Some(&status) {
                continue;
            }
            if let Err(e) = self.writer.pool(&name, &status).await {
                warn!(pool = %name, error = %e, "writing the pool status failed; will retry");
                self.pools_dirty = true;
            }
        }
    }

    fn pool_status(&self, obj: &IPAddressPool) -> IPAddressPoolStatus {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let old = obj.status.clone().unwrap_or_default();
        let generation = obj.metadata.generation;
        let mut status = IPAddressPoolStatus {
            observed_generation: generation,
            ..Default::default()
        };
        let mut conds = Vec::new();
        let pool = PoolName::new(name.clone());
        let errors = self.invalid.get(&name);
        if let Some(errors) = errors
            && !self.valid.contains_key(&pool)
        {
            conds.push(("Invalid", true, "InvalidSpec", join(errors)));
            conds.push((
                "Ready",
                false,
                "InvalidSpec",
                "the pool is not used until its spec is fixed".to_string(),
            ));
        } else {
            let stats = self.allocator.pool_stats(&pool).unwrap_or_default();
            for (family, fs) in [(Family::V4, stats.v4), (Family::V6, stats.v6)] {
                let labels = PoolLabels {
                    pool: name.clone(),
                    family: family.to_string(),
                };
                self.metrics
                    .pool_size
                    .get_or_create(&labels)
                    .set((fs.assigned + fs.available) as f64);
                self.metrics
                    .pool_in_use
                    .get_or_create(&labels)
                    .set(fs.assigned as f64);
            }
            status.assigned_ipv4 = Some(stats.v4.assigned.to_string());
            status.available_ipv4 = Some(stats.v4.available.to_string());
            status.assigned_ipv6 = Some(stats.v6.assigned.to_string());
            status.available_ipv6 = Some(stats.v6.available.to_string());
            status.assigned = Some(sum(stats.v4.assigned, stats.v6.assigned));
            status.available = Some(sum(stats.v4.available, stats.v6.available));
            match errors {
                Some(errors) => conds.push((
                    "Invalid",
                    true,
                    "InvalidSpec",
                    format!(
                        "{}; the pool keeps serving with its last valid spec until this is fixed",
                        join(errors)
                    ),
                )),
                None => conds.push(("Invalid", false, "Valid", "the spec is valid".into())),
            }
            match self.report.overlaps.get(&pool) {
                Some(o) if !o.is_empty() => {
                    let what = o
                        .iter()
                        .map(|x| {
                            format!(
                                "{} (held by older pool {})",
                                range_text(x.range.start(), x.range.end()),
                                x.older
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    conds.push((
                        "Overlapping",
                        true,
                        "OverlapsOlderPool",
                        format!("not handed out from this pool: {what}"),
                    ));
                }
                _ => conds.push((
                    "Overlapping",
                    false,
                    "NoOverlap",
                    "no address is also in an older pool".into(),
                )),
            }
            let total_free = stats.v4.available + stats.v6.available;
            let total = total_free + stats.v4.assigned + stats.v6.assigned;
            if total == 0 {
                conds.push((
                    "Exhausted",
                    true,
                    "NoAddresses",
                    "every address of this pool belongs to older pools".into(),
                ));
                conds.push((
                    "Ready",
                    false,
                    "NoAddresses",
                    "the pool has no address of its own".into(),
                ));
            } else {
                let out: Vec<String> = [(Family::V4, stats.v4), (Family::V6, stats.v6)]
                    .into_iter()
                    .filter(|(_, f)| f.available == 0 && f.assigned > 0)
                    .map(|(fam, _)| fam.to_string())
                    .collect();
                if out.is_empty() {
                    conds.push((
                        "Exhausted",
                        false,
                        "AddressesFree",
                        "addresses are free".into(),
                    ));
                } else {
                    conds.push((
                        "Exhausted",
                        true,
                        "NoFreeAddresses",
                        format!("no free {} address left", out.join(" or ")),
                    ));
                }
                conds.push((
                    "Ready",
                    true,
                    "Ready",
                    "the pool hands out addresses".into(),
                ));
            }
        }
        status.conditions = conds
            .into_iter()
            .map(|(type_, on, reason, message)| {
                condition(&old.conditions, type_, on, reason, message, generation)
            })
            .collect();
        status
    }
}

/// A condition, keeping the previous transition time when its status did not change.
fn condition(
    old: &[Condition],
    type_: &str,
    on: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    let status = if on { "True" } else { "False" };
    let last_transition_time = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(Timestamp::now()));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

fn sum(a: u128, b: u128) -> String {
    match a.checked_add(b) {
        Some(s) => s.to_string(),
        None => format!("{a} IPv4 + {b} IPv6"),
    }
}

fn range_text(a: IpAddr, b: IpAddr) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The allocator's key of the Service `k` (`namespace/name`).
fn service_key(k: &str) -> ServiceKey {
    let (ns, name) = k.split_once('/').unwrap_or(("", k));
    ServiceKey::new(ns, name)
}

/// The addresses of `shown` that are not in `held`.
fn missing_from(shown: &[IpAddr], held: &[IpAddr]) -> Vec<IpAddr> {
    shown
        .iter()
        .filter(|ip| !held.contains(ip))
        .copied()
        .collect()
}

fn list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn reason_of(e: &ferrolb_allocator::AllocError) -> &'static str {
    use ferrolb_allocator::AllocError as E;
    match e {
        E::NoSuchPool(_) => "NoSuchPool",
        E::RequestedOutsidePools(_)
        | E::RequestedAvoidedAddress { .. }
        | E::RequestedPoolNotAllowed { .. } => "RequestedOutsidePools",
        E::RequestedInUse { .. } | E::SharingConflict { .. } => "AddressInUse",
        E::Exhausted { .. } => "Exhausted",
        E::NoPoolForFamily { .. }
        | E::RequireDualStackUnsatisfiable { .. }
        | E::RequestedFamilyNotInPolicy { .. } => "NoPoolForFamily",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrolb_crds::IPAddressPoolSpec;

    fn pool(uid: &str, created: &str, addrs: &str) -> IPAddressPool {
        let mut p = IPAddressPool::new(
            "p",
            IPAddressPoolSpec {
                addresses: vec![addrs.into()],
                auto_assign: true,
                avoid_buggy_ips: false,
                service_allocation: None,
            },
        );
        p.metadata.uid = Some(uid.into());
        p.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        p
    }

    fn relist(m: &mut Mirror<IPAddressPool>, p: IPAddressPool) -> bool {
        m.apply_changes_identity(Event::Init);
        m.apply_changes_identity(Event::InitApply(p));
        m.apply_changes_identity(Event::InitDone)
    }

    #[test]
    fn pool_changes_that_matter_to_allocation() {
        let mut m = Mirror::new();
        let a = pool("1", "2026-01-01T00:00:00Z", "192.0.2.0/28");
        assert!(relist(&mut m, a.clone()), "a pool appears");
        // Only the status changed (the controller's own write coming back): nothing to do.
        let mut with_status = a.clone();
        with_status.status = Some(Default::default());
        assert!(!m.apply_changes_identity(Event::Apply(with_status)));
        // The same list again: nothing to do.
        assert!(!relist(&mut m, a.clone()));
        // Deleted and re-created with the same spec while the watch was down: it is younger now,
        // which decides who keeps overlapping addresses.
        assert!(relist(
            &mut m,
            pool("2", "2026-01-02T00:00:00Z", "192.0.2.0/28")
        ));
        // A spec change.
        assert!(m.apply_changes_identity(Event::Apply(pool(
            "2",
            "2026-01-02T00:00:00Z",
            "192.0.2.0/27"
        ))));
        assert!(m.apply_changes_identity(Event::Delete(a)));
    }
}
