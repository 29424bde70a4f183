//! `keyward explain USER [--fingerprint FP]`: why can (or can't) USER log in
//! with a key? Every key from every source with type, bits, fingerprint,
//! comment, options, source and age, and the verdict of the login path's
//! own code for each (`lookup::gather_for` for the sources, `policy::judge`
//! for the verdicts), plus what sshd does with the user before it ever runs
//! keyward (NSS, locked or expired account, shell, AllowUsers…).
//!
//! As root, the account checks run first: `gather_for` drops privileges to
//! the `[cache] owner` for good, exactly as the login path does.

pub mod account;
pub mod keys;
pub mod principals;
pub mod render;

use std::path::PathBuf;

use serde::Serialize;

use crate::config::Config;
use crate::lookup::{self, Failure};
use crate::os::nss;
use crate::os::privdrop;
use crate::policy;
use crate::report::{self, Check};
use crate::term::Style;

pub use keys::{KeyInfo, KeyVerdict};
pub use render::render;

/// What `keyward explain` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub user: String,
    pub fingerprint: Option<String>,
    pub json: bool,
    /// `sshd -T -f PATH` for the sshd part (default: sshd's own config).
    pub sshd_config: Option<PathBuf>,
}

/// The whole explanation (the `--json` document).
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub format: u32,
    pub keyward: &'static str,
    pub config: String,
    pub user: String,
    /// Effective uid explain started with.
    pub uid: u32,
    /// Account and sshd facts, as doctor checks (`account.*`, `sshd.*`,
    /// `keyward.*`).
    pub checks: Vec<Check>,
    /// `cache`, `directory`, `stale`, `files` (what the login path used).
    pub sources: Vec<String>,
    pub keys: Vec<KeyInfo>,
    pub warnings: Vec<String>,
    /// Set when the login path would fail closed (sshd then rejects every key).
    pub failure: Option<String>,
    pub fingerprint: Option<String>,
    /// One sentence: what happens.
    pub verdict: String,
    /// The configuration files read, in the order applied.
    pub config_files: Vec<String>,
    /// `section.key` → `FILE:LINE` for every value a file sets (what is not
    /// listed is the built-in default).
    pub settings: std::collections::BTreeMap<String, String>,
    /// Whether USER can log in with a key (with `--fingerprint`: that key);
    /// the exit status says the same (0 yes, 1 no, 2 cannot tell).
    pub can_log_in: Option<bool>,
    /// Certificate logins: which principals may log in as the account
    /// (None: sshd accepts no certificate, or it is not known and keyward
    /// holds no list for the account).
    pub principals: Option<principals::PrincipalsInfo>,
}

/// Exit statuses of `keyward explain`.
pub const EXIT_CAN_LOG_IN: i32 = 0;
pub const EXIT_CANNOT_LOG_IN: i32 = 1;
pub const EXIT_CANNOT_TELL: i32 = 2;

/// Runs explain and prints it; returns the exit code: 0 when USER can log
/// in with a key, 1 when not, 2 when explain cannot tell (no usable config,
/// or not enough privileges to see what the login path sees).
pub fn run(opts: &Options) -> i32 {
    let loaded = crate::config::layers::read(&opts.config)
        .and_then(|s| crate::config::layers::merge(&s, &opts.config).map(|l| (s, l)));
    let (sources, config) = match loaded {
        Ok((s, l)) => (s, l.config),
        Err(e) => {
            let e = e.to_string();
            if opts.json {
                let v = serde_json::json!({ "format": 1, "error": e });
                println!("{v}");
            } else {
                eprintln!("keyward explain: {e}");
                eprintln!("(keyward refuses to run without a valid config: every login with a key fails; `keyward doctor` says how to fix it)");
            }
            return EXIT_CANNOT_TELL;
        }
    };
    let mut ex = explain(&config, opts);
    keys::attribute(&mut ex, &sources);
    report::print(&if opts.json {
        report::json(&ex)
    } else {
        render(&ex, &Style::detect())
    });
    match ex.can_log_in {
        Some(true) => EXIT_CAN_LOG_IN,
        Some(false) => EXIT_CANNOT_LOG_IN,
        None => EXIT_CANNOT_TELL,
    }
}

impl Explanation {
    fn new(opts: &Options) -> Explanation {
        Explanation {
            format: 1,
            keyward: env!("CARGO_PKG_VERSION"),
            config: opts.config.display().to_string(),
            user: opts.user.clone(),
            uid: privdrop::euid(),
            checks: Vec::new(),
            sources: Vec::new(),
            keys: Vec::new(),
            warnings: Vec::new(),
            failure: None,
            fingerprint: opts.fingerprint.clone(),
            verdict: String::new(),
            config_files: Vec::new(),
            settings: Default::default(),
            can_log_in: None,
            principals: None,
        }
    }
}

/// Builds the explanation. As root this drops privileges (via `gather_for`).
pub fn explain(config: &Config, opts: &Options) -> Explanation {
    let user = opts.user.as_str();
    let mut ex = Explanation::new(opts);
    if let Err(e) = crate::username::validate(user, config.policy.max_username_len) {
        ex.checks.push(Check::fail(
            "keyward.name",
            format!("{user:?} is not a valid user name for keyward: {e}"),
            crate::username::fix(&e),
        ));
        ex.failure = Some(format!("invalid user name: {e}"));
        ex.verdict = format!("keyward fails closed for {user:?}: sshd rejects every key");
        ex.can_log_in = Some(false);
        return ex;
    }
    // Everything that needs root, before gather_for drops privileges.
    let acct = nss::account(user).ok().flatten();
    let root = ex.uid == 0;
    let (checks, sshd_t) = account::checks(user, acct.as_ref(), opts.sshd_config.as_deref(), root);
    ex.checks = checks;
    // The login path's own rule, uid-0 accounts included.
    if let Some(why) = policy::denied(&config.policy, user, acct.as_ref().map(|a| a.uid)) {
        ex.checks.push(Check::fail(
            "keyward.deny",
            format!("{user}: {why}: keyward answers with no keys, without looking at any source"),
            "remove the account (or root, for a uid-0 account) from [policy] deny_users if keys should work",
        ));
        ex.verdict =
            format!("denied: keyward prints no key for {user} (deny_users), so no key login");
        ex.can_log_in = Some(false);
        return ex;
    }
    let ages = acct
        .as_ref()
        .map(|a| keys::file_ages(config, a))
        .unwrap_or_default();
    let stand_in = stand_in(config, ex.uid);
    if stand_in {
        ex.warnings.push(format!(
            "running as uid {}: the login path runs as root or as the [cache] owner {}; what this uid cannot read shows up as a failure here",
            ex.uid, config.cache.owner
        ));
    }
    let offered = crate::chain::Offered {
        fingerprint: opts.fingerprint.as_deref(),
        ..Default::default()
    };
    let uid = acct.as_ref().map(|a| a.uid);
    match lookup::gather_for(config, user, acct.as_ref(), uid, offered) {
        Ok(g) => keys::fill(&mut ex, config, g, &ages, opts.fingerprint.as_deref()),
        Err(Failure { reason, source }) => {
            ex.failure = Some(match source {
                Some(s) => format!("{s}: {reason}"),
                None => reason,
            });
            ex.verdict = if stand_in {
                format!(
                    "cannot tell as uid {}: run `keyward explain {user}` as root",
                    ex.uid
                )
            } else {
                format!("keyward fails closed for {user} (prints nothing, exits non-zero): sshd rejects every key")
            };
        }
    }
    // Certificates: after the keys, with the same (dropped) credentials.
    let asked = principals::asked(sshd_t.as_ref());
    if principals::wanted(&asked, config, user) {
        ex.principals = Some(principals::explain(config, user, &asked));
    } else if let principals::Asked::Other(_) | principals::Asked::AccountName(Some(_)) = asked {
        ex.principals = Some(principals::not_asked(user, &asked));
    }
    ex.can_log_in = can_log_in(&ex, stand_in);
    ex
}

/// Whether a key login works: nothing fails closed, no check refuses the
/// login, and a key is served (with `--fingerprint`: printed for it).
/// None when a stand-in uid could not see what the login path sees.
pub fn can_log_in(ex: &Explanation, stand_in: bool) -> Option<bool> {
    if ex.failure.is_some() {
        return if stand_in { None } else { Some(false) };
    }
    if ex.checks.iter().any(|c| c.status == report::Status::Fail) {
        return Some(false);
    }
    let ok = match &ex.fingerprint {
        None => ex.keys.iter().any(|k| k.verdict == KeyVerdict::Served),
        Some(_) => ex.keys.iter().any(|k| k.printed == Some(true)),
    };
    // A certificate whose principal keyward accepts also logs in.
    let by_certificate = ex.fingerprint.is_none()
        && ex.principals.as_ref().is_some_and(|p| {
            p.failure.is_none() && p.lines.iter().any(|l| l.verdict == "accepted")
        });
    Some(ok || by_certificate)
}

/// Whether this uid is neither root nor the cache owner: what it cannot
/// read says little about the login path.
fn stand_in(config: &Config, uid: u32) -> bool {
    let owner_uid = nss::account(&config.cache.owner)
        .ok()
        .flatten()
        .map(|a| a.uid);
    uid != 0 && owner_uid != Some(uid)
}
