//! What this control-plane speaker sees, served as JSON on `/status` (beside /metrics, on
//! `--metrics-bind-address`), and `ferrolb-speaker control-plane status`, which prints it.
//!
//! A peer's own view is on that peer's endpoint (127.0.0.1 by default, so ask on its node); this
//! node reports what it knows of each peer: the health it last gossiped and, on the leader, how
//! long ago the peer last answered.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

/// This node's view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub id: u64,
    pub vip: IpAddr,
    pub interface: String,
    /// `follower`, `pre-candidate`, `candidate` or `leader`.
    pub role: String,
    pub term: u64,
    /// The leader this node knows of in `term`.
    pub leader: Option<u64>,
    /// Whether this node holds the VIP on its interface.
    pub vip_held: bool,
    /// The local API server's last health check: `healthy`, `unhealthy` or `unknown`.
    pub api_server: String,
    /// Why this node does not hold the VIP (none while it holds it).
    pub waiting: Option<String>,
    pub peers: Vec<Peer>,
}

/// What this node knows of one member of the group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    pub id: u64,
    pub address: SocketAddr,
    /// The API server health the peer last reported (`unknown` before its first report).
    pub api_server: String,
    /// On the leader: milliseconds since the peer last answered it in this term.
    pub last_answer_ms: Option<u64>,
}

/// Prints what a control-plane speaker on this node sees: its role, term and leader, who holds
/// the VIP and why this node does not, and what it knows of each peer.
#[derive(Parser, Debug)]
#[command(name = "ferrolb-speaker control-plane status", version, about)]
pub struct StatusArgs {
    /// The speaker's --metrics-bind-address.
    #[arg(
        long,
        env = "FERROLB_CP_METRICS_BIND_ADDRESS",
        default_value = "127.0.0.1:7474"
    )]
    pub address: SocketAddr,

    /// Output: `text` for people, `json` (the endpoint's document) for scripts.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// `ferrolb-speaker control-plane status …` (argv with `control-plane status` at 1 and 2).
pub fn main(mut argv: Vec<std::ffi::OsString>) -> anyhow::Result<()> {
    argv.drain(1..3.min(argv.len()));
    let args = StatusArgs::parse_from(argv);
    let body = fetch(args.address)?;
    let status: Status = serde_json::from_str(&body).with_context(|| {
        format!(
            "{} answered /status with something else: {body}",
            args.address
        )
    })?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        Output::Text => print!("{}", render(&status)),
    }
    Ok(())
}

/// GET /status over plain HTTP/1.0 (the endpoint is local; 2 s at most).
fn fetch(addr: SocketAddr) -> anyhow::Result<String> {
    let timeout = Duration::from_secs(2);
    let mut conn = TcpStream::connect_timeout(&addr, timeout).with_context(|| {
        format!(
            "no control-plane speaker answers on {addr}; is it running on this node, and is \
             --address its --metrics-bind-address?"
        )
    })?;
    conn.set_read_timeout(Some(timeout))?;
    conn.write_all(b"GET /status HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    conn.take(1 << 20).read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or_default();
    if !status_line.contains(" 200 ") {
        bail!("{addr} answered /status with `{status_line}`: {body}");
    }
    Ok(body.to_string())
}

/// The text form: one line about the VIP, one about this node, one per peer.
pub fn render(s: &Status) -> String {
    let holder = if s.vip_held {
        format!("held by this node ({})", s.id)
    } else {
        match (&s.waiting, s.leader) {
            (Some(w), Some(l)) if l != s.id => {
                format!("not held here ({w}); the leader is node {l}")
            }
            (Some(w), _) => format!("not held here ({w})"),
            (None, _) => "not held here".into(),
        }
    };
    let mut out = format!("VIP {} on {}: {holder}\n", s.vip, s.interface);
    out.push_str(&format!(
        "node {}: {}, term {}, leader {}, API server {}\n",
        s.id,
        s.role,
        s.term,
        s.leader.map_or("none".into(), |l| l.to_string()),
        s.api_server
    ));
    for p in &s.peers {
        let heard = p
            .last_answer_ms
            .map_or(String::new(), |ms| format!(", answered {ms} ms ago"));
        out.push_str(&format!(
            "  peer {} {}: API server {}{heard}\n",
            p.id, p.address, p.api_server
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(vip_held: bool, waiting: Option<&str>) -> Status {
        Status {
            id: 2,
            vip: "192.0.2.60".parse().unwrap(),
            interface: "eth0".into(),
            role: "follower".into(),
            term: 7,
            leader: Some(1),
            vip_held,
            api_server: "healthy".into(),
            waiting: waiting.map(str::to_string),
            peers: vec![Peer {
                id: 1,
                address: "192.0.2.11:7480".parse().unwrap(),
                api_server: "healthy".into(),
                last_answer_ms: None,
            }],
        }
    }

    #[test]
    fn a_follower_says_who_leads_and_why_it_holds_nothing() {
        assert_eq!(
            render(&status(false, Some("not the leader"))),
            "VIP 192.0.2.60 on eth0: not held here (not the leader); the leader is node 1\n\
             node 2: follower, term 7, leader 1, API server healthy\n  \
             peer 1 192.0.2.11:7480: API server healthy\n"
        );
    }

    #[test]
    fn the_document_round_trips_through_json() {
        let s = status(true, None);
        let back: Status = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert!(render(&s).starts_with("VIP 192.0.2.60 on eth0: held by this node (2)\n"));
    }
}
