//! `ferrolb-lab`: the lab from the command line.
//!
//! - `up`: builds the layer-2 segment and starts the real kube-apiserver, applies `deploy/crds`,
//!   prints how to reach everything, and tears it all down on Ctrl-C or SIGTERM.
//! - `demo`: the README's demo on the cluster lab: real kubelets run ferrolb's images from
//!   `deploy/` as shipped, a sample application gets a VIP, its node dies, the probe loop measures
//!   the outage; Ctrl-C tears it all down.
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
    /// The demo: a real cluster (kubelets, containerd, kube-proxy) in the lab, ferrolb installed
    /// with `kubectl apply -k deploy/`, a sample application behind a VIP, a node death measured
    /// by the probe loop. Keeps the cluster until Ctrl-C.
    Demo {
        /// Number of nodes (at most 4).
        #[arg(long, default_value_t = 3)]
        nodes: usize,
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
        #[arg(long, conflicts_with = "backlog")]
        no_controller: bool,
        /// Create the Services first, then start the controller: measure the time from its start
        /// until every Service has an address.
        #[arg(long)]
        backlog: bool,
    },
    /// Benchmark failover: TRIALS node deaths and TRIALS speaker kills on a 3-node cluster, then a
    /// rolling restart; prints the outage percentiles and the requests lost.
    BenchFailover {
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// Rolling restarts of every speaker, each measured on its own.
        #[arg(long, default_value_t = 5)]
        restarts: usize,
        /// The probe loop's period and timeout: the outage's resolution.
        #[arg(long, default_value_t = 20)]
        probe_interval_ms: u32,
        #[arg(long, default_value_t = 100)]
        probe_timeout_ms: u32,
        /// Extra speaker flags, e.g. `--speaker-arg=--sticky`.
        #[arg(long = "speaker-arg", allow_hyphen_values = true)]
        speaker_args: Vec<String>,
    },
    /// Benchmark failover on the cluster lab: TRIALS node deaths with ferrolb installed from its
    /// images; prints the outage percentiles and each ferrolb process's resident memory.
    BenchClusterFailover {
        #[arg(long, default_value_t = 10)]
        trials: usize,
    },
    /// Benchmark the control-plane VIP: TRIALS of each fault (leader node death, its API server
    /// killed, its API server hung) on three nodes each running a real kube-apiserver; prints the
    /// client's outage and the ARP overlap percentiles, and each speaker's RSS and idle CPU.
    BenchControlPlane {
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// Seconds of idle before the trials, over which CPU is measured.
        #[arg(long, default_value_t = 60)]
        idle_seconds: u64,
    },
    /// Benchmark an idle speaker announcing ADDRESSES addresses: resident memory and CPU.
    BenchSpeakerIdle {
        #[arg(long, default_value_t = 1000)]
        addresses: usize,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
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
    /// Relay every TCP connection on LISTEN to TO (runs inside a node namespace: the node's
    /// "local API server" of the control-plane tests, backed by the lab's real one).
    Forward {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        to: SocketAddr,
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
        Command::Demo { nodes } => demo(nodes),
        Command::BenchControlPlane {
            trials,
            idle_seconds,
        } => {
            use ferrolb_lab::bench_control_plane::{FaultFigures, run};
            let f = run(trials, idle_seconds)?;
            for s in &f.speakers {
                println!(
                    "control-plane speaker on node-{}: RSS {:.1} MiB, idle CPU {:.1} millicores over {idle_seconds} s",
                    s.node,
                    s.rss_kib as f64 / 1024.0,
                    s.idle_millicores
                );
            }
            for x in &f.faults {
                let p = |v: &[u128], q| FaultFigures::percentile(v, q);
                println!(
                    "{}, {} trials: outage p50 {} ms, p99 {} ms, max {} ms; overlap max {} ms",
                    x.fault.describe(),
                    x.outages.len(),
                    p(&x.outages, 50.0),
                    p(&x.outages, 99.0),
                    x.outages.last().copied().unwrap_or(0),
                    x.overlaps.last().copied().unwrap_or(0)
                );
            }
            Ok(())
        }
        Command::BenchClusterFailover { trials } => {
            let f = ferrolb_lab::bench_cluster::run(trials)?;
            let o = &f.outages;
            println!(
                "cluster lab, node death (cable pulled), {} trials: outage p50 {} ms, p90 {} ms, max {} ms",
                o.samples.len(),
                o.percentile(50.0),
                o.percentile(90.0),
                o.samples.last().copied().unwrap_or(0)
            );
            for (name, node, kib) in &f.rss {
                println!("{name} on node-{node}: RSS {:.1} MiB", *kib as f64 / 1024.0);
            }
            Ok(())
        }
        Command::Forward { listen, to } => ferrolb_lab::forward::relay(listen, to),
        Command::BenchController {
            services,
            rate,
            no_controller,
            backlog,
        } => {
            use ferrolb_lab::bench::Mode;
            let mode = match (no_controller, backlog) {
                (true, _) => Mode::ApiOnly,
                (_, true) => Mode::Backlog,
                _ => Mode::Live,
            };
            let f = ferrolb_lab::bench::run(services, rate, mode)?;
            if mode == Mode::Backlog {
                println!(
                    "controller: {} Services created (no controller running) in {:.1} s; then all assigned {:.1} s after the controller started; controller RSS {} KiB (peak {} KiB)",
                    f.services,
                    f.create_seconds,
                    f.all_assigned_seconds,
                    f.controller_rss_kib,
                    f.controller_peak_rss_kib
                );
                return Ok(());
            }
            if no_controller {
                println!(
                    "API server alone: {} Services created in {:.1} s",
                    f.services, f.create_seconds
                );
                return Ok(());
            }
            let rate = f.rate.map_or("max".to_string(), |r| format!("{r}/s"));
            println!(
                "controller: {} Services created at {rate} in {:.1} s; all assigned {:.1} s after the first creation; creation->address p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; controller RSS {} KiB (peak {} KiB); the controller's own share (change seen -> status written, its histogram) p50 <= {} ms, p99 <= {} ms",
                f.services,
                f.create_seconds,
                f.all_assigned_seconds,
                f.p50_ms,
                f.p99_ms,
                f.max_ms,
                f.controller_rss_kib,
                f.controller_peak_rss_kib,
                f.controller_p50_le_ms,
                f.controller_p99_le_ms
            );
            Ok(())
        }
        Command::BenchFailover {
            trials,
            restarts,
            probe_interval_ms,
            probe_timeout_ms,
            speaker_args,
        } => {
            let extra: Vec<&str> = speaker_args.iter().map(String::as_str).collect();
            let (outages, rounds) = ferrolb_lab::bench_speaker::failover(
                trials,
                restarts,
                &extra,
                (probe_interval_ms, probe_timeout_ms),
            )?;
            for o in &outages {
                println!(
                    "failover {:?}: {} trials, outage p50 {} ms, p90 {} ms, p99 {} ms, max {} ms (all: {:?})",
                    o.death,
                    o.samples.len(),
                    o.percentile(50.0),
                    o.percentile(90.0),
                    o.percentile(99.0),
                    o.samples.last().copied().unwrap_or(0),
                    o.samples
                );
            }
            for (round, (requests, failed)) in rounds.iter().enumerate() {
                println!(
                    "rolling restart {round} of 3 speakers: {requests} requests, {failed} failed"
                );
            }
            Ok(())
        }
        Command::BenchSpeakerIdle { addresses, seconds } => {
            let f = ferrolb_lab::bench_speaker::idle(addresses, seconds)?;
            println!(
                "idle speaker announcing {} addresses ({} in /metrics): RSS {} KiB (peak {} KiB; anonymous {} KiB, file-backed {} KiB), CPU {:.2} millicores over {:.0} s ({} elections; while gaining them {} elections, each within {} ms)",
                f.addresses,
                f.announced,
                f.rss_kib,
                f.peak_rss_kib,
                f.anon_kib,
                f.file_kib,
                f.millicores,
                f.seconds,
                f.elections,
                f.passes,
                f.slowest_pass_ms
            );
            let threads: Vec<String> = f
                .threads
                .iter()
                .map(|(name, mc, per_s)| format!("{name} {mc:.2} mc ({per_s:.0} runs/s)"))
                .collect();
            println!(
                "scheduler run time: {:.2} millicores; by thread: {}",
                f.run_millicores,
                threads.join(", ")
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

/// Prints a phase's name and, when it is done, how long it took.
struct Phase(std::time::Instant);

impl Phase {
    fn start(what: &str) -> Phase {
        println!("==> {what}");
        Phase(std::time::Instant::now())
    }

    fn done(self) {
        println!("    ({:.1} s)", self.0.elapsed().as_secs_f64());
    }
}

fn demo(nodes: usize) -> anyhow::Result<()> {
    use ferrolb_lab::cluster_lab::{ClusterLab, SAMPLE_APP, ferrolb_images};
    let t0 = std::time::Instant::now();
    let root = ferrolb_lab::workspace_root();
    let p = Phase::start(
        "building ferrolb's images (static binaries, buildah; tests/scripts/images.sh)",
    );
    let images = ferrolb_images()?;
    for i in &images {
        println!("    {}", i.display());
    }
    p.done();
    let p = Phase::start(&format!(
        "bringing up a {nodes}-node cluster: kube-apiserver + etcd, kube-controller-manager, kube-scheduler; per node containerd, kubelet, kube-proxy (nftables); images loaded into each node's containerd"
    ));
    let c = ClusterLab::start(nodes, &images)?;
    print!("{}", c.env.kubectl(&["get", "nodes", "-o", "wide"])?);
    p.done();
    let p = Phase::start("kubectl apply -k deploy/   (as shipped)");
    print!("{}", ferrolb_lab::daemons::install(&c.env)?);
    c.rollout_status("daemonset/ferrolb-speaker")?;
    c.rollout_status("deployment/ferrolb-controller")?;
    p.done();
    let p = Phase::start(
        "kubectl apply -f deploy/samples/{pool,l2advertisement}.yaml, and a sample application (3 pods) behind LoadBalancer Services",
    );
    for f in ["pool.yaml", "l2advertisement.yaml"] {
        print!(
            "{}",
            c.env.kubectl(&[
                "apply",
                "-f",
                &root.join("deploy/samples").join(f).to_string_lossy()
            ])?
        );
    }
    print!("{}", c.apply(SAMPLE_APP)?);
    c.env
        .kubectl(&["rollout", "status", "deployment/hello", "--timeout=50s"])?;
    let vip = ferrolb_lab::daemons::wait_ingress(
        &c.env,
        "default",
        "hello-local",
        1,
        Duration::from_secs(60),
    )?
    .remove(0);
    p.done();
    println!("==> kubectl get pods -A -o wide");
    print!("{}", c.pods());
    println!("==> kubectl get services");
    print!("{}", c.env.kubectl(&["get", "services"])?);
    let owner = show_vip_on(&c.lab, &c.env, "hello-local", &vip, None)?;
    println!();
    let addr: std::net::IpAddr = vip.parse()?;
    let target = SocketAddr::new(addr, 80);
    println!("==> the client's probe loop: a TCP request to {target} every 20 ms (100 ms timeout)");
    let mut probe = ferrolb_lab::speakers::start_probe(&c.lab, target, 3000, 20, 100)?;
    std::thread::sleep(Duration::from_secs(2));
    println!("==> node-{owner} dies: its cable is pulled (the switch port goes down)");
    let cut = std::time::Instant::now();
    c.set_link(owner, false)?;
    let successor = show_vip_on(&c.lab, &c.env, "hello-local", &vip, Some(owner))?;
    let seen = cut.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let _ = probe.terminate(Duration::from_secs(3));
    let records = probe::parse_records(&probe.log_text());
    let failed = records.iter().filter(|r| !r.ok()).count();
    match probe::longest_outage_ms(&records) {
        Some(ms) => println!(
            "==> outage measured by the probe loop: {ms} ms (last answer before the death to the first after; {failed} of {} requests failed); node-{successor} answers now",
            records.len()
        ),
        None => println!(
            "==> the probe loop saw no failed request ({} requests); node-{successor} answers now",
            records.len()
        ),
    }
    println!(
        "    (this demo's own polling noticed it {:.2} s after the cut; the probe loop is the measurement, see BENCHMARKS.md)",
        seen.as_secs_f64()
    );
    println!("==> node-{owner} comes back (cable plugged in)");
    c.set_link(owner, true)?;
    println!();
    println!("everything took {:.0} s", t0.elapsed().as_secs_f64());
    println!("  export KUBECONFIG={}", c.env.kubeconfig().display());
    println!("  kubectl get pods -A -o wide; kubectl get services,ipaddresspools,l2advertisements");
    println!("  kubectl -n ferrolb-system logs daemonset/ferrolb-speaker");
    println!();
    print_namespaces(&c.lab);
    wait_for_signal()?;
    println!("tearing down");
    drop(c);
    Ok(())
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
    println!("==> Node objects for the lab's nodes (what each kubelet would register)");
    ferrolb_lab::speakers::register_nodes(&env, &lab)?;
    println!(
        "==> ferrolb-controller starts (as service account ferrolb-system/ferrolb-controller, inside the lab)"
    );
    let controller = ferrolb_lab::daemons::start_controller(&lab, &env, &Default::default())?;
    println!(
        "==> one ferrolb-speaker per node (as service account ferrolb-system/ferrolb-speaker)"
    );
    let mut speakers = Vec::new();
    for i in 1..=nodes {
        speakers.push(ferrolb_lab::speakers::start_speaker(
            &lab,
            &env,
            i,
            &["--log-level", "info"],
        )?);
    }
    let samples = ["pool.yaml", "l2advertisement.yaml", "service.yaml"];
    println!(
        "==> kubectl apply -f deploy/samples/{{{}}}",
        samples.join(",")
    );
    for f in samples {
        print!(
            "{}",
            env.kubectl(&[
                "apply",
                "-f",
                &root.join("deploy/samples").join(f).to_string_lossy()
            ])?
        );
    }
    let vip =
        ferrolb_lab::daemons::wait_ingress(&env, "default", "web", 1, Duration::from_secs(60))?
            .remove(0);
    println!("==> kubectl get service web; kubectl get ipaddresspools,l2advertisements");
    print!("{}", env.kubectl(&["get", "service", "web"])?);
    print!(
        "{}",
        env.kubectl(&["get", "ipaddresspools,l2advertisements"])?
    );
    let owner = show_vip(&lab, &env, &vip, None)?;
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
    println!("==> node-{owner} dies: its link goes down (ip link set eth0 down in its namespace)");
    let t0 = std::time::Instant::now();
    lab.set_link(Port::Node(owner), false)?;
    let successor = show_vip(&lab, &env, &vip, Some(owner))?;
    println!(
        "the client reached {vip} through node-{successor} again {:.2} s after node-{owner} died",
        t0.elapsed().as_secs_f64()
    );
    println!("==> node-{owner} comes back (link up)");
    lab.set_link(Port::Node(owner), true)?;
    println!();
    println!(
        "kube-apiserver {} (inside the lab: https://{}:{})",
        env.local_url(),
        netns::API_V4,
        ferrolb_lab::kube_env::API_PORT
    );
    println!();
    println!("  export KUBECONFIG={}", env.kubeconfig().display());
    println!("  kubectl get services,ipaddresspools,l2advertisements");
    println!("  kubectl get service web -o jsonpath='{{.status.conditions}}'   # who announces it");
    println!("controller log: {}", controller.log_path().display());
    for s in &speakers {
        println!("{} log: {}", s.name(), s.log_path().display());
    }
    println!();
    print_namespaces(&lab);
    wait_for_signal()?;
    println!("tearing down");
    drop(speakers);
    drop(controller);
    drop(env);
    drop(lab);
    Ok(())
}

/// Waits until one node (not `not`) answers ARP for `vip` and the client reaches its backend over
/// TCP; prints what the client sees. Returns the node.
fn show_vip(lab: &Lab, env: &KubeEnv, vip: &str, not: Option<usize>) -> anyhow::Result<usize> {
    show_vip_on(lab, env, "web", vip, not)
}

/// [`show_vip`] for Service `service` in `default`.
fn show_vip_on(
    lab: &Lab,
    env: &KubeEnv,
    service: &str,
    vip: &str,
    not: Option<usize>,
) -> anyhow::Result<usize> {
    let addr: std::net::IpAddr = vip.parse()?;
    let node = ferrolb_lab::cmd::wait_for(
        "one node answering ARP for the VIP",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let rec = ferrolb_lab::observe::tcp_get(
                lab,
                Port::Client,
                SocketAddr::new(addr, netns::BACKEND_PORT),
            )
            .ok()?;
            let n: usize = rec.node?.strip_prefix("node-")?.parse().ok()?;
            (Some(n) != not).then_some(n)
        },
    )?;
    let c = lab.netns(Port::Client);
    println!("==> ip netns exec {c} arping -c 2 -I eth0 {vip}");
    let macs = ferrolb_lab::observe::arping(lab, Port::Client, addr, 2)?;
    for m in &macs {
        println!(
            "    reply from {m} (node-{})",
            ferrolb_lab::speakers::node_of_mac(lab, m).unwrap_or(0)
        );
    }
    println!("==> TCP from the client to {vip}:80 -> answered by node-{node}");
    let cond = env.kubectl(&[
        "get",
        "service",
        service,
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="ferrolb.io/Announced")].message}"#,
    ])?;
    println!("    condition ferrolb.io/Announced: {cond}");
    Ok(node)
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
