//! The controller's Prometheus metrics (served with `/healthz` and `/readyz` by `ferrolb-daemon`).

use std::sync::Arc;

use ferrolb_daemon::Health;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
    pub family: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Everything the controller exports.
#[derive(Debug)]
pub struct Metrics {
    /// Addresses in each pool and family (a float: a /64 does not fit an integer gauge).
    pub pool_size: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    pub pool_in_use: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    /// Time from a Service change to its status written.
    pub allocation_seconds: Histogram,
    pub errors: Family<ReasonLabels, Counter>,
    pub leader: Gauge,
    /// The registry and readiness behind the endpoints.
    pub health: Arc<Health>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("ferrolb_controller");
        let pool_size = Family::<PoolLabels, Gauge<f64, AtomicU64>>::default();
        let pool_in_use = Family::<PoolLabels, Gauge<f64, AtomicU64>>::default();
        // 1 ms .. ~4 s: allocation latency targets are tens of milliseconds.
        let allocation_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 13),
        );
        let errors = Family::<ReasonLabels, Counter>::default();
        let leader = Gauge::default();
        registry.register(
            "pool_addresses",
            "Addresses in a pool, per family",
            pool_size.clone(),
        );
        registry.register(
            "pool_addresses_in_use",
            "Addresses of a pool assigned to Services, per family",
            pool_in_use.clone(),
        );
        registry.register(
            "allocation_seconds",
            "Time from a Service change to its address being written",
            allocation_seconds.clone(),
        );
        registry.register(
            "allocation_errors",
            "Allocations refused, per reason",
            errors.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        Arc::new(Metrics {
            health: Arc::new(Health::new(registry)),
            pool_size,
            pool_in_use,
            allocation_seconds,
            errors,
            leader,
        })
    }

    /// Marks the process ready (`/readyz` answers 200): healthy, as a leader whose watches are
    /// synced or as a standby that reaches the API server. Leadership is [`Metrics::leader`].
    pub fn set_ready(&self, ready: bool) {
        self.health.set_ready(ready);
    }
}
