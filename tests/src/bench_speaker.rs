//! `ferrolb-lab bench-failover` and `bench-speaker-idle`: the speaker's figures in the lab, with the
//! real API server, the controller and speakers as processes.
//!
//! Failover: the client's probe loop (by default a TCP request every 20 ms, 100 ms timeout) runs against the
//! VIP while the owner dies; the outage is the longest gap between two answered requests. Each trial
//! restores the node and waits until the original owner answers again before the next one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cmd;
use crate::daemons::{apply, service_yaml, wait_ingress};
use crate::netns::{BACKEND_PORT, Port};
use crate::observe::flush_neigh;
use crate::probe::{longest_outage_ms, parse_records};
use crate::speakers::{Cluster, answering, index_of, ip, start_probe};

/// How the owner dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Death {
    /// Its link goes down (power loss, cable, kernel panic: the node is gone).
    Node,
    /// Its speaker is SIGKILLed; the node stays up. The client's neighbour cache is flushed at the
    /// same moment, so it must resolve the VIP again (what a new client does): the figure is the
    /// time until the VIP answers ARP again, from the successor.
    SpeakerKill,
}

/// Outages of each trial, in milliseconds, sorted.
#[derive(Debug)]
pub struct Outages {
    pub death: Death,
    pub samples: Vec<u128>,
}

impl Outages {
    pub fn percentile(&self, p: f64) -> u128 {
        if self.samples.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * self.samples.len() as f64).ceil() as usize;
        self.samples[rank.clamp(1, self.samples.len()) - 1]
    }
}

/// Requests made and failed during one rolling restart.
pub type Restart = (usize, usize);

/// Runs `trials` failovers of each kind on a 3-node cluster; then one rolling restart.
pub fn failover(
    trials: usize,
    restarts: usize,
    speaker_args: &[&str],
    probe: (u32, u32),
) -> anyhow::Result<(Vec<Outages>, Vec<Restart>)> {
    let (interval_ms, timeout_ms) = probe;
    let mut args = vec!["--log-level", "info"];
    args.extend(speaker_args);
    let args = &args[..];
    let mut c = Cluster::start(3, args)?;
    apply(&c.env, &c.lab, &service_yaml("web", &[], "", BACKEND_PORT))?;
    let vip = ip(&wait_ingress(&c.env, "default", "web", 1, Duration::from_secs(30))?[0]);
    let target = SocketAddr::new(vip, BACKEND_PORT);
    let mut out = Vec::new();
    for death in [Death::Node, Death::SpeakerKill] {
        let mut samples = Vec::new();
        for t in 0..trials {
            let owner = stable_owner(&c, vip)?;
            let count = 3000 / interval_ms.max(1);
            let mut probe = start_probe(&c.lab, target, count, interval_ms, timeout_ms)?;
            std::thread::sleep(Duration::from_millis(500));
            match death {
                Death::Node => c.lab.set_link(Port::Node(owner), false)?,
                Death::SpeakerKill => {
                    c.kill_speaker(owner)?;
                    flush_neigh(&c.lab, Port::Client)?;
                }
            }
            probe
                .wait_timeout(Duration::from_secs(60))?
                .context("probe loop did not end")?;
            let records = parse_records(&probe.log_text());
            let last_ok = records.last().is_some_and(|r| r.ok());
            let outage = longest_outage_ms(&records).unwrap_or(0);
            eprintln!(
                "{death:?} trial {t}: owner node-{owner}, outage {outage} ms, recovered {last_ok}"
            );
            if !last_ok {
                anyhow::bail!("trial {t} did not recover:\n{}", c.logs());
            }
            samples.push(outage);
            match death {
                Death::Node => c.lab.set_link(Port::Node(owner), true)?,
                Death::SpeakerKill => c.restart_speaker(owner, args)?,
            }
            for i in 1..=3 {
                c.wait_members(i, 3)?;
            }
            // The returning node settles (1 s) before it takes its addresses back, and the interim
            // owner answers until then (make-before-break): without this wait the next trial can
            // pick the interim owner as "the owner" and kill it just as the address moves away.
            std::thread::sleep(Duration::from_millis(1500));
        }
        samples.sort_unstable();
        out.push(Outages { death, samples });
    }
    // Rolling restarts: SIGTERM each speaker in turn and start it again, while probing.
    let mut rounds = Vec::new();
    for round in 0..restarts {
        stable_owner(&c, vip)?;
        let mut probe = start_probe(&c.lab, target, 100_000, interval_ms, timeout_ms)?;
        std::thread::sleep(Duration::from_millis(500));
        for i in 1..=3 {
            c.stop_speaker(i)?;
            c.restart_speaker(i, args)?;
            for j in 1..=3 {
                c.wait_members(j, 3)?;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        probe.signal(nix::sys::signal::Signal::SIGTERM)?;
        probe.wait_timeout(Duration::from_secs(5))?;
        let log = probe.log_text();
        let records = parse_records(&log);
        let failed: Vec<_> = records.iter().filter(|r| !r.ok()).collect();
        eprintln!(
            "rolling restart {round}: {} requests, {} failed {:?}",
            records.len(),
            failed.len(),
            failed
                .iter()
                .map(|r| (r.seq, r.latency_us / 1000, r.error.clone()))
                .take(10)
                .collect::<Vec<_>>()
        );
        let _ = std::fs::write(c.lab.dir().join(format!("rolling-{round}.log")), &log);
        rounds.push((records.len(), failed.len()));
    }
    Ok((out, rounds))
}

/// Waits until exactly one node answers for `vip` and it is the one the Service names.
fn stable_owner(c: &Cluster, vip: std::net::IpAddr) -> anyhow::Result<usize> {
    cmd::wait_for(
        "one stable owner",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let named = index_of(&c.announcer("web", Duration::from_millis(1)).ok()?);
            (answering(&c.lab, vip).ok()? == vec![named]).then_some(named)
        },
    )
}

/// Figures of an idle speaker announcing many addresses.
#[derive(Debug)]
pub struct Idle {
    pub addresses: usize,
    pub announced: f64,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
    /// Heap, stacks and other private memory (`RssAnon`).
    pub anon_kib: u64,
    /// Mapped pages of the binary and libraries (`RssFile`).
    pub file_kib: u64,
    /// From `utime + stime`: sampled at the scheduler tick, so wake-ups shorter than a tick are
    /// charged by chance.
    pub millicores: f64,
    /// From the scheduler's run time per thread (`/proc/<pid>/task/*/schedstat`, nanoseconds
    /// on CPU): exact, summed over the threads that lived through the period.
    pub run_millicores: f64,
    /// Per thread: name, millicores of run time, times it was scheduled in per second.
    pub threads: Vec<(String, f64, f64)>,
    /// Elections the speaker ran during the idle period.
    pub elections: f64,
    /// Elections while gaining the addresses, and an upper bound on the slowest.
    pub passes: f64,
    pub slowest_pass_ms: f64,
    pub seconds: f64,
}

/// Per thread of `pid`: name, nanoseconds on CPU, times scheduled in (`schedstat`).
fn schedstats(pid: i32) -> std::collections::BTreeMap<String, (String, u64, u64)> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in dir.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        let f: Vec<u64> = stat
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if let [run, _, slices] = f[..] {
            out.insert(
                task.file_name().to_string_lossy().into_owned(),
                (name.trim().to_string(), run, slices),
            );
        }
    }
    out
}

/// Node 1 of three announcing `addresses` IPv6 Services (the advertisement selects only node 1, so
/// gossip runs as in a real cluster while one speaker holds everything); memory and CPU of that
/// speaker over `seconds` idle.
pub fn idle(addresses: usize, seconds: u64) -> anyhow::Result<Idle> {
    let c = Cluster::start(3, &["--log-level", "warn"])?;
    apply(
        &c.env,
        &c.lab,
        "apiVersion: ferrolb.io/v1alpha1\nkind: L2Advertisement\nmetadata: {name: default}\nspec:\n  nodeSelectors: [{matchLabels: {kubernetes.io/hostname: node-1}}]\n",
    )?;
    let mut yaml = String::new();
    for i in 0..addresses {
        yaml.push_str(&service_yaml(
            &format!("idle-{i}"),
            &[],
            "  ipFamilies: [IPv6]\n",
            BACKEND_PORT,
        ));
        // `kubectl create` in chunks: one request per object, each call well within its timeout.
        if (i + 1) % 100 == 0 || i + 1 == addresses {
            let file = c.lab.dir().join(format!("idle-{i}.yaml"));
            std::fs::write(&file, &yaml)?;
            c.env.kubectl(&["create", "-f", &file.to_string_lossy()])?;
            yaml.clear();
        }
    }
    let t0 = Instant::now();
    let announced = cmd::wait_for(
        &format!("{addresses} addresses announced"),
        Duration::from_secs(600),
        Duration::from_secs(1),
        || {
            let n = c
                .metrics(1)
                .ok()?
                .lines()
                .filter(|l| l.starts_with("ferrolb_speaker_announced{"))
                .count();
            (n >= addresses).then_some(n as f64)
        },
    )?;
    eprintln!(
        "all announced {:.1} s after the last apply",
        t0.elapsed().as_secs_f64()
    );
    // Let the bursts and the first reports settle.
    std::thread::sleep(Duration::from_secs(10));
    let pid = c.speakers[0].as_ref().context("speaker")?.pid().as_raw();
    let ticks = |pid: i32| -> anyhow::Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let after = stat.rsplit_once(')').context("stat")?.1;
        let f: Vec<&str> = after.split_whitespace().collect();
        Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
    };
    // How long the loop was busy per election while it gained the addresses: the largest
    // histogram bound that holds every pass so far.
    let text = c.metrics(1)?;
    let mut slowest_pass_ms = f64::NAN;
    let total = c.metric(1, "ferrolb_speaker_pass_seconds_count")?;
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("ferrolb_speaker_pass_seconds_bucket{le=\"")
            && let Some((le, n)) = rest.split_once("\"} ")
            && n.trim().parse::<f64>().is_ok_and(|n| n >= total)
            && let Ok(le) = le.parse::<f64>()
        {
            slowest_pass_ms = le * 1000.0;
            break;
        }
    }
    let elections = || -> anyhow::Result<f64> { c.metric(1, "ferrolb_speaker_pass_seconds_count") };
    let e_start = elections()?;
    let (t_start, c_start, s_start) = (Instant::now(), ticks(pid)?, schedstats(pid));
    match std::env::var("FERROLB_BENCH_PROFILER") {
        // A profiler watching the idle period instead of a plain sleep, e.g.
        // `perf record -g -o /tmp/perf.data -p {pid} -- sleep {seconds}` (it costs CPU too).
        Ok(command) => {
            let command = command
                .replace("{pid}", &pid.to_string())
                .replace("{seconds}", &seconds.to_string());
            let status = std::process::Command::new("sh")
                .args(["-c", &command])
                .status()?;
            anyhow::ensure!(status.success(), "{command}: {status}");
        }
        Err(_) => std::thread::sleep(Duration::from_secs(seconds)),
    }
    let (elapsed, used, s_end) = (
        t_start.elapsed().as_secs_f64(),
        ticks(pid)? - c_start,
        schedstats(pid),
    );
    let threads: Vec<(String, f64, f64)> = s_end
        .iter()
        .filter_map(|(tid, (name, ns, slices))| {
            let (_, ns0, slices0) = s_start.get(tid)?;
            Some((
                name.clone(),
                (ns - ns0) as f64 / 1e6 / elapsed,
                (slices - slices0) as f64 / elapsed,
            ))
        })
        .collect();
    let run_millicores = threads.iter().map(|t| t.1).sum();
    let elections = elections()? - e_start;
    // USER_HZ is 100 on Linux: one tick is 10 ms of CPU.
    let millicores = used as f64 * 10.0 / elapsed;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    // Where the memory is, mapping by mapping, for whoever wants to look further.
    if let Ok(path) = std::env::var("FERROLB_BENCH_SMAPS") {
        std::fs::copy(format!("/proc/{pid}/smaps"), &path)?;
    }
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    Ok(Idle {
        addresses,
        announced,
        rss_kib: kib("VmRSS:"),
        peak_rss_kib: kib("VmHWM:"),
        anon_kib: kib("RssAnon:"),
        file_kib: kib("RssFile:"),
        millicores,
        run_millicores,
        threads,
        elections,
        passes: total,
        slowest_pass_ms,
        seconds: elapsed,
    })
}
