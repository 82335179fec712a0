//! The speaker's loop: inputs (API changes, membership changes, the clock, a signal) go to the
//! node state machine (`ferrolb_speaker_core::node`), which owns the rules (failure hold, settle,
//! fencing and its deadline, fail-back, pause, handover, placement); its actions are carried out
//! through the [`Wire`] dataplane, and the status writer reports what runs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ferrolb_config::conditions;
use ferrolb_crds::{L2Advertisement, L2NodeStatus};
use ferrolb_speaker_core::interfaces::LinkInfo;
use ferrolb_speaker_core::node::{self, Config, Notice};
use ferrolb_speaker_core::schedule::Timing;
use ferrolb_speaker_core::{NoOwner, Options, Placement, drive, hash};
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::runtime::events::EventType;
use tokio::sync::Notify;
use tokio::sync::mpsc::unbounded_channel;
use tracing::{info, warn};

use crate::dataplane::{Wire, links};
use crate::gossip::{Change, Gossip};
use crate::metrics::{AddressLabels, InterfaceLabels, Metrics};
use crate::report::{Wanted, Writer, announced_message, problems_summary};
use crate::watch::{self, Stores};
use crate::{Cli, key};
use ferrolb_daemon::Shutdown;

/// Period of the housekeeping pass: retries failed writes, re-reads interfaces, re-joins peers.
const TICK: Duration = Duration::from_secs(2);
/// How long API changes are gathered, at least, before they are acted on. A burst of changes
/// (Services created by the hundred, each echoed by the controller's and the speakers' own status
/// writes) then costs one election per window instead of one per change: 1,000 Services gained
/// took 4,911 elections of up to 51 ms each without it (BENCHMARKS.md). The window grows to the
/// length of the last election, so that under sustained churn elections take at most about half
/// of the loop's time. It delays an API change by that much; membership changes (failover) are
/// never delayed.
const GATHER: Duration = Duration::from_millis(20);

/// The key the reporter for cluster-wide facts is elected on (any fixed value works; all speakers
/// must use the same one).
const REPORTER_KEY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

struct Speaker<'a> {
    cli: &'a Cli,
    me: String,
    stores: Stores,
    writer: Writer,
    metrics: Arc<Metrics>,
    /// The node state machine: membership, fencing, settle, handover, placement plan.
    node: ferrolb_speaker_core::Node,
    /// Carries the node's actions out.
    wire: Wire,
    /// Asks the joiner to join the peers now.
    rejoin: Arc<Notify>,
    problems: watch::Problems,
    links: Vec<LinkInfo>,
    /// API changes not yet handed to the node.
    world_stale: bool,
    /// The last report wanted a write: the next tick checks again.
    report_pending: bool,
    /// When the last election ran, until the heap freed after it is handed back.
    busy_at: Option<Instant>,
    /// API changes seen and not yet acted on: when the gathering window closes.
    api_due: Option<Instant>,
    /// How long the last election took.
    last_pass: Duration,
}

/// What woke the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    /// An API or membership change.
    Input,
    /// An announcement is due.
    Deadline,
    /// The housekeeping tick.
    Tick,
}

/// The InternalIP addresses of a Node, in the order the kubelet lists them.
fn internal_ips(node: &Node) -> impl Iterator<Item = IpAddr> + '_ {
    node.status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
}

/// Gossip addresses of every other node, in the family of ours.
fn peers(stores: &Stores, me: &str, mine: IpAddr, port: u16) -> Vec<SocketAddr> {
    stores
        .nodes
        .state()
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(me))
        .filter_map(|n| internal_ips(n).find(|ip| ip.is_ipv4() == mine.is_ipv4()))
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

pub async fn run(
    cli: &Cli,
    client: Client,
    metrics: Arc<Metrics>,
    shutdown: &mut Shutdown,
) -> anyhow::Result<()> {
    // Without raw sockets the speaker can answer for nothing: exit with the fix in the message
    // (the pod crash-loops where the operator looks) rather than run and report Ready.
    ferrolb_net::check_raw_sockets()?;
    let changed = Arc::new(Notify::new());
    let stores = watch::start(&client, changed.clone());
    let setup = async {
        let key = match &cli.gossip_key_file {
            Some(path) => key::from_file(path)?,
            // The API server may not be up yet (a node booting with the cluster): keep trying.
            None => loop {
                match key::from_cluster(&client, &cli.namespace, &cli.gossip_secret).await {
                    Ok(k) => break k,
                    Err(e) => {
                        warn!(error = %format!("{e:#}"), "cannot read the gossip key Secret; retrying in 2 s");
                        tokio::time::sleep(TICK).await;
                    }
                }
            },
        };
        stores
            .ready()
            .await
            .context("waiting for the first lists")?;
        let ip = match cli.gossip_address {
            Some(ip) => ip,
            None => stores
                .nodes
                .state()
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(cli.node_name.as_str()))
                .and_then(|n| internal_ips(n).next())
                .with_context(|| {
                    format!(
                        "Node {} has no InternalIP; pass --gossip-address (NODE_IP)",
                        cli.node_name
                    )
                })?,
        };
        anyhow::Ok((key, ip))
    };
    let (key, ip) = tokio::select! {
        r = setup => r?,
        signal = shutdown.wait() => {
            info!(%signal, "stopping before start-up finished");
            return Ok(());
        }
    };
    let (tx, mut rx) = unbounded_channel();
    let timing = crate::gossip::Timing {
        probe_interval: Duration::from_millis(cli.gossip_probe_interval_ms),
        probe_timeout: Duration::from_millis(cli.gossip_probe_timeout_ms),
        suspicion_mult: cli.gossip_suspicion_mult,
        gossip_interval: Duration::from_millis(cli.gossip_interval_ms),
    };
    let gossip = Arc::new(
        Gossip::start(
            &cli.node_name,
            SocketAddr::new(ip, cli.gossip_port),
            key,
            timing,
            tx,
        )
        .await?,
    );
    // Keep joined: every TICK, join the peers that are not live members (after a partition heals,
    // or when a node appears). Runs beside the loop so a slow join never delays a failover. After
    // a pause the loop asks for a join at once: the others declared this speaker dead meanwhile,
    // and a join's push-pull tells them it lives within a round trip, so the interim owners'
    // fail-back window and this speaker's settle start together.
    let rejoin = Arc::new(Notify::new());
    let joiner = {
        let gossip = gossip.clone();
        let stores = stores.clone();
        let rejoin = rejoin.clone();
        let (me, port) = (cli.node_name.clone(), cli.gossip_port);
        tokio::spawn(async move {
            loop {
                let peers = peers(&stores, &me, ip, port);
                gossip.join(&peers).await;
                tokio::select! {
                    _ = tokio::time::sleep(TICK) => {}
                    _ = rejoin.notified() => {}
                }
            }
        })
    };
    let config = Config {
        failure_hold: Duration::from_millis(cli.failure_hold_ms),
        detection_spread: node::detection_spread(timing.probe_interval),
        settle: Duration::from_millis(cli.settle_ms),
        handover_grace: Duration::from_millis(cli.handover_grace_ms),
        options: Options {
            exclude_cordoned: cli.exclude_cordoned,
            exclude_not_ready: cli.exclude_not_ready,
            sticky: cli.sticky,
        },
        excludes: cli.exclude_interfaces.clone(),
        announce: Timing {
            refresh: Duration::from_millis(cli.announce_refresh_ms),
            ..Timing::default()
        },
        ..Config::default()
    };
    let mut sp = Speaker {
        cli,
        me: cli.node_name.clone(),
        writer: Writer::new(client.clone(), &cli.node_name),
        stores,
        metrics,
        node: ferrolb_speaker_core::Node::new(&cli.node_name, config),
        wire: Wire::default(),
        rejoin,
        problems: watch::Problems::default(),
        links: Vec::new(),
        world_stale: true,
        report_pending: true,
        busy_at: None,
        api_due: None,
        last_pass: Duration::ZERO,
    };
    sp.metrics.set_ready(true);
    info!(%ip, port = cli.gossip_port, "speaker running");
    let mut tick = tokio::time::interval(TICK);
    let signal = loop {
        let wake_by = sp.node.idle(Instant::now());
        let deadline =
            tokio::time::Instant::from_std(sp.api_due.map_or(wake_by, |t| t.min(wake_by)));
        let mut wake = tokio::select! {
            _ = changed.notified() => {
                let window = GATHER.max(sp.last_pass);
                sp.api_due.get_or_insert_with(|| Instant::now() + window);
                Wake::Deadline
            }
            Some(c) = rx.recv() => {
                sp.member(c, Instant::now());
                Wake::Input
            }
            _ = tokio::time::sleep_until(deadline) => Wake::Deadline,
            _ = tick.tick() => Wake::Tick,
            signal = shutdown.wait() => break signal,
        };
        let now = Instant::now();
        while let Ok(c) = rx.try_recv() {
            sp.member(c, now);
            wake = Wake::Input;
        }
        if sp.api_due.is_some_and(|t| now >= t) {
            wake = Wake::Input;
        }
        if wake == Wake::Input {
            // This election covers every change seen so far.
            if sp.api_due.take().is_some() {
                sp.world_stale = true;
            }
        }
        sp.pass(now, wake);
    };
    // Graceful handover: leave the membership first (the others elect successors and announce),
    // keep answering for the grace period so no request finds nobody, then stop.
    info!(%signal, "leaving: handing addresses over");
    joiner.abort();
    tokio::time::timeout(Duration::from_secs(2), gossip.leave(Duration::from_secs(1)))
        .await
        .ok();
    sp.node.leave(Instant::now());
    while !sp.node.stopped() {
        let now = Instant::now();
        sp.node.tick(now);
        let changes = drive(&mut sp.node, &mut sp.wire, now);
        sp.log(&changes);
        let next = sp.node.idle(now);
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
    }
    let now = Instant::now();
    sp.node.tick(now);
    drive(&mut sp.node, &mut sp.wire, now);
    info!("stopped answering; bye");
    Ok(())
}

impl Speaker<'_> {
    /// Hands a membership change to the node.
    fn member(&mut self, c: Change, now: Instant) {
        match &c {
            Change::Alive(n) => self.node.alive(n, now),
            Change::Failed(n) => {
                info!(node = %n, "member reported failed: fencing counts it now, its addresses move after the takeover wait");
                self.node.failed(n, now);
            }
            Change::Leaving(n) => self.node.left(n, now),
        }
    }

    /// One pass. An input (API or membership change) hands the node what changed; the
    /// housekeeping tick re-reads the interfaces and retries the reports; every pass ticks the
    /// node and carries out its actions (announcements due, elections, fencing, settles).
    fn pass(&mut self, now: Instant, wake: Wake) {
        // A new view of the API (a pool created or deleted) can change what the reports say
        // (an advertisement naming a pool that does not exist) without moving any address.
        let refreshed = self.world_stale;
        if self.world_stale {
            self.world_stale = false;
            let (world, problems) =
                watch::world(&self.stores, self.cli.load_balancer_class.as_deref());
            let previous = if self.cli.sticky {
                watch::previous_owners(&self.stores)
            } else {
                BTreeMap::new()
            };
            self.node.set_world(world, previous);
            self.problems = problems;
        }
        if wake != Wake::Deadline {
            let links = links();
            if links != self.links {
                self.links = links.clone();
                self.node.set_links(links);
            }
        }
        let replanned = self.node.tick(now);
        let changes = drive(&mut self.node, &mut self.wire, now);
        self.log(&changes);
        self.placement_metrics(&changes);
        let dirty = replanned || !changes.placed.is_empty();
        if dirty {
            self.busy_at = Some(now);
        }
        // Reports are level-triggered against the cache; an idle tick re-checks them only when
        // the last pass wanted a write (it may have failed).
        if dirty || refreshed || (wake != Wake::Deadline && self.report_pending) {
            let gained: BTreeSet<IpAddr> = changes.gained.iter().copied().collect();
            self.report_pending = self.report(&gained);
            self.report_pending |= self.advertisements();
        }
        if dirty {
            self.last_pass = now.elapsed();
            self.metrics
                .pass_seconds
                .observe(self.last_pass.as_secs_f64());
        }
        if dirty || wake != Wake::Deadline {
            self.export();
        }
        // A quiet tick after elections (and the writes they started, whose echoes are
        // elections too): the bursts are over, give their freed memory back.
        if wake == Wake::Tick && self.busy_at.is_some_and(|t| now >= t + TICK) {
            self.busy_at = None;
            ferrolb_net::release_free_memory();
        }
    }

    /// Logs the node's notices and what moved.
    fn log(&self, changes: &ferrolb_speaker_core::dataplane::Changes) {
        for n in &changes.notices {
            match n {
                Notice::MemberJoined { node } => info!(%node, "member alive"),
                Notice::MemberRefuted { node } => {
                    info!(%node, "member reported failed is alive again: nothing moves");
                }
                Notice::MemberFailed { node } => warn!(%node, "member failed"),
                Notice::MemberLeft { node } => info!(%node, "member left gracefully"),
                Notice::Settling { live, known } => info!(
                    live,
                    known,
                    settle_ms = self.cli.settle_ms,
                    "quorum: answering for owned addresses once the views settle"
                ),
                Notice::QuorumLost { live, known } => warn!(
                    live,
                    known, "lost quorum: this speaker sees a minority and stops answering"
                ),
                Notice::Isolated => warn!(
                    "no other speaker has joined this one although the API lists other Ready nodes: not answering until gossip works (check the gossip port and key)"
                ),
                Notice::Paused { late } => {
                    warn!(
                        late_ms = late.as_millis(),
                        "the process did not run (paused or stopped): not answering until the views settle again"
                    );
                    self.rejoin.notify_one();
                }
                Notice::Stopped => info!("handover grace over"),
            }
        }
        for ip in &changes.gained {
            info!(%ip, ifaces = ?self.node.placement().get(ip), "gained address: announcing");
        }
        for ip in &changes.lost {
            info!(%ip, "lost address: no longer answering");
        }
    }

    /// The announced gauge follows the placement (what runs): only changed addresses are touched.
    fn placement_metrics(&self, changes: &ferrolb_speaker_core::dataplane::Changes) {
        for (ip, before, after) in &changes.placed {
            for i in before.iter().filter(|i| !after.contains(i)) {
                self.metrics.announced.remove(&AddressLabels {
                    ip: ip.to_string(),
                    interface: i.clone(),
                });
            }
            for i in after.iter().filter(|i| !before.contains(i)) {
                self.metrics
                    .announced
                    .get_or_create(&AddressLabels {
                        ip: ip.to_string(),
                        interface: i.clone(),
                    })
                    .set(1);
            }
        }
        let moved = changes.gained.len() + changes.lost.len();
        self.metrics
            .ownership_changes
            .inc_by(u64::try_from(moved).unwrap_or(u64::MAX));
    }

    /// Conditions and Events on Services; whether any write was wanted.
    fn report(&self, gained: &BTreeSet<IpAddr>) -> bool {
        let mut wrote = false;
        let (decisions, live) = (self.node.decisions(), self.node.live());
        let answering = self.node.answering();
        let placed: &Placement = self.node.placement();
        let services: BTreeMap<String, Arc<watch::CachedService>> = self
            .stores
            .services
            .state()
            .into_iter()
            .map(|s| (watch::key_of(s.as_ref()), s))
            .collect();
        for d in decisions {
            let ips: Vec<String> = d.ips.iter().map(|ip| ip.to_string()).collect();
            let ips = ips.join(", ");
            let want = match &d.owner {
                // Not answering (no quorum, settling): another speaker may hold it; say nothing.
                Ok(o) if *o == self.me && !answering => continue,
                Ok(o) if *o == self.me => {
                    let mut ifaces: Vec<String> = d
                        .ips
                        .iter()
                        .flat_map(|ip| placed.get(ip).cloned().unwrap_or_default())
                        .collect();
                    ifaces.sort();
                    ifaces.dedup();
                    if ifaces.is_empty() {
                        Wanted {
                            status: false,
                            reason: "NoInterface".into(),
                            message: format!(
                                "{} owns {ips} but has no interface for it (none named exists, or none has an address in its subnet)",
                                self.me
                            ),
                        }
                    } else {
                        Wanted {
                            status: true,
                            reason: "Announcing".into(),
                            message: announced_message(&self.me, &ifaces, &ips),
                        }
                    }
                }
                Ok(_) => continue,
                Err(why) => {
                    // One reporter per group: the hash owner among live members.
                    if !answering
                        || hash::owner(live.iter().map(String::as_str), d.key)
                            != Some(self.me.as_str())
                    {
                        continue;
                    }
                    Wanted {
                        status: false,
                        reason: reason(why).into(),
                        message: format!("{ips} is not announced: {why}"),
                    }
                }
            };
            let gained = d.ips.iter().any(|ip| gained.contains(ip));
            for key in &d.services {
                let Some(svc) = services.get(key) else {
                    continue;
                };
                if gained && want.status {
                    self.writer.event(
                        svc.as_ref(),
                        EventType::Normal,
                        "Announcing",
                        want.message.clone(),
                    );
                }
                if !Writer::up_to_date(svc, &want) {
                    wrote = true;
                    if !want.status {
                        self.writer.event(
                            svc.as_ref(),
                            EventType::Warning,
                            &want.reason,
                            want.message.clone(),
                        );
                    }
                    self.writer.condition(svc, want.clone());
                }
            }
        }
        wrote
    }

    /// This node's entry in each advertisement's status; the reporter also writes the summary.
    fn advertisements(&self) -> bool {
        let mut wrote = false;
        let (links, live, problems) = (&self.links, self.node.live(), &self.problems);
        let my_labels = self
            .stores
            .nodes
            .state()
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(self.me.as_str()))
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        let reporter =
            hash::owner(live.iter().map(String::as_str), REPORTER_KEY) == Some(self.me.as_str());
        for adv in self.stores.advertisements.state() {
            let name = adv.metadata.name.clone().unwrap_or_default();
            let invalid = problems.advertisements.get(&name);
            if reporter {
                let valid = match invalid {
                    None => Ok(()),
                    Some(errors) => Err(errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")),
                };
                let notes = problems
                    .notes
                    .get(&name)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                wrote |= self.summary(&adv, valid, notes);
            }
            if invalid.is_some() {
                continue;
            }
            let Ok(parsed) = ferrolb_config::l2::parse_advertisement(&adv) else {
                continue;
            };
            let selected = parsed.covers_node(&my_labels);
            let mut entry = L2NodeStatus {
                node: self.me.clone(),
                selected,
                ..L2NodeStatus::default()
            };
            if selected {
                for i in &parsed.interfaces {
                    if links.iter().any(|l| &l.name == i) {
                        entry.interfaces.push(i.clone());
                    } else {
                        entry.missing_interfaces.push(i.clone());
                    }
                }
            }
            let (status, reason, message) = if entry.missing_interfaces.is_empty() {
                (
                    "True",
                    "InterfacesFound",
                    "every interface named exists".to_string(),
                )
            } else {
                (
                    "False",
                    "InterfaceMissing",
                    format!(
                        "spec.interfaces: {} does not exist on node {}",
                        entry.missing_interfaces.join(", "),
                        self.me
                    ),
                )
            };
            let current = adv
                .status
                .as_ref()
                .and_then(|s| s.nodes.iter().find(|e| e.node == self.me));
            let same = current.is_some_and(|c| {
                c.selected == entry.selected
                    && c.interfaces == entry.interfaces
                    && c.missing_interfaces == entry.missing_interfaces
                    && c.conditions.iter().any(|k| {
                        k.type_ == "InterfacesReady" && k.status == status && k.reason == reason
                    })
            });
            if same {
                continue;
            }
            wrote = true;
            if status == "False" {
                warn!(advertisement = %name, %message, "advertisement names a missing interface");
                self.writer
                    .event(adv.as_ref(), EventType::Warning, reason, message.clone());
            }
            let shown = current.map(|c| c.conditions.as_slice()).unwrap_or_default();
            entry.conditions = vec![conditions::condition(
                shown,
                "InterfacesReady",
                (status == "True").into(),
                reason,
                message,
                adv.metadata.generation,
                k8s_openapi::jiff::Timestamp::now(),
            )];
            self.writer.advertisement_entry(&adv, entry);
        }
        wrote
    }

    fn summary(
        &self,
        adv: &Arc<L2Advertisement>,
        valid: Result<(), String>,
        notes: &[ferrolb_config::pool::FieldError],
    ) -> bool {
        let entries = adv
            .status
            .as_ref()
            .map(|s| s.nodes.clone())
            .unwrap_or_default();
        let count = i32::try_from(entries.len()).unwrap_or(i32::MAX);
        let problems = problems_summary(&entries, notes);
        let status = adv.status.clone().unwrap_or_default();
        let (want_status, want_msg) = match &valid {
            Ok(()) => ("True", None),
            Err(m) => ("False", Some(m.as_str())),
        };
        let cond = status.conditions.iter().find(|c| c.type_ == "Valid");
        let cond_same = cond
            .is_some_and(|c| c.status == want_status && want_msg.is_none_or(|m| c.message == m));
        if status.node_count == Some(count) && status.problems == problems && cond_same {
            return false;
        }
        if let Err(m) = &valid
            && !cond_same
        {
            warn!(advertisement = ?adv.metadata.name, error = %m, "invalid L2Advertisement is ignored");
            self.writer.event(
                adv.as_ref(),
                EventType::Warning,
                "Invalid",
                format!("ignored: {m}"),
            );
        }
        self.writer
            .advertisement_summary(adv, count, problems, valid);
        true
    }

    fn export(&self) {
        let (m, live) = (&self.metrics, self.node.live());
        m.members.set(i64::try_from(live.len()).unwrap_or(i64::MAX));
        m.known_members
            .set(i64::try_from(self.node.membership().known()).unwrap_or(i64::MAX));
        m.quorum.set(i64::from(self.node.quorum()));
        m.too_few_speakers
            .set(i64::from(!self.node.quorum_possible()));
        for (iface, c) in self.wire.counters() {
            let l = InterfaceLabels { interface: iface };
            let set = |f: &prometheus_client::metrics::family::Family<
                InterfaceLabels,
                prometheus_client::metrics::gauge::Gauge,
            >,
                       v: u64| {
                f.get_or_create(&l)
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            };
            set(&m.garp_sent, c.garp_sent);
            set(&m.na_sent, c.na_sent);
            set(&m.requests_received, c.requests_seen);
            set(&m.requests_answered, c.requests_answered);
        }
    }
}

fn reason(why: &NoOwner) -> &'static str {
    match why {
        NoOwner::UnknownPool => "UnknownPool",
        NoOwner::NotAdvertised => "NotAdvertised",
        NoOwner::NoEligibleNode => "NoEligibleNode",
        NoOwner::NoEndpoints => "NoEndpoints",
        NoOwner::NoLiveSpeaker => "NoLiveSpeaker",
    }
}
