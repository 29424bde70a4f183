//! A directory `keyward publish` writes, served by a real nginx, and a host
//! that syncs from it: keyward's config (pinning the signer when signed),
//! a cache directory owned by `keyward` and a private rsyslog for its
//! records. What each test adds (revocation specs, KRL paths, forged
//! deltas) stays in the test's own file.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::keyward::{make_cache_dir, toml_str};
use super::rsyslog::{self, kv_field};
use super::{ensure_system_user, must, Keyward, KwConfig, Nginx, Rsyslog, SshKey, TestDir};

pub struct SignedDir {
    pub dir: TestDir,
    pub nginx: Nginx,
    pub syslog: Rsyslog,
    pub cache: PathBuf,
    pub kw: Keyward,
    /// What `keyward publish` reads (empty at first).
    pub src: PathBuf,
    pub signer: SshKey,
    /// The host pins `signer` and publish signs with it.
    pub signed: bool,
}

impl SignedDir {
    /// `name`: the test directory's prefix; `tune`: changes to the host's
    /// config before it is written (the signers line is added after).
    pub fn new(name: &str, signed: bool, tune: impl FnOnce(KwConfig) -> KwConfig) -> SignedDir {
        ensure_system_user("keyward");
        let dir = TestDir::new(name);
        let cache = dir.join("cache");
        make_cache_dir(&cache, "keyward");
        let syslog = Rsyslog::start();
        let nginx = Nginx::start();
        let config = tune(
            KwConfig::new(&cache, Some(&syslog.socket))
                .url(nginx.users_url())
                .ttl("1h"),
        );
        let kw = Keyward::with_config(&config);
        let signer = SshKey::ed25519(dir.path(), "signer");
        if signed {
            let toml = config.to_toml().replacen(
                "[directory]\n",
                &format!(
                    "[directory]\nsigners = [{}]\n",
                    toml_str(&signer.public_line())
                ),
                1,
            );
            kw.write_config(&toml);
        }
        let src = dir.subdir("src");
        SignedDir {
            dir,
            nginx,
            syslog,
            cache,
            kw,
            src,
            signer,
            signed,
        }
    }

    /// Where publish writes: the directory nginx serves as `users/`.
    pub fn out(&self) -> PathBuf {
        self.nginx.root.join("users")
    }

    /// `keyward publish SRC OUT` (signed when the host pins the signer)
    /// with `extra` arguments.
    pub fn publish(&self, extra: &[&str]) {
        let out = self.out();
        let mut args = vec!["publish", self.src.to_str().unwrap(), out.to_str().unwrap()];
        if self.signed {
            args.extend(["--signer", self.signer.path.to_str().unwrap()]);
        }
        args.extend(extra);
        let p = self.kw.run(&args);
        assert!(p.success(), "publish: {p}");
        // nginx's ETag is the mtime (in seconds) and the size: each file
        // publish wrote is put again with a newer mtime, so that two
        // publishes in one second never share an ETag.
        for folder in ["", "keyward.index.d/", "revoked.list.d/"] {
            let Ok(rd) = fs::read_dir(out.join(folder)) else {
                continue;
            };
            for e in rd {
                let e = e.unwrap();
                if e.file_type().unwrap().is_file() {
                    let name = format!("users/{folder}{}", e.file_name().to_string_lossy());
                    self.nginx.put(&name, fs::read(e.path()).unwrap());
                }
            }
        }
        self.readable();
    }

    /// Makes everything under nginx's root readable to its workers (after
    /// a test writes files there itself).
    pub fn readable(&self) {
        must(
            Command::new("chmod")
                .args(["-R", "a+rX"])
                .arg(&self.nginx.root),
        );
    }

    /// `keyward sync` as keyward (the packaged service's user): its record
    /// and the paths nginx served, relative to `users/`.
    pub fn sync(&self) -> (String, Vec<String>) {
        let before = self.nginx.total();
        let is =
            |l: &rsyslog::LogLine| l.program == "keyward" && l.msg.starts_with("decision=sync");
        let n = self.syslog.lines().into_iter().filter(is).count();
        let out = self.kw.run_as("keyward", &["sync"]);
        let recs = self.syslog.wait_for_n(n + 1, Duration::from_secs(10), is);
        assert_eq!(recs.len(), n + 1, "{out}");
        let paths = self
            .nginx
            .accesses()
            .split_off(before)
            .into_iter()
            .map(|a| a.uri.trim_start_matches("/users/").to_owned())
            .collect();
        (recs.last().unwrap().msg.clone(), paths)
    }
}

/// The value of `key=` in a sync record; panics (with the record) without one.
pub fn field(rec: &str, key: &str) -> String {
    kv_field(rec, key).unwrap_or_else(|| panic!("no {key}= in {rec}"))
}
