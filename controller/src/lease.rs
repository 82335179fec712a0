//! Leader election over a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it:
//! the holder renews `renewTime` every `retry_period`; anyone may take the lease once
//! `renewTime + leaseDurationSeconds` has passed; every write carries the `resourceVersion` it read,
//! so two candidates can never both win one round.
//!
//! Why hand-written: kube-runtime has no leader election, and the `kube-leader-election` crate
//! (read at its `src/lease.rs`) judges expiry by comparing the holder's `renewTime`, written from
//! the holder's wall clock, with its own `Utc::now()`, and takes an expired lease with a merge
//! patch that carries no `resourceVersion`: clock skew between nodes, or two candidates in one
//! round, could make two leaders. Here expiry is measured on this process's monotonic clock from
//! when the record was last seen to change, and every write is conditional.
//!
//! One writer per fact: the controller writes nothing before [`Elector::acquire`] returns, and when
//! [`Elector::hold`] returns the lease is lost and the process stops writing (it exits, and its
//! Deployment restarts it as a standby).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tracing::{debug, info, warn};

/// Timing of the election. Defaults are client-go's (15 s / 10 s / 2 s).
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// What a candidate may do with the lease it read, at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it (a new term).
    Take,
    /// Someone else holds a live lease.
    Wait,
}

/// Pure rule of the election. `unchanged_for` is how long, on this candidate's own monotonic
/// clock, the lease record (holder and renewTime) has been seen unchanged. Expiry is judged from
/// that, as client-go does, never by comparing the holder's wall clock with ours: clock skew
/// between nodes cannot make two leaders.
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, unchanged_for: Duration) -> Decision {
    let Some(spec) = spec else {
        return Decision::Take;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Take;
    }
    let duration =
        Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
    if unchanged_for >= duration {
        Decision::Take
    } else {
        Decision::Wait
    }
}

/// The lease record last read, and when (monotonic) it was first seen in that state.
type Observed = Option<((Option<String>, Option<MicroTime>), tokio::time::Instant)>;

/// A candidate for the lease.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: std::sync::Mutex<Observed>,
}

impl Elector {
    pub fn new(api: Api<Lease>, config: LeaseConfig) -> Self {
        Elector {
            api,
            config,
            observed: std::sync::Mutex::new(None),
        }
    }

    /// Returns once this candidate holds the lease. After every round lost, `standby` is told
    /// whether the API server answered it: a standby that reads the lease is healthy (its client
    /// works), one that cannot is not. Readiness follows health, not leadership (issue 11): with
    /// a standby that never reports Ready a 2-replica Deployment never becomes Available.
    pub async fn acquire(&self, mut standby: impl FnMut(bool)) {
        let mut waiting = false;
        loop {
            match self.try_once().await {
                Ok(true) => {
                    info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
                    return;
                }
                Ok(false) => {
                    if !waiting {
                        info!(lease = %self.config.name, identity = %self.config.identity, "standing by: the lease is held by another candidate");
                        waiting = true;
                    }
                    debug!(lease = %self.config.name, "lease held by another candidate");
                    standby(true);
                }
                Err(e) => {
                    warn!(lease = %self.config.name, error = %e, "lease acquisition failed, retrying");
                    standby(false);
                }
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the lease until a renewal cannot succeed within the renew deadline; then returns.
    ///
    /// Each renewal is bounded by the time left before the deadline (a hung request must not keep
    /// a deposed leader writing), and success counts from when the request started, since the
    /// server stamps `renewTime` no later than that.
    pub async fn hold(&self) {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let started = tokio::time::Instant::now();
            let left = self.config.renew_deadline.saturating_sub(last_ok.elapsed());
            let attempt = match tokio::time::timeout(left, self.try_once()).await {
                Ok(r) => r,
                Err(_) => {
                    warn!(lease = %self.config.name, "lease renewal did not answer before the renew deadline");
                    return;
                }
            };
            match attempt {
                Ok(true) => last_ok = started,
                Ok(false) => {
                    warn!(lease = %self.config.name, "lease taken by another candidate");
                    return;
                }
                Err(e) => warn!(lease = %self.config.name, error = %e, "lease renewal failed"),
            }
            if last_ok.elapsed() > self.config.renew_deadline {
                warn!(lease = %self.config.name, deadline = ?self.config.renew_deadline, "could not renew the lease in time");
                return;
            }
        }
    }

    /// Gives the lease up if we hold it (on SIGTERM): a standby takes over at its next retry
    /// instead of waiting a whole lease duration, as client-go's ReleaseOnCancel does.
    pub async fn release(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(false);
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(false);
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        conflict_is_false(
            self.api
                .replace(&self.config.name, &PostParams::default(), &lease)
                .await,
        )
    }

    /// One read-decide-write round; `Ok(true)` when we hold the lease afterwards.
    async fn try_once(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.config.name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let record = (
            spec.and_then(|s| s.holder_identity.clone()),
            spec.and_then(|s| s.renew_time.clone()),
        );
        let unchanged_for = {
            let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
            match observed.as_ref() {
                Some((seen, since)) if *seen == record => since.elapsed(),
                _ => {
                    *observed = Some((record, tokio::time::Instant::now()));
                    Duration::ZERO
                }
            }
        };
        let decision = decide(spec, &self.config.identity, unchanged_for);
        let secs = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        match (decision, current) {
            (Decision::Wait, _) => Ok(false),
            (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.config.identity.clone()),
                        lease_duration_seconds: Some(secs),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                conflict_is_false(self.api.create(&PostParams::default(), &lease).await)
            }
            (decision, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                if decision == Decision::Take {
                    spec.holder_identity = Some(self.config.identity.clone());
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions =
                        Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
                }
                spec.lease_duration_seconds = Some(secs);
                spec.renew_time = Some(MicroTime(now));
                // `replace` sends the resourceVersion we read: a concurrent writer makes this fail.
                conflict_is_false(
                    self.api
                        .replace(&self.config.name, &PostParams::default(), &lease)
                        .await,
                )
            }
        }
    }
}

fn conflict_is_false(r: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match r {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: (!holder.is_empty()).then(|| holder.to_string()),
            lease_duration_seconds: Some(duration),
            renew_time: Some(MicroTime(Timestamp::from_second(1_800_000_000).unwrap())),
            ..Default::default()
        }
    }

    #[test]
    fn election_rule() {
        let s = Duration::from_secs;
        assert_eq!(decide(None, "a", s(0)), Decision::Take);
        assert_eq!(decide(Some(&spec("a", 15)), "a", s(100)), Decision::Renew);
        assert_eq!(decide(Some(&spec("b", 15)), "a", s(5)), Decision::Wait);
        assert_eq!(decide(Some(&spec("b", 15)), "a", s(15)), Decision::Take);
        assert_eq!(
            decide(Some(&spec("", 15)), "a", s(0)),
            Decision::Take,
            "a released lease"
        );
        // A new candidate waits a whole lease duration, whatever renewTime says (clock skew).
        assert_eq!(decide(Some(&spec("b", 15)), "a", s(0)), Decision::Wait);
    }
}
