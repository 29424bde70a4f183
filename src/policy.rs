//! Which keys are served, and why not (pure).
//!
//! `evaluate` gives one verdict per candidate line, in order, so the login
//! path and `keyward explain` share the exact same reasoning.

use std::fmt;

use crate::config::PolicyConfig;
use crate::keyline::{KeyLine, LineError};

/// A line from one source, parsed or not.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Where the line came from: `directory`, or a file path.
    pub source: String,
    pub line_no: usize,
    pub parsed: Result<KeyLine, LineError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Served,
    Dropped(DropReason),
}

/// A candidate line as policy judged it: the key to serve, or why not.
#[derive(Debug, Clone)]
pub enum Judged<'a> {
    Served(&'a KeyLine),
    Dropped(DropReason),
}

/// Every candidate with its judgement, in order: the one loop the login
/// path, `publish` and `explain` walk.
pub fn judge<'a>(
    policy: &PolicyConfig,
    candidates: &'a [Candidate],
    now: i64,
) -> Vec<(&'a Candidate, Judged<'a>)> {
    let verdicts = evaluate(policy, candidates, now);
    candidates
        .iter()
        .zip(verdicts)
        .map(|(c, v)| {
            let judged = match (v, &c.parsed) {
                (Verdict::Served, Ok(k)) => Judged::Served(k),
                (Verdict::Dropped(r), _) => Judged::Dropped(r),
                // evaluate never serves an unparsed line; stay total anyway
                (Verdict::Served, Err(e)) => Judged::Dropped(DropReason::Invalid(e.clone())),
            };
            (c, judged)
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    Invalid(LineError),
    KeyType(String),
    RsaTooSmall {
        bits: u32,
        min: u32,
    },
    Expired,
    /// Same key material (and same cert-authority role) as candidate `first`.
    Duplicate {
        first: usize,
    },
    OverMaxKeys {
        max: usize,
    },
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::Invalid(e) => write!(f, "invalid line: {e}"),
            DropReason::KeyType(t) => write!(f, "key type {t} not in [policy] key_types"),
            DropReason::RsaTooSmall { bits, min } => {
                write!(f, "RSA key of {bits} bits is below min_rsa_bits {min}")
            }
            DropReason::Expired => write!(f, "expiry-time has passed"),
            DropReason::Duplicate { first } => write!(f, "duplicate of key #{}", first + 1),
            DropReason::OverMaxKeys { max } => write!(f, "more than max_keys {max}"),
        }
    }
}

impl DropReason {
    /// A short tag for log lines and JSON.
    pub fn tag(&self) -> &'static str {
        match self {
            DropReason::Invalid(_) => "invalid",
            DropReason::KeyType(_) => "key-type",
            DropReason::RsaTooSmall { .. } => "rsa-bits",
            DropReason::Expired => "expired",
            DropReason::Duplicate { .. } => "duplicate",
            DropReason::OverMaxKeys { .. } => "max-keys",
        }
    }
}

/// Why keyward serves no key at all for an account, before any source is
/// read. Listing `root` in `deny_users` denies every uid-0 account (a second
/// root account such as `toor` is root too).
pub fn denied(policy: &PolicyConfig, user: &str, uid: Option<u32>) -> Option<String> {
    if policy.deny_users.iter().any(|d| d == user) {
        return Some("user is in [policy] deny_users".into());
    }
    if uid == Some(0) && policy.deny_users.iter().any(|d| d == "root") {
        return Some(
            "account has uid 0 and root is in [policy] deny_users (every uid-0 account is root)"
                .into(),
        );
    }
    None
}

/// Whether [`denied`] needs the account's uid: only the uid-0 rule does,
/// and only when root is denied.
pub fn needs_uid(policy: &PolicyConfig) -> bool {
    policy.deny_users.iter().any(|d| d == "root")
}

/// Verdicts for `candidates` (same order). `now` is Unix time in seconds.
pub fn evaluate(policy: &PolicyConfig, candidates: &[Candidate], now: i64) -> Vec<Verdict> {
    let mut verdicts = Vec::with_capacity(candidates.len());
    let mut served: Vec<usize> = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        let verdict = match &c.parsed {
            Err(e) => Verdict::Dropped(DropReason::Invalid(e.clone())),
            Ok(k) => match check_key(policy, k, now) {
                Some(reason) => Verdict::Dropped(reason),
                None => {
                    let dup = served.iter().copied().find(|&j| {
                        let other = candidates[j].parsed.as_ref().ok();
                        // sshd tries every line: a line with other options
                        // (e.g. another principals= for the same CA) may
                        // grant what the first refuses. Only exact repeats go.
                        other.is_some_and(|o| {
                            o.options == k.options && o.key.key_data() == k.key.key_data()
                        })
                    });
                    match dup {
                        Some(first) => Verdict::Dropped(DropReason::Duplicate { first }),
                        None if served.len() >= policy.max_keys => {
                            Verdict::Dropped(DropReason::OverMaxKeys {
                                max: policy.max_keys,
                            })
                        }
                        None => {
                            served.push(i);
                            Verdict::Served
                        }
                    }
                }
            },
        };
        verdicts.push(verdict);
    }
    verdicts
}

fn check_key(policy: &PolicyConfig, k: &KeyLine, now: i64) -> Option<DropReason> {
    let alg = k.key.algorithm();
    let name = alg.as_str();
    if !policy.key_types.iter().any(|t| t == name) {
        return Some(DropReason::KeyType(name.to_owned()));
    }
    if name == "ssh-rsa" {
        let bits = k.bits();
        if bits < policy.min_rsa_bits {
            return Some(DropReason::RsaTooSmall {
                bits,
                min: policy.min_rsa_bits,
            });
        }
    }
    if let Some(exp) = k.expiry {
        // An expiry that cannot be converted is treated as passed: fail closed.
        if exp.epoch().is_none_or(|t| t <= now) {
            return Some(DropReason::Expired);
        }
    }
    None
}

/// What the fingerprint filter makes of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FpMatch {
    /// keyward prints the key to sshd.
    pub printed: bool,
    /// It is the key sshd asked about.
    pub asked: bool,
}

/// The fingerprint argument sshd passes (`%f`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FpFilter {
    /// No fingerprint, or one in another hash (`FingerprintHash md5`):
    /// print everything and let sshd match.
    All,
    Sha256(String),
}

impl FpFilter {
    pub fn parse(arg: Option<&str>) -> FpFilter {
        match arg {
            Some(fp) if fp.starts_with("SHA256:") => FpFilter::Sha256(fp.to_owned()),
            _ => FpFilter::All,
        }
    }

    /// Whether `key` is printed, and whether it is the key sshd asked
    /// about; the key is hashed at most once. cert-authority lines are always
    /// printed: for a certificate sshd passes the certified key's
    /// fingerprint, never the CA's.
    pub fn check(&self, key: &KeyLine) -> FpMatch {
        match self {
            FpFilter::All => FpMatch {
                printed: true,
                asked: false,
            },
            FpFilter::Sha256(fp) => {
                let asked = key.fingerprint() == *fp;
                FpMatch {
                    printed: asked || key.cert_authority,
                    asked,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyline::parse_line;

    const ED1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDPMfwLtLu8ssdo0mwnJ/vRGHMD+DCCpN6dFEcKVLr8A";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmr1xCVeMaP2E4uyd5i6dkLPKvWNCXFB0oWt4m6JS2W";
    // 1024-bit RSA (ssh-keygen -t rsa -b 1024)
    const RSA1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDFGiZoH5diyYw/TksqQJwa5ZzQQ9dQSzt/jBn1gCJNI3+nSgLJxK4soqUBD7DN1noMK7q8NJoGpBz+aFdJx/jZU/JvFAY9l81OxRF7XfgMWAOeA2CSJSWghLT04aTkwBq0jaq/CsovX1aN1J+APTQS4mr5bGkWdcfQIo21nqnz5Q==";

    // min_rsa_bits and min_rsa_bits - 1 (ssh-keygen -t rsa -b 2048 / -b 2047):
    // the boundary itself, which 1024-bit keys never reach.
    const RSA2047: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAGX1qXk2zCxnxzz49oFbRJBJkelbg3w8qxHtD9pOqLV9F0BUpGfBJMaBveaMPQoO8xz70ThHowqBeVYJ2qpzTOeSseF/Whn2J0RHDFW0GHnjsKewEZ73H5QGiPBHrlBOHWN1xKdVB7/3i3xjCsSuJAuQBWXlfvKGeKKXkcJUJ09dpNNxmglysiZ2asTfiBRbN1GbpgQQAUQ/cz9ZQLER78cs47q17F/eKjitZM3DNlgZ40Fn26DwR26vIQ1Nh5b9K8DI+Xfe3u0Xg+alGSEHjyeezwDVUBDjhz8WqQkZExAjXWKy99k3VKRPJPTxzlT2TZkqEF3Kf8IUYoRV4VGZT/E=";
    const RSA2048: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC6QWliYfxaRmxYI6F5cuB2k7fNcK+U68QgHiuAa+HQBtICEaXwdA83vL7Sa/YTSMHdhoRnLfBYTz5dhqJHmCJm2FZyBfndwzib0XbdRaDOoQXTQgH154tGembfqVOainGUl9se88lx5LCTU4U+NaM0bIaU74/50r9bVT+iePYUZao1E6JqBiakfJADsV9eV1up0epSwiwZAaCUM+XGo8GjQ65vYmMx3M7/9uci+quis4Z1n0HRq867FSMIcYPShqytTDaOMJug5OO80N2fIfUsyp+TqPniE3GdblZl/TEZ5BGeHs/0NKOB8OKkKI/CXhpnwlTM0hTE9QNDc8XIl5Ab";

    fn cands(lines: &[&str]) -> Vec<Candidate> {
        lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let parsed = parse_line(l).transpose()?;
                Some(Candidate {
                    source: "directory".into(),
                    line_no: i + 1,
                    parsed,
                })
            })
            .collect()
    }

    fn policy() -> PolicyConfig {
        PolicyConfig::default()
    }

    #[test]
    fn serves_valid_keys() {
        let c = cands(&[ED1, ED2]);
        assert_eq!(
            evaluate(&policy(), &c, 0),
            vec![Verdict::Served, Verdict::Served]
        );
    }

    #[test]
    fn drops_small_rsa_and_disallowed_types() {
        let c = cands(&[RSA1024]);
        assert_eq!(
            evaluate(&policy(), &c, 0),
            vec![Verdict::Dropped(DropReason::RsaTooSmall {
                bits: 1024,
                min: 2048
            })]
        );
        let mut p = policy();
        p.key_types = vec!["ssh-rsa".into()];
        p.min_rsa_bits = 1024;
        let c = cands(&[RSA1024, ED1]);
        assert_eq!(
            evaluate(&p, &c, 0),
            vec![
                Verdict::Served,
                Verdict::Dropped(DropReason::KeyType("ssh-ed25519".into()))
            ]
        );
    }

    #[test]
    fn every_drop_reason_says_what_to_fix_and_has_its_tag() {
        for (r, text, tag) in [
            (
                DropReason::Invalid(LineError::MissingKey),
                "invalid line: no key after options",
                "invalid",
            ),
            (
                DropReason::KeyType("ssh-dss".into()),
                "key type ssh-dss not in [policy] key_types",
                "key-type",
            ),
            (
                DropReason::RsaTooSmall {
                    bits: 2047,
                    min: 2048,
                },
                "RSA key of 2047 bits is below min_rsa_bits 2048",
                "rsa-bits",
            ),
            (DropReason::Expired, "expiry-time has passed", "expired"),
            (
                DropReason::Duplicate { first: 0 },
                "duplicate of key #1",
                "duplicate",
            ),
            (
                DropReason::OverMaxKeys { max: 100 },
                "more than max_keys 100",
                "max-keys",
            ),
        ] {
            assert_eq!(r.to_string(), text);
            assert_eq!(r.tag(), tag, "{text}");
        }
    }

    #[test]
    fn rsa_size_boundary_is_inclusive() {
        let mut p = policy();
        p.key_types = vec!["ssh-rsa".into()];
        assert_eq!(p.min_rsa_bits, 2048, "the documented default");
        let c = cands(&[RSA2047, RSA2048]);
        assert_eq!(
            evaluate(&p, &c, 0),
            vec![
                Verdict::Dropped(DropReason::RsaTooSmall {
                    bits: 2047,
                    min: 2048
                }),
                Verdict::Served,
            ]
        );
        // min_rsa_bits is the smallest size served, not the first refused.
        p.min_rsa_bits = 2047;
        assert_eq!(evaluate(&p, &c, 0), vec![Verdict::Served, Verdict::Served]);
        p.min_rsa_bits = 2049;
        assert_eq!(
            evaluate(&p, &c, 0),
            vec![
                Verdict::Dropped(DropReason::RsaTooSmall {
                    bits: 2047,
                    min: 2049
                }),
                Verdict::Dropped(DropReason::RsaTooSmall {
                    bits: 2048,
                    min: 2049
                }),
            ]
        );
    }

    #[test]
    fn duplicates_only_when_options_and_key_are_identical() {
        let c = cands(&[
            &format!("{ED1} first"),
            &format!("from=\"10.0.0.1\" {ED1} second"),
            &format!("cert-authority {ED1}"),
            &format!("{ED1} same key and options, other comment"),
            &format!("cert-authority,principals=\"a\" {ED2}"),
            &format!("cert-authority,principals=\"b\" {ED2}"),
            &format!("cert-authority,principals=\"b\" {ED2} again"),
        ]);
        assert_eq!(
            evaluate(&policy(), &c, 0),
            vec![
                Verdict::Served,
                Verdict::Served,
                Verdict::Served,
                Verdict::Dropped(DropReason::Duplicate { first: 0 }),
                Verdict::Served,
                Verdict::Served,
                Verdict::Dropped(DropReason::Duplicate { first: 5 }),
            ]
        );
    }

    #[test]
    fn uid_zero_is_root_when_root_is_denied() {
        let p = policy();
        assert!(denied(&p, "root", Some(0)).is_some());
        assert!(denied(&p, "toor", Some(0)).unwrap().contains("uid 0"));
        assert_eq!(denied(&p, "alice", Some(1000)), None);
        assert_eq!(denied(&p, "alice", None), None);
        let mut open = policy();
        open.deny_users = vec!["bob".into()];
        assert_eq!(denied(&open, "toor", Some(0)), None);
        assert!(denied(&open, "bob", Some(1001)).is_some());
    }

    #[test]
    fn max_keys_counts_served_keys_only() {
        let mut p = policy();
        p.max_keys = 1;
        let c = cands(&["garbage", ED1, ED2]);
        let v = evaluate(&p, &c, 0);
        assert!(matches!(v[0], Verdict::Dropped(DropReason::Invalid(_))));
        assert_eq!(v[1], Verdict::Served);
        assert_eq!(v[2], Verdict::Dropped(DropReason::OverMaxKeys { max: 1 }));
    }

    #[test]
    fn expiry() {
        let c = cands(&[&format!("expiry-time=\"20300101Z\" {ED1}")]);
        let t2030 = 1893456000;
        assert_eq!(evaluate(&policy(), &c, t2030 - 1), vec![Verdict::Served]);
        assert_eq!(
            evaluate(&policy(), &c, t2030),
            vec![Verdict::Dropped(DropReason::Expired)]
        );
    }

    #[test]
    fn fingerprint_filter() {
        let k1 = parse_line(ED1).unwrap().unwrap();
        let k2 = parse_line(ED2).unwrap().unwrap();
        let ca = parse_line(&format!("cert-authority {ED2}"))
            .unwrap()
            .unwrap();
        let f = FpFilter::parse(Some(&k1.fingerprint()));
        let pair = |m: FpMatch| (m.printed, m.asked);
        assert_eq!(pair(f.check(&k1)), (true, true));
        assert_eq!(pair(f.check(&k2)), (false, false));
        assert_eq!(pair(f.check(&ca)), (true, false));
        assert_eq!(FpFilter::parse(Some("MD5:aa:bb")), FpFilter::All);
        assert_eq!(FpFilter::parse(None), FpFilter::All);
        assert_eq!(pair(FpFilter::All.check(&k2)), (true, false));
        let bogus = FpFilter::parse(Some("SHA256:not-a-fingerprint"));
        assert_eq!(pair(bogus.check(&k1)), (false, false));
        assert_eq!(pair(bogus.check(&ca)), (true, false));
    }
}
