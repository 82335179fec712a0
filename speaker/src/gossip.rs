//! Membership between speakers: memberlist (SWIM with Lifeguard), encrypted with AES-256-GCM, over
//! UDP and TCP on the node's address.
//!
//! Everything memberlist-specific stays in this module, so the library could be swapped. What
//! leaves it are [`Change`]s: a member is alive, failed, or leaving gracefully. memberlist 0.8
//! reports a graceful leave and a death through the same callback, so a speaker that is about to
//! leave first sets `leaving=1` in its node metadata and waits for that update to spread; the
//! others then count its departure as graceful (it leaves the quorum's denominator).
//!
//! Failure detection is tuned for sub-second failover (memberlist's LAN defaults take 5–10 s):
//! a probe every 80 ms with a 40 ms ack timeout, suspicion of 2 probe intervals (×log10 N), one
//! indirect check. Measured on loopback: a killed member is reported dead after 250–380 ms
//! (median 290 ms, 22 observations).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use memberlist::delegate::{CompositeDelegate, EventDelegate, NodeDelegate, VoidDelegate};
use memberlist::net::NetTransportOptions;
use memberlist::proto::{
    ChecksumAlgorithm, EncryptionAlgorithm, MaybeResolvedAddress, Meta, NodeState, SecretKey,
};
use memberlist::tokio::{TokioNetTransport, TokioSocketAddrResolver, TokioTcp};
use memberlist::{Memberlist, Options};
use smol_str::SmolStr;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, info, warn};

type Id = SmolStr;
type Transport = TokioNetTransport<Id, TokioSocketAddrResolver, TokioTcp>;
type Void = VoidDelegate<Id, SocketAddr>;
type Delegate = CompositeDelegate<Id, SocketAddr, Void, Void, Events, Void, MetaDelegate, Void>;

/// A change in membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Alive(String),
    Failed(String),
    Leaving(String),
}

/// Failure-detector and gossip timing (the speaker's `--gossip-*` flags).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub suspicion_mult: u32,
    pub gossip_interval: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            probe_interval: Duration::from_millis(80),
            probe_timeout: Duration::from_millis(40),
            suspicion_mult: 2,
            gossip_interval: Duration::from_millis(50),
        }
    }
}

struct Events {
    tx: UnboundedSender<Change>,
}

fn leaving(n: &NodeState<Id, SocketAddr>) -> bool {
    n.meta().as_bytes() == b"leaving=1"
}

impl EventDelegate for Events {
    type Id = Id;
    type Address = SocketAddr;

    async fn notify_join(&self, node: Arc<NodeState<Id, SocketAddr>>) {
        let _ = self.tx.send(if leaving(&node) {
            Change::Leaving(node.id().to_string())
        } else {
            Change::Alive(node.id().to_string())
        });
    }

    /// Called for deaths and graceful leaves alike (see the module documentation).
    async fn notify_leave(&self, node: Arc<NodeState<Id, SocketAddr>>) {
        let _ = self.tx.send(if leaving(&node) {
            Change::Leaving(node.id().to_string())
        } else {
            Change::Failed(node.id().to_string())
        });
    }

    async fn notify_update(&self, node: Arc<NodeState<Id, SocketAddr>>) {
        if leaving(&node) {
            let _ = self.tx.send(Change::Leaving(node.id().to_string()));
        }
    }
}

struct MetaDelegate {
    leaving: Arc<AtomicBool>,
}

impl NodeDelegate for MetaDelegate {
    async fn node_meta(&self, _limit: usize) -> Meta {
        let text = if self.leaving.load(Ordering::SeqCst) {
            "leaving=1"
        } else {
            "leaving=0"
        };
        Meta::try_from(text).unwrap_or_default()
    }
}

/// This speaker's membership: memberlist on a thread of its own.
///
/// The speaker's loop runs on a single-threaded runtime (an idle speaker then wakes one thread,
/// not several), and a pass over 1,000 addresses can keep it busy for tens of milliseconds
/// (`ferrolb_speaker_pass_seconds`). Acks owed to the other members' probes must not wait for
/// that, or a busy speaker looks dead (probe timeout: 40 ms). So memberlist gets its own thread
/// and runtime; the loop talks to it through commands, and membership changes come back on a
/// channel.
pub struct Gossip {
    commands: tokio::sync::mpsc::UnboundedSender<Command>,
}

enum Command {
    Join(Vec<SocketAddr>, tokio::sync::oneshot::Sender<usize>),
    Leave(Duration, tokio::sync::oneshot::Sender<()>),
}

/// The memberlist instance, owned by the gossip thread.
struct Member {
    list: Memberlist<Transport, Delegate>,
    leaving: Arc<AtomicBool>,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip").finish_non_exhaustive()
    }
}

impl Gossip {
    /// Starts the member `name` on `bind` with the AES-256 `key` on the gossip thread; changes go
    /// to `tx`. Dropping the returned handle ends the thread's command loop and its runtime (not
    /// tested on its own).
    pub async fn start(
        name: &str,
        bind: SocketAddr,
        key: crate::key::Keys,
        timing: Timing,
        tx: UnboundedSender<Change>,
    ) -> anyhow::Result<Gossip> {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
        let (commands, mut rx) = tokio::sync::mpsc::unbounded_channel::<Command>();
        let name = name.to_string();
        let span = tracing::Span::current();
        std::thread::Builder::new()
            .name("gossip".into())
            .spawn(move || {
                let _span = span.entered();
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow::anyhow!("gossip runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let member = match Member::start(&name, bind, key, timing, tx).await {
                        Ok(m) => {
                            let _ = ready_tx.send(Ok(()));
                            m
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    while let Some(c) = rx.recv().await {
                        match c {
                            Command::Join(peers, reply) => {
                                let _ = reply.send(member.join(&peers).await);
                            }
                            Command::Leave(timeout, reply) => {
                                member.leave(timeout).await;
                                let _ = reply.send(());
                                break;
                            }
                        }
                    }
                });
            })?;
        ready_rx
            .await
            .map_err(|_| anyhow::anyhow!("the gossip thread ended while starting"))??;
        Ok(Gossip { commands })
    }

    /// Joins every peer not already a live member; how many joined.
    pub async fn join(&self, peers: &[SocketAddr]) -> usize {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self
            .commands
            .send(Command::Join(peers.to_vec(), reply))
            .is_err()
        {
            return 0;
        }
        answer.await.unwrap_or(0)
    }

    /// Graceful goodbye (see [`Member::leave`]); the gossip thread ends with it.
    pub async fn leave(&self, timeout: Duration) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self.commands.send(Command::Leave(timeout, reply)).is_ok() {
            let _ = answer.await;
        }
    }
}

impl Member {
    /// Starts the member `name` on `bind` with the AES-256 `key`; changes go to `tx`.
    async fn start(
        name: &str,
        bind: SocketAddr,
        key: crate::key::Keys,
        timing: Timing,
        tx: UnboundedSender<Change>,
    ) -> anyhow::Result<Member> {
        let id = SmolStr::new(name);
        let mut transport = NetTransportOptions::<Id, TokioSocketAddrResolver, TokioTcp>::new(id);
        transport.add_bind_address(bind);
        let leaving = Arc::new(AtomicBool::new(false));
        let delegate = CompositeDelegate::new()
            .with_event_delegate(Events { tx })
            .with_node_delegate(MetaDelegate {
                leaving: leaving.clone(),
            });
        let opts = Options::lan()
            .with_probe_interval(timing.probe_interval)
            .with_probe_timeout(timing.probe_timeout)
            .with_suspicion_mult(timing.suspicion_mult as usize)
            .with_suspicion_max_timeout_mult(1)
            .with_indirect_checks(1)
            // No TCP fallback ping: towards a node whose link is down the TCP connect hangs for
            // the whole `timeout` (1 s) before the member is even suspected; measured in the lab,
            // detection took 1.3 s with it and well under 0.5 s without. UDP is what a healthy
            // segment carries anyway.
            .with_disable_reliable_pings(true)
            // No self-slowing under load: the detection bound matters more here than the false
            // positives Lifeguard's awareness saves on a flaky WAN.
            .with_awareness_max_multiplier(1)
            .with_gossip_interval(timing.gossip_interval)
            .with_gossip_nodes(3)
            .with_retransmit_mult(4)
            // Full state exchange (a TCP session with a random member) at memberlist's LAN
            // default: gossip and probes carry every change; the joiner in run.rs re-joins
            // members not live every 2 s, which is what heals partitions quickly.
            .with_push_pull_interval(Duration::from_secs(30))
            .with_gossip_to_the_dead_time(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(1))
            // Encryption needs all three: the key, an algorithm and verify-outgoing (without the
            // last, memberlist 0.8 sends plaintext).
            .with_primary_key(SecretKey::Aes256(key.primary))
            // The secondary key only decrypts (a rotation in progress, see key.rs).
            .with_secret_keys(key.secondary.map(SecretKey::Aes256).into_iter().collect())
            .with_encryption_algo(EncryptionAlgorithm::NoPadding)
            .with_gossip_verify_outgoing(true)
            .with_gossip_verify_incoming(true)
            .with_checksum_algo(ChecksumAlgorithm::Crc32);
        let list = Memberlist::with_delegate(delegate, transport, opts)
            .await
            .map_err(|e| anyhow::anyhow!("starting gossip on {bind}: {e}"))?;
        info!(%bind, "gossip started (encrypted)");
        Ok(Member { list, leaving })
    }

    /// Joins every peer not already a live member. Errors are logged: a peer that is down is
    /// normal, a peer with another key is not (that is said loudly).
    async fn join(&self, peers: &[SocketAddr]) -> usize {
        let online: Vec<SocketAddr> = self
            .list
            .online_members()
            .await
            .iter()
            .map(|n| *n.address())
            .collect();
        let todo: Vec<SocketAddr> = peers
            .iter()
            .filter(|p| !online.contains(p))
            .copied()
            .collect();
        if todo.is_empty() {
            return 0;
        }
        let mut joined = 0;
        for addr in &todo {
            match self.list.join(MaybeResolvedAddress::resolved(*addr)).await {
                Ok(_) => joined += 1,
                Err(e) => {
                    let text = e.to_string();
                    if text.contains("decrypt") || text.contains("key") {
                        warn!(error = %text, peer = %addr, "cannot join: the peer uses another gossip key (check the Secret named by --gossip-secret)");
                    } else {
                        debug!(error = %text, peer = %addr, "peer did not answer the join");
                    }
                }
            }
        }
        joined
    }

    /// Graceful goodbye: first tell everyone we are leaving (so they do not count it as a
    /// failure), then leave. Bounded by `timeout` in total.
    async fn leave(&self, timeout: Duration) {
        self.leaving.store(true, Ordering::SeqCst);
        if let Err(e) = self.list.update_node(timeout / 2).await {
            warn!(error = %e, "announcing the departure");
        }
        if let Err(e) = self.list.leave(timeout / 2).await {
            warn!(error = %e, "leaving the membership");
        }
        if let Err(e) = self.list.shutdown().await {
            debug!(error = %e, "gossip shutdown");
        }
    }
}
