//! TCP between control-plane speakers: one outgoing connection to each peer (frames this node
//! sends) and the incoming connections of the peers (frames it receives). Every frame is sealed
//! and opened by [`frame::Codec`]; a frame that fails authentication, is too long, replays an old
//! counter or names another recipient closes its connection and is logged, and its payload is
//! never decoded.
//!
//! Sending never blocks the Raft loop: each peer has a bounded queue, and a full queue or a
//! broken connection drops frames (Raft retransmits what matters). A connection whose data stays
//! unacknowledged for [`USER_TIMEOUT`] is cut by the kernel (`TCP_USER_TIMEOUT`) and redialled, so a
//! peer that comes back is reached again within about a second instead of after TCP's
//! exponential retransmission backoff.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use protobuf::Message as _;
use raft::prelude::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::frame::{Codec, Frame, Kind};
use ferrolb_speaker_core::control_plane::Health;

/// Frames queued per peer before new ones are dropped.
const QUEUE: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const REDIAL: Duration = Duration::from_millis(100);
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// See the module documentation.
pub const USER_TIMEOUT: Duration = Duration::from_millis(1000);

/// What a peer sent, authenticated and decoded.
#[derive(Debug)]
pub enum Inbound {
    Raft(Box<Message>),
    Health { from: u64, health: Health },
}

/// The sending half.
#[derive(Debug)]
pub struct Transport {
    codec: Arc<Codec>,
    peers: BTreeMap<u64, mpsc::Sender<Vec<u8>>>,
    counter: u64,
}

impl Transport {
    /// Listens on `listen` and dials every peer of `peers` (this node left out).
    pub async fn start(
        codec: Codec,
        listen: SocketAddr,
        peers: &BTreeMap<u64, SocketAddr>,
        first_counter: u64,
    ) -> anyhow::Result<(Transport, mpsc::Receiver<Inbound>)> {
        let codec = Arc::new(codec);
        let listener = TcpListener::bind(listen).await.map_err(|e| {
            anyhow::anyhow!(
                "listening for peers on {listen} failed: {e}; the address must be this node's \
                 own (its entry in --peers) and the port free"
            )
        })?;
        info!(%listen, "listening for control-plane peers");
        let (tx, rx) = mpsc::channel(1024);
        let seen: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
        tokio::spawn(accept_loop(listener, codec.clone(), tx, seen));
        let mut senders = BTreeMap::new();
        for (&id, &addr) in peers {
            let (ptx, prx) = mpsc::channel(QUEUE);
            tokio::spawn(dial_loop(id, addr, prx));
            senders.insert(id, ptx);
        }
        Ok((
            Transport {
                codec,
                peers: senders,
                counter: first_counter,
            },
            rx,
        ))
    }

    fn send_frame(&mut self, to: u64, kind: Kind, payload: &[u8]) {
        let Some(queue) = self.peers.get(&to) else {
            debug!(to, "no such peer; message dropped");
            return;
        };
        self.counter += 1;
        let Some(frame) = self.codec.seal(kind, to, self.counter, payload) else {
            warn!(
                to,
                bytes = payload.len(),
                "message too large for a frame; dropped"
            );
            return;
        };
        if queue.try_send(frame).is_err() {
            debug!(to, "peer queue full or closed; message dropped");
        }
    }

    /// Sends Raft messages to their recipients.
    pub fn send_raft(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            match m.write_to_bytes() {
                Ok(bytes) => self.send_frame(m.to, Kind::Raft, &bytes),
                Err(e) => warn!(error = %e, "encoding a Raft message failed; dropped"),
            }
        }
    }

    /// Tells every peer how this node's API server is.
    pub fn send_health(&mut self, health: Health) {
        let byte = match health {
            Health::Healthy => 1,
            Health::Unhealthy => 2,
            Health::Unknown => 0,
        };
        let ids: Vec<u64> = self.peers.keys().copied().collect();
        for id in ids {
            self.send_frame(id, Kind::Health, &[byte]);
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    codec: Arc<Codec>,
    tx: mpsc::Sender<Inbound>,
    seen: Arc<Mutex<HashMap<u64, u64>>>,
) {
    loop {
        match listener.accept().await {
            Ok((conn, from)) => {
                let _ = conn.set_nodelay(true);
                tokio::spawn(read_loop(
                    conn,
                    from,
                    codec.clone(),
                    tx.clone(),
                    seen.clone(),
                ));
            }
            Err(e) => {
                warn!(error = %e, "accepting a peer connection failed");
                tokio::time::sleep(REDIAL).await;
            }
        }
    }
}

/// Reads frames from one incoming connection until it ends or sends something invalid.
async fn read_loop(
    mut conn: TcpStream,
    addr: SocketAddr,
    codec: Arc<Codec>,
    tx: mpsc::Sender<Inbound>,
    seen: Arc<Mutex<HashMap<u64, u64>>>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match conn.read(&mut chunk).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                debug!(%addr, error = %e, "peer connection ended");
                return;
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let (frame, used) = match codec.open(&buf) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => {
                    warn!(%addr, error = %e, "refused a peer frame; closing the connection");
                    return;
                }
            };
            buf.drain(..used);
            match accept(frame, &seen) {
                Ok(inbound) => {
                    if tx.send(inbound).await.is_err() {
                        return;
                    }
                }
                Err(why) => {
                    warn!(%addr, reason = %why, "refused a peer frame; closing the connection");
                    return;
                }
            }
        }
    }
}

/// Checks an authenticated frame against replay, then decodes its payload.
fn accept(frame: Frame, seen: &Mutex<HashMap<u64, u64>>) -> Result<Inbound, String> {
    {
        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        let last = seen.entry(frame.from).or_insert(0);
        if frame.counter <= *last {
            return Err(format!(
                "replayed or reordered frame from node {} (counter {} after {})",
                frame.from, frame.counter, *last
            ));
        }
        *last = frame.counter;
    }
    decode(frame)
}

/// Decodes an authenticated, fresh frame's payload.
pub fn decode(frame: Frame) -> Result<Inbound, String> {
    match frame.kind {
        Kind::Raft => {
            let m = Message::parse_from_bytes(&frame.payload)
                .map_err(|e| format!("undecodable Raft message from node {}: {e}", frame.from))?;
            if m.from != frame.from || m.to != frame.to {
                return Err(format!(
                    "Raft message claims to be from {} to {} inside a frame from {} to {}",
                    m.from, m.to, frame.from, frame.to
                ));
            }
            Ok(Inbound::Raft(Box::new(m)))
        }
        Kind::Health => {
            let health = match frame.payload.as_slice() {
                [1] => Health::Healthy,
                [2] => Health::Unhealthy,
                [0] => Health::Unknown,
                _ => return Err(format!("malformed health report from node {}", frame.from)),
            };
            Ok(Inbound::Health {
                from: frame.from,
                health,
            })
        }
    }
}

/// Keeps one outgoing connection to a peer and writes its queued frames.
async fn dial_loop(id: u64, addr: SocketAddr, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut warned = false;
    loop {
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                if !warned {
                    warn!(peer = id, %addr, error = %e, "cannot reach peer; retrying");
                    warned = true;
                }
                drain(&mut rx);
                tokio::time::sleep(REDIAL).await;
                continue;
            }
            Err(_) => {
                if !warned {
                    warn!(peer = id, %addr, "connecting to peer timed out; retrying");
                    warned = true;
                }
                drain(&mut rx);
                continue;
            }
        };
        let _ = conn.set_nodelay(true);
        let ms = u32::try_from(USER_TIMEOUT.as_millis()).unwrap_or(u32::MAX);
        if let Err(e) = nix::sys::socket::setsockopt(
            &conn.as_fd(),
            nix::sys::socket::sockopt::TcpUserTimeout,
            &ms,
        ) {
            debug!(peer = id, error = %e, "TCP_USER_TIMEOUT not set");
        }
        info!(peer = id, %addr, "connected to peer");
        warned = false;
        let mut conn = conn;
        // Frames queued while disconnected are stale; Raft resends what still matters.
        drain(&mut rx);
        loop {
            let Some(frame) = rx.recv().await else {
                return;
            };
            match tokio::time::timeout(WRITE_TIMEOUT, conn.write_all(&frame)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    warn!(peer = id, %addr, error = %e, "peer connection broke; redialling");
                    break;
                }
                Err(_) => {
                    warn!(peer = id, %addr, "peer connection stalled; redialling");
                    break;
                }
            }
        }
    }
}

fn drain(rx: &mut mpsc::Receiver<Vec<u8>>) {
    while rx.try_recv().is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control_plane::frame::KEY_LEN;

    #[test]
    fn replayed_frames_and_mismatched_senders_are_refused() {
        let a = Codec::new(&[1; KEY_LEN], 1);
        let b = Codec::new(&[1; KEY_LEN], 2);
        let seen = Mutex::new(HashMap::new());
        let mut m = Message {
            from: 1,
            to: 2,
            term: 3,
            ..Default::default()
        };
        let payload = m.write_to_bytes().unwrap();
        let f = a.seal(Kind::Raft, 2, 10, &payload).unwrap();
        let (frame, _) = b.open(&f).unwrap().unwrap();
        assert!(matches!(accept(frame.clone(), &seen), Ok(Inbound::Raft(m)) if m.term == 3));
        let err = accept(frame, &seen).unwrap_err();
        assert!(err.contains("replayed"), "{err}");
        // Authenticated by node 1 but claiming to be node 3's message.
        m.from = 3;
        let f = a
            .seal(Kind::Raft, 2, 11, &m.write_to_bytes().unwrap())
            .unwrap();
        let (frame, _) = b.open(&f).unwrap().unwrap();
        assert!(accept(frame, &seen).unwrap_err().contains("claims"));
        // Garbage from a key holder is an error, not a panic.
        let f = a.seal(Kind::Raft, 2, 12, &[0xff; 16]).unwrap();
        let (frame, _) = b.open(&f).unwrap().unwrap();
        assert!(accept(frame, &seen).is_err());
        let f = a.seal(Kind::Health, 2, 13, &[1]).unwrap();
        let (frame, _) = b.open(&f).unwrap().unwrap();
        assert!(matches!(
            accept(frame, &seen),
            Ok(Inbound::Health {
                from: 1,
                health: Health::Healthy
            })
        ));
    }

    fn free_port() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    async fn next(rx: &mut mpsc::Receiver<Inbound>, wait: Duration) -> Option<Inbound> {
        tokio::time::timeout(wait, rx.recv()).await.ok().flatten()
    }

    #[tokio::test]
    async fn a_peer_with_the_wrong_key_is_refused_and_nothing_reaches_raft() {
        let listen = free_port();
        let (_t, mut rx) =
            Transport::start(Codec::new(&[1; KEY_LEN], 2), listen, &BTreeMap::new(), 1)
                .await
                .unwrap();
        // The right key: delivered.
        let mut c = TcpStream::connect(listen).await.unwrap();
        let good = Codec::new(&[1; KEY_LEN], 1)
            .seal(Kind::Health, 2, 5, &[1])
            .unwrap();
        c.write_all(&good).await.unwrap();
        assert!(matches!(
            next(&mut rx, Duration::from_secs(5)).await,
            Some(Inbound::Health { from: 1, .. })
        ));
        // Another key: the node closes the connection and delivers nothing.
        for bad in [
            Codec::new(&[2; KEY_LEN], 1)
                .seal(Kind::Raft, 2, 6, &[0x0b; 64])
                .unwrap(),
            // An oversized length.
            [u32::MAX.to_be_bytes().as_slice(), &[0; 60]].concat(),
        ] {
            let mut c = TcpStream::connect(listen).await.unwrap();
            c.write_all(&bad).await.unwrap();
            let mut buf = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
                .await
                .unwrap();
            assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
            assert!(next(&mut rx, Duration::from_millis(200)).await.is_none());
        }
    }

    #[tokio::test]
    async fn two_transports_carry_raft_messages() {
        let (a_addr, b_addr) = (free_port(), free_port());
        let key = [3; KEY_LEN];
        let (mut a, _a_rx) = Transport::start(
            Codec::new(&key, 1),
            a_addr,
            &[(2, b_addr)].into(),
            unix_now(),
        )
        .await
        .unwrap();
        let (_b, mut b_rx) = Transport::start(
            Codec::new(&key, 2),
            b_addr,
            &[(1, a_addr)].into(),
            unix_now(),
        )
        .await
        .unwrap();
        let m = Message {
            from: 1,
            to: 2,
            term: 9,
            ..Default::default()
        };
        // The first frames may go before the connection is up; bounded retries.
        let mut got = None;
        for _ in 0..50 {
            a.send_raft(vec![m.clone()]);
            if let Some(x) = next(&mut b_rx, Duration::from_millis(100)).await {
                got = Some(x);
                break;
            }
        }
        assert!(matches!(got, Some(Inbound::Raft(m)) if m.term == 9 && m.from == 1));
    }

    fn unix_now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64
    }
}
