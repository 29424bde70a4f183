//! `[revocation]`: what a host does with the directory's revocation list
//! besides enforcing it at login: install the published KRL for sshd's
//! `RevokedKeys` (`sshd_krl`), and how long a list not confirmed current
//! is trusted for certificates (`max_age`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::values::parse_duration;

/// The default `max_age`: one day. Certificates have no other way to be
/// revoked, so a host that cannot confirm its list refuses them after a
/// bound; a day rides out a directory outage of a working day (and the
/// alert on `keyward_revoked_list_age_seconds` fires long before), while
/// keys keep logging in for `[cache] max_stale` (3 days): a cut-off host
/// is never locked out of key logins by this bound.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationConfig {
    /// Where sync installs the published KRL for sshd's `RevokedKeys`
    /// (absolute; None: not installed). sshd refuses every key login
    /// while the file it names is missing, so the file is only ever
    /// replaced, never removed.
    pub sshd_krl: Option<PathBuf>,
    /// How long after the list was last confirmed current certificates
    /// are still accepted (None: `max_age = false`, no bound).
    #[serde(deserialize_with = "max_age")]
    pub max_age: Option<Duration>,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        RevocationConfig {
            sshd_krl: None,
            max_age: Some(DEFAULT_MAX_AGE),
        }
    }
}

/// A duration, or `false` for no bound.
fn max_age<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum V {
        On(bool),
        Dur(String),
    }
    match V::deserialize(d)? {
        V::On(false) => Ok(None),
        V::On(true) => Ok(Some(DEFAULT_MAX_AGE)),
        V::Dur(s) => parse_duration(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

impl RevocationConfig {
    /// The rules no single value can check.
    pub fn check(&self, state_dir: &std::path::Path) -> Result<(), String> {
        if let Some(p) = &self.sshd_krl {
            use std::os::unix::ffi::OsStrExt;
            let name_ok = !p.as_os_str().as_bytes().ends_with(b"/")
                && p.file_name()
                    .is_some_and(|n| !n.as_bytes().starts_with(b"."));
            if !p.is_absolute() || !name_ok {
                return Err(format!(
                    "[revocation] sshd_krl {:?} must be an absolute path to a file (e.g. {}/revoked.krl)",
                    p.display().to_string(),
                    state_dir.display()
                ));
            }
            // sync replaces the file beside the installed list: never the
            // list itself.
            if p == &state_dir.join("revoked.list") {
                return Err("[revocation] sshd_krl must not be the revocation list itself".into());
            }
        }
        if let Some(a) = self.max_age {
            if a < Duration::from_secs(60) {
                return Err(
                    "[revocation] max_age must be at least 1m (or false for no bound)".into(),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(t: &str) -> Result<RevocationConfig, String> {
        toml::from_str(t).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_values() {
        let d = parse("").unwrap();
        assert_eq!(d.sshd_krl, None);
        assert_eq!(d.max_age, Some(DEFAULT_MAX_AGE));
        let c = parse("sshd_krl = \"/var/lib/keyward/revoked.krl\"\nmax_age = \"6h\"\n").unwrap();
        assert_eq!(c.max_age, Some(Duration::from_secs(6 * 3600)));
        assert!(c.check(Path::new("/var/lib/keyward")).is_ok());
        assert_eq!(parse("max_age = false").unwrap().max_age, None);
        assert_eq!(
            parse("max_age = true").unwrap().max_age,
            Some(DEFAULT_MAX_AGE)
        );
        assert!(parse("max_age = \"soon\"").is_err());
        assert!(parse("max_age = \"0s\"").is_err());
        assert!(parse("krl = \"/x\"").is_err());
        let st = Path::new("/var/lib/keyward");
        for bad in [
            "sshd_krl = \"revoked.krl\"",
            "sshd_krl = \"/var/lib/keyward/\"",
            "sshd_krl = \"/var/lib/keyward/revoked.list\"",
            "sshd_krl = \"/var/lib/keyward/.hidden\"",
            "max_age = \"30s\"",
        ] {
            assert!(parse(bad).unwrap().check(st).is_err(), "{bad}");
        }
    }
}
