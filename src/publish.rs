//! `keyward publish`: build a complete, signed, static directory tree.
//!
//! Input: a folder of per-user key files (`alice` or `alice.keys`) and
//! principals files (`deploy.principals`: the certificate principals the
//! account accepts). Each is checked with the same parser and policy as the
//! login path; what passes is written as `OUT/<user>.keys` or
//! `OUT/<user>.principals` with a `#keyward` header (`kind=principals` for
//! the latter) and signed with `ssh-keygen -Y sign -n keyward` (OpenSSH's
//! own tool: passphrases, agents and hardware keys work as admins already
//! use them). Files for users no longer in the input are removed, so the
//! tree is complete.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::config::PolicyConfig;
use crate::entry::Kind;
use crate::lookup::candidates;
use crate::policy::{self, Judged};
use crate::signed::{self, Header};

/// What publishing one user gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub user: String,
    pub kind: Kind,
    /// The serial signed into the file (never one published before).
    pub serial: u64,
    pub served: usize,
    /// `line N: reason` for each dropped line.
    pub dropped: Vec<String>,
}

/// Builds the signed body for one user (pure).
pub fn build_body(
    user: &str,
    text: &str,
    policy: &PolicyConfig,
    header: &Header,
    now: i64,
) -> (String, Published) {
    let mut cands = Vec::new();
    candidates("input", text, &mut cands);
    let mut body = header.to_line();
    body.push('\n');
    let mut served = 0;
    let mut dropped = Vec::new();
    for (c, judged) in policy::judge(policy, &cands, now) {
        match judged {
            Judged::Served(k) => {
                body.push_str(&k.to_line());
                body.push('\n');
                served += 1;
            }
            Judged::Dropped(why) => dropped.push(format!("line {}: {why}", c.line_no)),
        }
    }
    let p = Published {
        user: user.to_owned(),
        kind: Kind::Keys,
        serial: header.serial,
        served,
        dropped,
    };
    (body, p)
}

/// Builds the signed principals body for one user (pure): the lines
/// `keyward principals` would serve, options verbatim.
pub fn build_principals_body(
    user: &str,
    text: &str,
    policy: &PolicyConfig,
    header: &Header,
    now: i64,
) -> (String, Published) {
    let cands = crate::principals::candidates(text);
    let verdicts = crate::principals::evaluate(policy, &cands, now);
    let mut body = header.to_line();
    body.push('\n');
    let (mut served, mut dropped) = (0, Vec::new());
    for (c, v) in cands.iter().zip(&verdicts) {
        match (v, &c.parsed) {
            (None, Ok(l)) => {
                body.push_str(&l.to_line());
                body.push('\n');
                served += 1;
            }
            (Some(d), _) => dropped.push(format!("line {}: {d}", c.line_no)),
            _ => {}
        }
    }
    let p = Published {
        user: user.to_owned(),
        kind: Kind::Principals,
        serial: header.serial,
        served,
        dropped,
    };
    (body, p)
}

pub struct Options<'a> {
    pub src: &'a Path,
    pub out: &'a Path,
    /// A private key, or a public key whose private half is in ssh-agent.
    pub signer: &'a Path,
    pub serial: u64,
    pub expires: i64,
    pub policy: &'a PolicyConfig,
    pub max_username_len: usize,
}

/// The user and kind of an input file name (`alice`, `alice.keys`,
/// `deploy.principals`); None for files that are not input.
fn input_name(name: &str) -> Option<(&str, Kind)> {
    if name.starts_with('.') || name.ends_with(".sig") {
        return None;
    }
    Some(match name.strip_suffix(".principals") {
        Some(user) => (user, Kind::Principals),
        None => (name.strip_suffix(".keys").unwrap_or(name), Kind::Keys),
    })
}

/// Publishes every user in `src` into `out`.
pub fn publish(o: &Options) -> Result<Vec<Published>, String> {
    let mut inputs: Vec<(String, Kind, PathBuf)> = Vec::new();
    let rd = std::fs::read_dir(o.src).map_err(|e| format!("{}: {e}", o.src.display()))?;
    for entry in rd {
        let entry = entry.map_err(|e| format!("{}: {e}", o.src.display()))?;
        let path = entry.path();
        if !entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((user, kind)) = input_name(&name) else {
            continue;
        };
        crate::username::validate(user, o.max_username_len)
            .map_err(|e| format!("{}: not a valid user name: {e}", path.display()))?;
        if inputs.iter().any(|(u, k, _)| u == user && *k == kind) {
            return Err(format!(
                "{}: {user} has two {} files (`{user}` and `{user}.keys`)",
                o.src.display(),
                kind.as_str()
            ));
        }
        inputs.push((user.to_owned(), kind, path));
    }
    inputs.sort_by(|a, b| (&a.0, a.1.as_str()).cmp(&(&b.0, b.1.as_str())));
    std::fs::create_dir_all(o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    let now = crate::os::clock::now_secs() as i64;
    let mut results = Vec::new();
    for (user, kind, path) in &inputs {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let header = Header {
            user: user.clone(),
            kind: *kind,
            serial: next_serial(o.serial, last_serial(o.out, user, *kind)),
            expires: o.expires,
        };
        let (body, published) = match kind {
            Kind::Keys => build_body(user, &text, o.policy, &header, now),
            Kind::Principals => build_principals_body(user, &text, o.policy, &header, now),
        };
        write_signed(o.out, &out_name(user, *kind), &body, o.signer)?;
        results.push(published);
    }
    remove_stale(o.out, &inputs)?;
    Ok(results)
}

/// `alice.keys`, `deploy.principals`: the names the URL templates ask for.
fn out_name(user: &str, kind: Kind) -> String {
    format!("{user}.{}", kind.as_str())
}

/// A serial is never reused: hosts refuse a signed file whose serial is at
/// or below one they accepted with another body (the rollback floor), so a
/// repeated serial would lock the user out. `max(requested, last + 1)`.
pub fn next_serial(requested: u64, last: Option<u64>) -> u64 {
    match last {
        Some(l) => requested.max(l.saturating_add(1)),
        None => requested,
    }
}

/// The serial of the file already published for `user`, if any.
fn last_serial(out: &Path, user: &str, kind: Kind) -> Option<u64> {
    let text = std::fs::read_to_string(out.join(out_name(user, kind))).ok()?;
    signed::parse_header(&text).ok().map(|h| h.serial)
}

/// Writes `<name>` and its `.sig` so neither is ever seen half-written:
/// both are produced under temporary names, then renamed (signature first,
/// so a reader never gets a new body with no signature for it).
fn write_signed(out: &Path, name: &str, body: &str, signer: &Path) -> Result<(), String> {
    let tmp_body = out.join(format!(".{name}.tmp"));
    let tmp_sig = out.join(format!(".{name}.tmp.sig"));
    std::fs::write(&tmp_body, body).map_err(|e| format!("{}: {e}", tmp_body.display()))?;
    let _ = std::fs::remove_file(&tmp_sig);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", signed::NAMESPACE, "-f"])
        .arg(signer)
        .arg(&tmp_body)
        .stdin(Stdio::inherit())
        .status()
        .map_err(|e| format!("running ssh-keygen: {e}"))?;
    if !status.success() {
        let _ = std::fs::remove_file(&tmp_body);
        return Err(format!("ssh-keygen -Y sign failed for {name} ({status})"));
    }
    let final_body = out.join(name);
    std::fs::rename(&tmp_sig, out.join(format!("{name}.sig")))
        .and_then(|_| std::fs::rename(&tmp_body, &final_body))
        .map_err(|e| format!("{}: {e}", final_body.display()))
}

fn remove_stale(out: &Path, inputs: &[(String, Kind, PathBuf)]) -> Result<(), String> {
    let rd = std::fs::read_dir(out).map_err(|e| format!("{}: {e}", out.display()))?;
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let base = name.strip_suffix(".sig").unwrap_or(&name);
        let published = [Kind::Keys, Kind::Principals].into_iter().find_map(|k| {
            let user = base.strip_suffix(&format!(".{}", k.as_str()))?;
            Some((user, k))
        });
        if let Some((user, kind)) = published {
            if !inputs.iter().any(|(u, k, _)| u == user && *k == kind) {
                std::fs::remove_file(entry.path()).map_err(|e| format!("{name}: {e}"))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDPMfwLtLu8ssdo0mwnJ/vRGHMD+DCCpN6dFEcKVLr8A";

    #[test]
    fn serials_are_never_reused() {
        assert_eq!(next_serial(100, None), 100);
        assert_eq!(next_serial(100, Some(50)), 100);
        assert_eq!(next_serial(100, Some(100)), 101);
        assert_eq!(next_serial(100, Some(200)), 201);
        assert_eq!(next_serial(5, Some(u64::MAX)), u64::MAX);
    }

    #[test]
    fn body_has_header_and_only_policy_clean_keys() {
        let h = Header {
            user: "alice".into(),
            kind: crate::entry::Kind::Keys,
            serial: 3,
            expires: 2_000_000_000,
        };
        let text = format!("# laptop\n{ED} a\nssh-dss AAAA\n{ED} dup\n");
        let (body, p) = build_body("alice", &text, &PolicyConfig::default(), &h, 0);
        let mut lines = body.lines();
        assert_eq!(signed::parse_header(&body).unwrap(), h);
        lines.next();
        assert_eq!(lines.next(), Some(format!("{ED} a").as_str()));
        assert_eq!(lines.next(), None);
        assert_eq!(p.served, 1);
        assert_eq!(p.dropped.len(), 2, "{:?}", p.dropped);
    }

    #[test]
    fn input_names() {
        assert_eq!(input_name("alice"), Some(("alice", Kind::Keys)));
        assert_eq!(input_name("alice.keys"), Some(("alice", Kind::Keys)));
        assert_eq!(
            input_name("deploy.principals"),
            Some(("deploy", Kind::Principals))
        );
        assert_eq!(
            input_name("a@corp.example.com.keys"),
            Some(("a@corp.example.com", Kind::Keys))
        );
        assert_eq!(input_name("alice.keys.sig"), None);
        assert_eq!(input_name(".alice.keys.tmp"), None);
    }

    #[test]
    fn principals_body_has_its_kind_and_verbatim_options() {
        let h = Header {
            user: "deploy".into(),
            kind: Kind::Principals,
            serial: 9,
            expires: 2_000_000_000,
        };
        let text = "# web\nfrom=\"10.0.0.0/8\",command=\"echo \\\"a b\\\"\"  team-web\nteam-web extra\nalice\n";
        let (body, p) = build_principals_body("deploy", text, &PolicyConfig::default(), &h, 0);
        let mut lines = body.lines();
        assert_eq!(signed::parse_header(&body).unwrap(), h);
        lines.next();
        assert_eq!(
            lines.next(),
            Some("from=\"10.0.0.0/8\",command=\"echo \\\"a b\\\"\" team-web")
        );
        assert_eq!(lines.next(), Some("alice"));
        assert_eq!(lines.next(), None);
        assert_eq!(
            (p.served, p.dropped.len(), p.kind),
            (2, 1, Kind::Principals)
        );
    }
}
