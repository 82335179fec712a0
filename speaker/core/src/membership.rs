//! Which speakers are live, and whether this speaker may answer at all (quorum self-fencing).
//!
//! The gossip layer reports members alive, failed (stopped answering probes) or left (said goodbye).
//! A speaker that can see fewer than a majority of the speakers it knows stops answering, so that
//! the two sides of a partition never both answer for an address: at most one side has a majority.
//!
//! "Known" shrinks only on evidence that does not depend on which side of a partition we are on: a
//! member that left gracefully, or whose Node the API server reports deleted or not `Ready` (the
//! node lifecycle controller marks an unreachable node `Unknown` after its grace period). A failed
//! member stays known, so a minority stays fenced however long the partition lasts. With one or two
//! known speakers no majority can survive a single failure, so fencing is off there (a two-node
//! cluster fails over like MetalLB does, and can split like it does).

use std::collections::{BTreeMap, BTreeSet};

/// State of a member as this speaker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Alive,
    /// Stopped answering probes; still counted as known.
    Failed,
}

/// The membership view of one speaker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    me: String,
    members: BTreeMap<String, State>,
}

impl Membership {
    pub fn new(me: &str) -> Membership {
        let mut members = BTreeMap::new();
        members.insert(me.to_string(), State::Alive);
        Membership {
            me: me.to_string(),
            members,
        }
    }

    /// A member joined or was seen alive again.
    pub fn alive(&mut self, node: &str) {
        self.members.insert(node.to_string(), State::Alive);
    }

    /// A member stopped answering probes.
    pub fn failed(&mut self, node: &str) {
        if node != self.me {
            self.members.insert(node.to_string(), State::Failed);
        }
    }

    /// A member left gracefully: it no longer counts.
    pub fn left(&mut self, node: &str) {
        if node != self.me {
            self.members.remove(node);
        }
    }

    /// The API server says the node is gone or not Ready: a failed member no longer counts. An
    /// alive member stays (the API server's view may be stale; gossip is first-hand).
    pub fn forget_if_failed(&mut self, node: &str) {
        if self.members.get(node) == Some(&State::Failed) {
            self.members.remove(node);
        }
    }

    /// Members known to be alive, this speaker included.
    pub fn live(&self) -> BTreeSet<String> {
        self.members
            .iter()
            .filter(|(_, s)| **s == State::Alive)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Names of every known member, alive or failed.
    pub fn names(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    /// Every known member, alive or failed.
    pub fn known(&self) -> usize {
        self.members.len()
    }

    pub fn state(&self, node: &str) -> Option<State> {
        self.members.get(node).copied()
    }

    /// Whether this speaker sees a majority of the members it knows (always true with fewer than
    /// three known members, see the module documentation).
    pub fn has_quorum(&self) -> bool {
        let known = self.members.len();
        known <= 2 || 2 * self.live().len() > known
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minority_of_a_partition_is_fenced() {
        // Five speakers split 3 | 2: the side of three keeps quorum, the side of two loses it.
        let mut big = Membership::new("n1");
        let mut small = Membership::new("n4");
        for n in ["n1", "n2", "n3", "n4", "n5"] {
            big.alive(n);
            small.alive(n);
        }
        for n in ["n4", "n5"] {
            big.failed(n);
        }
        for n in ["n1", "n2", "n3"] {
            small.failed(n);
        }
        assert!(big.has_quorum());
        assert!(!small.has_quorum());
        // Heal: everyone alive again.
        for n in ["n1", "n2", "n3"] {
            small.alive(n);
        }
        assert!(small.has_quorum());
    }

    #[test]
    fn graceful_leaves_and_api_evidence_shrink_the_known_set() {
        let mut m = Membership::new("n1");
        for n in ["n2", "n3"] {
            m.alive(n);
        }
        m.failed("n2");
        m.failed("n3");
        assert!(!m.has_quorum(), "1 of 3");
        m.forget_if_failed("n3");
        assert_eq!(m.known(), 2);
        assert!(m.has_quorum(), "two known: no fencing");
        m.left("n2");
        assert_eq!(m.live(), BTreeSet::from(["n1".to_string()]));
        // An alive member is not forgotten on the API server's word.
        m.alive("n2");
        m.forget_if_failed("n2");
        assert_eq!(m.known(), 2);
    }

    #[test]
    fn one_failure_of_three_keeps_quorum() {
        let mut m = Membership::new("n1");
        m.alive("n2");
        m.alive("n3");
        m.failed("n3");
        assert!(m.has_quorum());
        m.failed("n1");
        assert_eq!(m.state("n1"), Some(State::Alive), "never fails itself");
    }
}
