//! The watch cache: each kind's objects as the watches last showed them.
//!
//! Hand-written rather than kube's `reflector` + `Store`: the decision core must see a re-list as
//! one step (the keys that existed before or exist after, so that objects deleted while unwatched
//! are seen to go), must tell a pool's own status write coming back from a change that matters
//! ([`Mirror::apply_changes_identity`]), and must stay free of the kube client and its runtime.

use std::collections::{BTreeMap, BTreeSet};

use ferrolb_crds::IPAddressPool;
use ferrolb_daemon::service::CachedService;
use k8s_openapi::api::core::v1::Namespace;

use super::ObjectKey;

/// One event of a watch, as a value (the runtime converts kube's `watcher::Event` into it).
#[derive(Debug, Clone)]
pub enum Watch<K> {
    /// An object was added or changed.
    Apply(K),
    /// An object was deleted.
    Delete(K),
    /// A re-list starts.
    Init,
    /// An object of the re-list.
    InitApply(K),
    /// The re-list is complete.
    InitDone,
}

/// An API object the cache can key.
pub trait Object {
    /// What it is keyed by: its name, or its [`ObjectKey`] when it is namespaced.
    type Key: Ord + Clone + std::fmt::Debug;

    /// Its key.
    fn key(&self) -> Self::Key;
}

impl Object for CachedService {
    type Key = ObjectKey;

    fn key(&self) -> ObjectKey {
        ObjectKey::of(&self.metadata)
    }
}

impl Object for IPAddressPool {
    type Key = String;

    fn key(&self) -> String {
        self.metadata.name.clone().unwrap_or_default()
    }
}

impl Object for Namespace {
    type Key = String;

    fn key(&self) -> String {
        self.metadata.name.clone().unwrap_or_default()
    }
}

impl Object for super::ClusterInfo {
    /// One object is watched.
    type Key = ();

    fn key(&self) {}
}

/// A kind's objects, with the buffer of a re-list in progress.
#[derive(Debug)]
pub(crate) struct Mirror<K: Object> {
    pub(crate) objects: BTreeMap<K::Key, K>,
    relist: Option<BTreeMap<K::Key, K>>,
    pub(crate) synced: bool,
}

impl<K: Object> Mirror<K> {
    pub(crate) fn new() -> Self {
        Mirror {
            objects: BTreeMap::new(),
            relist: None,
            synced: false,
        }
    }

    /// Applies one event; returns the keys whose object changed or disappeared.
    pub(crate) fn apply(&mut self, ev: Watch<K>) -> Vec<K::Key> {
        match ev {
            Watch::Apply(o) => {
                let k = o.key();
                self.objects.insert(k.clone(), o);
                vec![k]
            }
            Watch::Delete(o) => {
                let k = o.key();
                self.objects.remove(&k);
                vec![k]
            }
            Watch::Init => {
                self.relist = Some(BTreeMap::new());
                vec![]
            }
            Watch::InitApply(o) => {
                if let Some(buf) = self.relist.as_mut() {
                    buf.insert(o.key(), o);
                }
                vec![]
            }
            Watch::InitDone => {
                self.synced = true;
                let new = self.relist.take().unwrap_or_default();
                let old = std::mem::replace(&mut self.objects, new);
                // Everything that existed before or exists now may have changed while unwatched.
                old.into_keys()
                    .chain(self.objects.keys().cloned())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            }
        }
    }
}

impl Mirror<IPAddressPool> {
    /// Applies one event; returns whether a pool appeared, went, was re-created (possibly
    /// unseen, between two lists) or changed its spec, as opposed to only its status.
    pub(crate) fn apply_changes_identity(&mut self, ev: Watch<IPAddressPool>) -> bool {
        let identity = |p: &IPAddressPool| {
            (
                p.metadata.uid.clone(),
                p.metadata.creation_timestamp.clone(),
                p.spec.clone(),
            )
        };
        let before: BTreeMap<String, _> = self
            .objects
            .iter()
            .map(|(k, p)| (k.clone(), identity(p)))
            .collect();
        self.apply(ev)
            .iter()
            .any(|k| before.get(k) != self.objects.get(k).map(identity).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrolb_crds::IPAddressPoolSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pool(uid: &str, created: &str, addrs: &str) -> IPAddressPool {
        let mut p = IPAddressPool::new(
            "p",
            IPAddressPoolSpec {
                addresses: vec![addrs.into()],
                auto_assign: true,
                avoid_buggy_ips: false,
                service_allocation: None,
            },
        );
        p.metadata.uid = Some(uid.into());
        p.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        p
    }

    fn relist(m: &mut Mirror<IPAddressPool>, p: IPAddressPool) -> bool {
        m.apply_changes_identity(Watch::Init);
        m.apply_changes_identity(Watch::InitApply(p));
        m.apply_changes_identity(Watch::InitDone)
    }

    #[test]
    fn pool_changes_that_matter_to_allocation() {
        let mut m = Mirror::new();
        let a = pool("1", "2026-01-01T00:00:00Z", "192.0.2.0/28");
        assert!(relist(&mut m, a.clone()), "a pool appears");
        // Only the status changed (the controller's own write coming back): nothing to do.
        let mut with_status = a.clone();
        with_status.status = Some(Default::default());
        assert!(!m.apply_changes_identity(Watch::Apply(with_status)));
        // The same list again: nothing to do.
        assert!(!relist(&mut m, a.clone()));
        // Deleted and re-created with the same spec while the watch was down: it is younger now,
        // which decides who keeps overlapping addresses.
        assert!(relist(
            &mut m,
            pool("2", "2026-01-02T00:00:00Z", "192.0.2.0/28")
        ));
        // A spec change.
        assert!(m.apply_changes_identity(Watch::Apply(pool(
            "2",
            "2026-01-02T00:00:00Z",
            "192.0.2.0/27"
        ))));
        assert!(m.apply_changes_identity(Watch::Delete(a)));
    }
}
