//! `ferrolb-speaker control-plane`: the floating address in front of the kube-apiservers of the
//! control-plane nodes, held by the Raft leader while its local API server is healthy.
//!
//! The decisions are in `ferrolb_speaker_core::control_plane` (pure); this module is the runtime
//! that carries them out: the Raft node ([`raft::RawNode`] over [`storage::DiskStorage`]), the
//! authenticated TCP transport ([`transport`], [`frame`]), the health check ([`health`]), the
//! address (netlink through `ferrolb_net::Addresses`) and its announcements (`ferrolb_net::Responder`).
//! No Kubernetes API is used: the election works while every API server is down.

pub mod frame;
pub mod health;
pub mod logger;
pub mod manifest;
pub mod metrics;
pub mod status;
pub mod storage;
pub mod transport;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use ferrolb_daemon::LogArgs;
use ferrolb_daemon::Shutdown;
use ferrolb_net::{Addresses, Interface, Responder};
use ferrolb_speaker_core::control_plane::{
    Action, ControlPlane, Health, RaftView, Role, Timing, Waiting,
};
use raft::prelude::{Message, MessageType};
use raft::{RawNode, StateRole};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use storage::DiskStorage;
use transport::{Inbound, Transport};

/// ferrolb control-plane speaker: holds the control-plane VIP on the Raft leader whose local
/// kube-apiserver is healthy. Runs as a static pod on every control-plane node; needs no
/// Kubernetes credentials.
///
/// Every flag can also be set through the environment variable named in its description.
#[derive(Parser, Debug)]
#[command(name = "ferrolb-speaker control-plane", version, about, long_about)]
pub struct Args {
    /// The control-plane VIP (IPv4 or IPv6), in a subnet of --interface.
    #[arg(long, env = "FERROLB_CP_VIP")]
    pub vip: IpAddr,

    /// Interface the VIP is added to and announced on.
    #[arg(long, env = "FERROLB_CP_INTERFACE")]
    pub interface: String,

    /// This node's Raft id (one of the ids in --peers, not 0).
    #[arg(long, env = "FERROLB_CP_ID", value_parser = clap::value_parser!(u64).range(1..))]
    pub id: u64,

    /// Every control-plane node, this one included: ID=ADDRESS:PORT, comma-separated (e.g.
    /// `1=192.0.2.11:7480,2=192.0.2.12:7480,3=192.0.2.13:7480`). This node listens on its own.
    #[arg(long, env = "FERROLB_CP_PEERS", value_delimiter = ',', value_parser = parse_peer, required = true)]
    pub peers: Vec<(u64, SocketAddr)>,

    /// The local API server's readiness URL.
    #[arg(
        long,
        env = "FERROLB_CP_HEALTH_URL",
        default_value = "https://127.0.0.1:6443/readyz"
    )]
    pub health_url: String,

    /// CA certificates (PEM) to check the API server's certificate with (the cluster CA,
    /// /etc/kubernetes/pki/ca.crt on kubeadm clusters).
    #[arg(long, env = "FERROLB_CP_HEALTH_CA", conflicts_with = "health_insecure")]
    pub health_ca: Option<PathBuf>,

    /// Do not check the API server's certificate (then a 2xx from anything on the port counts).
    #[arg(long, env = "FERROLB_CP_HEALTH_INSECURE")]
    pub health_insecure: bool,

    /// Milliseconds between health checks.
    #[arg(long, env = "FERROLB_CP_HEALTH_INTERVAL_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub health_interval_ms: u64,

    /// Milliseconds a health check may take before the API server counts as unhealthy (hung).
    #[arg(long, env = "FERROLB_CP_HEALTH_TIMEOUT_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub health_timeout_ms: u64,

    /// Directory for Raft's durable state (term, vote, log), kept across restarts.
    #[arg(
        long,
        env = "FERROLB_CP_DATA_DIR",
        default_value = "/var/lib/ferrolb/control-plane"
    )]
    pub data_dir: PathBuf,

    /// File with the group's pre-shared key: 64 hexadecimal digits (`openssl rand -hex 32`), the
    /// same on every control-plane node. Authenticates every frame between them.
    #[arg(long, env = "FERROLB_CP_KEY_FILE")]
    pub key_file: PathBuf,

    /// Milliseconds per Raft tick.
    #[arg(long, env = "FERROLB_CP_TICK_MS", default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub tick_ms: u64,

    /// Ticks between leader heartbeats.
    #[arg(long, env = "FERROLB_CP_HEARTBEAT_TICKS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    pub heartbeat_ticks: u64,

    /// Ticks without a leader before a follower campaigns (randomised up to twice this), and the
    /// check-quorum window of a leader. Must exceed --heartbeat-ticks.
    #[arg(long, env = "FERROLB_CP_ELECTION_TICKS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=10_000))]
    pub election_ticks: u64,

    /// Address of the /metrics, /healthz and /readyz endpoints (not the service speaker's 7473:
    /// both may run on one node).
    #[arg(
        long,
        env = "FERROLB_CP_METRICS_BIND_ADDRESS",
        default_value = "127.0.0.1:7474"
    )]
    pub metrics_bind_address: SocketAddr,

    #[command(flatten)]
    pub log: LogArgs,
}

fn parse_peer(s: &str) -> Result<(u64, SocketAddr), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ID=ADDRESS:PORT"))?;
    let id: u64 = id
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: the id {id:?} is not a number"))?;
    if id == 0 {
        return Err(format!("{s:?}: id 0 is reserved by Raft; use 1 and up"));
    }
    let addr: SocketAddr = addr
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: {addr:?} is not ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)"))?;
    Ok((id, addr))
}

/// The validated configuration.
#[derive(Debug)]
struct Plan {
    peers: BTreeMap<u64, SocketAddr>,
    listen: SocketAddr,
    key: [u8; frame::KEY_LEN],
    iface: Interface,
    trust: health::Trust,
}

/// The checks of the flags alone (no file, no interface), each failing with what to do: shared by
/// the daemon's start-up and `manifest control-plane`, which refuses what the daemon would.
pub(crate) fn check_args(args: &Args) -> anyhow::Result<(BTreeMap<u64, SocketAddr>, SocketAddr)> {
    let mut peers = BTreeMap::new();
    for (id, addr) in &args.peers {
        if let Some(prev) = peers.insert(*id, *addr) {
            bail!(
                "--peers names node {id} twice ({prev} and {addr}); every control-plane node \
                 needs its own id"
            );
        }
    }
    let mut addrs = BTreeSet::new();
    for (id, addr) in &peers {
        if !addrs.insert(*addr) {
            bail!("--peers gives {addr} to more than one node (node {id} among them)");
        }
    }
    let Some(&listen) = peers.get(&args.id) else {
        bail!(
            "--peers does not name this node (--id {}); list every control-plane node, this one \
             included, as ID=ADDRESS:PORT",
            args.id
        );
    };
    if args.election_ticks <= args.heartbeat_ticks {
        bail!(
            "--election-ticks ({}) must be larger than --heartbeat-ticks ({})",
            args.election_ticks,
            args.heartbeat_ticks
        );
    }
    if args.health_ca.is_none() && !args.health_insecure {
        bail!(
            "give --health-ca FILE (the cluster CA, /etc/kubernetes/pki/ca.crt on kubeadm) or \
             --health-insecure to check the API server without verifying its certificate"
        );
    }
    Ok((peers, listen))
}

/// Start-up checks, each failing with what to do.
fn validate(args: &Args) -> anyhow::Result<Plan> {
    let (peers, listen) = check_args(args)?;
    let key_text = std::fs::read_to_string(&args.key_file).with_context(|| {
        format!(
            "reading --key-file {}; create it with `openssl rand -hex 32 > FILE` and give every \
             control-plane node the same file",
            args.key_file.display()
        )
    })?;
    let key = frame::parse_key(&key_text)
        .map_err(|e| anyhow::anyhow!("--key-file {}: {e}", args.key_file.display()))?;
    let iface = ferrolb_net::interface(&args.interface)
        .with_context(|| format!("--interface {}", args.interface))?;
    if !iface.is_on_link(args.vip) {
        let have: Vec<String> = iface.addresses.iter().map(|a| a.to_string()).collect();
        bail!(
            "--vip {} is not in a subnet of {} (it has {}); clients find the VIP with ARP/NDP, so \
             it must be on the interface's own subnet",
            args.vip,
            iface.name,
            if have.is_empty() {
                "no address".to_string()
            } else {
                have.join(", ")
            }
        );
    }
    if !listen.ip().is_unspecified() && !iface.addresses.iter().any(|a| a.ip == listen.ip()) {
        warn!(
            address = %listen.ip(), iface = %iface.name,
            "this node's peer address is not on --interface; fine if it is on another interface"
        );
    }
    let trust = match &args.health_ca {
        Some(ca) => health::Trust::CaFile(ca.clone()),
        None => health::Trust::Insecure,
    };
    Ok(Plan {
        peers,
        listen,
        key,
        iface,
        trust,
    })
}

/// Entry point of the subcommand; `argv` starts with the program name and `control-plane`.
pub async fn main(argv: Vec<std::ffi::OsString>) -> anyhow::Result<()> {
    let mut argv = argv;
    if argv.len() > 1 {
        argv.remove(1);
    }
    let args = Args::parse_from(argv);
    let mut shutdown = Shutdown::register()?;
    args.log.init()?;
    let result = run(&args, &mut shutdown).await;
    if let Err(e) = &result {
        error!(error = format!("{e:#}"), "control-plane speaker stopped");
    }
    result
}

fn role_of(s: StateRole) -> Role {
    match s {
        StateRole::Follower => Role::Follower,
        StateRole::PreCandidate => Role::PreCandidate,
        StateRole::Candidate => Role::Candidate,
        StateRole::Leader => Role::Leader,
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The running node: Raft, the core, and what carries out the core's actions.
struct Node {
    raw: RawNode<DiskStorage>,
    core: ControlPlane,
    transport: Transport,
    addresses: Addresses,
    responder: Responder,
    iface: Interface,
    vip: IpAddr,
    voters: Vec<u64>,
    /// When each peer last answered this leader in its current term.
    acks: BTreeMap<u64, Instant>,
    last_view: Option<RaftView>,
    last_waiting: Option<Waiting>,
    metrics: metrics::Metrics,
    /// Every member's Raft address (this node's included), for the status report.
    peers: BTreeMap<u64, SocketAddr>,
    /// The local API server's last health, and whether the VIP is on the interface.
    health: Option<Health>,
    vip_held: bool,
    /// When `/status` was last written, and what it said of role, leader, VIP and health: it is
    /// rewritten when one of those changes, else at most every [`STATUS_EVERY`] (not every tick).
    status_at: Option<(Instant, RaftView, bool, Option<Health>)>,
}

/// How stale the ages and countdowns on `/status` may get between changes.
const STATUS_EVERY: Duration = Duration::from_millis(250);

async fn run(args: &Args, shutdown: &mut Shutdown) -> anyhow::Result<()> {
    let plan = validate(args)?;
    let voters: Vec<u64> = plan.peers.keys().copied().collect();
    match voters.len() {
        1 => info!("a group of one: this node holds the VIP whenever its API server is healthy"),
        2 => warn!(
            "a group of two cannot survive the failure of either node (Raft needs a majority, 2 of 2); \
             use three or more control-plane nodes for high availability"
        ),
        _ => {}
    }
    let tick = Duration::from_millis(args.tick_ms);
    let election_timeout = tick * u32::try_from(args.election_ticks).unwrap_or(u32::MAX);
    let config = raft::Config {
        id: args.id,
        election_tick: usize::try_from(args.election_ticks)?,
        heartbeat_tick: usize::try_from(args.heartbeat_ticks)?,
        pre_vote: true,
        check_quorum: true,
        ..Default::default()
    };
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("Raft configuration: {e}"))?;
    let storage = DiskStorage::open(&args.data_dir, &voters)?;
    let raw = RawNode::new(&config, storage, &logger::logger())
        .map_err(|e| anyhow::anyhow!("starting Raft: {e}"))?;
    info!(
        id = args.id, vip = %args.vip, iface = %plan.iface.name, term = raw.raft.term,
        election_timeout_ms = election_timeout.as_millis() as u64, peers = ?plan.peers,
        "control-plane speaker starting"
    );

    let (addresses, conn) = Addresses::connect()?;
    tokio::spawn(conn);
    // An address left by an earlier run of this speaker (killed before it could clean up) would
    // answer beside the real holder: remove it before anything else.
    if addresses.has(plan.iface.index, args.vip).await? {
        warn!(vip = %args.vip, iface = %plan.iface.name, "VIP found on the interface at start (left by an earlier run); removing it");
        addresses.remove(plan.iface.index, args.vip).await?;
    }
    let responder = Responder::start(&plan.iface)?;
    let others: BTreeMap<u64, SocketAddr> = plan
        .peers
        .iter()
        .filter(|(id, _)| **id != args.id)
        .map(|(id, a)| (*id, *a))
        .collect();
    let codec = frame::Codec::new(&plan.key, args.id);
    let (transport, mut inbound) =
        Transport::start(codec, plan.listen, &others, unix_micros()).await?;

    let checker = health::Checker::new(
        &args.health_url,
        &plan.trust,
        Duration::from_millis(args.health_timeout_ms),
    )?;
    let (health_tx, mut health_rx) = mpsc::channel(4);
    tokio::spawn(health_loop(
        checker,
        Duration::from_millis(args.health_interval_ms),
        health_tx,
    ));

    let core = ControlPlane::new(
        args.id,
        voters.clone(),
        args.vip,
        Timing::for_election_timeout(election_timeout),
    );
    let mut node = Node {
        raw,
        core,
        transport,
        addresses,
        responder,
        iface: plan.iface,
        vip: args.vip,
        voters,
        acks: BTreeMap::new(),
        last_view: None,
        last_waiting: None,
        metrics: metrics::Metrics::new(),
        peers: plan.peers.clone(),
        health: None,
        vip_held: false,
        status_at: None,
    };
    let serve = ferrolb_daemon::serve(args.metrics_bind_address, node.metrics.health.clone());
    tokio::spawn(async move {
        if let Err(e) = serve.await {
            error!(error = format!("{e:#}"), "the metrics endpoint stopped");
        }
    });
    node.metrics.health.set_ready(true);
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_health: Option<Health> = None;

    let result: anyhow::Result<&'static str> = async {
        loop {
            tokio::select! {
                _ = ticker.tick() => node.tick(),
                Some(msg) = inbound.recv() => node.receive(msg),
                Some((health, why)) = health_rx.recv() => {
                    let now = Instant::now();
                    if last_health != Some(health) {
                        match (&why, health) {
                            (Some(why), _) => warn!(%health, reason = %why, "local API server health changed"),
                            (None, _) => info!(%health, "local API server health changed"),
                        }
                        last_health = Some(health);
                    }
                    node.core.observe_health(now, health);
                    node.health = Some(health);
                    node.metrics.api_server_healthy.set(i64::from(health == Health::Healthy));
                    node.transport.send_health(health);
                }
                reason = shutdown.wait() => return Ok(reason),
            }
            node.step().await?;
        }
    }
    .await;

    // Stopping (signal or error): give the VIP up first, hand leadership over, then wait a little
    // for the transfer's messages to go out.
    node.core.shutdown();
    if let Err(e) = node.step().await {
        warn!(error = format!("{e:#}"), "handing over while stopping");
    }
    let deadline = Instant::now() + election_timeout;
    while node.raw.raft.state == StateRole::Leader
        && node.voters.len() > 1
        && Instant::now() < deadline
    {
        tokio::select! {
            _ = ticker.tick() => node.tick(),
            Some(msg) = inbound.recv() => node.receive(msg),
        }
        if let Err(e) = node.step().await {
            warn!(error = format!("{e:#}"), "handing over while stopping");
            break;
        }
    }
    node.release().await;
    let reason = result?;
    info!(reason, "control-plane speaker stopped");
    Ok(())
}

/// The latest time by which a quorum had answered this leader in its term: the majority-th most
/// recent answer, this leader counting as one answering `now`.
fn quorum_ack(
    now: Instant,
    me: u64,
    voters: &[u64],
    acks: &BTreeMap<u64, Instant>,
) -> Option<Instant> {
    let mut times: Vec<Instant> = vec![now];
    times.extend(
        voters
            .iter()
            .filter(|id| **id != me)
            .filter_map(|id| acks.get(id).copied()),
    );
    times.sort_unstable_by(|a, b| b.cmp(a));
    let quorum = voters.len() / 2 + 1;
    // Fewer answers than a quorum: none yet in this term (the election counts as the first).
    times.get(quorum - 1).copied()
}

/// Checks the API server every `interval`, reporting each result (with the failure's reason).
async fn health_loop(
    checker: health::Checker,
    interval: Duration,
    tx: mpsc::Sender<(Health, Option<String>)>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = match checker.check().await {
            Ok(()) => (Health::Healthy, None),
            Err(e) => (Health::Unhealthy, Some(format!("{e:#}"))),
        };
        if tx.send(result).await.is_err() {
            return;
        }
    }
}

impl Node {
    /// One Raft tick. A node that may not campaign (its API server is not healthy) lets time pass
    /// without the election timer firing: its `election_elapsed` still grows, so it stops
    /// honouring the old leader's lease (thesis §6.2, §9.6) and votes for a healthy candidate.
    fn tick(&mut self) {
        let now = Instant::now();
        if self.raw.raft.state == StateRole::Leader || self.core.may_campaign(now) {
            self.raw.tick();
        } else {
            self.raw.raft.election_elapsed = self.raw.raft.election_elapsed.saturating_add(1);
        }
    }

    fn receive(&mut self, msg: Inbound) {
        let now = Instant::now();
        match msg {
            Inbound::Raft(m) => {
                let is_ack = matches!(
                    m.get_msg_type(),
                    MessageType::MsgHeartbeatResponse | MessageType::MsgAppendResponse
                );
                if is_ack
                    && self.raw.raft.state == StateRole::Leader
                    && m.term == self.raw.raft.term
                {
                    self.acks.insert(m.from, now);
                }
                if let Err(e) = self.raw.step(*m) {
                    debug!(error = %e, "Raft refused a message");
                }
            }
            Inbound::Health { from, health } => self.core.observe_peer_health(now, from, health),
        }
    }

    /// Handles Raft's `Ready`, tells the core what changed, and carries out its actions.
    async fn step(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        self.ready()?;
        let view = RaftView {
            role: role_of(self.raw.raft.state),
            term: self.raw.raft.term,
            leader: Some(self.raw.raft.leader_id).filter(|l| *l != raft::INVALID_ID),
        };
        if self.last_view != Some(view) {
            info!(role = ?view.role, term = view.term, leader = ?view.leader, "Raft state changed");
            if view.role != Role::Leader || self.last_view.is_none_or(|v| v.term != view.term) {
                self.acks.clear();
            }
            if self.last_view.is_some_and(|v| v.leader != view.leader) {
                self.metrics.leader_changes.inc();
            }
            self.metrics
                .leader
                .set(i64::from(view.role == Role::Leader));
            self.metrics
                .term
                .set(i64::try_from(view.term).unwrap_or(i64::MAX));
            self.last_view = Some(view);
        }
        self.core.observe_raft(now, view);
        if view.role == Role::Leader
            && let Some(at) = quorum_ack(now, self.core.id(), &self.voters, &self.acks)
        {
            self.core.quorum_ack(at);
        }
        let waiting = self.core.waiting(now);
        if waiting.as_ref().map(std::mem::discriminant)
            != self.last_waiting.as_ref().map(std::mem::discriminant)
        {
            debug!(?waiting, "VIP decision input changed");
            self.last_waiting = waiting;
        }
        for action in self.core.poll(now) {
            self.execute(action).await?;
        }
        self.publish_status(now, view);
        Ok(())
    }

    /// Replaces the `/status` document with what this node sees now, when something in it changed
    /// or [`STATUS_EVERY`] has passed.
    fn publish_status(&mut self, now: Instant, view: RaftView) {
        if let Some((at, v, held, health)) = self.status_at
            && (v, held, health) == (view, self.vip_held, self.health)
            && now.saturating_duration_since(at) < STATUS_EVERY
        {
            return;
        }
        self.status_at = Some((now, view, self.vip_held, self.health));
        let peers = self
            .peers
            .iter()
            .filter(|(id, _)| **id != self.core.id())
            .map(|(id, address)| status::Peer {
                id: *id,
                address: *address,
                api_server: self
                    .core
                    .peer_health(*id)
                    .unwrap_or(Health::Unknown)
                    .to_string(),
                last_answer_ms: self.acks.get(id).map(|at| {
                    u64::try_from(now.saturating_duration_since(*at).as_millis())
                        .unwrap_or(u64::MAX)
                }),
            })
            .collect();
        let doc = status::Status {
            id: self.core.id(),
            vip: self.vip,
            interface: self.iface.name.clone(),
            role: match view.role {
                Role::Follower => "follower",
                Role::PreCandidate => "pre-candidate",
                Role::Candidate => "candidate",
                Role::Leader => "leader",
            }
            .into(),
            term: view.term,
            leader: view.leader,
            vip_held: self.vip_held,
            api_server: self.health.unwrap_or(Health::Unknown).to_string(),
            waiting: self.core.waiting(now).map(|w| match w {
                Waiting::NotLeader => "not the leader".to_string(),
                Waiting::Fence { until } => format!(
                    "leader, waiting {} ms more for the old leader's quorum window to pass",
                    until.saturating_duration_since(now).as_millis()
                ),
                Waiting::Unhealthy => "the local API server is not healthy".to_string(),
                Waiting::LostQuorum => "leader without a quorum".to_string(),
                Waiting::ShuttingDown => "shutting down".to_string(),
            }),
            peers,
        };
        if let Ok(json) = serde_json::to_string(&doc) {
            self.metrics.health.set_status(json);
        }
    }

    async fn execute(&mut self, action: Action) -> anyhow::Result<()> {
        let (index, vip, iface) = (self.iface.index, self.vip, self.iface.name.clone());
        match action {
            Action::AddVip => {
                let added = self.addresses.add(index, vip).await?;
                self.responder.set_owned([vip]);
                self.metrics.vip_held.set(1);
                self.vip_held = true;
                info!(%vip, %iface, term = self.raw.raft.term, ?added, "VIP added: this node is the healthy leader and the old leader's quorum window has passed");
            }
            Action::RemoveVip(reason) => {
                self.responder.set_owned([]);
                self.metrics.vip_held.set(0);
                self.vip_held = false;
                let removed = self.addresses.remove(index, vip).await?;
                info!(%vip, %iface, %reason, removed, "VIP removed");
            }
            Action::Announce => {
                if let Err(e) = self.responder.announce(vip) {
                    warn!(%vip, error = %e, "announcing the VIP failed");
                }
            }
            Action::TransferLeader { to } => {
                info!(to, "handing Raft leadership to a healthy peer");
                self.raw.transfer_leader(to);
                self.ready()?;
            }
        }
        Ok(())
    }

    /// Persists and sends what Raft produced (raft-rs's `Ready` protocol: messages that need
    /// the hard state or entries on disk go only after the fsync).
    fn ready(&mut self) -> anyhow::Result<()> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let may_campaign = self.core.may_campaign(Instant::now());
        let mut rd = self.raw.ready();
        self.send(rd.take_messages(), may_campaign);
        if !rd.snapshot().is_empty() {
            self.raw
                .store()
                .mem()
                .wl()
                .apply_snapshot(rd.snapshot().clone())?;
        }
        // Nothing is proposed in this group: committed entries are the leaders' empty entries.
        let _ = rd.take_committed_entries();
        let mut dirty = false;
        if !rd.entries().is_empty() {
            self.raw.store().mem().wl().append(rd.entries())?;
            dirty = true;
        }
        if let Some(hs) = rd.hs() {
            self.raw.store().mem().wl().set_hardstate(hs.clone());
            dirty = true;
        }
        if dirty {
            self.raw.store().persist()?;
        }
        self.send(rd.take_persisted_messages(), may_campaign);
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.raw.store().mem().wl().mut_hard_state().commit = commit;
            self.raw.store().persist()?;
        }
        self.send(light.take_messages(), may_campaign);
        let _ = light.take_committed_entries();
        self.raw.advance_apply();
        Ok(())
    }

    /// Sends messages, except this node's vote requests while it may not campaign.
    fn send(&mut self, msgs: Vec<Message>, may_campaign: bool) {
        let msgs = msgs
            .into_iter()
            .filter(|m| {
                let campaign = matches!(
                    m.get_msg_type(),
                    MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
                );
                if campaign && !may_campaign {
                    debug!(
                        to = m.to,
                        "not campaigning: the local API server is not healthy"
                    );
                }
                !campaign || may_campaign
            })
            .collect();
        self.transport.send_raft(msgs);
    }

    /// Removes the VIP whatever the core thinks (the last thing before exit).
    async fn release(&mut self) {
        self.responder.set_owned([]);
        match self.addresses.remove(self.iface.index, self.vip).await {
            Ok(true) => info!(vip = %self.vip, "VIP removed on the way out"),
            Ok(false) => {}
            Err(e) => {
                error!(vip = %self.vip, error = %e, "removing the VIP on the way out failed; remove it by hand (`ip addr del`)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut v = vec!["ferrolb-speaker control-plane"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v)
    }

    #[test]
    fn peers_parse_and_bad_ones_say_why() {
        assert_eq!(
            parse_peer("2=192.0.2.12:7480").unwrap(),
            (2, "192.0.2.12:7480".parse().unwrap())
        );
        assert_eq!(
            parse_peer("3=[2001:db8::13]:7480").unwrap().1,
            "[2001:db8::13]:7480".parse().unwrap()
        );
        assert!(
            parse_peer("0=192.0.2.1:1")
                .unwrap_err()
                .contains("reserved")
        );
        assert!(
            parse_peer("x=192.0.2.1:1")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(
            parse_peer("192.0.2.1:1")
                .unwrap_err()
                .contains("ID=ADDRESS:PORT")
        );
    }

    fn key_file() -> PathBuf {
        let p = std::env::temp_dir().join(format!("ferrolb-cp-key-{}", std::process::id()));
        std::fs::write(&p, "ab".repeat(32)).unwrap();
        p
    }

    #[test]
    fn start_up_validation_says_what_to_fix() {
        let key = key_file();
        let key = key.to_str().unwrap();
        let base = |peers: &str, id: &str, key: &str| {
            args(&[
                "--vip",
                "192.0.2.60",
                "--interface",
                "lo",
                "--id",
                id,
                "--peers",
                peers,
                "--key-file",
                key,
                "--health-insecure",
            ])
            .unwrap()
        };
        let err = |a: Args| format!("{:#}", validate(&a).unwrap_err());
        let e = err(base("1=192.0.2.11:7480,1=192.0.2.12:7480", "1", key));
        assert!(e.contains("names node 1 twice"), "{e}");
        let e = err(base("1=192.0.2.11:7480,2=192.0.2.12:7480", "3", key));
        assert!(e.contains("does not name this node"), "{e}");
        let e = err(base("1=192.0.2.11:7480", "1", "/nonexistent/key"));
        assert!(e.contains("openssl rand -hex 32"), "{e}");
        // `lo` has no MAC: not an Ethernet interface.
        let e = err(base("1=192.0.2.11:7480", "1", key));
        assert!(e.contains("--interface lo"), "{e}");
        let e = err(base("1=192.0.2.11:7480", "1", key).with_interface("no-such-if0"));
        assert!(e.contains("no network interface named"), "{e}");
        assert!(args(&["--vip", "192.0.2.60"]).is_err());
    }

    impl Args {
        fn with_interface(mut self, name: &str) -> Args {
            self.interface = name.into();
            self
        }
    }

    #[test]
    fn quorum_ack_is_the_majority_th_most_recent_answer() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let acks: BTreeMap<u64, Instant> = [(2, ms(100)), (3, ms(50)), (9, ms(400))].into();
        // Three voters: this leader (now) and the most recent peer make a majority.
        assert_eq!(quorum_ack(ms(300), 1, &[1, 2, 3], &acks), Some(ms(100)));
        // Five voters: the third most recent; node 9 is no voter.
        assert_eq!(
            quorum_ack(ms(300), 1, &[1, 2, 3, 4, 5], &acks),
            Some(ms(50))
        );
        assert_eq!(quorum_ack(ms(300), 1, &[1, 2, 3, 4, 5, 6, 7], &acks), None);
        // A group of one is its own quorum.
        assert_eq!(
            quorum_ack(ms(300), 1, &[1], &BTreeMap::new()),
            Some(ms(300))
        );
    }
}
