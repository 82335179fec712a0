//! `ferrolb-speaker`: runs on every node, agrees with the other speakers on one owner per address
//! and announces the addresses this node owns on the layer-2 segment.
//!
//! `ferrolb-speaker control-plane …` runs the control-plane VIP instead (see `control_plane`).

mod control_plane;
mod dataplane;
mod gossip;
mod key;
mod metrics;
mod report;
mod run;
mod watch;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;
use ferrolb_daemon::LogArgs;
use ferrolb_daemon::Shutdown;
use tracing::{error, info};

/// ferrolb speaker: announces LoadBalancer addresses owned by this node with ARP and NDP.
///
/// Every flag can also be set through the environment variable named in its description.
#[derive(Parser, Debug)]
#[command(
    name = "ferrolb-speaker",
    version,
    about,
    long_about,
    after_help = "Other modes:\n  ferrolb-speaker control-plane --help            the control-plane VIP (Raft, static pod)\n  ferrolb-speaker control-plane status --help     what the control-plane speaker on this node sees\n  ferrolb-speaker manifest control-plane --help   print that static pod's manifest"
)]
pub struct Cli {
    /// Name of the Node object this speaker runs on. In the DaemonSet it comes from the downward
    /// API (`spec.nodeName`).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,

    /// Kubeconfig file; without it, the in-cluster service account (or $KUBECONFIG, ~/.kube/config).
    #[arg(long, env = "FERROLB_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// Namespace of the gossip key Secret (the speaker's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "ferrolb-system")]
    namespace: String,

    /// Also announce Services whose spec.loadBalancerClass is this value.
    #[arg(long, env = "FERROLB_LOAD_BALANCER_CLASS")]
    load_balancer_class: Option<String>,

    /// Address for gossip between speakers (the node's address, `status.hostIP` in the DaemonSet).
    /// Without it, the Node's first InternalIP.
    #[arg(long, env = "NODE_IP")]
    gossip_address: Option<IpAddr>,

    /// UDP and TCP port for gossip between speakers.
    #[arg(long, env = "FERROLB_GOSSIP_PORT", default_value_t = 7946)]
    gossip_port: u16,

    /// Secret (in --namespace) holding the 32-byte gossip encryption key under `key`; created with
    /// a random key when missing.
    #[arg(
        long,
        env = "FERROLB_GOSSIP_SECRET",
        default_value = "ferrolb-memberlist"
    )]
    gossip_secret: String,

    /// File with the gossip key as 64 hexadecimal digits, instead of the Secret (for control-plane
    /// static pods, which may start before the API server); a second line holds the secondary key
    /// (decrypts only: for a rotation, like the Secret's `secondaryKey`).
    #[arg(long, env = "FERROLB_GOSSIP_KEY_FILE")]
    gossip_key_file: Option<PathBuf>,

    /// Milliseconds between failure-detector probes of one member.
    #[arg(long, env = "FERROLB_GOSSIP_PROBE_INTERVAL_MS", default_value_t = 80, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    gossip_probe_interval_ms: u64,

    /// Milliseconds to wait for a probe's ack before asking others to probe indirectly.
    #[arg(long, env = "FERROLB_GOSSIP_PROBE_TIMEOUT_MS", default_value_t = 40, value_parser = clap::value_parser!(u64).range(5..=60_000))]
    gossip_probe_timeout_ms: u64,

    /// Suspicion time, in probe intervals (scaled by log10 of the member count), before a
    /// suspected member is declared dead.
    #[arg(long, env = "FERROLB_GOSSIP_SUSPICION_MULT", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
    gossip_suspicion_mult: u32,

    /// Milliseconds between gossip rounds.
    #[arg(long, env = "FERROLB_GOSSIP_INTERVAL_MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    gossip_interval_ms: u64,

    /// Milliseconds a member reported failed must stay failed before its addresses move (a healthy
    /// member falsely reported dead refutes it within this time; see the gossip module).
    #[arg(long, env = "FERROLB_FAILURE_HOLD_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    failure_hold_ms: u64,

    /// Milliseconds a speaker waits after starting or regaining quorum before it answers for
    /// anything: its membership and API views catch up first (it holds no address meanwhile).
    #[arg(long, env = "FERROLB_SETTLE_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    settle_ms: u64,

    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(
        long,
        env = "FERROLB_METRICS_BIND_ADDRESS",
        default_value = "0.0.0.0:7473"
    )]
    metrics_bind_address: SocketAddr,

    /// Interfaces never chosen by subnet (comma-separated; a trailing `*` matches any suffix).
    /// Interfaces named in an L2Advertisement are used regardless.
    #[arg(long, env = "FERROLB_EXCLUDE_INTERFACES", value_delimiter = ',',
          default_values_t = ferrolb_speaker_core::interfaces::DEFAULT_EXCLUDES.iter().map(|s| s.to_string()))]
    exclude_interfaces: Vec<String>,

    /// Milliseconds between refresh announcements of an owned address (0: only the burst).
    #[arg(long, env = "FERROLB_ANNOUNCE_REFRESH_MS", default_value_t = 30_000)]
    announce_refresh_ms: u64,

    /// Cordoned nodes do not announce.
    #[arg(long, env = "FERROLB_EXCLUDE_CORDONED")]
    exclude_cordoned: bool,

    /// Nodes whose Ready condition is not True do not announce.
    #[arg(long, env = "FERROLB_EXCLUDE_NOT_READY")]
    exclude_not_ready: bool,

    /// Keep an address on its current node while that node stays live and eligible, even when a
    /// returning node hashes higher (no second break of long-lived connections).
    #[arg(long, env = "FERROLB_STICKY")]
    sticky: bool,

    /// Milliseconds a stopping speaker keeps answering after it left the membership, so that its
    /// successor announces first.
    #[arg(long, env = "FERROLB_HANDOVER_GRACE_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=30_000))]
    handover_grace_ms: u64,

    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "control-plane") {
        if argv.get(2).is_some_and(|a| a == "status") {
            return control_plane::status::main(argv);
        }
        return control_plane::main(argv).await;
    }
    if argv.get(1).is_some_and(|a| a == "manifest")
        && argv.get(2).is_some_and(|a| a == "control-plane")
    {
        return control_plane::manifest::main(argv);
    }
    let cli = Cli::parse();
    let mut shutdown = Shutdown::register()?;
    cli.log.init()?;
    if cli.gossip_probe_timeout_ms >= cli.gossip_probe_interval_ms {
        anyhow::bail!(
            "--gossip-probe-timeout-ms ({}) must be shorter than --gossip-probe-interval-ms ({})",
            cli.gossip_probe_timeout_ms,
            cli.gossip_probe_interval_ms
        );
    }
    info!(version = env!("CARGO_PKG_VERSION"), node = %cli.node_name, "ferrolb-speaker starting");

    let client = ferrolb_daemon::client(cli.kubeconfig.as_deref()).await?;
    let metrics = metrics::Metrics::new();
    let serve = ferrolb_daemon::serve(cli.metrics_bind_address, metrics.health.clone());
    let work = async {
        // Only here, at start-up: once running, the speaker never stops announcing over the API
        // server. (The control-plane mode makes no check: it must run before the API server
        // exists, and reads no custom resources.) Beside `serve`, so /healthz answers meanwhile.
        tokio::select! {
            r = ferrolb_daemon::require_supported_kubernetes(&client) => r?,
            signal = shutdown.wait() => {
                info!(%signal, "shutting down");
                return Ok(());
            }
        }
        run::run(&cli, client, metrics.clone(), &mut shutdown).await
    };
    let result = tokio::select! {
        r = serve => r,
        r = work => r,
    };
    if let Err(e) = &result {
        error!(error = %e, "speaker stopped");
    }
    result
}
