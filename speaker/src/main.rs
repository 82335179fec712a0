//! `ferrolb-speaker`: runs on every node, agrees with the other speakers on one owner per address
//! and announces the addresses this node owns on the layer-2 segment.

use clap::Parser;
use ferrolb_config::LogArgs;
use tracing::info;

/// ferrolb speaker: announces LoadBalancer addresses owned by this node with ARP and NDP.
///
/// Every flag can also be set through the environment variable named in its description.
#[derive(Parser, Debug)]
#[command(name = "ferrolb-speaker", version, about, long_about)]
struct Cli {
    /// Name of the Node object this speaker runs on. In the DaemonSet it comes from the downward
    /// API (`spec.nodeName`).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,

    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.log.init()?;
    info!(version = env!("CARGO_PKG_VERSION"), node = %cli.node_name, "ferrolb-speaker starting");
    let signal = shutdown_signal().await?;
    info!(%signal, "shutting down");
    Ok(())
}

/// Waits for SIGTERM (what the kubelet sends) or SIGINT (Ctrl-C) and names the one that came.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
