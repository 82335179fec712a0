//! The control-plane speaker's Prometheus metrics (served with `/healthz` and `/readyz` by
//! `ferrolb-daemon` on `--metrics-bind-address`).

use std::sync::Arc;

use ferrolb_daemon::Health;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Everything the control-plane speaker exports.
#[derive(Debug)]
pub struct Metrics {
    /// 1 while this node is the Raft leader.
    pub leader: Gauge,
    /// The Raft term this node is in.
    pub term: Gauge,
    /// Times this node saw the leader change (to another node or to none).
    pub leader_changes: Counter,
    /// 1 while the local API server's last check was healthy.
    pub api_server_healthy: Gauge,
    /// 1 while this node holds the VIP.
    pub vip_held: Gauge,
    pub health: Arc<Health>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ferrolb_control_plane");
        let (leader, term, leader_changes) =
            (Gauge::default(), Gauge::default(), Counter::default());
        let (api_server_healthy, vip_held) = (Gauge::default(), Gauge::default());
        registry.register(
            "leader",
            "1 while this node is the Raft leader",
            leader.clone(),
        );
        registry.register("term", "The Raft term of this node", term.clone());
        registry.register(
            "leader_changes",
            "Leader changes seen by this node",
            leader_changes.clone(),
        );
        registry.register(
            "api_server_healthy",
            "1 while the local API server's last health check passed",
            api_server_healthy.clone(),
        );
        registry.register(
            "vip_held",
            "1 while this node holds the VIP",
            vip_held.clone(),
        );
        Metrics {
            leader,
            term,
            leader_changes,
            api_server_healthy,
            vip_held,
            health: Arc::new(Health::new(registry)),
        }
    }
}
