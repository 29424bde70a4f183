//! Configuration layering, `check-config` and the version-skew rule
//! through the installed binary: `keyward.toml` then
//! `keyward.toml.d/*.toml` in lexical order, each file and the directory
//! under sshd's ownership rules, and a file for a newer keyward
//! (`min_version`) that must not lock anyone out.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::fault::dead_url;
use crate::support::keyward::make_cache_dir;
use crate::support::{
    chmod, chown_to, ensure_system_user, mkdir_root_0755, write_file, Keyward, KwConfig, Nginx,
    Out, Rsyslog, SshKey, TestDir,
};

struct World {
    dir: TestDir,
    nginx: Nginx,
    syslog: Rsyslog,
    kw: Keyward,
    key: String,
}

impl World {
    /// The main file points at a dead mirror; a drop-in has to fix it.
    fn new() -> World {
        ensure_system_user("keyward");
        let dir = TestDir::new("layers");
        let cache = dir.join("cache");
        make_cache_dir(&cache, "keyward");
        let nginx = Nginx::start();
        let syslog = Rsyslog::start();
        let kw = Keyward::with_config(&KwConfig::new(&cache, Some(&syslog.socket)).url(dead_url()));
        let key = SshKey::ed25519(dir.path(), "k").public_material();
        World {
            dir,
            nginx,
            syslog,
            kw,
            key,
        }
    }

    fn d(&self) -> PathBuf {
        let mut s = self.kw.config.clone().into_os_string();
        s.push(".d");
        PathBuf::from(s)
    }

    fn drop_in(&self, name: &str, text: &str) -> PathBuf {
        mkdir_root_0755(&self.d());
        let p = self.d().join(name);
        write_file(&p, text, 0o644);
        p
    }

    fn urls_here(&self) -> String {
        format!("[directory]\nurls = [\"{}\"]\n", self.nginx.users_url())
    }

    fn check(&self, extra: &[&str]) -> Out {
        let mut args = vec!["check-config"];
        args.extend(extra);
        self.kw.run(&args)
    }
}

#[test]
fn drop_in_overrides_the_main_file() {
    let w = World::new();
    w.nginx.put_keys("alice", &format!("{}\n", w.key));
    // Without the drop-in: the dead mirror, nothing cached, fail closed.
    let out = w.kw.keys_as_keyward("alice", None);
    assert_eq!(out.code, Some(1), "{out}");
    w.drop_in("50-site.toml", &w.urls_here());
    // Not *.toml: never read, however broken.
    w.drop_in("60-x.toml.dpkg-old", "garbage [[[");
    w.drop_in(".70-x.toml", "garbage [[[");
    let out = w.kw.keys_as_keyward("alice", None);
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains(&w.key), "{out}");
    assert_eq!(w.nginx.count("/users/alice.keys"), 1);
    // A later drop-in wins over an earlier one (lexical order).
    w.drop_in(
        "90-deny.toml",
        "[policy]\ndeny_users = [\"root\", \"alice\"]\n",
    );
    let out = w.kw.keys_as_keyward("alice", None);
    assert!(out.success() && out.stdout.is_empty(), "{out}");
    let line = w
        .syslog
        .wait_for(Duration::from_secs(5), |l| {
            l.field("decision").as_deref() == Some("deny")
        })
        .expect("a deny record");
    assert_eq!(line.field("user").as_deref(), Some("alice"));
    w.drop_in("95-allow.toml", "[policy]\ndeny_users = [\"bob\"]\n");
    let out = w.kw.keys_as_keyward("alice", None);
    assert!(out.stdout.contains(&w.key), "{out}");
    // check-config and explain name the file that set a value.
    let out = w.check(&[]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout.contains("50-site.toml") && out.stdout.contains("95-allow.toml"),
        "{out}"
    );
    let out = w.kw.run(&["explain", "alice", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let setting = |k: &str| v["settings"][k].as_str().unwrap_or_default().to_owned();
    assert!(
        setting("policy.deny_users").ends_with("95-allow.toml:2"),
        "{v}"
    );
    assert!(setting("directory.urls").ends_with("50-site.toml:2"), "{v}");
    let main = fs::read_to_string(&w.kw.config).unwrap();
    let dir_line = main.lines().position(|l| l.starts_with("dir = ")).unwrap() + 1;
    assert!(
        setting("cache.dir").ends_with(&format!("keyward.toml:{dir_line}")),
        "{v}"
    );
    assert_eq!(v["config_files"].as_array().unwrap().len(), 4, "{v}");
}

/// Every way a drop-in (or its directory) can be unsafe: keyward fails
/// closed, prints nothing, and names the file; check-config says the same.
#[test]
fn unsafe_drop_in_is_refused() {
    let w = World::new();
    w.nginx.put_keys("alice", &format!("{}\n", w.key));
    let good = w.drop_in("50-site.toml", &w.urls_here());
    assert!(w.kw.keys_as_keyward("alice", None).success());
    let expect_refused = |what: &str, named: &Path| {
        let out = w.kw.keys_as_keyward("alice", None);
        assert_eq!(out.code, Some(1), "{what}: {out}");
        assert!(out.stdout.is_empty(), "{what}: {out}");
        assert!(
            out.stderr.contains(&named.display().to_string()),
            "{what}: the refusal names {}: {out}",
            named.display()
        );
        let out = w.check(&[]);
        assert_eq!(out.code, Some(1), "{what}: {out}");
        assert!(
            out.stderr.contains(&format!("{}: error:", named.display())),
            "{what}: {out}"
        );
    };
    chmod(&good, 0o664);
    expect_refused("group-writable drop-in", &good);
    chmod(&good, 0o646);
    expect_refused("world-writable drop-in", &good);
    chmod(&good, 0o644);
    chown_to(&good, "keyward");
    expect_refused("drop-in owned by keyward", &good);
    std::os::unix::fs::chown(&good, Some(0), Some(0)).unwrap();
    assert!(w.kw.keys_as_keyward("alice", None).success());
    let elsewhere = w.dir.write("elsewhere.toml", w.urls_here(), 0o644);
    let link = w.d().join("60-link.toml");
    symlink(&elsewhere, &link).unwrap();
    expect_refused("symlinked drop-in", &link);
    fs::remove_file(&link).unwrap();
    chmod(&w.d(), 0o775);
    expect_refused("group-writable drop-in directory", &w.d());
    chmod(&w.d(), 0o755);
    std::os::unix::fs::chown(w.d(), Some(1), None).unwrap();
    expect_refused("drop-in directory not owned by root", &w.d());
    std::os::unix::fs::chown(w.d(), Some(0), None).unwrap();
    assert!(w.kw.keys_as_keyward("alice", None).success(), "safe again");
}

#[test]
fn check_config_exit_codes_and_file_line_messages() {
    let w = World::new();
    let d1 = w.drop_in("10-a.toml", "[cache]\nttl = \"1m\"\n\nmax_stael = \"3d\"\n");
    let d2 = w.drop_in("20-b.toml", "[directory]\ntimeout = \"soon\"\n");
    let out = w.check(&[]);
    assert_eq!(out.code, Some(1), "{out}");
    // every file with a problem, each at its line, compiler style
    assert!(
        out.stderr.contains(&format!("{}:4: error:", d1.display())),
        "{out}"
    );
    assert!(out.stderr.contains("max_stael"), "{out}");
    assert!(
        out.stderr.contains(&format!("{}:2: error:", d2.display())),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
    fs::remove_file(&d1).unwrap();
    fs::remove_file(&d2).unwrap();
    // A rule between values in two files names both.
    w.drop_in("30-c.toml", "[cache]\nttl = \"4d\"\n");
    let out = w.check(&[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr
            .contains("max_stale must not be shorter than ttl")
            && out.stderr.contains("cache.ttl set at")
            && out.stderr.contains("30-c.toml:2"),
        "{out}"
    );
    fs::remove_file(w.d().join("30-c.toml")).unwrap();
    // Files the config names: checked without network.
    let ca = w.dir.write("ca.pem", "not a certificate\n", 0o644);
    let drop = w.drop_in(
        "40-d.toml",
        &format!("[directory]\n\nca_file = \"{}\"\n", ca.display()),
    );
    let out = w.check(&[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr
            .contains(&format!("{}:3: error:", drop.display()))
            && out.stderr.contains("no PEM certificate"),
        "{out}"
    );
    fs::remove_file(&drop).unwrap();
    // A valid configuration: exit 0, no network, no log line.
    w.drop_in("50-site.toml", &w.urls_here());
    let out = w.check(&[]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout
            .starts_with("keyward check-config: ok (2 file(s)"),
        "{out}"
    );
    assert_eq!(w.nginx.total(), 0, "check-config made a request");
    // the next record in the log is the keys call's: check-config sent none
    w.nginx.put_keys("alice", &format!("{}\n", w.key));
    assert!(w.kw.keys_as_keyward("alice", None).success());
    w.syslog
        .wait_for(Duration::from_secs(5), |l| {
            l.field("user").as_deref() == Some("alice")
        })
        .expect("the keys record");
    assert_eq!(w.syslog.lines_of("keyward").len(), 1, "{}", w.syslog.text());

    // Ansible: validate a candidate drop-in (`--drop-in %s`) or a lone
    // main file (`--config %s`), wherever the temporary file is.
    let cand = w
        .dir
        .write("ansible.tmp", "[policy]\nmin_rsa_bits = \"many\"\n", 0o600);
    let out = w.check(&["--drop-in", cand.to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr
            .contains(&format!("{}:2: error:", cand.display())),
        "{out}"
    );
    write_file(&cand, "[policy]\nmin_rsa_bits = 3072\n", 0o600);
    let out = w.check(&["--drop-in", cand.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{out}");
    let lone = w.dir.write("lone.toml", w.urls_here(), 0o600);
    let out = crate::support::run(
        std::process::Command::new(&w.kw.bin)
            .args(["check-config", "--config"])
            .arg(&lone),
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(0), "{out}");
    write_file(&lone, "[directory]\nurls = [\"ftp://x/{user}\"]\n", 0o600);
    let out = crate::support::run(
        std::process::Command::new(&w.kw.bin)
            .args(["check-config", "--quiet", "--config"])
            .arg(&lone),
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr
            .contains(&format!("{}:2: error:", lone.display())),
        "{out}"
    );
}

/// The version-skew rule: a key this version does not know is an error
/// (a typo is caught, keyward fails closed), except in a file that says it
/// is for a newer keyward (`min_version`): there it is ignored, logins
/// keep working, and check-config warns with the line.
#[test]
fn version_skew_rule() {
    let w = World::new();
    w.nginx.put_keys("alice", &format!("{}\n", w.key));
    w.drop_in("50-site.toml", &w.urls_here());
    assert!(w.kw.keys_as_keyward("alice", None).success());
    let next = "[directory]\nshard_count = 4\n\n[principals]\nurls = []\n\n[cache]\nttl = \"1m\"\n";
    // Pushed without min_version: an unknown key, so fail closed (and
    // check-config names it before it is deployed).
    let f = w.drop_in("60-next.toml", next);
    let out = w.kw.keys_as_keyward("alice", None);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("shard_count"), "{out}");
    let out = w.check(&[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains(&format!("{}:2: error:", f.display())),
        "{out}"
    );
    // The same keys, declared for a newer keyward: logins go on.
    let f = w.drop_in("60-next.toml", &format!("min_version = \"99.0.0\"\n{next}"));
    let out = w.kw.keys_as_keyward("alice", None);
    assert!(out.success() && out.stdout.contains(&w.key), "{out}");
    let out = w.check(&[]);
    assert_eq!(out.code, Some(0), "{out}");
    for (line, key) in [(3, "directory.shard_count"), (5, "principals")] {
        assert!(
            out.stderr.contains(&format!(
                "{}:{line}: warning: {key} is not known",
                f.display()
            )),
            "{key}: {out}"
        );
    }
    // What this version knows is still checked in that file: a typo of a
    // known key's value fails, at its line.
    w.drop_in(
        "60-next.toml",
        &format!("min_version = \"99.0.0\"\n{next}max_stale = \"later\"\n"),
    );
    let out = w.kw.keys_as_keyward("alice", None);
    assert_eq!(out.code, Some(1), "{out}");
    let out = w.check(&[]);
    assert!(
        out.stderr.contains(&format!("{}:10: error:", f.display())),
        "{out}"
    );
    // min_version this version satisfies: strict again.
    w.drop_in(
        "60-next.toml",
        &format!("min_version = \"{}\"\n{next}", env!("CARGO_PKG_VERSION")),
    );
    assert_eq!(w.kw.keys_as_keyward("alice", None).code, Some(1));
    // doctor shows the ignored keys as a warning
    w.drop_in("60-next.toml", &format!("min_version = \"99.0.0\"\n{next}"));
    let out = w.kw.run(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let layers = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "config.layers")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(layers["status"], "warn", "{layers}");
    assert!(
        layers["found"].as_str().unwrap().contains("shard_count"),
        "{layers}"
    );
}

#[test]
fn no_drop_in_directory_is_one_failed_lstat() {
    // The login path's whole cost of layering when there is no .d
    // directory: one lstat that fails (strace counts it).
    let w = World::new();
    // (deny_users empty: "alice" is a name NSS does not know.)
    w.kw.write_config(&format!(
        "{}\n[cache]\ndir = \"{}\"\n[policy]\ndeny_users = []\n[log]\nsocket = \"{}\"\n",
        w.urls_here(),
        w.dir.join("cache").display(),
        w.syslog.socket.display()
    ));
    w.nginx.put_keys("alice", &format!("{}\n", w.key));
    assert!(w.kw.keys_as_keyward("alice", None).success());
    let trace = w.dir.join("trace");
    let out = crate::support::run(
        std::process::Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=%file", "-o"])
            .arg(&trace)
            .args([
                "setpriv",
                "--reuid=keyward",
                "--regid=keyward",
                "--clear-groups",
            ])
            .arg(&w.kw.bin)
            .arg("--config")
            .arg(&w.kw.config)
            .args(["keys", "alice"]),
        Duration::from_secs(60),
    );
    assert!(out.success(), "{out}");
    let text = fs::read_to_string(&trace).unwrap();
    let d = w.d().display().to_string();
    let calls: Vec<&str> = text.lines().filter(|l| l.contains(&d)).collect();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert!(calls[0].contains("ENOENT"), "{calls:#?}");
}

/// With a configuration keyward refuses: doctor fails (2), explain cannot
/// tell (2), check-config says where (1).
#[test]
fn broken_configuration_exit_codes() {
    let w = World::new();
    w.drop_in("50-site.toml", "[cache]\nttl = 5\n");
    let out = w.kw.run(&["doctor"]);
    assert_eq!(out.code, Some(2), "{out}");
    let out = w.kw.run(&["explain", "root"]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("50-site.toml line 2"), "{out}");
    assert_eq!(w.check(&[]).code, Some(1));
}

/// Signs `body` (namespace `keyward`) with `signer`; returns the `.sig`.
fn sign(dir: &Path, signer: &SshKey, body: &str) -> Vec<u8> {
    let file = dir.join(format!("tosign-{}", crate::support::unique()));
    write_file(&file, body, 0o644);
    crate::support::must(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-Y", "sign", "-n", "keyward", "-f"])
            .arg(&signer.path)
            .arg(&file),
    );
    let sig = fs::read(format!("{}.sig", file.display())).unwrap();
    let _ = fs::remove_file(&file);
    let _ = fs::remove_file(format!("{}.sig", file.display()));
    sig
}

/// A file for a newer keyward (`min_version`) cannot switch signatures off
/// by a misspelled `signers_file`: a near-miss of a known key is an error
/// there too (fail closed, the forged unsigned key never served), and
/// check-config names it with the key it resembles. Spelled right, the
/// same drop-in requires signatures; a key this version really does not
/// know is ignored, and every decision record says so (`config_warning`).
/// A dotted unknown key (`directory.future = 1`) is ignored like any other.
#[test]
fn min_version_cannot_switch_signatures_off() {
    let nginx = Nginx::start();
    let url = nginx.users_url();
    let env = crate::support::KeysEnv::new(|c| c.url(url).ttl("1s").timeout("3s"));
    let keys = TestDir::new("skewsig");
    let signer = SshKey::ed25519(keys.path(), "signer");
    let real = SshKey::ed25519(keys.path(), "real");
    let forged = SshKey::ed25519(keys.path(), "forged");
    // The signers file next to the config: root-owned all the way up.
    let signers = env.kw.dir.join("signers");
    write_file(&signers, format!("{}\n", signer.public_line()), 0o644);
    let d = PathBuf::from(format!("{}.d", env.kw.config.display()));
    mkdir_root_0755(&d);
    let drop_in = |text: &str| {
        let p = d.join("60-sign.toml");
        write_file(&p, text, 0o644);
        p
    };
    let user = crate::support::keysenv::fake_user();
    // What an attacker who controls a mirror serves: an unsigned key.
    nginx.put_keys(&user, &format!("{}\n", forged.public_line()));

    let typo = format!(
        "min_version = \"99.0.0\"\n[directory]\nsigner_file = \"{}\"\n",
        signers.display()
    );
    let f = drop_in(&typo);
    let out = env.kw.keys_as_keyward(&user, None);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stdout, "", "the forged key must not be served: {out}");
    assert!(
        out.stderr.contains("signer_file") && out.stderr.contains("directory.signers_file"),
        "{out}"
    );
    assert_eq!(nginx.count(&user), 0, "{:?}", nginx.accesses());
    let out = env.kw.run(&["check-config"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains(&format!("{}:3: error:", f.display()))
            && out.stderr.contains("directory.signers_file"),
        "{out}"
    );

    // Spelled right in the same newer file: signatures are required (the
    // unsigned key is refused), a signed file is served, and the key this
    // version does not know is named on every decision line.
    drop_in(&format!(
        "min_version = \"99.0.0\"\n[directory]\nsigners_file = \"{}\"\nfuture_knob = 1\n",
        signers.display()
    ));
    let r = env.keys_as_keyward(&user, None);
    assert_eq!(r.out.code, Some(1), "{r}");
    assert_eq!(r.out.stdout, "", "{r}");
    assert_eq!(r.decision(), "fail", "{r}");
    let warning = "ignored unknown key directory.future_knob (min_version 99.0.0)";
    assert_eq!(r.field("config_warning").as_deref(), Some(warning), "{r}");
    let other = crate::support::keysenv::fake_user();
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires = crate::support::must(std::process::Command::new("date").args([
        "-u",
        "-d",
        &format!("@{}", t + 3600),
        "+%Y-%m-%dT%H:%M:%SZ",
    ]));
    let body = format!(
        "#keyward user={other} serial={t} expires={}\n{}\n",
        expires.stdout.trim(),
        real.public_line()
    );
    nginx.put_keys(&other, &body);
    nginx.put(
        &format!("users/{other}.keys.sig"),
        sign(keys.path(), &signer, &body),
    );
    let r = env.keys_as_keyward(&other, Some(&real.fingerprint()));
    assert_eq!(r.out.code, Some(0), "{r}");
    assert!(r.out.stdout.contains(&real.public_material()), "{r}");
    assert_eq!(r.decision(), "match", "{r}");
    assert_eq!(r.field("config_warning").as_deref(), Some(warning), "{r}");
    let out = env.kw.run(&["check-config"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "{}:4: warning: directory.future_knob",
            f.display()
        )),
        "{out}"
    );

    // A dotted unknown key is ignored, not a syntax error on every login.
    drop_in("min_version = \"99.0.0\"\ndirectory.future = 1\n");
    let r = env.keys_as_keyward(&user, None);
    assert_eq!(r.out.code, Some(0), "{r}");
    assert!(r.out.stdout.contains(&forged.public_material()), "{r}");
    assert_eq!(
        r.field("config_warning").as_deref(),
        Some("ignored unknown key directory.future (min_version 99.0.0)"),
        "{r}"
    );
    // Nothing ignored: no warning field.
    fs::remove_file(f).unwrap();
    let r = env.keys_as_keyward(&user, None);
    assert_eq!(r.field("config_warning"), None, "{r}");
}
