//! The start-up check of the cluster's Kubernetes version (the verdict is the pure
//! [`ferrolb_config::version::check_version`]; this is the `GET /version` around it).

use std::time::Duration;

use ferrolb_config::version::{VersionError, check_version};
use tracing::{info, warn};

/// Attempts at `GET /version` before going on without an answer, each bounded by
/// [`ATTEMPT_TIMEOUT`], [`PAUSE`] apart: at most ~19 s, below the ~30 s after which the kubelet's
/// liveness probe (default period 10 s × 3 failures) would restart a process whose health
/// endpoint were not yet up (both daemons serve it while this runs).
const ATTEMPTS: u32 = 3;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const PAUSE: Duration = Duration::from_secs(2);

/// Fails, naming the found and the needed version, when the API server is older than
/// [`ferrolb_config::version::MIN_KUBERNETES`].
///
/// Only a version that was read and is too old stops the daemon. When the API server cannot be
/// reached in a few attempts, or reports a version that is not a number, it logs a warning and
/// returns `Ok`: a speaker restarted during an API-server outage must come up and keep announcing
/// (DESIGN.md, invariants), and a daemon that exited on a transient error would only crash-loop
/// with a misleading message. A cluster that is really too old cannot have the CRDs installed
/// (its API server rejects their CEL rules), so the daemons would not work there either way; this
/// check turns that into one clear line in the log.
pub async fn require_supported_kubernetes(client: &kube::Client) -> anyhow::Result<()> {
    for attempt in 1..=ATTEMPTS {
        match tokio::time::timeout(ATTEMPT_TIMEOUT, client.apiserver_version()).await {
            Ok(Ok(v)) => {
                return match check_version(&v.major, &v.minor) {
                    Ok(()) => {
                        info!(version = %v.git_version, "Kubernetes version supported");
                        Ok(())
                    }
                    // One self-contained sentence: the daemons log errors with `%e`, which
                    // would show only the outermost context of a chain.
                    Err(e @ VersionError::TooOld { .. }) => Err(anyhow::anyhow!(
                        "{e}; the API server reports {}",
                        v.git_version
                    )),
                    Err(e @ VersionError::Unreadable { .. }) => {
                        warn!(error = %e, version = %v.git_version, "going on without the version check");
                        Ok(())
                    }
                };
            }
            Ok(Err(e)) => {
                warn!(error = %e, attempt, "cannot read the Kubernetes version (GET /version)")
            }
            Err(_) => warn!(
                attempt,
                timeout_s = ATTEMPT_TIMEOUT.as_secs(),
                "cannot read the Kubernetes version (GET /version): timed out"
            ),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(PAUSE).await;
        }
    }
    warn!("the API server did not answer GET /version; going on without the version check");
    Ok(())
}
