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
    let mut shutdown = Shutdown::register()?;
    cli.log.init()?;
    info!(version = env!("CARGO_PKG_VERSION"), node = %cli.node_name, "ferrolb-speaker starting");
    let signal = shutdown.wait().await;
    info!(%signal, "shutting down");
    Ok(())
}

/// SIGTERM (what the kubelet sends) and SIGINT (Ctrl-C), registered before anything else so that
/// a signal arriving during start-up is not lost.
struct Shutdown {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn register() -> anyhow::Result<Shutdown> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Shutdown {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for either signal and names the one that came.
    async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
