//! `ferrolb-controller`: gives every Service of `type: LoadBalancer` an address from an
//! `IPAddressPool` and writes it to the Service status.

use clap::Parser;
use ferrolb_config::LogArgs;
use tracing::info;

/// ferrolb controller: assigns addresses from IPAddressPools to Services of type LoadBalancer.
///
/// Every flag can also be set through the environment variable named in its description.
#[derive(Parser, Debug)]
#[command(name = "ferrolb-controller", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.log.init()?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        "ferrolb-controller starting"
    );
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
