//! `ferrolb-controller`: gives every Service of `type: LoadBalancer` an address from an
//! `IPAddressPool` and writes it to the Service status.

mod lease;
mod metrics;
mod model;
mod run;
mod state;
mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ferrolb_daemon::LogArgs;
use ferrolb_daemon::Shutdown;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tracing::{error, info};

/// ferrolb controller: assigns addresses from IPAddressPools to Services of type LoadBalancer.
///
/// Every flag can also be set through the environment variable named in its description.
#[derive(Parser, Debug)]
#[command(name = "ferrolb-controller", version, about, long_about)]
struct Cli {
    /// Also handle Services whose spec.loadBalancerClass is this value (Services without a class
    /// are always handled; Services of other classes never are).
    #[arg(long, env = "FERROLB_LOAD_BALANCER_CLASS")]
    load_balancer_class: Option<String>,

    /// An address of the control-plane endpoint (the API servers' floating VIP), never assigned
    /// to a Service: a pool that contains it gets the ControlPlaneConflict condition. Repeatable
    /// (comma-separated in the environment). Not needed where kubeadm's kube-public/cluster-info
    /// ConfigMap names the endpoint by IP address: the controller reads it.
    #[arg(
        long = "control-plane-address",
        value_name = "IP",
        env = "FERROLB_CONTROL_PLANE_ADDRESS",
        value_delimiter = ','
    )]
    control_plane_address: Vec<std::net::IpAddr>,

    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(
        long,
        env = "FERROLB_METRICS_BIND_ADDRESS",
        default_value = "0.0.0.0:7472"
    )]
    metrics_bind_address: SocketAddr,

    /// Kubeconfig file; without it, the in-cluster service account (or $KUBECONFIG, ~/.kube/config).
    #[arg(long, env = "FERROLB_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// Namespace of the leader-election Lease (the controller's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "ferrolb-system")]
    namespace: String,

    /// This replica's identity in the leader election (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// Name of the leader-election Lease.
    #[arg(long, env = "FERROLB_LEASE_NAME", default_value = "ferrolb-controller")]
    lease_name: String,

    /// Seconds a leader's lease lasts without renewal before a standby may take over.
    #[arg(long, env = "FERROLB_LEASE_DURATION", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
    lease_duration: u64,

    /// Seconds the leader keeps trying to renew before it gives up leadership (and exits).
    #[arg(long, env = "FERROLB_RENEW_DEADLINE", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    renew_deadline: u64,

    /// Seconds between lease attempts and renewals.
    #[arg(long, env = "FERROLB_RETRY_PERIOD", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=600))]
    retry_period: u64,

    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut shutdown = Shutdown::register()?;
    cli.log.init()?;
    if cli.renew_deadline >= cli.lease_duration {
        anyhow::bail!(
            "--renew-deadline ({}) must be shorter than --lease-duration ({}): otherwise two leaders could overlap",
            cli.renew_deadline,
            cli.lease_duration
        );
    }
    let identity = match cli.identity.clone() {
        Some(i) => i,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .context("no --identity / POD_NAME and the hostname is unreadable")?,
    };
    info!(version = env!("CARGO_PKG_VERSION"), %identity, "ferrolb-controller starting");

    let client = ferrolb_daemon::client(cli.kubeconfig.as_deref()).await?;

    let metrics = metrics::Metrics::new();
    let serve = ferrolb_daemon::serve(cli.metrics_bind_address, metrics.health.clone());
    let elector = lease::Elector::new(
        Api::<Lease>::namespaced(client.clone(), &cli.namespace),
        lease::LeaseConfig {
            name: cli.lease_name.clone(),
            identity: identity.clone(),
            lease_duration: Duration::from_secs(cli.lease_duration),
            renew_deadline: Duration::from_secs(cli.renew_deadline),
            retry_period: Duration::from_secs(cli.retry_period),
        },
    );
    let settings = run::Settings {
        class: cli.load_balancer_class.clone(),
        control_plane: cli.control_plane_address.clone(),
    };
    let work = async {
        // Inside `work`, so that /healthz is served while the API server is asked.
        ferrolb_daemon::require_supported_kubernetes(&client).await?;
        // Ready means healthy, not leading (issue 11): a standby whose lease reads reach the API
        // server is ready, so both replicas of the Deployment are and it becomes Available.
        // Leadership is the `ferrolb_controller_leader` gauge and the "became leader" log line.
        elector.acquire(|healthy| metrics.set_ready(healthy)).await;
        // A new leader is ready again once its watches are synced and the allocator rebuilt
        // from the Services' status (`run::run`): until then it cannot decide anything.
        metrics.set_ready(false);
        metrics.leader.set(1);
        let writer = status::Writer::new(client.clone(), &identity);
        tokio::select! {
            r = run::run(client.clone(), writer, metrics.clone(), settings) => r,
            () = elector.hold() => anyhow::bail!("lost the leader lease: stopping so that only the new leader writes"),
        }
    };
    tokio::select! {
        r = serve => r,
        r = work => {
            if let Err(e) = &r { error!(error = %e, "controller stopped"); }
            r
        }
        signal = shutdown.wait() => {
            info!(%signal, "shutting down");
            // Hand the lease over (bounded: shutting down must not hang on the API server).
            match tokio::time::timeout(Duration::from_secs(2), elector.release()).await {
                Ok(Ok(true)) => info!("leader lease released"),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => error!(error = %e, "could not release the leader lease"),
                Err(_) => error!("releasing the leader lease timed out"),
            }
            Ok(())
        }
    }
}
