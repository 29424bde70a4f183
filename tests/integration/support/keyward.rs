//! The keyward binary installed where sshd accepts it, its config, and
//! running `keyward keys`.
//!
//! sshd refuses an AuthorizedKeysCommand whose file or any parent directory
//! is not root-owned or is group/world-writable, so the test binary is copied
//! with `install -m 755` into `/usr/local/lib/keyward-tests/<unique>/`
//! (root-owned 0755 all the way up). The config lives next to it (root 0644):
//! keyward refuses a config that is not root-owned or is group/world-writable.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{chmod, chown_to, ensure_system_user, mkdir_root_0755, must, run, Out, BIN_ROOT};

/// The binary cargo built for this test run.
pub const KEYWARD_BIN: &str = env!("CARGO_BIN_EXE_keyward");

/// An installed keyward with its config; the directory is removed on drop.
pub struct Keyward {
    /// Root-owned 0755 directory holding the binary and the config.
    pub dir: PathBuf,
    /// The installed binary.
    pub bin: PathBuf,
    /// The config file (written by [`Keyward::write_config`]).
    pub config: PathBuf,
}

impl Keyward {
    /// Installs the binary (no config written yet). Also makes sure the
    /// `keyward` system user exists (the default `[cache] owner` and the
    /// AuthorizedKeysCommandUser of the sshd helper).
    pub fn install() -> Keyward {
        ensure_system_user("keyward");
        mkdir_root_0755(Path::new(BIN_ROOT));
        let dir = Path::new(BIN_ROOT).join(super::unique_name("kw"));
        mkdir_root_0755(&dir);
        let bin = dir.join("keyward");
        must(
            Command::new("install")
                .args(["-m", "755", "-o", "root", "-g", "root"])
                .arg(KEYWARD_BIN)
                .arg(&bin),
        );
        let config = dir.join("keyward.toml");
        Keyward { dir, bin, config }
    }

    /// Installs the binary and writes `config`.
    pub fn with_config(config: &KwConfig) -> Keyward {
        let k = Keyward::install();
        k.write_config(&config.to_toml());
        k
    }

    /// Writes the config file (root-owned, 0644), replacing any earlier one.
    pub fn write_config(&self, text: &str) {
        let tmp = self.dir.join(".keyward.toml.tmp");
        fs::write(&tmp, text).unwrap();
        chmod(&tmp, 0o644);
        fs::rename(&tmp, &self.config).unwrap();
    }

    /// The sshd line value, as the packaged snippet has it:
    /// `<bin> --config <C> keys %u %f %U`.
    pub fn authorized_keys_command(&self) -> String {
        format!(
            "{} --config {} keys %u %f %U",
            self.bin.display(),
            self.config.display()
        )
    }

    /// A command running the installed binary with `--config` and `args`,
    /// with a minimal environment like sshd gives it (cwd `/`).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir("/")
            .arg("--config")
            .arg(&self.config)
            .args(args);
        c
    }

    /// Runs `keyward --config C ARGS…` as root (keyward drops to
    /// `[cache] owner` by itself before any network I/O).
    pub fn run(&self, args: &[&str]) -> Out {
        run(&mut self.command(args), Duration::from_secs(60))
    }

    /// Runs `keyward --config C ARGS…` as `user` (uid, gid, no supplementary
    /// groups), the way sshd runs it as AuthorizedKeysCommandUser.
    pub fn run_as(&self, user: &str, args: &[&str]) -> Out {
        let mut c = Command::new("setpriv");
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir("/")
            .arg(format!("--reuid={user}"))
            .arg(format!("--regid={user}"))
            .arg("--clear-groups")
            .arg(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .args(args);
        run(&mut c, Duration::from_secs(60))
    }

    /// `keyward keys USER [FP]` as root.
    pub fn keys(&self, user: &str, fp: Option<&str>) -> Out {
        let mut args = vec!["keys", user];
        args.extend(fp);
        self.run(&args)
    }

    /// `keyward keys USER [FP]` as the `keyward` user, like sshd runs it.
    pub fn keys_as_keyward(&self, user: &str, fp: Option<&str>) -> Out {
        let mut args = vec!["keys", user];
        args.extend(fp);
        self.run_as("keyward", &args)
    }
}

impl Drop for Keyward {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Creates a cache directory owned by `owner` (its primary group), 0750.
/// `path` must be inside a root-owned, non-writable tree (a TestDir).
pub fn make_cache_dir(path: &Path, owner: &str) {
    for dir in [path.to_owned(), state_dir_of(path)] {
        fs::create_dir_all(&dir).unwrap();
        chown_to(&dir, owner);
        chmod(&dir, 0o750);
    }
}

/// The state directory tests use beside a cache directory (`<cache>.state`,
/// made by [`make_cache_dir`] and written as `[state] dir` by `KwConfig`):
/// apart from the cache, like /var/lib/keyward and /var/cache/keyward.
pub fn state_dir_of(cache: &Path) -> PathBuf {
    let mut name = cache.file_name().unwrap_or_default().to_owned();
    name.push(".state");
    cache.with_file_name(name)
}

/// Quotes a TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_list(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter().map(|s| toml_str(s)).collect::<Vec<_>>().join(", ")
    )
}

/// A keyward config for tests, rendered to TOML by [`KwConfig::to_toml`].
/// `None` fields are left out (keyward's default applies).
#[derive(Clone, Debug)]
pub struct KwConfig {
    pub urls: Vec<String>,
    pub timeout: Option<String>,
    pub max_bytes: Option<u64>,
    pub ca_file: Option<PathBuf>,
    pub proxy: Option<String>,
    /// `[directory] retry_interval` (mirror health).
    pub retry_interval: Option<String>,
    /// `[directory] index`, as a raw TOML value (`false`, `"name"`).
    pub index: Option<String>,
    pub cache_dir: PathBuf,
    /// `[state] dir` (default: [`state_dir_of`] the cache).
    pub state_dir: PathBuf,
    pub ttl: Option<String>,
    pub max_stale: Option<String>,
    pub negative_ttl: Option<String>,
    pub owner: Option<String>,
    pub files: Vec<String>,
    pub key_types: Option<Vec<String>>,
    pub min_rsa_bits: Option<u32>,
    pub deny_users: Option<Vec<String>>,
    pub max_keys: Option<usize>,
    pub max_username_len: Option<usize>,
    pub facility: Option<String>,
    pub log_socket: Option<PathBuf>,
    /// Raw TOML appended at the end (its own `[table]` headers).
    pub extra: String,
}

impl KwConfig {
    /// A config with a cache in `cache_dir` and logs to `log_socket`;
    /// everything else default but `deny_users`, which is empty: most tests
    /// call `keys NAME` for names NSS does not know (`fake_user`) without
    /// sshd's `%U`, which keyward refuses while root is denied (the uid-0
    /// rule needs the uid). Tests of the deny rules set them.
    pub fn new(cache_dir: &Path, log_socket: Option<&Path>) -> KwConfig {
        KwConfig {
            urls: Vec::new(),
            timeout: None,
            max_bytes: None,
            ca_file: None,
            proxy: None,
            retry_interval: None,
            index: None,
            cache_dir: cache_dir.to_owned(),
            state_dir: state_dir_of(cache_dir),
            ttl: None,
            max_stale: None,
            negative_ttl: None,
            owner: None,
            files: Vec::new(),
            key_types: None,
            min_rsa_bits: None,
            deny_users: Some(Vec::new()),
            max_keys: None,
            max_username_len: None,
            facility: None,
            log_socket: log_socket.map(Path::to_owned),
            extra: String::new(),
        }
    }

    pub fn url(mut self, u: impl Into<String>) -> Self {
        self.urls.push(u.into());
        self
    }

    pub fn timeout(mut self, d: &str) -> Self {
        self.timeout = Some(d.into());
        self
    }

    pub fn retry_interval(mut self, d: &str) -> Self {
        self.retry_interval = Some(d.into());
        self
    }

    /// `index = <raw TOML>`, e.g. `"false"` or `"\"all.idx\""`.
    pub fn index(mut self, raw: &str) -> Self {
        self.index = Some(raw.into());
        self
    }

    pub fn ttl(mut self, d: &str) -> Self {
        self.ttl = Some(d.into());
        self
    }

    pub fn max_stale(mut self, d: &str) -> Self {
        self.max_stale = Some(d.into());
        self
    }

    pub fn negative_ttl(mut self, d: &str) -> Self {
        self.negative_ttl = Some(d.into());
        self
    }

    pub fn max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = Some(n);
        self
    }

    pub fn deny_users(mut self, users: &[&str]) -> Self {
        self.deny_users = Some(users.iter().map(|s| s.to_string()).collect());
        self
    }

    pub fn min_rsa_bits(mut self, n: u32) -> Self {
        self.min_rsa_bits = Some(n);
        self
    }

    pub fn to_toml(&self) -> String {
        let mut t = String::from("[directory]\n");
        t += &format!("urls = {}\n", toml_list(&self.urls));
        if let Some(v) = &self.timeout {
            t += &format!("timeout = {}\n", toml_str(v));
        }
        if let Some(v) = self.max_bytes {
            t += &format!("max_bytes = {v}\n");
        }
        if let Some(v) = &self.ca_file {
            t += &format!("ca_file = {}\n", toml_str(&v.display().to_string()));
        }
        if let Some(v) = &self.proxy {
            t += &format!("proxy = {}\n", toml_str(v));
        }
        if let Some(v) = &self.retry_interval {
            t += &format!("retry_interval = {}\n", toml_str(v));
        }
        if let Some(v) = &self.index {
            t += &format!("index = {v}\n");
        }
        t += "\n[cache]\n";
        t += &format!(
            "dir = {}\n",
            toml_str(&self.cache_dir.display().to_string())
        );
        for (k, v) in [
            ("ttl", &self.ttl),
            ("max_stale", &self.max_stale),
            ("negative_ttl", &self.negative_ttl),
            ("owner", &self.owner),
        ] {
            if let Some(v) = v {
                t += &format!("{k} = {}\n", toml_str(v));
            }
        }
        t += &format!(
            "\n[state]\ndir = {}\n",
            toml_str(&self.state_dir.display().to_string())
        );
        if !self.files.is_empty() {
            t += &format!("\n[files]\npaths = {}\n", toml_list(&self.files));
        }
        t += "\n[policy]\n";
        if let Some(v) = &self.key_types {
            t += &format!("key_types = {}\n", toml_list(v));
        }
        if let Some(v) = self.min_rsa_bits {
            t += &format!("min_rsa_bits = {v}\n");
        }
        if let Some(v) = &self.deny_users {
            t += &format!("deny_users = {}\n", toml_list(v));
        }
        if let Some(v) = self.max_keys {
            t += &format!("max_keys = {v}\n");
        }
        if let Some(v) = self.max_username_len {
            t += &format!("max_username_len = {v}\n");
        }
        t += "\n[log]\n";
        if let Some(v) = &self.facility {
            t += &format!("facility = {}\n", toml_str(v));
        }
        if let Some(v) = &self.log_socket {
            t += &format!("socket = {}\n", toml_str(&v.display().to_string()));
        }
        if !self.extra.is_empty() {
            t += "\n";
            t += &self.extra;
            t += "\n";
        }
        t
    }
}
