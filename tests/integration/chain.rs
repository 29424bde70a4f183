//! Chained AuthorizedKeysCommands (`[[command]]`) end to end: a real sshd
//! runs keyward, keyward runs the providers (shell scripts installed where
//! sshd would accept them: root-owned 0755 all the way up) next to a real
//! nginx key directory, and logs to a private rsyslog.
//!
//! The packaged provider Debian 12 has, SSSD's `sss_ssh_authorizedkeys`,
//! is chained in chain_sssd.rs: its packages change /etc/nsswitch.conf and
//! the PAM stack, so it runs in a booted Debian 12 container with its own
//! /etc, never on the test machine itself.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::keyward::toml_str;
use crate::support::rsyslog::LogLine;
use crate::support::*;

/// Provider scripts in a root-owned 0755 directory (removed on drop).
struct Providers {
    dir: PathBuf,
}

impl Providers {
    fn new() -> Providers {
        let dir = Path::new(BIN_ROOT).join(unique_name("prov"));
        mkdir_root_0755(&dir);
        Providers { dir }
    }

    /// Installs `body` (a /bin/sh script) as `name`, root 0755.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = self.dir.join(name);
        fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    }
}

impl Drop for Providers {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One `[[command]]` table.
fn table(name: &str, command: &str, user: &str, timeout: &str, required: bool) -> String {
    format!(
        "\n[[command]]\nname = {}\ncommand = {}\nuser = {}\ntimeout = {}\nrequired = {required}\n",
        toml_str(name),
        toml_str(command),
        toml_str(user),
        toml_str(timeout)
    )
}

/// nginx directory + keyward (cache, rsyslog, `[[command]]`s) + sshd.
struct Stack {
    keys: TestDir,
    nginx: Nginx,
    env: KeysEnv,
    sshd: Sshd,
}

impl Stack {
    /// `akc_user`: sshd's AuthorizedKeysCommandUser; `args`: what sshd passes
    /// after `keys`.
    fn new(tables: &str, akc_user: &str, args: &str) -> Stack {
        let keys = TestDir::new("chainkeys");
        let nginx = Nginx::start();
        let url = nginx.users_url();
        let tables = tables.to_owned();
        let env = KeysEnv::new(|mut c| {
            c.extra = tables;
            c.url(url).timeout("3s")
        });
        let akc = format!(
            "{} --config {} keys {args}",
            env.kw.bin.display(),
            env.kw.config.display()
        );
        let sshd = Sshd::builder()
            .authorized_keys_command(&akc)
            .authorized_keys_command_user(akc_user)
            .start();
        Stack {
            keys,
            nginx,
            env,
            sshd,
        }
    }

    fn key(&self, name: &str) -> SshKey {
        SshKey::generate(self.keys.path(), name, KeyType::Ed25519)
    }

    fn publish(&self, user: &TestUser, lines: &[String]) {
        self.nginx
            .put_keys(&user.name, &format!("{}\n", lines.join("\n")));
    }

    /// Logs in with `key` (`id -un`); the result and keyward's last line
    /// for this user and key.
    fn attempt(&self, user: &TestUser, key: &SshKey) -> (SshOut, LogLine) {
        let fp = key.fingerprint();
        let mine = |l: &LogLine| {
            l.program == "keyward"
                && l.field("user").as_deref() == Some(user.name.as_str())
                && l.field("fp").as_deref() == Some(fp.as_str())
        };
        let before = self.env.log.lines().iter().filter(|l| mine(l)).count();
        let r = self.sshd.login(&user.name, &key.path, "id -un");
        if r.ok {
            assert_eq!(r.stdout().trim(), user.name, "{r}");
        }
        let line = self
            .env
            .log
            .wait_for_n(before + 1, Duration::from_secs(15), mine)
            .into_iter()
            .skip(before)
            .last()
            .unwrap_or_else(|| panic!("no keyward line for {fp}\n{r}\n{}", self.debug()));
        (r, line)
    }

    fn debug(&self) -> String {
        format!(
            "--- syslog ---\n{}--- sshd log ---\n{}",
            self.env.log.text(),
            self.sshd.log_text()
        )
    }
}

fn ms(l: &LogLine) -> f64 {
    l.field("ms").unwrap().parse().unwrap()
}

/// A script that prints `key` for `user` only, after checking what sshd
/// would have given it: its arguments (`%u %f %t %k %U`), the account it
/// runs as, a clean environment, cwd `/`, stdin `/dev/null`.
fn strict_provider(user: &TestUser, key: &SshKey, run_as: &str) -> String {
    let pubtext = key.public_line();
    let mut parts = pubtext.split_whitespace();
    let (t, k) = (parts.next().unwrap(), parts.next().unwrap());
    format!(
        r##"fail() {{ echo "$*" >&2; exit 9; }}
[ "$1" = "{u}" ] || exit 0
[ "$#" = 5 ] || fail "argc $#"
[ "$5" = "{uid}" ] || fail "uid $5"
# %f %t %k are the key offered: checked when it is this provider's key
if [ "$2" = "{fp}" ]; then
  [ "$3" = "{t}" ] || fail "type $3"
  [ "$4" = "{k}" ] || fail "key $4"
fi
[ "$(id -un)" = "{run_as}" ] || fail "runs as $(id -un)"
[ "$(pwd)" = / ] || fail "cwd $(pwd)"
[ "$PATH" = /usr/bin:/bin:/usr/sbin:/sbin ] || fail "PATH $PATH"
[ -z "$SSH_CONNECTION$SSH_AUTH_INFO_0$LD_PRELOAD" ] || fail "environment leaked"
# (the shell itself sets PWD)
[ "$(env | grep -Ecv '^(LANG|PWD)=')" = 4 ] || fail "env: $(env | tr '\n' ' ')"
[ "$(readlink /proc/self/fd/0)" = /dev/null ] || fail "stdin $(readlink /proc/self/fd/0)"
echo "# from the provider"
echo "{t} {k} provider-key"
"##,
        u = user.name,
        fp = key.fingerprint(),
        uid = user.uid,
    )
}

#[test]
fn chain_a_key_served_only_by_a_command_logs_in_merged_with_the_directory() {
    let p = Providers::new();
    let user = TestUser::new();
    let keys = TestDir::new("chainkeys-pre");
    let chained = SshKey::generate(keys.path(), "chained", KeyType::Ed25519);
    let prog = p.script("provider", &strict_provider(&user, &chained, "keyward"));
    let tables = table(
        "prov",
        &format!("{} %u %f %t %k %U", prog.display()),
        "keyward",
        "2s",
        false,
    );
    let s = Stack::new(&tables, "keyward", "%u %f %U %t %k");
    let dir_key = s.key("dirkey");
    s.publish(&user, &[dir_key.public_line()]);

    // Served only by the chained command: logs in, the log names it.
    let (r, line) = s.attempt(&user, &chained);
    assert!(r.ok, "chained key login: {r}\n{}", s.debug());
    line.assert_field("decision", "match");
    let source = line.field("source").unwrap();
    assert!(source.ends_with("+command:prov"), "{}", line.raw);
    assert_eq!(line.field("warning"), None, "{}", line.raw);

    // The directory's key for the same user still logs in: merged.
    let (r, line) = s.attempt(&user, &dir_key);
    assert!(r.ok, "directory key login: {r}\n{}", s.debug());
    line.assert_field("decision", "match");
    // both sources answered and both lines counted (the provider's key
    // is filtered out by %f, not dropped)
    assert!(
        line.field("source").unwrap().contains("command:prov"),
        "{}",
        line.raw
    );
    line.assert_field("keys", "2");

    // A key nobody serves is refused.
    let other = s.key("other");
    let (r, line) = s.attempt(&user, &other);
    assert!(!r.ok, "{r}");
    line.assert_field("decision", "nomatch");
}

#[test]
fn chain_faulty_commands_never_delay_the_login_beyond_their_share_nor_pass_policy() {
    let p = Providers::new();
    let user = TestUser::new();
    let keys = TestDir::new("chainkeys-pre");
    let k = |n: &str| SshKey::generate(keys.path(), n, KeyType::Ed25519);
    let (hung_k, flood_k, exit_k) = (k("hung"), k("flood"), k("exit"));
    let small = SshKey::generate(keys.path(), "small", KeyType::Rsa(1024));
    // The script's own path names it in `ps`; its subshell (a fork) too.
    let marker = unique_name("kwchainhang");
    let hang = p.script(
        &marker,
        &format!("echo '{}'\n(sleep 60; true)\n", hung_k.public_line()),
    );
    let flood = p.script("flood", &format!("yes '{}'", flood_k.public_line()));
    let exit = p.script("exit", &format!("echo '{}'\nexit 1", exit_k.public_line()));
    let garbage = p.script(
        "garbage",
        &format!(
            "head -c 3000 /dev/urandom\necho\necho 'not a key line'\necho '{}'\necho 'command=\"/bin/sh\" ssh-ed25519 AAAA'",
            small.public_line()
        ),
    );
    let mut tables = String::new();
    for (name, prog) in [
        ("hang", &hang),
        ("flood", &flood),
        ("exit", &exit),
        ("garbage", &garbage),
    ] {
        tables += &table(
            name,
            &format!("{} %u", prog.display()),
            "keyward",
            "1s",
            false,
        );
    }
    let s = Stack::new(&tables, "keyward", "%u %f %U");
    let dir_key = s.key("dirkey");
    s.publish(&user, &[dir_key.public_line()]);

    // The directory's key logs in although every chained source fails;
    // the hung one is killed at its 1 s share.
    let (r, line) = s.attempt(&user, &dir_key);
    assert!(r.ok, "{r}\n{}", s.debug());
    line.assert_field("decision", "match");
    assert!(
        ms(&line) < 2500.0,
        "the lookup took {} ms: {}",
        ms(&line),
        line.raw
    );
    let warning = line.field("warning").unwrap_or_default();
    for expect in [
        "command:hang failed: timed out after 1s",
        "command:flood failed: output larger than",
        "command:exit failed: exit status 1",
    ] {
        assert!(warning.contains(expect), "{expect:?} in {}", line.raw);
    }
    assert_eq!(
        line.field("source")
            .as_deref()
            .map(|s| s.contains("command:garbage")),
        Some(true),
        "{}",
        line.raw
    );
    // Killed with its process group: no `sleep 60` is left behind.
    let left = run(
        std::process::Command::new("pgrep").args(["-f", &marker]),
        Duration::from_secs(10),
    );
    assert!(
        !left.success(),
        "the hung provider's group still runs: {left}"
    );

    // Nothing any faulty source printed gets in.
    for key in [&hung_k, &flood_k, &exit_k, &small] {
        let (r, line) = s.attempt(&user, key);
        assert!(!r.ok, "{:?} got in: {r}\n{}", key.path, s.debug());
        line.assert_field("decision", "nomatch");
        assert!(ms(&line) < 2500.0, "{}", line.raw);
    }
    // The garbage provider's lines were judged and dropped, by name.
    let (_, line) = s.attempt(&user, &small);
    let drop = line.field("drop").unwrap_or_default();
    assert!(drop.contains("command:garbage:"), "{}", line.raw);
    assert!(
        line.field("reason").unwrap().contains("command:garbage:"),
        "{}",
        line.raw
    );

    // explain shows each chained command's lines with their verdicts, and
    // the commands that failed.
    let out = s.env.kw.run(&["explain", &user.name]);
    let text = &out.stdout;
    assert!(text.contains("command:garbage"), "{out}");
    assert!(text.contains("min_rsa_bits"), "{out}");
    assert!(text.contains("command:hang failed: timed out"), "{out}");
    assert!(text.contains(&dir_key.fingerprint()), "{out}");
}

#[test]
fn chain_a_required_command_that_fails_fails_the_lookup_closed() {
    let p = Providers::new();
    let user = TestUser::new();
    let exit = p.script("exit", "exit 2");
    let tables = table(
        "must",
        &format!("{} %u", exit.display()),
        "keyward",
        "1s",
        true,
    );
    let s = Stack::new(&tables, "keyward", "%u %f %U");
    let dir_key = s.key("dirkey");
    s.publish(&user, &[dir_key.public_line()]);
    let (r, line) = s.attempt(&user, &dir_key);
    assert!(!r.ok, "{r}");
    line.assert_field("decision", "fail");
    let reason = line.field("reason").unwrap();
    assert!(
        reason.contains("command:must failed: exit status 2 (required)"),
        "{}",
        line.raw
    );
}

#[test]
fn chain_an_unsafe_program_is_refused_and_doctor_names_it() {
    let p = Providers::new();
    let user = TestUser::new();
    let keys = TestDir::new("chainkeys-pre");
    let chained = SshKey::generate(keys.path(), "chained", KeyType::Ed25519);
    // A directory others may write: anyone could swap the program.
    let open_dir = p.dir.join("open");
    fs::create_dir(&open_dir).unwrap();
    fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o777)).unwrap();
    let prog = open_dir.join("prov");
    fs::write(
        &prog,
        format!("#!/bin/sh\necho '{}'\n", chained.public_line()),
    )
    .unwrap();
    fs::set_permissions(&prog, fs::Permissions::from_mode(0o755)).unwrap();
    let tables = table(
        "open",
        &format!("{} %u", prog.display()),
        "keyward",
        "1s",
        false,
    );
    let s = Stack::new(&tables, "keyward", "%u %f %U");
    let (r, line) = s.attempt(&user, &chained);
    assert!(!r.ok, "{r}");
    let warning = line.field("warning").unwrap_or_default();
    assert!(
        warning.contains("command:open failed: unsafe program path")
            && warning.contains(&open_dir.display().to_string()),
        "{}",
        line.raw
    );
    let out = s.env.kw.run(&["doctor"]);
    let found = out
        .stdout
        .lines()
        .find(|l| l.contains("chain.command"))
        .unwrap_or_else(|| panic!("no chain.command line:\n{out}"));
    assert!(
        found.contains("fail") && found.contains(&open_dir.display().to_string()),
        "{found}\n{out}"
    );
}

#[test]
fn chain_runs_the_command_as_its_account_only_when_keyward_can_switch() {
    let p = Providers::new();
    let user = TestUser::new();
    let keys = TestDir::new("chainkeys-pre");
    let chained = SshKey::generate(keys.path(), "chained", KeyType::Ed25519);
    let prog = p.script("provider", &strict_provider(&user, &chained, "nobody"));
    let tables = table(
        "nobody",
        &format!("{} %u %f %t %k %U", prog.display()),
        "nobody",
        "2s",
        false,
    );
    // As root (sshd's AuthorizedKeysCommandUser): the provider runs as
    // nobody, keyward itself drops to its cache owner.
    let s = Stack::new(&tables, "root", "%u %f %U %t %k");
    let (r, line) = s.attempt(&user, &chained);
    assert!(r.ok, "{r}\n{}", s.debug());
    assert!(
        line.field("source").unwrap().contains("command:nobody"),
        "{}",
        line.raw
    );
    drop(s);

    // As the keyward account it cannot switch: that source fails, saying why.
    let s = Stack::new(&tables, "keyward", "%u %f %U %t %k");
    let (r, line) = s.attempt(&user, &chained);
    assert!(!r.ok, "{r}");
    let warning = line.field("warning").unwrap_or_default();
    assert!(
        warning.contains("command:nobody failed: it must run as nobody")
            && warning.contains("AuthorizedKeysCommandUser root"),
        "{}",
        line.raw
    );
}

/// `keyward doctor --json --sshd-config S`: the checks named `id`.
fn doctor_checks(kw: &Keyward, sshd_config: &Path, id: &str) -> (Out, Vec<serde_json::Value>) {
    let s = sshd_config.display().to_string();
    let out = kw.run(&["doctor", "--json", "--sshd-config", &s]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}): {out}"));
    let checks = json["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks: {out}"))
        .iter()
        .filter(|c| c["id"] == id)
        .cloned()
        .collect();
    (out, checks)
}

#[test]
fn chain_doctor_finds_another_provider_and_its_suggestion_chains_it() {
    let p = Providers::new();
    let prov = p.script("sss_like", "echo");
    let dir = TestDir::new("chaindoctor");
    let sshd = dir.join("sshd_config");
    let dropin = dir.join("50-provider.conf");
    write_file(
        &sshd,
        format!(
            "Include {}\nPort 22\nListenAddress 127.0.0.1\nHostKey /etc/ssh/ssh_host_ed25519_key\nAuthorizedKeysFile none\n",
            dropin.display()
        ),
        0o644,
    );
    write_file(
        &dropin,
        format!(
            "AuthorizedKeysCommand {} %u\nAuthorizedKeysCommandUser nobody\n",
            prov.display()
        ),
        0o644,
    );
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).timeout("2s"));
    let (out, foreign) = doctor_checks(&env.kw, &sshd, "chain.foreign");
    assert_eq!(foreign.len(), 1, "{out}");
    let c = &foreign[0];
    assert_eq!(c["status"], "warn", "{out}");
    let found = c["found"].as_str().unwrap();
    assert!(
        found.contains(&dropin.display().to_string())
            && found.contains(&prov.display().to_string()),
        "{found}"
    );
    // Follow the fix: its TOML line into a drop-in, its sshd lines in
    // place of the provider's.
    let fix = c["fix"].as_str().unwrap();
    let toml = fix.split('`').nth(1).unwrap();
    let keyward_line = fix.split('`').nth(3).unwrap();
    let user_line = fix.split('`').nth(5).unwrap();
    assert_eq!(user_line, "AuthorizedKeysCommandUser root", "{fix}");
    let d = PathBuf::from(format!("{}.d", env.kw.config.display()));
    mkdir_root_0755(&d);
    write_file(&d.join("50-chain.toml"), format!("{toml}\n"), 0o644);
    write_file(&dropin, format!("{keyward_line}\n{user_line}\n"), 0o644);
    let (out, foreign) = doctor_checks(&env.kw, &sshd, "chain.foreign");
    assert!(foreign.is_empty(), "{out}");
    let (out, command) = doctor_checks(&env.kw, &sshd, "chain.command");
    assert_eq!(command.len(), 1, "{out}");
    assert_eq!(command[0]["status"], "ok", "{out}");
    assert!(
        command[0]["found"]
            .as_str()
            .unwrap()
            .contains("command:sss_like"),
        "{out}"
    );
    // and the chained provider is asked on a lookup (as root, as sshd
    // with AuthorizedKeysCommandUser root would run keyward)
    let user = TestUser::new();
    let l = env.keys(&user.name, None);
    assert!(
        l.log
            .field("source")
            .unwrap_or_default()
            .contains("command:sss_like"),
        "{}",
        l.log.raw
    );
}
