//! `/etc/keyward/keyward.toml` (then `keyward.toml.d/*.toml`) → a validated
//! [`Config`].
//!
//! Every value is checked while it is deserialised, so an error names the line
//! it is on (toml reports the span). Unknown keys are rejected: a typo such as
//! `max_stael` must not silently fall back to a default on a login path. The
//! one exception is a file that says it was written for a newer keyward
//! (`min_version`): there, keys this version does not know are ignored (see
//! [`crate::config::layers`]), so a config pushed before the package cannot lock a
//! fleet out.

pub mod command;
pub mod layers;
mod revocation;
mod skew;
mod values;

pub use revocation::{RevocationConfig, DEFAULT_MAX_AGE};
pub use values::{
    expand_file_template, line_of, parse_duration, parse_signer, percent_encode, ConfDuration,
    SignerKey, UrlTemplate, DEFAULT_INDEX, KNOWN_KEY_TYPES,
};
use values::{facility, file_templates, index_name, key_types, max_bytes, signer_keys};

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_PATH: &str = "/etc/keyward/keyward.toml";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The oldest keyward a file was written for (`"0.2.0"`). A file whose
    /// `min_version` is newer than this keyward is read leniently: keys this
    /// version does not know are ignored instead of refused. Per file: the
    /// merged value means nothing.
    pub min_version: Option<crate::config::layers::Version>,
    pub directory: DirectoryConfig,
    pub cache: CacheConfig,
    pub state: StateConfig,
    pub files: FilesConfig,
    pub policy: PolicyConfig,
    pub log: LogConfig,
    pub sync: SyncConfig,
    pub revocation: RevocationConfig,
    /// `[[command]]`: other AuthorizedKeysCommands chained as key sources.
    #[serde(rename = "command")]
    pub commands: Vec<command::CommandConfig>,
    /// Keys the files set that this version ignored (`min_version`); not
    /// a setting.
    #[serde(skip)]
    pub ignored: Vec<crate::config::layers::Ignored>,
}

/// `[state]`: where keyward keeps its security state (the rollback floors),
/// apart from the cache: cleaning or moving the cache must not reset them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Owned by `[cache] owner`, 0750, like the cache (same path rules).
    pub dir: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: PathBuf::from("/var/lib/keyward"),
        }
    }
}

/// `[sync]`: what `keyward sync` (the timer) does besides refreshing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// A node-exporter textfile (`*.prom`) written atomically after each sync.
    pub metrics_file: Option<PathBuf>,
}

/// The keys a section accepts (None: no such section). Used for the
/// `min_version` rule, which must know what this version understands;
/// the unit test `every_section_has_its_keys` keeps it complete.
pub fn section_keys(section: &str) -> Option<&'static [&'static str]> {
    use crate::config::layers::fields_of;
    Some(match section {
        "directory" => fields_of::<DirectoryConfig>(),
        "cache" => fields_of::<CacheConfig>(),
        "state" => fields_of::<StateConfig>(),
        "files" => fields_of::<FilesConfig>(),
        "policy" => fields_of::<PolicyConfig>(),
        "log" => fields_of::<LogConfig>(),
        "sync" => fields_of::<SyncConfig>(),
        "revocation" => fields_of::<RevocationConfig>(),
        _ => return None,
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    /// URL templates with `{user}`, tried in order.
    pub urls: Vec<UrlTemplate>,
    /// URL templates of the principals files (`keyward principals`); when
    /// empty, each of `urls` with its `.keys` suffix replaced by `.principals`.
    pub principals_urls: Vec<UrlTemplate>,
    /// Total budget for one lookup, all mirrors together.
    pub timeout: ConfDuration,
    /// Larger responses are refused.
    #[serde(deserialize_with = "max_bytes")]
    pub max_bytes: u64,
    /// When set, the only trust anchors for HTTPS (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Explicit HTTP(S) proxy. The environment (`https_proxy`…) is never read.
    pub proxy: Option<String>,
    /// Pinned signer keys: when any is set, every directory file must carry a
    /// valid `{url}.sig` SSHSIG signature by one of them.
    #[serde(deserialize_with = "signer_keys")]
    pub signers: Vec<SignerKey>,
    /// More signer keys, one per line (root-owned, like the config).
    pub signers_file: Option<PathBuf>,
    /// The directory index (`keyward publish` writes it): a file name in the
    /// folder the `{user}` path lives in, or `false` for none.
    #[serde(deserialize_with = "index_name")]
    pub index: Option<String>,
    /// How long a mirror that failed is skipped (jittered), serving stale.
    pub retry_interval: ConfDuration,
}

impl DirectoryConfig {
    /// The URL templates of one kind of directory file, in mirror order.
    pub fn templates(&self, kind: crate::entry::Kind) -> Result<Vec<UrlTemplate>, String> {
        use crate::entry::Kind;
        match kind {
            Kind::Keys => Ok(self.urls.clone()),
            Kind::Principals if !self.principals_urls.is_empty() => {
                Ok(self.principals_urls.clone())
            }
            Kind::Principals => self
                .urls
                .iter()
                .map(|t| match t.as_str().strip_suffix(".keys") {
                    Some(stem) => UrlTemplate::parse(&format!("{stem}.principals")),
                    None => Err(format!(
                        "cannot derive a principals URL from {:?} (it does not end in .keys): set [directory] principals_urls",
                        t.as_str()
                    )),
                })
                .collect(),
        }
    }

    /// Whether directory files must be signed.
    pub fn signed(&self) -> bool {
        !self.signers.is_empty() || self.signers_file.is_some()
    }

    /// All signer keys: inline ones and those in `signers_file`.
    pub fn load_signers(&self) -> Result<Vec<ssh_key::PublicKey>, String> {
        let mut keys: Vec<_> = self.signers.iter().map(|k| k.0.clone()).collect();
        if let Some(path) = &self.signers_file {
            use std::io::Read;
            let mut text = String::new();
            crate::os::safepath::open_checked(path, &[0], None)
                .map_err(|e| format!("signers_file: {e}"))?
                .take(1 << 20)
                .read_to_string(&mut text)
                .map_err(|e| format!("signers_file {}: {e}", path.display()))?;
            for (i, line) in text.lines().enumerate() {
                let t = line.trim();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                keys.push(
                    parse_signer(t)
                        .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?,
                );
            }
        }
        if keys.is_empty() {
            return Err("signatures required but no signer key configured".into());
        }
        Ok(keys)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub dir: PathBuf,
    pub ttl: ConfDuration,
    pub max_stale: ConfDuration,
    pub negative_ttl: ConfDuration,
    /// The account keyward switches to when started as root; owns `dir`.
    pub owner: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Local authorized_keys files, `%h` (home), `%u` (user), `%%`.
    #[serde(deserialize_with = "file_templates")]
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    #[serde(deserialize_with = "key_types")]
    pub key_types: Vec<String>,
    pub min_rsa_bits: u32,
    pub deny_users: Vec<String>,
    pub max_keys: usize,
    /// Longest user name accepted (bytes).
    pub max_username_len: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    #[serde(deserialize_with = "facility")]
    pub facility: String,
    pub socket: PathBuf,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            urls: Vec::new(),
            principals_urls: Vec::new(),
            timeout: ConfDuration(Duration::from_secs(2)),
            max_bytes: 256 * 1024,
            ca_file: None,
            proxy: None,
            signers: Vec::new(),
            signers_file: None,
            index: Some(DEFAULT_INDEX.into()),
            retry_interval: ConfDuration(Duration::from_secs(30)),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            dir: PathBuf::from("/var/cache/keyward"),
            ttl: ConfDuration(Duration::from_secs(5 * 60)),
            max_stale: ConfDuration(Duration::from_secs(3 * 24 * 3600)),
            negative_ttl: ConfDuration(Duration::from_secs(30)),
            owner: "keyward".into(),
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            key_types: KNOWN_KEY_TYPES
                .iter()
                .filter(|t| **t != "ssh-dss")
                .map(|t| t.to_string())
                .collect(),
            min_rsa_bits: 2048,
            deny_users: vec!["root".into()],
            max_keys: 100,
            max_username_len: crate::username::DEFAULT_MAX_LEN,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            facility: "authpriv".into(),
            socket: PathBuf::from("/dev/log"),
        }
    }
}

/// Largest configuration file read (each file).
pub(crate) const MAX_CONFIG: u64 = 1024 * 1024;

/// A configuration error, with the line it is on when there is one. Later
/// code branches on the variant (doctor: the file vs its text).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is unsafe (owner, modes, symlink, not a regular file) or
    /// cannot be opened.
    #[error("config: {0}")]
    Open(#[source] crate::os::safepath::OpenError),
    #[error("config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: larger than 1 MiB")]
    TooLarge { path: PathBuf },
    #[error("{path} line {line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A rule between values (`keys`: the `section.key`s involved, to
    /// name the files that set them).
    #[error("{path}: {message}")]
    Invalid {
        path: PathBuf,
        message: String,
        keys: Vec<&'static str>,
    },
    /// Neither `[directory] urls` nor `[files] paths` nor a `[[command]]`: the packaged state
    /// until an admin configures keyward (the login path fails closed,
    /// `sync` has nothing to do).
    #[error("{path}: no key source: set [directory] urls, [files] paths and/or a [[command]]")]
    NoKeySource { path: PathBuf },
}

/// A rule between values that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub message: String,
    pub keys: Vec<&'static str>,
}

impl Invalid {
    fn new(message: impl Into<String>, keys: &[&'static str]) -> Invalid {
        Invalid {
            message: message.into(),
            keys: keys.to_vec(),
        }
    }
}

impl ConfigError {
    /// Whether only the permission to open the file was missing (not root).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, ConfigError::Open(crate::os::safepath::OpenError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied)
    }
}

impl Config {
    /// Reads and validates the configuration: the file, then the drop-ins in
    /// `PATH.d/*.toml` in lexical order (later values win). Like sshd with
    /// its own files, keyward refuses a file that root does not own or others
    /// could write (each file, the `.d` directory, every parent). Without a
    /// `.d` directory this costs one failed `lstat` more than one file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let sources = crate::config::layers::read(path)?;
        match sources.as_slice() {
            // No drop-in: exactly the one-file parse.
            [only] => Config::parse(&only.text, path),
            _ => crate::config::layers::merge(&sources, path).map(|l| l.config),
        }
    }

    /// Parses the text of one file; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let relaxed = crate::config::layers::relax(text, path)?.checked()?;
        let mut config = Config::parse_strict(&relaxed.text, path)?;
        config.validate(path)?;
        config.ignored = relaxed.ignored;
        Ok(config)
    }

    /// The `config_warning` every decision record carries while keys are
    /// ignored (None: nothing ignored).
    pub fn warning(&self) -> Option<String> {
        crate::config::layers::warning(&self.ignored)
    }

    /// The typed parse of one file's text, without the cross-field rules.
    pub(crate) fn parse_strict(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(0),
            message: e.message().trim().replace('\n', " "),
        })
    }

    /// The cross-field rules, as a [`ConfigError`] naming `path`.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        if self.directory.urls.is_empty() && self.files.paths.is_empty() && self.commands.is_empty()
        {
            return Err(ConfigError::NoKeySource {
                path: path.to_owned(),
            });
        }
        self.check().map_err(|i| ConfigError::Invalid {
            path: path.to_owned(),
            message: i.message,
            keys: i.keys,
        })
    }

    /// Cross-field rules that no single value can check.
    fn check(&self) -> Result<(), Invalid> {
        if self.cache.max_stale.0 < self.cache.ttl.0 {
            return Err(Invalid::new(
                "[cache] max_stale must not be shorter than ttl",
                &["cache.max_stale", "cache.ttl"],
            ));
        }
        let limit = crate::username::MAX_LEN_LIMIT;
        if self.policy.max_username_len == 0 || self.policy.max_username_len > limit {
            return Err(Invalid::new(
                format!("[policy] max_username_len must be between 1 and {limit}"),
                &["policy.max_username_len"],
            ));
        }
        if !self.cache.dir.is_absolute() {
            return Err(Invalid::new(
                "[cache] dir must be an absolute path",
                &["cache.dir"],
            ));
        }
        if !self.state.dir.is_absolute() {
            return Err(Invalid::new(
                "[state] dir must be an absolute path",
                &["state.dir"],
            ));
        }
        // Apart, or cleaning the cache would reset the floors after all.
        let (c, s) = (&self.cache.dir, &self.state.dir);
        if s.starts_with(c) || c.starts_with(s) {
            return Err(Invalid::new(
                "[state] dir must be outside [cache] dir (and the other way round): removing the cache must not remove the rollback floors",
                &["state.dir", "cache.dir"],
            ));
        }
        self.revocation
            .check(&self.state.dir)
            .map_err(|m| Invalid::new(m, &["revocation.sshd_krl", "revocation.max_age"]))?;
        command::check_all(&self.commands).map_err(|m| Invalid::new(m, &["command"]))?;
        if let Some(m) = &self.sync.metrics_file {
            if !m.is_absolute() || m.extension().is_none_or(|e| e != "prom") {
                return Err(Invalid::new(
                    format!(
                        "[sync] metrics_file {:?} must be an absolute path ending in .prom (the textfile collector reads only *.prom)",
                        m.display().to_string()
                    ),
                    &["sync.metrics_file"],
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/keyward/keyward.toml"))
    }

    const MIN: &str = "[directory]\nurls = [\"https://keys.example.com/{user}.keys\"]\n";

    #[test]
    fn defaults_match_the_design() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.directory.timeout.0, Duration::from_secs(2));
        assert_eq!(c.directory.max_bytes, 262144);
        assert_eq!(c.cache.ttl.0, Duration::from_secs(300));
        assert_eq!(c.cache.max_stale.0, Duration::from_secs(3 * 86400));
        assert_eq!(c.cache.negative_ttl.0, Duration::from_secs(30));
        assert_eq!(c.policy.min_rsa_bits, 2048);
        assert_eq!(c.policy.deny_users, vec!["root"]);
        assert_eq!(c.policy.max_keys, 100);
        assert_eq!(c.policy.max_username_len, 255);
        assert!(!c.policy.key_types.contains(&"ssh-dss".to_string()));
        assert_eq!(c.log.facility, "authpriv");
        assert_eq!(c.log.socket, Path::new("/dev/log"));
    }

    #[test]
    fn unknown_key_names_its_line() {
        let err = parse(&format!(
            "{MIN}\n[cache]\nttl = \"5m\"\nmax_stael = \"3d\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 6"), "{err}");
        assert!(err.contains("max_stael"), "{err}");
    }

    #[test]
    fn unknown_section_rejected() {
        let err = parse(&format!("{MIN}[polciy]\n")).unwrap_err().to_string();
        assert!(err.contains("polciy"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("3d").unwrap(), Duration::from_secs(259200));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("five").is_err());
        assert!(parse_duration("-1s").is_err());
        let err = parse(&format!("{MIN}[cache]\nttl = \"soon\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 4") && err.contains("soon"), "{err}");
        // a bare number is not a duration: the unit must be explicit
        assert!(parse(&format!("{MIN}[cache]\nttl = 300\n")).is_err());
    }

    #[test]
    fn url_templates() {
        assert!(UrlTemplate::parse("ftp://x/{user}").is_err());
        assert!(UrlTemplate::parse("https://x/keys").is_err());
        assert!(UrlTemplate::parse("https://x/{user}/{user}").is_err());
        assert!(UrlTemplate::parse("https://{user}.example.com/k").is_err());
        assert!(UrlTemplate::parse("https:///{user}").is_err());
        assert!(UrlTemplate::parse("https://x/a b/{user}").is_err());
        let t = UrlTemplate::parse("http://127.0.0.1:8080/users/{user}.keys").unwrap();
        assert_eq!(t.expand("alice"), "http://127.0.0.1:8080/users/alice.keys");
        assert_eq!(
            t.expand("a/b%c d"),
            "http://127.0.0.1:8080/users/a%2Fb%25c%20d.keys"
        );
    }

    #[test]
    fn bad_values_rejected() {
        assert!(parse(&format!("{MIN}[policy]\nkey_types = [\"ssh-foo\"]\n")).is_err());
        assert!(parse(&format!("{MIN}[log]\nfacility = \"kern\"\n")).is_err());
        assert!(parse("[directory]\nurls = [\"https://k/{user}\"]\nmax_bytes = 0\n").is_err());
        assert!(parse(&format!("{MIN}[files]\npaths = [\"%h/.ssh/%C\"]\n")).is_err());
        assert!(parse(&format!(
            "{MIN}[files]\npaths = [\".ssh/authorized_keys\"]\n"
        ))
        .is_err());
        assert!(parse(&format!("{MIN}[cache]\nttl = \"1h\"\nmax_stale = \"1m\"\n")).is_err());
        assert!(parse(&format!("{MIN}[cache]\ndir = \"cache\"\n")).is_err());
        assert!(parse("").is_err(), "no source configured");
        assert!(parse("[directory\n").is_err());
    }

    #[test]
    fn signers() {
        let ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDPMfwLtLu8ssdo0mwnJ/vRGHMD+DCCpN6dFEcKVLr8A keys@corp";
        let c = parse(&format!("{MIN}signers = [\"{ed}\"]\n")).unwrap();
        assert!(c.directory.signed());
        assert_eq!(c.directory.load_signers().unwrap().len(), 1);
        let err = parse(&format!("{MIN}signers = [\"ssh-ed25519 AAAA\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(parse(&format!("{MIN}signers = [\"restrict {ed}\"]\n")).is_err());
        assert!(!parse(MIN).unwrap().directory.signed());
    }

    #[test]
    fn index_and_retry_interval() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.directory.index.as_deref(), Some("keyward.index"));
        assert_eq!(c.directory.retry_interval.0, Duration::from_secs(30));
        let c = parse(&format!("{MIN}index = false\nretry_interval = \"5s\"\n")).unwrap();
        assert_eq!(c.directory.index, None);
        assert_eq!(c.directory.retry_interval.0, Duration::from_secs(5));
        let c = parse(&format!("{MIN}index = \"all.idx\"\n")).unwrap();
        assert_eq!(c.directory.index.as_deref(), Some("all.idx"));
        assert_eq!(
            parse(&format!("{MIN}index = true\n"))
                .unwrap()
                .directory
                .index
                .as_deref(),
            Some("keyward.index")
        );
        for bad in ["\"\"", "\"a/b\"", "\"..\"", "\"a b\"", "\"{user}\"", "3"] {
            let err = parse(&format!("{MIN}index = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("line 3"), "{bad}: {err}");
        }
    }

    #[test]
    fn url_template_folder() {
        let f = |s: &str| UrlTemplate::parse(s).unwrap().folder().map(str::to_owned);
        assert_eq!(
            f("https://k/users/{user}.keys").as_deref(),
            Some("https://k/users/")
        );
        assert_eq!(f("https://k/{user}").as_deref(), Some("https://k/"));
        assert_eq!(
            f("https://k/a/{user}/keys").as_deref(),
            Some("https://k/a/")
        );
        assert_eq!(f("https://k/keys?user={user}"), None);
        assert_eq!(f("https://k/keys#{user}"), None);
    }

    #[test]
    fn principals_templates() {
        use crate::entry::Kind;
        let two = "[directory]\nurls = [\"https://a/u/{user}.keys\", \"https://b/{user}.keys\"]\n";
        let c = parse(two).unwrap();
        let t: Vec<String> = c
            .directory
            .templates(Kind::Principals)
            .unwrap()
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect();
        assert_eq!(
            t,
            [
                "https://a/u/{user}.principals",
                "https://b/{user}.principals"
            ]
        );
        assert_eq!(c.directory.templates(Kind::Keys).unwrap(), c.directory.urls);
        let odd = parse("[directory]\nurls = [\"https://a/{user}\"]\n").unwrap();
        let err = odd.directory.templates(Kind::Principals).unwrap_err();
        assert!(err.contains("principals_urls"), "{err}");
        let set = parse(
            "[directory]\nurls = [\"https://a/{user}\"]\nprincipals_urls = [\"https://p/{user}.p\"]\n",
        )
        .unwrap();
        assert_eq!(
            set.directory.templates(Kind::Principals).unwrap()[0].as_str(),
            "https://p/{user}.p"
        );
        assert!(parse(
            "[directory]\nurls = [\"https://a/{user}\"]\nprincipals_urls = [\"https://p/x\"]\n"
        )
        .is_err());
    }

    #[test]
    fn file_templates_expand() {
        assert_eq!(
            expand_file_template("%h/.ssh/authorized_keys", "/home/a", "a"),
            "/home/a/.ssh/authorized_keys"
        );
        assert_eq!(
            expand_file_template("/etc/ssh/keys/%u%%", "/h", "bob"),
            "/etc/ssh/keys/bob%"
        );
        assert!(parse(&format!(
            "{MIN}[files]\npaths = [\"%h/.ssh/authorized_keys\", \"/etc/ssh/keys/%u\"]\n"
        ))
        .is_ok());
    }
}
