//! Independent observers, run from the client namespace with the machine's own tools: who answers
//! ARP (`arping`) and NDP (`ndisc6`), what the client's neighbour cache holds (`ip neigh`), what
//! crosses the wire (`tcpdump`), and whether TCP reaches a backend (the probe loop).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::Signal;

use crate::cmd;
use crate::netns::{Lab, Port};
use crate::probe::ProbeRecord;
use crate::process::LabChild;

/// MACs (lower case) of every ARP reply `arping` received for `addr`, one entry per reply.
/// Sends `count` requests and waits at most `count + 1` seconds. No answer is an empty list.
pub fn arping(lab: &Lab, from: Port, addr: IpAddr, count: u32) -> anyhow::Result<Vec<String>> {
    let ns = lab.netns(from);
    let c = count.to_string();
    let w = (count + 1).to_string();
    let a = addr.to_string();
    let out = cmd::output_timeout(
        &[
            "ip", "netns", "exec", &ns, "arping", "-c", &c, "-w", &w, "-I", "eth0", &a,
        ],
        Duration::from_secs(u64::from(count) + 10),
    )?;
    Ok(parse_arping(&String::from_utf8_lossy(&out.stdout)))
}

/// Link-layer addresses (lower case) of every Neighbor Advertisement `ndisc6` received for `addr`
/// (all responses, one solicitation, 1 s wait). No answer is an empty list.
pub fn ndisc6(lab: &Lab, from: Port, addr: IpAddr) -> anyhow::Result<Vec<String>> {
    let ns = lab.netns(from);
    let a = addr.to_string();
    let out = cmd::output_timeout(
        &[
            "ip", "netns", "exec", &ns, "ndisc6", "-m", "-n", "-r", "1", "-w", "1000", &a, "eth0",
        ],
        Duration::from_secs(10),
    )?;
    Ok(parse_ndisc6(&String::from_utf8_lossy(&out.stdout)))
}

/// The neighbour-cache entry for `addr` in `port`'s namespace: (MAC, state) or `None`.
pub fn neigh(lab: &Lab, port: Port, addr: IpAddr) -> anyhow::Result<Option<(String, String)>> {
    let out = lab.exec(
        port,
        &["ip", "neigh", "show", &addr.to_string(), "dev", "eth0"],
    )?;
    Ok(parse_neigh(&out))
}

/// Forgets every neighbour-cache entry of `port`'s `eth0`.
pub fn flush_neigh(lab: &Lab, port: Port) -> anyhow::Result<()> {
    lab.exec(port, &["ip", "neigh", "flush", "dev", "eth0"])?;
    Ok(())
}

/// One TCP request to `target` from `from`: the backend's answer (its node name).
pub fn tcp_get(lab: &Lab, from: Port, target: SocketAddr) -> anyhow::Result<ProbeRecord> {
    let bin = crate::lab_binary().to_string_lossy().into_owned();
    let t = target.to_string();
    let out = lab.exec(
        from,
        &[
            &bin,
            "probe",
            "--target",
            &t,
            "--count",
            "1",
            "--timeout-ms",
            "2000",
        ],
    )?;
    crate::probe::parse_records(&out)
        .into_iter()
        .next()
        .context("probe printed no record")
}

/// A running `tcpdump` on `eth0` of a namespace, printing one line per frame with MACs (`-e`).
#[derive(Debug)]
pub struct Capture {
    child: LabChild,
}

impl Capture {
    /// Starts capturing frames matching `filter` (pcap syntax) and waits until tcpdump listens.
    pub fn start(lab: &Lab, port: Port, name: &str, filter: &str) -> anyhow::Result<Capture> {
        let mut argv = vec!["tcpdump", "-i", "eth0", "-n", "-e", "-l", "-U"];
        argv.extend(filter.split_whitespace());
        let child = lab.spawn(port, name, &argv)?;
        cmd::wait_for(
            "tcpdump listening",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || child.log_text().contains("listening on").then_some(()),
        )?;
        Ok(Capture { child })
    }

    /// Stops the capture (SIGINT lets tcpdump flush) and returns one line per captured frame.
    pub fn stop(mut self) -> anyhow::Result<Vec<String>> {
        self.child.signal(Signal::SIGINT)?;
        self.child.wait_timeout(Duration::from_secs(5))?;
        Ok(frame_lines(&self.child.log_text()))
    }

    /// Frames captured so far.
    pub fn frames(&self) -> Vec<String> {
        frame_lines(&self.child.log_text())
    }
}

fn frame_lines(log: &str) -> Vec<String> {
    // Frame lines start with a timestamp (hh:mm:ss.micros); status lines do not.
    log.lines()
        .filter(|l| {
            l.as_bytes().get(2) == Some(&b':')
                && l.as_bytes().first().is_some_and(u8::is_ascii_digit)
        })
        .map(str::to_string)
        .collect()
}

pub fn parse_arping(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.contains("reply from"))
        .filter_map(|l| {
            let open = l.find('[')?;
            let close = l[open..].find(']')? + open;
            Some(l[open + 1..close].to_ascii_lowercase())
        })
        .collect()
}

pub fn parse_ndisc6(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Target link-layer address:"))
        .map(|m| m.trim().to_ascii_lowercase())
        .collect()
}

pub fn parse_neigh(out: &str) -> Option<(String, String)> {
    let line = out.lines().next()?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let state = words.last()?.to_string();
    let mac = words
        .iter()
        .position(|w| *w == "lladdr")
        .and_then(|i| words.get(i + 1))
        .map(|m| m.to_ascii_lowercase())
        .unwrap_or_default();
    Some((mac, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_arping_replies() {
        let out = "ARPING 192.0.2.11 from 192.0.2.3 eth0\n\
                   Unicast reply from 192.0.2.11 [02:FE:00:00:00:0B]  0.615ms\n\
                   Unicast reply from 192.0.2.11 [02:FE:00:00:00:0B]  0.701ms\n\
                   Sent 2 probes (1 broadcast(s))\nReceived 2 response(s)\n";
        assert_eq!(parse_arping(out), vec!["02:fe:00:00:00:0b"; 2]);
        assert!(
            parse_arping("ARPING 192.0.2.99\nSent 2 probes\nReceived 0 response(s)\n").is_empty()
        );
    }

    #[test]
    fn parses_ndisc6_answers() {
        let out = "Soliciting 2001:db8::11 (2001:db8::11) on eth0...\n\
                   Target link-layer address: 02:FE:00:00:00:0B\n from 2001:db8::11\n";
        assert_eq!(parse_ndisc6(out), vec!["02:fe:00:00:00:0b"]);
        assert!(parse_ndisc6("Soliciting 2001:db8::99\nTimed out.\nNo response.\n").is_empty());
    }

    #[test]
    fn parses_neighbour_entries() {
        assert_eq!(
            parse_neigh("192.0.2.11 lladdr 02:fe:00:00:00:0b REACHABLE\n"),
            Some(("02:fe:00:00:00:0b".into(), "REACHABLE".into()))
        );
        assert_eq!(
            parse_neigh("192.0.2.99 FAILED\n"),
            Some((String::new(), "FAILED".into()))
        );
        assert_eq!(parse_neigh(""), None);
    }

    #[test]
    fn keeps_only_frame_lines_of_tcpdump() {
        let log = "tcpdump: verbose output suppressed\nlistening on eth0, link-type EN10MB\n\
                   00:15:01.123456 02:fe:00:00:00:03 > ff:ff:ff:ff:ff:ff, ethertype ARP\n\
                   2 packets captured\n";
        assert_eq!(frame_lines(log).len(), 1);
    }
}
