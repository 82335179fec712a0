//! The speaker's Prometheus metrics (served with `/healthz` and `/readyz` by `ferrolb-daemon`).

use std::sync::Arc;

use ferrolb_daemon::Health;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AddressLabels {
    pub ip: String,
    pub interface: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InterfaceLabels {
    pub interface: String,
}

/// Everything the speaker exports.
#[derive(Debug)]
pub struct Metrics {
    /// 1 per address and interface this node announces.
    pub announced: Family<AddressLabels, Gauge>,
    /// Frames sent and requests seen, per interface (copied from the responders' counters).
    pub garp_sent: Family<InterfaceLabels, Gauge>,
    pub na_sent: Family<InterfaceLabels, Gauge>,
    pub requests_received: Family<InterfaceLabels, Gauge>,
    pub requests_answered: Family<InterfaceLabels, Gauge>,
    /// Live members seen by gossip, this speaker included.
    pub members: Gauge,
    /// Members known (live or failed), the quorum's denominator.
    pub known_members: Gauge,
    /// 1 while this speaker sees a majority.
    pub quorum: Gauge,
    /// 1 while fewer than three speakers are known: no majority can survive a failure, so
    /// fencing is off and a partition leaves both sides answering.
    pub too_few_speakers: Gauge,
    /// Addresses gained and lost by this node.
    pub ownership_changes: Counter,
    /// Seconds per pass that re-elected: election, placement and reports (the loop is busy
    /// meanwhile).
    pub pass_seconds: Histogram,
    /// The registry and readiness behind the endpoints.
    pub health: Arc<Health>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("ferrolb_speaker");
        let m = Metrics {
            announced: Family::default(),
            garp_sent: Family::default(),
            na_sent: Family::default(),
            requests_received: Family::default(),
            requests_answered: Family::default(),
            members: Gauge::default(),
            known_members: Gauge::default(),
            quorum: Gauge::default(),
            too_few_speakers: Gauge::default(),
            ownership_changes: Counter::default(),
            // 100 µs to ~1.6 s.
            pass_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
            health: Arc::new(Health::new(Registry::default())),
        };
        registry.register(
            "announced",
            "1 for each address and interface this node announces",
            m.announced.clone(),
        );
        registry.register(
            "gratuitous_arp_sent",
            "Gratuitous ARP frames sent (both forms count)",
            m.garp_sent.clone(),
        );
        registry.register(
            "unsolicited_na_sent",
            "Unsolicited Neighbor Advertisements sent",
            m.na_sent.clone(),
        );
        registry.register(
            "requests_received",
            "ARP requests and Neighbor Solicitations received",
            m.requests_received.clone(),
        );
        registry.register(
            "requests_answered",
            "ARP requests and Neighbor Solicitations answered (for owned addresses)",
            m.requests_answered.clone(),
        );
        registry.register("members", "Live gossip members", m.members.clone());
        registry.register(
            "known_members",
            "Gossip members known, live or failed",
            m.known_members.clone(),
        );
        registry.register(
            "quorum",
            "1 while this speaker sees a majority of the members it knows",
            m.quorum.clone(),
        );
        registry.register(
            "too_few_speakers",
            "1 while fewer than three speakers are known: no majority exists, so a partition leaves both sides answering",
            m.too_few_speakers.clone(),
        );
        registry.register(
            "ownership_changes",
            "Addresses gained or lost by this node",
            m.ownership_changes.clone(),
        );
        registry.register(
            "pass_seconds",
            "Time of each pass that re-elected (one per change of the API objects, the membership or the interfaces): election, placement, reports",
            m.pass_seconds.clone(),
        );
        Arc::new(Metrics {
            health: Arc::new(Health::new(registry)),
            ..m
        })
    }

    /// Marks the process ready (`/readyz` answers 200).
    pub fn set_ready(&self, ready: bool) {
        self.health.set_ready(ready);
    }
}
