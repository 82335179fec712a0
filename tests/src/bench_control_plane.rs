//! `ferrolb-lab bench-control-plane`: the control-plane VIP's outage as the client sees it, over
//! many trials of each fault, on three nodes that each run a real kube-apiserver and a
//! control-plane speaker ([`Group`] with real API servers).
//!
//! Faults, one at a time, always to the node holding the VIP:
//! - **death**: its cable is pulled (link down), then plugged back in;
//! - **kill**: its kube-apiserver is killed (SIGKILL: connection refused), then started again;
//! - **hang**: its kube-apiserver is frozen (SIGSTOP: connections accepted, nothing answers, the
//!   health check times out), then thawed.
//!
//! The client's probe loop makes a TCP request to VIP:80 every 20 ms (100 ms timeout); the outage
//! is the longest run of failed requests. A tcpdump on the client records every ARP frame about
//! the VIP: the overlap of a trial is how long frames from the old holder's MAC went on after the
//! first one from the new holder's (0 when every old frame came first).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::control_plane_lab::{Group, VIP};
use crate::netns::Port;
use crate::observe::Capture;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Death,
    Kill,
    Hang,
}

impl Fault {
    pub const ALL: [Fault; 3] = [Fault::Death, Fault::Kill, Fault::Hang];

    pub fn describe(self) -> &'static str {
        match self {
            Fault::Death => "leader node death (cable pulled)",
            Fault::Kill => "leader's API server killed",
            Fault::Hang => "leader's API server hung (SIGSTOP)",
        }
    }
}

/// The figures of one fault.
#[derive(Debug)]
pub struct FaultFigures {
    pub fault: Fault,
    /// Outages in ms, sorted.
    pub outages: Vec<u128>,
    /// Overlaps in ms (frames of two MACs about the VIP interleaved), sorted.
    pub overlaps: Vec<u128>,
}

impl FaultFigures {
    pub fn percentile(v: &[u128], p: f64) -> u128 {
        if v.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }
}

/// A speaker's resource use over the run.
#[derive(Debug)]
pub struct SpeakerUse {
    pub node: usize,
    pub rss_kib: u64,
    /// CPU time (user + system) per wall-clock second, in millicores, over the idle minute.
    pub idle_millicores: f64,
}

#[derive(Debug)]
pub struct Figures {
    pub faults: Vec<FaultFigures>,
    pub speakers: Vec<SpeakerUse>,
}

pub fn run(trials: usize, idle_secs: u64) -> anyhow::Result<Figures> {
    let vip: IpAddr = VIP.parse()?;
    let mut g = Group::start(3, vip, true)?;
    g.wait_holder(None)?;
    let speakers = idle_use(&g, Duration::from_secs(idle_secs))?;
    let mut faults = Vec::new();
    for fault in Fault::ALL {
        let mut outages = Vec::new();
        let mut overlaps = Vec::new();
        for trial in 0..trials {
            let (outage, overlap) = one_trial(&mut g, fault)?;
            eprintln!(
                "{}, trial {trial}: outage {outage} ms, overlap {overlap} ms",
                fault.describe()
            );
            outages.push(outage);
            overlaps.push(overlap);
        }
        outages.sort_unstable();
        overlaps.sort_unstable();
        faults.push(FaultFigures {
            fault,
            outages,
            overlaps,
        });
    }
    Ok(Figures { faults, speakers })
}

/// One fault to the holder and its repair; returns (outage ms, overlap ms).
fn one_trial(g: &mut Group, fault: Fault) -> anyhow::Result<(u128, u128)> {
    let holder = g.wait_holder(None)?;
    // A name of its own: a log file is per name, and an earlier trial's frames must not count.
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("tcpdump-bench-cp-{seq}");
    let capture = Capture::start(&g.lab, Port::Client, &name, "arp")?;
    let (outage, successor, _) = g.measure_with(150, 20, 100, || match fault {
        Fault::Death => g.lab.set_link(Port::Node(holder), false),
        Fault::Kill => match g.apis[holder - 1].as_ref() {
            Some(api) => api.signal(nix::sys::signal::Signal::SIGKILL),
            None => anyhow::bail!("node {holder} has no API server"),
        },
        Fault::Hang => match g.apis[holder - 1].as_ref() {
            Some(api) => api.freeze(),
            None => anyhow::bail!("node {holder} has no API server"),
        },
    })?;
    // Let the new holder's announcement burst finish before the capture stops.
    std::thread::sleep(Duration::from_millis(800));
    let frames = capture.stop()?;
    let overlap = overlap_ms(&frames, holder, successor);
    // Repair, and wait until the group is whole again (one holder, the old one healthy).
    match fault {
        Fault::Death => g.lab.set_link(Port::Node(holder), true)?,
        Fault::Kill => {
            g.apis[holder - 1] = None;
            let api = g.start_api(holder)?;
            g.apis[holder - 1] = Some(api);
        }
        Fault::Hang => {
            if let Some(api) = g.apis[holder - 1].as_ref() {
                api.thaw()?;
            }
        }
    }
    if successor == holder {
        anyhow::bail!("{}: the VIP never left node {holder}", fault.describe());
    }
    // Health checks every 250 ms; the returning node's term catches up through pre-vote.
    std::thread::sleep(Duration::from_secs(2));
    g.wait_holder(None)?;
    Ok((outage.unwrap_or(0), overlap))
}

/// How long ARP frames about the VIP from `old`'s MAC went on after the first from `new`'s.
fn overlap_ms(frames: &[String], old: usize, new: usize) -> u128 {
    let about_vip =
        |f: &&String| f.contains(&format!("{VIP} is-at")) || f.contains(&format!("tell {VIP}"));
    let old_mac = Port::Node(old).mac();
    let new_mac = Port::Node(new).mac();
    let first_new = frames
        .iter()
        .filter(about_vip)
        .find(|f| f.contains(&new_mac))
        .and_then(|f| micros_of_day(f));
    let last_old = frames
        .iter()
        .filter(about_vip)
        .filter(|f| f.contains(&old_mac))
        .filter_map(|f| micros_of_day(f))
        .max();
    match (first_new, last_old) {
        (Some(n), Some(o)) if o > n => (o - n) / 1000,
        _ => 0,
    }
}

/// tcpdump's `hh:mm:ss.micros` timestamp as microseconds of the day.
fn micros_of_day(frame: &str) -> Option<u128> {
    let ts = frame.split_whitespace().next()?;
    let (hms, micros) = ts.split_once('.')?;
    let mut parts = hms.split(':').map(|p| p.parse::<u128>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    Some(((h * 60 + m) * 60 + s) * 1_000_000 + micros.parse::<u128>().ok()?)
}

/// Resident memory and idle CPU of each control-plane speaker over `window`.
fn idle_use(g: &Group, window: Duration) -> anyhow::Result<Vec<SpeakerUse>> {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    let cpu = |pid: i32| -> anyhow::Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name (which may hold spaces): state is field 3, utime 14.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        Ok(f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
    };
    let pids: Vec<(usize, i32)> = g
        .speakers
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((i + 1, s.as_ref()?.pid().as_raw())))
        .collect();
    let before: Vec<u64> = pids
        .iter()
        .map(|(_, p)| cpu(*p))
        .collect::<Result<_, _>>()?;
    let t0 = Instant::now();
    std::thread::sleep(window);
    let secs = t0.elapsed().as_secs_f64();
    let mut out = Vec::new();
    for ((node, pid), b) in pids.iter().zip(before) {
        let used = cpu(*pid)?.saturating_sub(b) as f64 / ticks;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        out.push(SpeakerUse {
            node: *node,
            rss_kib,
            idle_millicores: used / secs * 1000.0,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_how_long_the_old_mac_went_on_after_the_new_one_began() {
        let old = Port::Node(1).mac();
        let new = Port::Node(2).mac();
        let f = |ts: &str, mac: &str| {
            format!(
                "{ts} {mac} > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Reply {VIP} is-at {mac}, length 28"
            )
        };
        let ordered = vec![f("10:00:00.100000", &old), f("10:00:00.500000", &new)];
        assert_eq!(overlap_ms(&ordered, 1, 2), 0);
        let interleaved = vec![
            f("10:00:00.100000", &new),
            f("10:00:00.350000", &old),
            f("10:00:00.400000", &new),
        ];
        assert_eq!(overlap_ms(&interleaved, 1, 2), 250);
        assert_eq!(micros_of_day("01:02:03.000004 x"), Some(3_723_000_004));
        assert_eq!(micros_of_day("listening on eth0"), None);
    }
}
