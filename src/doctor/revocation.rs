//! `revocation.*`: sshd's `RevokedKeys` against the KRL keyward installs
//! (`[revocation] sshd_krl`), and the age of the host's revocation list
//! against the offline bound (`[revocation] max_age`). The rules are pure
//! (sshd -T's value, whether files exist, times); [`checks`] probes.

use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::report::Check;
use crate::revocation::offline::{self, Offline};

/// Whether a file is there for sshd to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum File {
    Present,
    Missing,
}

/// `revocation.krl`. `revokedkeys`: sshd -T's value (None or "none":
/// unset); `same`: whether sshd's file is the one keyward installs;
/// `sshd_file`: whether sshd's file exists.
pub fn krl_check(
    revokedkeys: Option<&str>,
    sshd_krl: Option<&Path>,
    same: bool,
    sshd_file: File,
) -> Check {
    const ID: &str = "revocation.krl";
    let sshd = revokedkeys.filter(|v| !v.is_empty() && *v != "none");
    let line = |p: &Path| format!("RevokedKeys {}", p.display());
    match (sshd, sshd_krl) {
        (Some(s), _) if sshd_file == File::Missing => Check::fail(
            ID,
            format!("sshd's RevokedKeys {s} does not exist: sshd refuses EVERY key login"),
            match sshd_krl {
                Some(_) if same => "run `keyward sync` (as the timer does) to install it, or remove the RevokedKeys line until it is installed".into(),
                Some(p) => format!("point sshd at the file keyward installs ({}) once `keyward sync` installed it, or remove the RevokedKeys line", line(p)),
                None => "set [revocation] sshd_krl to that path and run `keyward sync`, or remove the RevokedKeys line".into(),
            },
        ),
        (None, None) => Check::ok(
            ID,
            "sshd uses no RevokedKeys and [revocation] sshd_krl is off: keyward's list is enforced by keys/principals only",
        ),
        (Some(s), None) => Check::ok(
            ID,
            format!("sshd uses RevokedKeys {s}, which keyward does not manage ([revocation] sshd_krl is off)"),
        ),
        (None, Some(p)) => Check::warn(
            ID,
            format!("keyward installs a KRL at {} but sshd does not use it (no RevokedKeys)", p.display()),
            format!("once `keyward sync` has installed the file, add `{}` to sshd's config and reload sshd", line(p)),
        ),
        (Some(s), Some(p)) if !same => Check::warn(
            ID,
            format!("sshd uses RevokedKeys {s}, a different file from the one keyward installs ({})", p.display()),
            format!("set `{}` in sshd's config (or [revocation] sshd_krl = \"{s}\")", line(p)),
        ),
        (Some(s), Some(_)) => Check::ok(ID, format!("sshd uses the KRL keyward installs: RevokedKeys {s}")),
    }
}

/// `revocation.age`: `confirmed`, when sync last confirmed the list
/// current (Err: the record is unreadable, certificates are refused).
pub fn age_check(
    confirmed: Result<Option<u64>, String>,
    now: u64,
    max_age: Option<Duration>,
) -> Check {
    const ID: &str = "revocation.age";
    let confirmed = match confirmed {
        Ok(c) => c,
        Err(e) => {
            return Check::fail(
                ID,
                format!("{e}: principals refuses every certificate"),
                "run `keyward sync` (it rewrites the record)",
            )
        }
    };
    match (offline::verdict(confirmed, now, max_age), confirmed) {
        (_, None) => Check::ok(
            ID,
            "no revocation list confirmed yet (sync has not heard from the directory): certificates are not bound",
        ),
        (Offline::Unbound, Some(at)) => Check::ok(
            ID,
            format!(
                "list confirmed {} ago; [revocation] max_age = false: certificates are never refused for its age",
                offline::human(Duration::from_secs(now.saturating_sub(at)))
            ),
        ),
        (Offline::Current { age }, _) => {
            let max = max_age.unwrap_or_default();
            let found = format!(
                "list confirmed current {} ago (max_age {})",
                offline::human(age),
                offline::human(max)
            );
            if age * 2 > max {
                Check::warn(
                    ID,
                    format!("{found}: past half the bound"),
                    "check that `keyward sync` reaches the directory (systemctl status keyward-sync.timer; journalctl -t keyward)",
                )
            } else {
                Check::ok(ID, found)
            }
        }
        (Offline::Stale { age, max_age }, _) => Check::fail(
            ID,
            format!(
                "list last confirmed current {} ago, past max_age {}: principals refuses every certificate (reason=revocation_list_stale); keys follow max_stale",
                offline::human(age),
                offline::human(max_age)
            ),
            "restore the host's access to the directory and run `keyward sync`",
        ),
    }
}

/// Both checks, probing sshd -T's value (`revokedkeys`) and the files.
pub fn checks(config: &Config, revokedkeys: Option<&str>) -> Vec<Check> {
    let sshd = revokedkeys.filter(|v| !v.is_empty() && *v != "none");
    let exists = |p: &str| {
        if std::fs::File::open(p).is_ok() {
            File::Present
        } else {
            File::Missing
        }
    };
    let sshd_file = sshd.map_or(File::Present, exists);
    let same = match (sshd, &config.revocation.sshd_krl) {
        (Some(s), Some(p)) => super::same_file(Path::new(s), p),
        _ => false,
    };
    vec![
        krl_check(
            revokedkeys,
            config.revocation.sshd_krl.as_deref(),
            same,
            sshd_file,
        ),
        age(config),
    ]
}

/// `revocation.age` on this host now (the state directory is the cache
/// owner's: without root it may not be readable).
pub fn age(config: &Config) -> Check {
    let confirmed = offline::read(config);
    if let Err(e) = &confirmed {
        if crate::os::privdrop::euid() != 0 {
            return Check::skip("revocation.age", format!("skipped: needs root ({e})"));
        }
    }
    age_check(
        confirmed,
        crate::os::clock::now_secs(),
        config.revocation.max_age,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    const DAY: Duration = Duration::from_secs(86400);

    #[test]
    fn krl_cases() {
        let p = Path::new("/var/lib/keyward/revoked.krl");
        let st = |c: Check| (c.status, c.found);
        let (s, f) = st(krl_check(Some("none"), None, false, File::Present));
        assert_eq!(s, Status::Ok, "{f}");
        let (s, f) = st(krl_check(Some("none"), Some(p), false, File::Present));
        assert_eq!(s, Status::Warn, "{f}");
        assert!(f.contains("does not use it"), "{f}");
        let (s, f) = st(krl_check(
            Some(p.to_str().unwrap()),
            Some(p),
            true,
            File::Present,
        ));
        assert_eq!(s, Status::Ok, "{f}");
        let (s, f) = st(krl_check(
            Some("/etc/ssh/revoked"),
            Some(p),
            false,
            File::Present,
        ));
        assert_eq!(s, Status::Warn, "{f}");
        assert!(f.contains("different file"), "{f}");
        // A file sshd names that is not there: every key login refused.
        for (krl, same) in [(Some(p), true), (Some(p), false), (None, false)] {
            let c = krl_check(Some(p.to_str().unwrap()), krl, same, File::Missing);
            assert_eq!(c.status, Status::Fail, "{c:?}");
            assert!(c.found.contains("EVERY key login"), "{c:?}");
        }
        let (s, _) = st(krl_check(
            Some("/etc/ssh/revoked"),
            None,
            false,
            File::Present,
        ));
        assert_eq!(s, Status::Ok);
    }

    #[test]
    fn age_cases() {
        let now = 1_800_000_000;
        let c = |at: Option<u64>, max| age_check(Ok(at), now, max).status;
        assert_eq!(c(None, Some(DAY)), Status::Ok);
        assert_eq!(c(Some(now - 600), Some(DAY)), Status::Ok);
        assert_eq!(c(Some(now - 13 * 3600), Some(DAY)), Status::Warn);
        assert_eq!(c(Some(now - 86401), Some(DAY)), Status::Fail);
        assert_eq!(c(Some(now - 10 * 86400), None), Status::Ok);
        assert_eq!(
            age_check(Err("bad".into()), now, Some(DAY)).status,
            Status::Fail
        );
    }
}
