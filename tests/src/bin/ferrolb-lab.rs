//! `ferrolb-lab`: the lab from the command line.
//!
//! - `up`: builds the layer-2 segment and starts the real kube-apiserver, applies `deploy/crds`,
//!   prints how to reach everything, and tears it all down on Ctrl-C or SIGTERM.
//! - `clean`: removes every lab namespace left on this machine.
//! - `backend`, `probe`: the small programs the lab runs inside its namespaces.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ferrolb_lab::netns::{self, Lab, LabConfig, Port};
use ferrolb_lab::{KubeEnv, probe};

#[derive(Parser, Debug)]
#[command(
    name = "ferrolb-lab",
    about = "ferrolb's lab: a real kube-apiserver and a layer-2 segment of network namespaces"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Bring up the lab with the real API server and keep it until Ctrl-C.
    Up {
        /// Number of node namespaces.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Only the network: no API server.
        #[arg(long)]
        no_api: bool,
    },
    /// Benchmark the controller on the real API server: create SERVICES Services and measure the
    /// time until each has an address.
    BenchController {
        #[arg(long, default_value_t = 1000)]
        services: usize,
        /// Creations per second; without it, as fast as 32 concurrent requests go.
        #[arg(long)]
        rate: Option<u32>,
        /// Run no controller: measure only the API server accepting the creations.
        #[arg(long)]
        no_controller: bool,
    },
    /// Remove every lab namespace and run directory on this machine (also those of live runs).
    Clean,
    /// Answer every TCP connection on [::]:PORT with NAME (runs inside a node namespace).
    Backend {
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = netns::BACKEND_PORT)]
        port: u16,
    },
    /// Send COUNT TCP requests to TARGET and print each outcome as a JSON line.
    Probe {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(probe::MAX_PROBES)))]
        count: u32,
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Up { nodes, no_api } => up(nodes, !no_api),
        Command::BenchController {
            services,
            rate,
            no_controller,
        } => {
            let f = ferrolb_lab::bench::run(services, rate, !no_controller)?;
            if no_controller {
                println!(
                    "API server alone: {} Services created in {:.1} s",
                    f.services, f.create_seconds
                );
                return Ok(());
            }
            let rate = f.rate.map_or("max".to_string(), |r| format!("{r}/s"));
            println!(
                "controller: {} Services created at {rate} in {:.1} s; all assigned {:.1} s after the first creation; creation->address p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; controller RSS {} KiB (peak {} KiB)",
                f.services,
                f.create_seconds,
                f.all_assigned_seconds,
                f.p50_ms,
                f.p99_ms,
                f.max_ms,
                f.controller_rss_kib,
                f.controller_peak_rss_kib
            );
            Ok(())
        }
        Command::Clean => {
            for ns in netns::sweep_all() {
                println!("removed {ns}");
            }
            Ok(())
        }
        Command::Backend { name, port } => probe::backend(&name, port),
        Command::Probe {
            target,
            count,
            interval_ms,
            timeout_ms,
        } => {
            let spec = probe::ProbeSpec {
                target,
                count,
                interval: Duration::from_millis(interval_ms),
                timeout: Duration::from_millis(timeout_ms),
            };
            probe::run(&spec, &mut std::io::stdout().lock())
        }
    }
}

fn up(nodes: usize, api: bool) -> anyhow::Result<()> {
    let lab = Lab::new(LabConfig {
        nodes,
        backends: true,
    })?;
    println!("lab {} is up: {} nodes", lab.prefix(), lab.nodes());
    if !api {
        print_namespaces(&lab);
        wait_for_signal()?;
        return Ok(());
    }
    let env = KubeEnv::start(&lab)?;
    let root = ferrolb_lab::workspace_root();
    println!("==> kubectl apply -k deploy/");
    print!("{}", ferrolb_lab::daemons::install(&env)?);
    println!(
        "==> ferrolb-controller starts (as service account ferrolb-system/ferrolb-controller, inside the lab)"
    );
    let controller = ferrolb_lab::daemons::start_controller(&lab, &env, &Default::default())?;
    println!("==> kubectl apply -f deploy/samples/pool.yaml -f deploy/samples/service.yaml");
    print!(
        "{}",
        env.kubectl(&[
            "apply",
            "-f",
            &root.join("deploy/samples/pool.yaml").to_string_lossy(),
            "-f",
            &root.join("deploy/samples/service.yaml").to_string_lossy()
        ])?
    );
    ferrolb_lab::daemons::wait_ingress(&env, "default", "web", 1, Duration::from_secs(60))?;
    println!("==> kubectl get service web; kubectl get ipaddresspools");
    print!("{}", env.kubectl(&["get", "service", "web"])?);
    print!("{}", env.kubectl(&["get", "ipaddresspools"])?);
    println!("==> kubectl get events --field-selector involvedObject.name=web");
    print!(
        "{}",
        env.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web"
        ])?
    );
    println!();
    println!(
        "kube-apiserver {} (inside the lab: https://{}:{})",
        env.local_url(),
        netns::API_V4,
        ferrolb_lab::kube_env::API_PORT
    );
    println!();
    println!("  export KUBECONFIG={}", env.kubeconfig().display());
    println!("  kubectl get services,ipaddresspools");
    println!("controller log: {}", controller.log_path().display());
    println!();
    print_namespaces(&lab);
    wait_for_signal()?;
    println!("tearing down");
    drop(controller);
    drop(env);
    drop(lab);
    Ok(())
}

fn print_namespaces(lab: &Lab) {
    println!("namespaces (ip netns exec NAME …):");
    for port in lab.ports() {
        println!(
            "  {:<28} {:<15} {:<14} {}",
            lab.netns(port),
            port.v4(),
            port.v6(),
            port.mac()
        );
    }
    println!("  {:<28} br0 (the switch)", lab.switch_ns());
    println!();
    let c = lab.netns(Port::Client);
    println!(
        "try:  ip netns exec {c} arping -c 2 -I eth0 {}",
        Port::Node(1).v4()
    );
    println!("      ip netns exec {c} ndisc6 {} eth0", Port::Node(1).v6());
    println!("lab logs and data: {}", lab.dir().display());
    println!("Ctrl-C (or SIGTERM) tears everything down.");
}

fn wait_for_signal() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    })
}
