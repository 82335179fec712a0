//! The seam between the node state machine and the network: the runtime answers ARP/NDP and sends
//! announcements through a [`Dataplane`], and [`drive`] carries a [`Node`]'s actions out through
//! one, feeding back what actually runs.
//!
//! Plan and execution are separate: the node plans "answer `ip` on these interfaces", the
//! dataplane reports the interfaces where it really answers (a responder may fail to start: the
//! interface vanished, the socket was refused), and only those count as placed. The node retries
//! the rest and starts the announcement burst of an interface when it starts answering there, not
//! when it was planned.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use crate::node::{Action, Node};

/// What the speaker does on the wire. The real implementation (raw sockets, `ferrolb-net`) lives
/// in the speaker binary; [`FakeDataplane`] records calls for tests.
pub trait Dataplane {
    /// Answers for `ip` on exactly `ifaces` from now on (an empty list: nowhere). Returns the
    /// interfaces where it answers now, a subset of `ifaces`; the others failed and are retried.
    fn answer(&mut self, ip: IpAddr, ifaces: &[String]) -> Vec<String>;

    /// Makes the answers set by [`Dataplane::answer`] since the last call take effect (the real
    /// dataplane hands each responder its whole set at once). Called before announcements.
    fn commit(&mut self) {}

    /// Sends one announcement of `ip` (gratuitous ARP, unsolicited NA) where it is answered.
    fn announce(&mut self, ip: IpAddr);
}

/// What one [`drive`] changed in the placement (what runs, not what was planned).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Addresses answered now that were answered nowhere before.
    pub gained: Vec<IpAddr>,
    /// Addresses answered nowhere now.
    pub lost: Vec<IpAddr>,
    /// Every address whose interfaces changed: the interfaces before and after.
    pub placed: Vec<(IpAddr, Vec<String>, Vec<String>)>,
    /// The node's notices, in order, for the runtime's logs.
    pub notices: Vec<crate::node::Notice>,
}

/// Carries out the node's actions at `now` until it has nothing more to do; returns what changed.
pub fn drive<D: Dataplane + ?Sized>(node: &mut Node, dp: &mut D, now: Instant) -> Changes {
    let mut changes = Changes::default();
    loop {
        let actions = node.take_actions(now);
        if actions.is_empty() {
            break;
        }
        let mut announce = Vec::new();
        let mut answered = false;
        for a in actions {
            match a {
                Action::Answer { ip, ifaces } => {
                    let got = dp.answer(ip, &ifaces);
                    answered = true;
                    record(node, &mut changes, ip, got, now);
                }
                Action::StopAnswering { ip } => {
                    dp.answer(ip, &[]);
                    answered = true;
                    record(node, &mut changes, ip, Vec::new(), now);
                }
                Action::Announce { ip } => announce.push(ip),
                Action::Notice(n) => changes.notices.push(n),
            }
        }
        if answered {
            dp.commit();
        }
        for ip in announce {
            dp.announce(ip);
        }
    }
    changes
}

/// Feeds back where `ip` runs now and notes the change.
fn record(node: &mut Node, changes: &mut Changes, ip: IpAddr, got: Vec<String>, now: Instant) {
    let before = node.placement().get(&ip).cloned().unwrap_or_default();
    if before != got {
        if before.is_empty() {
            changes.gained.push(ip);
        } else if got.is_empty() {
            changes.lost.push(ip);
        }
        changes.placed.push((ip, before, got.clone()));
    }
    node.placed(ip, got, now);
}

/// A dataplane in memory: interfaces can be made to fail, every announcement is recorded.
#[derive(Clone, Debug, Default)]
pub struct FakeDataplane {
    /// Interfaces where answering fails (as a responder that cannot start).
    pub broken: BTreeSet<String>,
    /// Where each address is answered.
    pub answering: BTreeMap<IpAddr, Vec<String>>,
    /// Every announcement sent, in order.
    pub announced: Vec<IpAddr>,
}

impl Dataplane for FakeDataplane {
    fn answer(&mut self, ip: IpAddr, ifaces: &[String]) -> Vec<String> {
        let got: Vec<String> = ifaces
            .iter()
            .filter(|i| !self.broken.contains(*i))
            .cloned()
            .collect();
        if got.is_empty() {
            self.answering.remove(&ip);
        } else {
            self.answering.insert(ip, got.clone());
        }
        got
    }

    fn announce(&mut self, ip: IpAddr) {
        if self.answering.contains_key(&ip) {
            self.announced.push(ip);
        }
    }
}
