//! `keyward publish`: its options, choosing the source and the signer, and
//! `--check`. Cold code, kept out of the login path's module.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, DirectoryConfig, PolicyConfig, UrlTemplate};
use crate::sign::{How, Signer};
use crate::source::{self, Source};

/// Exit codes of `keyward publish`, on sync's pattern: everything
/// published; some entries refused or some users kept as published before
/// (each named on stderr; the rest published); nothing could be published
/// (config, source, signing, writing OUT). `--check`: 0 fit to upload,
/// 1 problems found, 2 the check could not run.
pub const PUBLISH_OK: i32 = 0;
pub const PUBLISH_SOME_REFUSED: i32 = 1;
pub const PUBLISH_FAILED: i32 = 2;

#[derive(clap::Args, Debug)]
pub struct PublishArgs {
    /// Where users and keys come from: a folder (`alice.keys`,
    /// `deploy.principals`), an LDAP URL (`ldaps://HOST/BASE??sub?FILTER`)
    /// or a URL template with {user} (a forge; with --users).
    #[arg(required_unless_present = "check", value_name = "SRC")]
    pub src: Option<String>,
    /// Output folder to serve (nginx root, object storage, CDN origin).
    #[arg(required_unless_present = "check", value_name = "OUT")]
    pub out: Option<PathBuf>,
    /// Check a published folder instead (every index entry present, hashes,
    /// signatures, headers, no stray files); exit 0 when fit to upload.
    #[arg(long, value_name = "OUT", conflicts_with_all = ["src", "out"])]
    pub check: Option<PathBuf>,
    /// Signing key: an unencrypted ed25519 or ECDSA P-256/P-384 key signs
    /// in-process; a public key whose private half is in ssh-agent, an
    /// encrypted, RSA, P-521 or token key signs through ssh-keygen. Without it the
    /// files (and the index) are not signed.
    #[arg(long, value_name = "KEY")]
    pub signer: Option<PathBuf>,
    /// auto (in-process when the key allows it), native or ssh-keygen.
    #[arg(long, value_name = "HOW", default_value = "auto", value_parser = How::parse)]
    pub sign_with: How,
    /// How long the signed files stay valid (the `expires` in each header).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = super::parse_delay)]
    pub validity: Duration,
    /// Serial for this publication (default: the current Unix time).
    #[arg(long)]
    pub serial: Option<u64>,
    /// How many older serials of the index and of the revocation list keep
    /// a delta (OUT/keyward.index.d/, OUT/revoked.list.d/): a host at one of
    /// them fetches only what changed; 0 writes none.
    #[arg(long, value_name = "N", default_value_t = crate::publish::DELTA_KEEP)]
    pub delta_keep: usize,
    /// Refuse (exit 2, OUT left as it was) when this run would remove more
    /// of the users published in OUT than this: a share (10%) or a number
    /// of users; 100% allows any removal. One leaver is always allowed,
    /// the last user never by a share below 100%.
    #[arg(long, value_name = "LIMIT", default_value = "10%", value_parser = crate::publish::MaxRemoved::parse)]
    pub max_removed: crate::publish::MaxRemoved,
    /// LDAP: the DN to bind as (default: an anonymous bind).
    #[arg(long, value_name = "DN", help_heading = "LDAP source")]
    pub bind_dn: Option<String>,
    /// LDAP: the file holding the bind password (owner-only; never on the
    /// command line).
    #[arg(long, value_name = "FILE", help_heading = "LDAP source")]
    pub bind_password_file: Option<PathBuf>,
    /// LDAP: require StartTLS on an ldap:// URL.
    #[arg(long, help_heading = "LDAP source")]
    pub starttls: bool,
    /// LDAP: the CA certificate(s) the server's certificate must chain to.
    #[arg(long, value_name = "FILE", help_heading = "LDAP source")]
    pub ca_file: Option<PathBuf>,
    /// LDAP: the attribute holding the user name [default: uid].
    #[arg(long, value_name = "ATTR", help_heading = "LDAP source")]
    pub user_attribute: Option<String>,
    /// LDAP: the attribute holding the keys, one line per value [default:
    /// sshPublicKey; FreeIPA: ipaSshPubKey].
    #[arg(long, value_name = "ATTR", help_heading = "LDAP source")]
    pub key_attribute: Option<String>,
    /// LDAP: entries per page of the paged search [default: 200].
    #[arg(long, value_name = "N", help_heading = "LDAP source")]
    pub page_size: Option<u32>,
    /// LDAP: time limit for the whole search [default: 5m].
    #[arg(long, value_name = "DURATION", value_parser = super::parse_delay, help_heading = "LDAP source")]
    pub ldap_timeout: Option<Duration>,
    /// Forge: the local users to publish, one per line, `local [remote]`.
    #[arg(long, value_name = "FILE", help_heading = "Forge source")]
    pub users: Option<PathBuf>,
    /// Forge: the account the fetches run as when publish runs as root
    /// [default: the config's `[cache] owner`, `keyward`]. Only root may
    /// give it; publish itself keeps root to write OUT.
    #[arg(long, value_name = "USER", help_heading = "Forge source")]
    pub fetch_user: Option<String>,
    /// Forge: parallel fetches.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 8,
        help_heading = "Forge source"
    )]
    pub jobs: usize,
}

/// What publish takes from the fleet's config when there is one here
/// (publish usually runs on a build host, not on a server).
struct Fleet {
    policy: PolicyConfig,
    directory: DirectoryConfig,
    /// `[cache] owner`: the default account for forge fetches as root.
    owner: String,
}

fn fleet(config_path: &Path) -> Result<Fleet, String> {
    if !config_path.exists() {
        eprintln!(
            "keyward publish: {} not found, using the default policy",
            config_path.display()
        );
        return Ok(Fleet {
            policy: PolicyConfig::default(),
            directory: DirectoryConfig::default(),
            owner: crate::config::CacheConfig::default().owner,
        });
    }
    let c = Config::load(config_path).map_err(|e| e.to_string())?;
    Ok(Fleet {
        policy: c.policy,
        directory: c.directory,
        owner: c.cache.owner,
    })
}

/// The source SRC names, with its options; options of another kind of
/// source are an error rather than silently ignored.
fn source_of(src: &str, a: &PublishArgs, fleet: &Fleet) -> Result<Box<dyn Source>, String> {
    let ldap_opts = a.bind_dn.is_some()
        || a.bind_password_file.is_some()
        || a.starttls
        || a.ca_file.is_some()
        || a.user_attribute.is_some()
        || a.key_attribute.is_some()
        || a.page_size.is_some()
        || a.ldap_timeout.is_some();
    if source::ldap::is_ldap_url(src) {
        if a.users.is_some() {
            return Err("--users is for a forge URL template, not an LDAP source".into());
        }
        let l = source::ldap::Ldap {
            url: source::ldap::parse_url(src)?,
            bind_dn: a.bind_dn.clone(),
            password_file: a.bind_password_file.clone(),
            starttls: a.starttls,
            ca_file: a.ca_file.clone(),
            user_attribute: a.user_attribute.clone().unwrap_or_else(|| "uid".into()),
            key_attribute: a
                .key_attribute
                .clone()
                .unwrap_or_else(|| "sshPublicKey".into()),
            page_size: a.page_size.unwrap_or(source::ldap::PAGE_SIZE),
            timeout: a.ldap_timeout.unwrap_or(Duration::from_secs(300)),
            ldapsearch: source::ldap::LDAPSEARCH.into(),
        };
        l.check()?;
        return Ok(Box::new(l));
    }
    if ldap_opts {
        return Err(format!(
            "{src:?} is not an LDAP URL: the LDAP options do not apply"
        ));
    }
    let lower = src.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        let template = UrlTemplate::parse(src)?;
        let account = fetch_account(a.fetch_user.as_deref(), &fleet.owner)?;
        let file = a
            .users
            .as_ref()
            .ok_or("a URL template as SRC needs --users FILE (the local users to publish)")?;
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let users = source::forge::parse_users(&text, fleet.policy.max_username_len)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let forge = Box::new(source::forge::Forge {
            template,
            users,
            directory: fleet.directory.clone(),
            jobs: a.jobs,
        });
        return Ok(match account {
            Some(account) => Box::new(source::unprivileged::Unprivileged {
                inner: forge,
                account,
            }),
            None => forge,
        });
    }
    if a.users.is_some() {
        return Err("--users is for a forge URL template as SRC".into());
    }
    if a.fetch_user.is_some() {
        return Err("--fetch-user is for a forge URL template as SRC".into());
    }
    Ok(Box::new(source::folder::Folder { dir: src.into() }))
}

/// The account a forge source's fetches run as: as root, `fetch_user`
/// (else the `[cache] owner`), never root itself; None when publish does
/// not run as root (the fetches then run as its user).
fn fetch_account(
    fetch_user: Option<&str>,
    owner: &str,
) -> Result<Option<crate::os::nss::Account>, String> {
    let euid = crate::os::privdrop::euid();
    if euid != 0 {
        return match fetch_user {
            Some(u) => Err(format!(
                "--fetch-user {u}: only root switches accounts (publish runs as uid {euid})"
            )),
            None => Ok(None),
        };
    }
    let (name, from) = match fetch_user {
        Some(u) => (u, "--fetch-user"),
        None => (owner, "[cache] owner"),
    };
    let account = crate::os::privdrop::account(name)
        .map_err(|e| format!("looking up {name:?} ({from}): {e}"))?
        .ok_or_else(|| {
            format!(
                "running as root, the forge fetches run as {name:?} ({from}), which does not \
                 exist: create it, name another account with --fetch-user, or run publish \
                 as an unprivileged user"
            )
        })?;
    if account.uid == 0 || account.gid == 0 {
        return Err(format!(
            "{name:?} ({from}) has uid {} gid {}: forge fetches must not run as root",
            account.uid, account.gid
        ));
    }
    eprintln!(
        "keyward publish: fetching as {name} (uid {}), not as root",
        account.uid
    );
    Ok(Some(account))
}

pub(super) fn run_publish(config_path: &Path, a: &PublishArgs) -> i32 {
    let fail = |e: String| {
        eprintln!("keyward publish: {e}");
        PUBLISH_FAILED
    };
    let fleet = match fleet(config_path) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    if let Some(out) = &a.check {
        return run_check(out, a, &fleet);
    }
    let (Some(src), Some(out)) = (a.src.as_deref(), a.out.as_deref()) else {
        return fail("SRC and OUT are required".into());
    };
    let source = match source_of(src, a, &fleet) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let signer = match a.signer.as_deref().map(|k| Signer::open(k, a.sign_with)) {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return fail(e),
        None => None,
    };
    if let Some(s) = &signer {
        eprintln!("keyward publish: {}", s.describe());
    }
    let now = crate::os::clock::now_secs();
    let opts = crate::publish::Options {
        source: source.as_ref(),
        out,
        signer: signer.as_ref(),
        index: fleet.directory.index.as_deref(),
        serial: a.serial.unwrap_or(now),
        expires: (now + a.validity.as_secs()) as i64,
        policy: &fleet.policy,
        max_username_len: fleet.policy.max_username_len,
        delta_keep: a.delta_keep,
        max_removed: a.max_removed,
    };
    match crate::publish::publish(&opts) {
        Ok(p) => {
            for line in p.refusals(&opts) {
                eprintln!("keyward publish: {line}");
            }
            for note in &p.notes {
                eprintln!("keyward publish: {note}");
            }
            for line in p.report(&opts) {
                println!("{line}");
            }
            for line in upload_order(out, opts.index) {
                println!("{line}");
            }
            if p.refused.is_empty() && p.notes.is_empty() {
                PUBLISH_OK
            } else {
                PUBLISH_SOME_REFUSED
            }
        }
        Err(e) => fail(e),
    }
}

/// How to upload OUT so that no host sees an index naming a file not
/// there yet: files first, the index last, deletions after it (pure).
fn upload_order(out: &Path, index: Option<&str>) -> Vec<String> {
    let o = out.display();
    let Some(i) = index else {
        return vec![format!(
            "upload: rclone sync {o} REMOTE:PATH (no index: any order)"
        )];
    };
    vec![
        "upload in this order (files and deltas first, the index last, deletions after it):"
            .into(),
        format!("  rclone copy {o} REMOTE:PATH --exclude '{i}*'"),
        format!("  rclone copy {o} REMOTE:PATH --include '{i}.gz' --include '{i}.sig'"),
        format!("  rclone copy {o} REMOTE:PATH --include '{i}'"),
        format!("  rclone sync {o} REMOTE:PATH"),
        format!(
            "  or: aws s3 sync {o} s3://BUCKET/PATH --exclude '{i}*' --include '{i}.d/*'; aws s3 cp {o}/{i}.gz …; \
             aws s3 cp {o}/{i}.sig …; aws s3 cp {o}/{i} …; aws s3 sync {o} s3://BUCKET/PATH --delete"
        ),
    ]
}

/// `--check OUT`: signatures against `--signer`'s public half, else the
/// config's `[directory] signers`; with neither, an unsigned tree.
fn run_check(out: &Path, a: &PublishArgs, fleet: &Fleet) -> i32 {
    let fail = |e: String| {
        eprintln!("keyward publish --check: {e}");
        PUBLISH_FAILED
    };
    let signers = match &a.signer {
        Some(k) => match crate::sign::public_key_of(k) {
            Some(key) => Some(vec![key]),
            None => {
                return fail(format!(
                    "{}: no OpenSSH public key in it (or in its .pub)",
                    k.display()
                ))
            }
        },
        None if fleet.directory.signed() => match fleet.directory.load_signers() {
            Ok(keys) => Some(keys),
            Err(e) => return fail(e),
        },
        None => None,
    };
    let tree = match crate::publish::read_tree(out, crate::index::MAX_BYTES) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let now = crate::os::clock::now_secs() as i64;
    let index = fleet.directory.index.as_deref();
    let problems = crate::publish::check_tree(&tree, index, signers.as_deref(), now);
    let what = if signers.is_some() {
        "signed"
    } else {
        "unsigned"
    };
    if problems.is_empty() {
        println!(
            "{}: {} file(s), {what}, fit to upload",
            out.display(),
            tree.files.len()
        );
        return PUBLISH_OK;
    }
    for p in &problems {
        println!("{}: {p}", out.display());
    }
    println!(
        "{}: {} problem(s) in {} file(s) ({what}): do not upload",
        out.display(),
        problems.len(),
        tree.files.len()
    );
    PUBLISH_SOME_REFUSED
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(argv: &[&str]) -> Result<PublishArgs, clap::Error> {
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            a: PublishArgs,
        }
        T::try_parse_from(std::iter::once("publish").chain(argv.iter().copied())).map(|t| t.a)
    }

    #[test]
    fn each_source_takes_only_its_own_options() {
        let fleet = Fleet {
            policy: PolicyConfig::default(),
            directory: DirectoryConfig::default(),
            owner: "keyward".into(),
        };
        let src = |argv: &[&str]| {
            let a = args(argv).unwrap();
            source_of(a.src.as_deref().unwrap(), &a, &fleet).map(|s| s.describe())
        };
        assert_eq!(src(&["/srv/keys", "out"]).unwrap(), "/srv/keys");
        let ldap = src(&[
            "ldap://h/dc=x",
            "out",
            "--bind-dn",
            "cn=r,dc=x",
            "--bind-password-file",
            "/p",
        ]);
        assert!(ldap.unwrap().starts_with("LDAP ldap://h"));
        assert!(src(&["/srv/keys", "out", "--bind-dn", "cn=r"])
            .unwrap_err()
            .contains("not an LDAP URL"));
        assert!(src(&["ldap://h/dc=x", "out", "--bind-dn", "cn=r"])
            .unwrap_err()
            .contains("--bind-password-file"));
        assert!(src(&["https://f/{user}.keys", "out"])
            .unwrap_err()
            .contains("--users"));
        assert!(src(&["/srv/keys", "out", "--users", "/u"]).is_err());
        assert!(args(&["--check", "out"]).is_ok());
        assert!(args(&["--check", "out", "src"]).is_err());
        assert!(args(&["src"]).is_err());
        assert!(args(&["s", "o", "--sign-with", "agent"]).is_err());
    }
}
