//! The controller's loop: feeds the watch events to the decision core ([`crate::state`]) and
//! carries out the writes it returns.
//!
//! Allocation is one global, ordered decision (an address given to one Service constrains all the
//! others), so a single task owns the core and consumes the watch streams of Services, pools
//! and Namespaces directly, instead of a per-object `kube::runtime::Controller` behind a lock. This
//! also gives the two guarantees that matter most:
//! - restart safety: nothing is allocated until every Service and pool has been listed and every
//!   address in a Service status has been restored into the allocator;
//! - deletions are seen: a Service missing from a re-list, or deleted, frees its address.
//!
//! The loop is level-triggered: every change marks Services dirty, and reconciling a Service
//! compares what the allocator decides with what its status shows, writing only differences.
//! The decisions are made in order, the writes concurrently.

use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use ferrolb_crds::{IPAddressPool, IPAddressPoolStatus};
use ferrolb_daemon::service::CachedService as Service;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ObjectReference};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::WatchStreamExt;
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Api, Client};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::metrics::{Metrics, PoolLabels, ReasonLabels};
use crate::state::{
    self, Action, ClusterInfo, ConditionWrite, Core, Input, Outcome, StatusWrite, Watch, list,
};
use crate::status::Writer;

/// Most watch events handled before the dirty Services are reconciled.
const BATCH: usize = 2000;
/// How soon left-over work (failed writes, Services waiting for an address) is retried.
const RETRY: Duration = Duration::from_secs(1);
/// Service writes in flight at once (each is two requests, plus an Event).
const WRITES_IN_FLIGHT: usize = 32;

/// The API writes the core's decisions need: the seam between the loop and the API server (the
/// real one is [`Writer`]; MetalLB's controller reaches the API through such a three-method
/// interface too).
pub(crate) trait Writes {
    /// Why a write failed.
    type Error: Display;

    /// Sets the Service's `status.loadBalancer.ingress` and pool annotation as `write` says (if
    /// given), and its `ferrolb.io/Allocated` condition as `condition` says (if given), in one
    /// request.
    async fn service(
        &self,
        reference: &ObjectReference,
        write: Option<&StatusWrite>,
        condition: Option<&ConditionWrite>,
    ) -> Result<(), Self::Error>;

    /// Publishes an Event about the Service; best effort (a failure is logged by the writer).
    async fn event(&self, reference: &ObjectReference, event: &state::Event);

    /// Replaces the status of the pool `name`.
    async fn pool_status(
        &self,
        name: &str,
        status: &IPAddressPoolStatus,
    ) -> Result<(), Self::Error>;
}

impl Writes for Writer {
    type Error = kube::Error;

    async fn service(
        &self,
        reference: &ObjectReference,
        write: Option<&StatusWrite>,
        condition: Option<&ConditionWrite>,
    ) -> Result<(), kube::Error> {
        let ns = reference.namespace.as_deref().unwrap_or("default");
        let name = reference.name.as_deref().unwrap_or("");
        Writer::service(self, ns, name, write, condition).await
    }

    async fn event(&self, reference: &ObjectReference, event: &state::Event) {
        let type_ = match event.type_ {
            state::EventType::Normal => EventType::Normal,
            state::EventType::Warning => EventType::Warning,
        };
        Writer::event(self, reference, type_, event.reason, event.note.clone()).await;
    }

    async fn pool_status(
        &self,
        name: &str,
        status: &IPAddressPoolStatus,
    ) -> Result<(), kube::Error> {
        Writer::pool(self, name, status).await
    }
}

/// What executing an [`Action`] did, with the allocation latency of a write that landed.
enum Done {
    NoWrite,
    Written(Duration),
    Failed,
}

/// Writes, then (only if the write succeeded) publishes the Event. A write of the condition
/// alone counts as no write (the addresses the status shows did not change) unless it fails.
async fn execute(action: &Action, writer: &impl Writes) -> Done {
    let mut done = Done::NoWrite;
    let (write, condition) = (action.write.as_ref(), action.condition.as_ref());
    if (write.is_some() || condition.is_some())
        && let Err(e) = writer.service(&action.reference, write, condition).await
    {
        warn!(service = %action.key, error = %e, "writing the Service status failed; will retry");
        return Done::Failed;
    }
    if let Some(write) = write {
        // Measured before the Event: its request is not part of the allocation.
        done = Done::Written(action.since.elapsed());
        info!(service = %action.key, ips = %list(&write.ips), pool = write.pool.as_deref().unwrap_or(""), "status written");
    }
    if let Some(event) = &action.event {
        writer.event(&action.reference, event).await;
    }
    done
}

impl<K> From<watcher::Event<K>> for Watch<K> {
    fn from(ev: watcher::Event<K>) -> Watch<K> {
        match ev {
            watcher::Event::Apply(o) => Watch::Apply(o),
            watcher::Event::Delete(o) => Watch::Delete(o),
            watcher::Event::Init => Watch::Init,
            watcher::Event::InitApply(o) => Watch::InitApply(o),
            watcher::Event::InitDone => Watch::InitDone,
        }
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

/// One watch as a stream of inputs inside its own span (`watch`, with the `kind` watched): what
/// kube's watcher logs while it is polled, and its failures, carry the kind. A failed watch is
/// logged here and retried by the watcher with backoff; the loop sees only inputs.
fn watch_span(
    kind: &'static str,
    mut watch: BoxStream<'static, Result<Input, watcher::Error>>,
) -> BoxStream<'static, Input> {
    let span = info_span!("watch", kind);
    stream::poll_fn(move |cx| {
        let _in_span = span.enter();
        loop {
            match watch.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(input))) => return Poll::Ready(Some(input)),
                Poll::Ready(Some(Err(e))) => {
                    warn!(error = %e, "watch failed; retrying with backoff")
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .boxed()
}

/// Settings of the loop.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `spec.loadBalancerClass` handled besides unset.
    pub class: Option<String>,
    /// Control-plane endpoint addresses given by flag (besides those cluster-info names).
    pub control_plane: Vec<IpAddr>,
}

/// The namespace and name of the ConfigMap kubeadm publishes the cluster's endpoint in (readable
/// by anyone in a kubeadm cluster; the controller's Role names it).
const CLUSTER_INFO: (&str, &str) = ("kube-public", "cluster-info");

/// The control-plane addresses the cluster-info ConfigMap names: its `kubeconfig` key's
/// `clusters[*].cluster.server` URLs whose host is an IP literal. A DNS name, or a kubeconfig
/// that does not parse, names none (logged at debug and warn).
pub(crate) fn cluster_info(cm: &ConfigMap) -> ClusterInfo {
    let mut info = ClusterInfo::default();
    let Some(text) = cm.data.as_ref().and_then(|d| d.get("kubeconfig")) else {
        debug!("kube-public/cluster-info has no kubeconfig key");
        return info;
    };
    let config = match kube::config::Kubeconfig::from_yaml(text) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "the kubeconfig in kube-public/cluster-info does not parse; no control-plane address learnt from it");
            return info;
        }
    };
    for server in config
        .clusters
        .iter()
        .filter_map(|c| c.cluster.as_ref()?.server.as_deref())
    {
        match server_ip(server) {
            Some(ip) if !info.addresses.contains(&ip) => info.addresses.push(ip),
            Some(_) => {}
            None => debug!(%server, "cluster-info server is not an IP literal; ignored"),
        }
    }
    info
}

/// The host of `server` (`https://192.0.2.60:6443`, `https://[2001:db8::1]:6443`) if it is an IP
/// literal.
fn server_ip(server: &str) -> Option<IpAddr> {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6
            .split_once(']')?
            .0
            .parse::<Ipv6Addr>()
            .ok()
            .map(IpAddr::V6);
    }
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The cluster-info watch as inputs. Optional: until its first list succeeds, a failure (a 403
/// where the Role is missing) is logged once at warn and counts as a list without the
/// ConfigMap, so the controller does not wait for it; the watcher keeps retrying with backoff
/// (logged at debug) and a later list replaces that.
fn cluster_info_watch(client: Client) -> BoxStream<'static, Input> {
    let (ns, name) = CLUSTER_INFO;
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut listed = false;
    let mut warned = false;
    let span = info_span!("watch", kind = "ConfigMap", namespace = ns, name);
    watcher::watcher(Api::<ConfigMap>::namespaced(client, ns), cfg)
        .default_backoff()
        .filter_map(move |r| {
            let _in_span = span.enter();
            let out = match r {
                Ok(ev) => {
                    if matches!(ev, watcher::Event::InitDone) {
                        listed = true;
                    }
                    let ev: Watch<ConfigMap> = ev.into();
                    Some(Input::ClusterInfo(match ev {
                        Watch::Apply(cm) => Watch::Apply(cluster_info(&cm)),
                        Watch::Delete(cm) => Watch::Delete(cluster_info(&cm)),
                        Watch::InitApply(cm) => Watch::InitApply(cluster_info(&cm)),
                        Watch::Init => Watch::Init,
                        Watch::InitDone => Watch::InitDone,
                    }))
                }
                Err(e) if !listed => {
                    listed = true;
                    warned = true;
                    warn!(error = %e, "cannot read kube-public/cluster-info; the control-plane endpoint is known only from --control-plane-address (retrying in the background)");
                    Some(Input::ClusterInfo(Watch::InitDone))
                }
                Err(e) if !warned => {
                    warned = true;
                    warn!(error = %e, "watching kube-public/cluster-info failed; retrying with backoff");
                    None
                }
                Err(e) => {
                    debug!(error = %e, "watching kube-public/cluster-info failed; retrying with backoff");
                    None
                }
            };
            futures::future::ready(out)
        })
        .boxed()
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
        .map(|r| r.map(|ev| Input::Service(ev.into())));
    let pools = watcher::watcher(Api::<IPAddressPool>::all(client.clone()), cfg.clone())
        .default_backoff()
        .map(|r| r.map(|ev| Input::Pool(ev.into())));
    let namespaces = watcher::watcher(Api::<Namespace>::all(client.clone()), cfg)
        .default_backoff()
        .map(|r| r.map(|ev| Input::Namespace(ev.into())));
    let mut inputs = stream::select_all([
        watch_span("Service", services.boxed()),
        watch_span("IPAddressPool", pools.boxed()),
        watch_span("Namespace", namespaces.boxed()),
        cluster_info_watch(client),
    ]);
    let mut core = Core::new(settings.class).with_control_plane(settings.control_plane);
    let mut pass: u64 = 0;
    loop {
        // With work left over (a failed write, a Service waiting for a free address), wake up
        // after RETRY even if no watch event comes: the watcher has no periodic resync.
        let first = if core.pending() {
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
        pass += 1;
        // One span per pass: what the core logs while it takes the batch in and decides, and
        // what the writes log, carry the pass number.
        let span = info_span!("reconcile", pass, inputs = batch.len());
        let ready = span.in_scope(|| {
            for input in batch {
                core.input(input, Instant::now());
            }
            if !core.synced() {
                return false;
            }
            if !core.restored() {
                core.restore(Instant::now());
                metrics.set_ready(true);
            }
            true
        });
        if ready {
            reconcile(&mut core, &writer, &metrics)
                .instrument(span)
                .await;
        }
    }
    anyhow::bail!("watch streams ended")
}

/// One pass: decides every dirty Service, then performs the resulting writes concurrently
/// (decisions in order, I/O in parallel), reporting each outcome back, then the pools' status.
async fn reconcile(core: &mut Core, writer: &impl Writes, metrics: &Metrics) {
    let decisions = core.decide(Timestamp::now());
    for reason in decisions.errors {
        metrics
            .errors
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }
    let mut done = stream::iter(decisions.actions)
        .map(|a| async move {
            let done = execute(&a, writer).await;
            (a.key, a.since, done)
        })
        .buffer_unordered(WRITES_IN_FLIGHT);
    while let Some((key, since, done)) = done.next().await {
        let outcome = match done {
            Done::NoWrite => Outcome::NoWrite,
            Done::Written(took) => {
                metrics.allocation_seconds.observe(took.as_secs_f64());
                Outcome::Written
            }
            Done::Failed => Outcome::Failed,
        };
        core.service_done(&key, since, outcome);
    }
    let Some(pools) = core.finish(Instant::now(), Timestamp::now()) else {
        return;
    };
    for g in pools.gauges {
        let labels = PoolLabels {
            pool: g.pool,
            family: g.family.to_string(),
        };
        metrics.pool_size.get_or_create(&labels).set(g.size as f64);
        metrics
            .pool_in_use
            .get_or_create(&labels)
            .set(g.in_use as f64);
    }
    for (name, status) in pools.writes {
        if let Err(e) = writer.pool_status(&name, &status).await {
            warn!(pool = %name, error = %e, "writing the pool status failed; will retry");
            core.pool_failed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrolb_crds::IPAddressPoolSpec;
    use kube::Resource;
    use serde_json::json;
    use std::sync::Mutex;

    /// A writer that records what it is asked to do and refuses the first `refuse` Service
    /// writes.
    #[derive(Debug, Default)]
    struct Fake {
        refuse: Mutex<usize>,
        log: Mutex<Vec<String>>,
    }

    impl Fake {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.log.lock().unwrap())
        }
    }

    impl Writes for Fake {
        type Error = String;

        async fn service(
            &self,
            reference: &ObjectReference,
            write: Option<&StatusWrite>,
            condition: Option<&ConditionWrite>,
        ) -> Result<(), String> {
            let name = reference.name.clone().unwrap_or_default();
            let mut log = self.log.lock().unwrap();
            if let Some(write) = write {
                log.push(format!(
                    "service {name} [{}] {:?} {}",
                    list(&write.ips),
                    write.pool,
                    write.annotation_changed
                ));
            }
            match condition {
                Some(ConditionWrite::Set(c)) => log.push(format!(
                    "condition {name} {} {} {}: {}",
                    c.type_, c.status, c.reason, c.message
                )),
                Some(ConditionWrite::Remove) => log.push(format!("condition {name} removed")),
                None => {}
            }
            drop(log);
            let mut refuse = self.refuse.lock().unwrap();
            if *refuse > 0 {
                *refuse -= 1;
                return Err("refused".into());
            }
            Ok(())
        }

        async fn event(&self, reference: &ObjectReference, event: &state::Event) {
            let name = reference.name.clone().unwrap_or_default();
            self.log.lock().unwrap().push(format!(
                "event {name} {:?} {}: {}",
                event.type_, event.reason, event.note
            ));
        }

        async fn pool_status(
            &self,
            name: &str,
            status: &IPAddressPoolStatus,
        ) -> Result<(), String> {
            self.log.lock().unwrap().push(format!(
                "pool {name} assigned {}",
                status.assigned.clone().unwrap_or_default()
            ));
            Ok(())
        }
    }

    /// The runtime's half: a Service write that fails publishes no Event and is retried at the
    /// next pass, whose Event follows the write that lands; the pool status follows the
    /// Services'.
    #[tokio::test]
    async fn events_follow_the_writes_that_land_and_failures_are_retried() {
        let mut core = Core::new(None);
        let now = Instant::now();
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "a", "namespace": "ns"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}
        }))
        .unwrap();
        let mut pool = IPAddressPool::new(
            "p",
            IPAddressPoolSpec {
                addresses: vec!["192.0.2.0/30".into()],
                auto_assign: true,
                avoid_buggy_ips: false,
                service_allocation: None,
            },
        );
        pool.metadata.uid = Some("uid-p".into());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "ns"}})).unwrap();
        for input in [
            Input::Service(Watch::Init),
            Input::Service(Watch::InitApply(svc)),
            Input::Service(Watch::InitDone),
            Input::Pool(Watch::Init),
            Input::Pool(Watch::InitApply(pool)),
            Input::Pool(Watch::InitDone),
            Input::Namespace(Watch::Init),
            Input::Namespace(Watch::InitApply(ns)),
            Input::Namespace(Watch::InitDone),
            Input::ClusterInfo(Watch::InitDone),
        ] {
            core.input(input, now);
        }
        core.restore(now);
        let metrics = Metrics::new();
        let writer = Fake {
            refuse: Mutex::new(1),
            ..Fake::default()
        };
        reconcile(&mut core, &writer, &metrics).await;
        assert_eq!(
            writer.take(),
            [
                "service a [192.0.2.0] Some(\"p\") true",
                "condition a ferrolb.io/Allocated True IPAllocated: 192.0.2.0 from pool p",
                "pool p assigned 1",
            ]
        );
        assert!(core.pending());
        reconcile(&mut core, &writer, &metrics).await;
        assert_eq!(
            writer.take(),
            [
                "service a [192.0.2.0] Some(\"p\") true",
                "condition a ferrolb.io/Allocated True IPAllocated: 192.0.2.0 from pool p",
                "event a Normal IPAllocated: assigned 192.0.2.0 from pool p",
                "pool p assigned 1",
            ]
        );
    }

    /// cluster-info's kubeconfig names the control plane by IP literal (v4 or bracketed v6); a
    /// DNS name, a missing key or a kubeconfig that does not parse names nothing.
    #[test]
    fn cluster_info_names_ip_literal_servers_only() {
        let cm = |kubeconfig: &str| -> ConfigMap {
            serde_json::from_value(json!({
                "metadata": {"name": "cluster-info", "namespace": "kube-public"},
                "data": {"kubeconfig": kubeconfig}
            }))
            .unwrap()
        };
        let kubeconfig = "apiVersion: v1\nkind: Config\nclusters:\n\
            - name: ''\n  cluster:\n    certificate-authority-data: AAAA\n    server: https://192.0.2.60:6443\n\
            - name: six\n  cluster:\n    server: https://[2001:db8::60]:6443\n\
            - name: dns\n  cluster:\n    server: https://cp.example.com:6443\n\
            - name: again\n  cluster:\n    server: https://192.0.2.60\n";
        assert_eq!(
            cluster_info(&cm(kubeconfig)).addresses,
            [
                "192.0.2.60".parse::<IpAddr>().unwrap(),
                "2001:db8::60".parse().unwrap()
            ]
        );
        assert_eq!(
            cluster_info(&cm("clusters: [")).addresses,
            Vec::<IpAddr>::new()
        );
        let empty: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "cluster-info"}})).unwrap();
        assert_eq!(cluster_info(&empty).addresses, Vec::<IpAddr>::new());
        assert_eq!(
            server_ip("https://10.0.0.1"),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(server_ip("https://kubernetes.default.svc:443/"), None);
    }

    /// The core builds Event references without kube: they must be what kube builds.
    #[test]
    fn the_core_refers_to_services_as_kube_does() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "7",
                         "generation": 3, "labels": {"a": "b"}},
            "spec": {"type": "LoadBalancer"}
        }))
        .unwrap();
        assert_eq!(state::object_ref(&svc), svc.object_ref(&()));
    }
}
