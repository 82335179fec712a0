//! The two small programs the lab runs inside namespaces (subcommands of `ferrolb-lab`): a node's
//! backend, which answers every TCP connection with the node's name, and the client's probe loop,
//! which records the outcome and time of every request to an address.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Most requests one probe run may make; loops in the lab are bounded in count and time.
pub const MAX_PROBES: u32 = 1_000_000;

/// Serves `name\n` to every connection on `[::]:port` (IPv4 and IPv6). Runs until killed.
pub fn backend(name: &str, port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from(([0u16; 8], port)))?;
    let reply = format!("{name}\n");
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = conn.write_all(reply.as_bytes());
    }
    Ok(())
}

/// One request's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeRecord {
    pub seq: u32,
    /// Milliseconds since the Unix epoch when the request started.
    pub unix_ms: u128,
    /// Microseconds from the start of the request to its outcome.
    pub latency_us: u128,
    /// Name of the node whose backend answered, if one did.
    pub node: Option<String>,
    /// Why the request failed, if it did.
    pub error: Option<String>,
}

impl ProbeRecord {
    pub fn ok(&self) -> bool {
        self.node.is_some()
    }
}

/// What a probe run does.
#[derive(Clone, Debug)]
pub struct ProbeSpec {
    pub target: SocketAddr,
    pub count: u32,
    pub interval: Duration,
    pub timeout: Duration,
}

/// Makes `count` requests, one every `interval`, printing each outcome as a JSON line as soon as
/// it is known. Requests overlap: one that waits for its timeout does not delay the next, so an
/// outage is resolved to `interval` (20 ms in the failover benchmark), not to the timeout. At
/// most `timeout / interval + 1` requests are in flight, each on its own thread.
pub fn run(spec: &ProbeSpec, out: &mut impl Write) -> anyhow::Result<()> {
    let count = spec.count.min(MAX_PROBES);
    // At least 1 ms apart, so that at most `timeout / interval + 1` threads are ever in flight.
    let interval = spec.interval.max(Duration::from_millis(1));
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel::<ProbeRecord>();
    let mut write = |rec: ProbeRecord| -> anyhow::Result<()> {
        writeln!(out, "{}", serde_json::to_string(&rec)?)?;
        out.flush()?;
        Ok(())
    };
    for seq in 0..count {
        let due = start + interval * seq;
        // Wait for the due time, printing what finished meanwhile.
        while let Some(wait) = due.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(wait) {
                Ok(rec) => write(rec)?,
                Err(_) => break,
            }
        }
        let (tx, target, timeout) = (tx.clone(), spec.target, spec.timeout);
        std::thread::spawn(move || {
            let _ = tx.send(once(seq, target, timeout));
        });
    }
    drop(tx);
    // Every request ends within its timeout (connect, then read with what is left of it).
    for rec in rx {
        write(rec)?;
    }
    Ok(())
}

fn once(seq: u32, target: SocketAddr, timeout: Duration) -> ProbeRecord {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let t0 = Instant::now();
    let result = (|| -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&target, timeout)?;
        let left = timeout
            .saturating_sub(t0.elapsed())
            .max(Duration::from_millis(1));
        s.set_read_timeout(Some(left))?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        Ok(buf.trim().to_string())
    })();
    let latency_us = t0.elapsed().as_micros();
    match result {
        Ok(name) if !name.is_empty() => ProbeRecord {
            seq,
            unix_ms,
            latency_us,
            node: Some(name),
            error: None,
        },
        Ok(_) => ProbeRecord {
            seq,
            unix_ms,
            latency_us,
            node: None,
            error: Some("empty answer".into()),
        },
        Err(e) => ProbeRecord {
            seq,
            unix_ms,
            latency_us,
            node: None,
            error: Some(e.to_string()),
        },
    }
}

/// Parses the JSON lines a probe run printed (other lines are ignored), in request order
/// (requests overlap, so they are printed in the order they finished).
pub fn parse_records(out: &str) -> Vec<ProbeRecord> {
    let mut recs: Vec<ProbeRecord> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    recs.sort_by_key(|r| r.seq);
    recs
}

/// The longest stretch without a successful answer between two successes, in milliseconds,
/// measured from the last success before it to the first success after it (the outage a client
/// saw), or `None` when no request failed.
pub fn longest_outage_ms(records: &[ProbeRecord]) -> Option<u128> {
    let mut last_ok: Option<&ProbeRecord> = None;
    let mut failing = false;
    let mut worst = None;
    for r in records {
        if r.ok() {
            if failing && let Some(prev) = last_ok {
                let gap = r.unix_ms.saturating_sub(prev.unix_ms);
                worst = Some(worst.map_or(gap, |w: u128| w.max(gap)));
            }
            failing = false;
            last_ok = Some(r);
        } else {
            failing = true;
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u32, unix_ms: u128, ok: bool) -> ProbeRecord {
        ProbeRecord {
            seq,
            unix_ms,
            latency_us: 100,
            node: ok.then(|| "node-1".to_string()),
            error: (!ok).then(|| "timed out".to_string()),
        }
    }

    #[test]
    fn outage_spans_from_last_success_to_next() {
        let r = [
            rec(0, 0, true),
            rec(1, 10, false),
            rec(2, 20, false),
            rec(3, 30, true),
            rec(4, 40, false),
            rec(5, 45, true),
        ];
        assert_eq!(longest_outage_ms(&r), Some(30));
        assert_eq!(
            longest_outage_ms(&[rec(0, 0, true), rec(1, 10, true)]),
            None
        );
    }

    #[test]
    fn records_round_trip_through_json_lines() {
        let r = rec(7, 1234, true);
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(parse_records(&format!("noise\n{line}\n")), vec![r]);
    }

    #[test]
    fn backend_and_probe_talk_over_loopback() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in listener.incoming().take(3) {
                let _ = c.unwrap().write_all(b"node-9\n");
            }
        });
        let spec = ProbeSpec {
            target: addr,
            count: 3,
            interval: Duration::from_millis(1),
            timeout: Duration::from_secs(2),
        };
        let mut out = Vec::new();
        run(&spec, &mut out).unwrap();
        let recs = parse_records(&String::from_utf8(out).unwrap());
        assert_eq!(recs.len(), 3);
        assert!(
            recs.iter().all(|r| r.node.as_deref() == Some("node-9")),
            "{recs:?}"
        );
    }
}
