//! A ready-made environment for `keyward keys` tests: an installed keyward,
//! a cache directory owned by `keyward` (0750), a private rsyslog its config
//! logs to, and helpers that run one lookup and return its one syslog line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::keyward::make_cache_dir;
use super::rsyslog::LogLine;
use super::{Keyward, KwConfig, Out, Rsyslog, TestDir};

pub struct KeysEnv {
    pub dir: TestDir,
    pub log: Rsyslog,
    /// The cache directory (`<dir>/cache`, keyward:keyward 0750).
    pub cache: PathBuf,
    pub kw: Keyward,
    /// The config currently written.
    pub config: KwConfig,
}

/// One `keyward keys` run and the one syslog line it wrote.
#[derive(Debug)]
pub struct Lookup {
    pub out: Out,
    pub log: LogLine,
}

impl Lookup {
    /// Field of the syslog line.
    pub fn field(&self, k: &str) -> Option<String> {
        self.log.field(k)
    }

    pub fn decision(&self) -> String {
        self.field("decision").unwrap_or_default()
    }

    /// `TYPE BASE64` of every key line printed (options and comments cut).
    pub fn materials(&self) -> Vec<String> {
        materials(&self.out.stdout)
    }
}

impl std::fmt::Display for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}--- syslog ---\n{}\n", self.out, self.log.raw)
    }
}

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// `TYPE BASE64` of each authorized_keys line in `text`.
pub fn materials(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let toks: Vec<&str> = l.split_whitespace().collect();
            toks.windows(2)
                .find(|w| KEY_TYPES.contains(&w[0]) && w[1].starts_with("AAAA"))
                .map(|w| format!("{} {}", w[0], w[1]))
        })
        .collect()
}

/// A user name the directory tests can use (no account needed: the
/// directory source does not look users up).
pub fn fake_user() -> String {
    format!("dir{}x{}", super::unique(), std::process::id())
}

impl KeysEnv {
    /// `configure` receives a config with the cache dir and log socket set.
    pub fn new(configure: impl FnOnce(KwConfig) -> KwConfig) -> KeysEnv {
        let dir = TestDir::new("keys");
        let cache = dir.join("cache");
        super::ensure_system_user("keyward");
        make_cache_dir(&cache, "keyward");
        let log = Rsyslog::start();
        let config = configure(KwConfig::new(&cache, Some(&log.socket)));
        let kw = Keyward::with_config(&config);
        KeysEnv {
            dir,
            log,
            cache,
            kw,
            config,
        }
    }

    /// Rewrites the config (e.g. other mirrors) keeping cache and log.
    pub fn reconfigure(&mut self, change: impl FnOnce(KwConfig) -> KwConfig) {
        self.config = change(self.config.clone());
        self.kw.write_config(&self.config.to_toml());
    }

    /// The cache entry file of `user`.
    pub fn entry(&self, user: &str) -> PathBuf {
        self.cache.join(user)
    }

    fn lines_for(&self, user: &str) -> Vec<LogLine> {
        self.log
            .lines_of("keyward")
            .into_iter()
            .filter(|l| l.field("user").as_deref() == Some(user))
            .collect()
    }

    fn logged(&self, user: &str, out: Out, before: usize) -> Lookup {
        let lines = self
            .log
            .wait_for_n(before + 1, Duration::from_secs(10), |l| {
                l.program == "keyward" && l.field("user").as_deref() == Some(user)
            });
        assert_eq!(
            lines.len(),
            before + 1,
            "expected exactly one new syslog line for user {user}; got {:#?}\n{out}",
            &lines[before.min(lines.len())..]
        );
        Lookup {
            out,
            log: lines.last().unwrap().clone(),
        }
    }

    /// `keyward keys USER [FP]` as root; returns output and its syslog line
    /// (asserting there is exactly one).
    pub fn keys(&self, user: &str, fp: Option<&str>) -> Lookup {
        let before = self.lines_for(user).len();
        let out = self.kw.keys(user, fp);
        self.logged(user, out, before)
    }

    /// `keyward keys USER FP UID` as the `keyward` user: the call sshd makes
    /// with the shipped `keys %u %f %U`.
    pub fn keys_with_uid(&self, user: &str, fp: &str, uid: &str) -> Lookup {
        let before = self.lines_for(user).len();
        let out = self.kw.run_as("keyward", &["keys", user, fp, uid]);
        self.logged(user, out, before)
    }

    /// The same, run as the `keyward` user (as sshd would).
    pub fn keys_as_keyward(&self, user: &str, fp: Option<&str>) -> Lookup {
        let before = self.lines_for(user).len();
        let out = self.kw.keys_as_keyward(user, fp);
        self.logged(user, out, before)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}
