//! The oldest Kubernetes ferrolb runs on, and the check both daemons make against the API server's
//! `/version` at start-up.
//!
//! Why 1.31: the `IPAddressPool` CRD validates `spec.addresses` with CEL's Kubernetes IP and CIDR
//! libraries (`isIP`, `isCIDR`, `ip(…).family()`) and the strings extension (`split`, `trim`).
//! The IP and CIDR libraries were introduced in 1.30 (k8s.io/apiserver `pkg/cel/environment/
//! base.go`: `IntroducedVersion: 1.30` for `library.IP`, `library.CIDR`; strings v2 is 1.29), and an
//! API server only accepts a *new* expression that its compatibility version, one minor release
//! below its own (`component-base/compatibility`: `binaryVersion.SubtractMinor(1)`), understands,
//! so that a rollback still understands what was stored. A 1.30 API server therefore rejects the
//! CRD; 1.31 is the first that accepts it.
//!
//! Pure (strings in, a verdict out) so that the table of what providers report is a unit test.

/// The oldest Kubernetes release ferrolb supports (see the module comment for the reason).
pub const MIN_KUBERNETES: (u32, u32) = (1, 31);

/// Why a `/version` answer is not good enough.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The cluster is older than [`MIN_KUBERNETES`].
    #[error(
        "Kubernetes {found_major}.{found_minor} is too old: ferrolb needs {}.{} or newer \
         (its CRDs validate addresses with CEL's IP and CIDR libraries)",
        MIN_KUBERNETES.0,
        MIN_KUBERNETES.1
    )]
    TooOld { found_major: u32, found_minor: u32 },
    /// `major` or `minor` is not a number (with an optional trailing `+`, as EKS and GKE report
    /// a minor release carrying provider patches).
    #[error("cannot read the Kubernetes version: major {major:?}, minor {minor:?}")]
    Unreadable { major: String, minor: String },
}

/// Checks `major`/`minor` as `/version` reports them (`"1"`, `"31"`; `"31+"` on EKS and GKE)
/// against [`MIN_KUBERNETES`].
pub fn check_version(major: &str, minor: &str) -> Result<(), VersionError> {
    let unreadable = || VersionError::Unreadable {
        major: major.into(),
        minor: minor.into(),
    };
    let number = |s: &str| -> Option<u32> {
        let digits = s.trim().trim_end_matches('+');
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let found_major = number(major).ok_or_else(unreadable)?;
    let found_minor = number(minor).ok_or_else(unreadable)?;
    if (found_major, found_minor) < MIN_KUBERNETES {
        return Err(VersionError::TooOld {
            found_major,
            found_minor,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let unreadable = |major: &str, minor: &str| {
            Err(VersionError::Unreadable {
                major: major.into(),
                minor: minor.into(),
            })
        };
        let too_old = |found_major, found_minor| {
            Err(VersionError::TooOld {
                found_major,
                found_minor,
            })
        };
        let cases: &[(&str, &str, Result<(), VersionError>)] = &[
            // Upstream, kubeadm, k3s, Talos.
            ("1", "31", Ok(())),
            ("1", "34", Ok(())),
            ("1", "30", too_old(1, 30)),
            ("1", "27", too_old(1, 27)),
            // EKS and GKE: a `+` after the minor release.
            ("1", "31+", Ok(())),
            ("1", "30+", too_old(1, 30)),
            // A later major release is newer whatever its minor.
            ("2", "0", Ok(())),
            ("0", "99", too_old(0, 99)),
            // Not numbers: never guessed.
            ("1", "1.31", unreadable("1", "1.31")),
            ("", "", unreadable("", "")),
            ("1", "", unreadable("1", "")),
            ("1", "+", unreadable("1", "+")),
            ("v1", "31", unreadable("v1", "31")),
            ("1", "-31", unreadable("1", "-31")),
        ];
        for (major, minor, want) in cases {
            assert_eq!(
                &check_version(major, minor),
                want,
                "major {major:?} minor {minor:?}"
            );
        }
    }

    #[test]
    fn the_error_names_both_versions() {
        let e = check_version("1", "29+").unwrap_err().to_string();
        assert!(e.contains("1.29") && e.contains("1.31"), "{e}");
    }
}
