//! Prometheus metrics and the `/healthz`, `/readyz`, `/metrics` endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
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
    registry: Registry,
    /// Addresses in each pool and family (a float: a /64 does not fit an integer gauge).
    pub pool_size: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    pub pool_in_use: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    /// Time from a Service change to its status written.
    pub allocation_seconds: Histogram,
    pub errors: Family<ReasonLabels, Counter>,
    pub leader: Gauge,
    ready: AtomicBool,
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
            registry,
            pool_size,
            pool_in_use,
            allocation_seconds,
            errors,
            leader,
            ready: AtomicBool::new(false),
        })
    }

    /// Marks the process ready (`/readyz` answers 200).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Serves the endpoints until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(export))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}

async fn readyz(State(m): State<Arc<Metrics>>) -> (StatusCode, &'static str) {
    if m.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn export(State(m): State<Arc<Metrics>>) -> (StatusCode, String) {
    match m.encode() {
        Ok(body) => (StatusCode::OK, body),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
