//! Hostile input: user names, fingerprints and directory lines chosen by an
//! attacker. Such input touches no path and no URL, never crashes keyward,
//! never reaches sshd, and always leaves exactly one decision line.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;
use std::time::Duration;

use crate::support::cachefiles::*;
use crate::support::checks::*;
use crate::support::fault::dead_url;
use crate::support::*;

#[test]
fn robust_hostile_user_names_touch_no_path_and_no_url() {
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).timeout("2s"));
    // Unsafe as a path or URL component, as an argument, or in a log line;
    // everything else NSS can present is served, see below.
    let names: Vec<String> = [
        "a/b",
        "../etc/passwd",
        "..",
        ".",
        "/",
        "/etc/shadow",
        "alice/../bob",
        "a\nb",
        "alice\ndecision=match user=root",
        "a\rb",
        "a\tb",
        "",
        "a\u{0085}b",
        "\u{1b}[31mred",
        "a\u{7f}b",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "a".repeat(256),
        "a".repeat(10_000),
        format!("{}/../x", "a".repeat(20)),
    ])
    .collect();
    for n in &names {
        let what = format!("user {:?}", n.chars().take(40).collect::<String>());
        let (out, lines) = logged(&env.log, 1, || env.kw.keys_as_keyward(n, None));
        closed(&out, &what);
        assert_eq!(lines.len(), 1, "{what}: exactly one decision line: {out}");
        let l = &lines[0];
        assert_eq!(field(l, "decision"), "fail", "{what}: {}", l.raw);
        assert!(
            out.stderr.contains("invalid user name"),
            "{what}: reason on stderr: {out}"
        );
        if n.len() < 1000 {
            assert!(
                field(l, "reason").contains("invalid user name"),
                "{what}: logged reason: {}",
                l.raw
            );
        }
        // the stderr copy too is one physical line: a newline in the
        // name cannot start a forged record
        let dl: Vec<&str> = out
            .stderr
            .lines()
            .filter(|x| x.contains("decision="))
            .collect();
        assert_eq!(dl.len(), 1, "{what}: {out}");
        assert!(dl[0].starts_with("keyward: decision=fail"), "{what}: {out}");
    }
    // nobody forged a line: no decision for root, none that is not a fail
    for l in env.log.lines_of("keyward") {
        assert_eq!(field(&l, "decision"), "fail", "{}", l.raw);
        assert_ne!(field(&l, "user"), "root", "forged: {}", l.raw);
    }
    assert_eq!(nginx.total(), 0, "{:?}", nginx.accesses());
    assert_eq!(dir_names(&env.cache), Vec::<String>::new());

    // NUL cannot even be passed in argv (nor by sshd): the OS refuses
    let err = env.kw.command(&["keys", "a\0b"]).output().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    // non-UTF-8 bytes: refused before anything happens (clap: exit 2)
    for args in [
        vec![
            std::ffi::OsStr::from_bytes(b"keys"),
            std::ffi::OsStr::from_bytes(b"\xff\xfe"),
        ],
        vec![
            std::ffi::OsStr::from_bytes(b"keys"),
            std::ffi::OsStr::from_bytes(b"alice"),
            std::ffi::OsStr::from_bytes(b"SHA256:\xff"),
        ],
    ] {
        let mut c = env.kw.command(&[]);
        c.args(&args);
        let out = run(&mut c, Duration::from_secs(30));
        assert_ne!(out.code, Some(0), "{out}");
        assert_eq!(out.stdout, "", "{out}");
        no_crash(&out, "non-UTF-8 argument");
    }
    assert_eq!(nginx.total(), 0);
    assert_eq!(dir_names(&env.cache), Vec::<String>::new());

    // valid but unusual names are percent-encoded and stay one path element;
    // each has its own cache file, whose name starts with no '.'
    let keys = TestDir::new("robust-names-keys");
    let a = SshKey::ed25519(keys.path(), "a");
    let unusual: Vec<(&str, &str)> = vec![
        ("HOST$", "/users/HOST%24.keys"),
        ("a..b", "/users/a..b.keys"),
        ("a.-_b", "/users/a.-_b.keys"),
        ("%2F", "/users/%252F.keys"),
        ("%2e%2e", "/users/%252e%252e.keys"),
        ("a%00b", "/users/a%2500b.keys"),
        ("a b", "/users/a%20b.keys"),
        (" ", "/users/%20.keys"),
        ("\u{e5}lice", "/users/%C3%A5lice.keys"),
        ("a;id", "/users/a%3Bid.keys"),
        ("$(id)", "/users/%24%28id%29.keys"),
        ("`id`", "/users/%60id%60.keys"),
        ("a\\b", "/users/a%5Cb.keys"),
        ("a:b", "/users/a%3Ab.keys"),
        ("a@b", "/users/a%40b.keys"),
        ("a?b=c", "/users/a%3Fb%3Dc.keys"),
        ("a#b", "/users/a%23b.keys"),
    ];
    for (n, _) in &unusual {
        nginx.put_keys(n, &body(&[&a]));
        let r = env.keys_as_keyward(n, None);
        assert_eq!(r.materials(), mats(&[&a]), "{n:?}: {r}");
        let file = env.cache.join(&*pam_keyward::username::file_name(n));
        assert!(file.is_file(), "{n:?}: {}", file.display());
    }
    let uris: Vec<String> = nginx.accesses().into_iter().map(|a| a.uri).collect();
    let want: Vec<&str> = unusual.iter().map(|(_, u)| *u).collect();
    assert_eq!(uris, want);
    let files = dir_names(&env.cache);
    assert_eq!(files.len(), unusual.len(), "one entry per name: {files:?}");
    assert!(files.iter().all(|f| !f.starts_with('.')), "{files:?}");
}

#[test]
fn robust_non_utf8_arguments_still_log_one_decision() {
    let env = KeysEnv::new(|c| c.url(dead_url()));
    let (out, lines) = logged(&env.log, 1, || {
        let mut c = env.kw.command(&[]);
        c.arg("keys").arg(std::ffi::OsStr::from_bytes(b"j\xf6rg"));
        run(&mut c, Duration::from_secs(30))
    });
    assert_ne!(out.code, Some(0), "{out}");
    assert_eq!(out.stdout, "", "{out}");
    assert_eq!(lines.len(), 1, "one decision line per invocation: {out}");
    assert_eq!(field(&lines[0], "decision"), "fail", "{}", lines[0].raw);
}

#[test]
fn robust_long_hostile_user_name_keeps_the_logged_reason() {
    let env = KeysEnv::new(|c| c.url(dead_url()));
    let n = "a".repeat(10_000);
    let (out, lines) = logged(&env.log, 1, || env.kw.keys_as_keyward(&n, None));
    closed(&out, "10k user");
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        field(&lines[0], "reason").contains("invalid user name"),
        "the reason must survive syslog: {} bytes: {}…",
        lines[0].raw.len(),
        &lines[0].raw[..200]
    );
}

#[test]
fn robust_malformed_fingerprints_never_crash_and_answer_sensibly() {
    let keys = TestDir::new("robust-fp-keys");
    let (a, ca) = (
        SshKey::ed25519(keys.path(), "a"),
        SshKey::ed25519(keys.path(), "ca"),
    );
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("5m"));
    let user = fake_user();
    nginx.put_keys(
        &user,
        &format!("{}\n{}\n", a.public_line(), ca.cert_authority_line()),
    );
    let all = mats(&[&a, &ca]);
    let ca_only = mats(&[&ca]);
    let real = a.fingerprint();
    let md5 = {
        let out = must(
            Command::new("ssh-keygen")
                .args(["-E", "md5", "-lf"])
                .arg(&a.pub_path),
        );
        out.stdout.split_whitespace().nth(1).unwrap().to_owned()
    };
    assert!(md5.starts_with("MD5:"));

    let r = env.keys_as_keyward(&user, Some(&real));
    assert_eq!(sorted(r.materials()), all, "control: {r}");
    assert_eq!(r.decision(), "match");

    // (argument, expected materials, expected decision)
    let cases: Vec<(String, &Vec<String>, &str)> = vec![
        ("SHA256:".into(), &ca_only, "nomatch"),
        ("SHA256:!!!!".into(), &ca_only, "nomatch"),
        (
            format!("SHA256:{}", "A".repeat(10_000)),
            &ca_only,
            "nomatch",
        ),
        (format!("{real}\n"), &ca_only, "nomatch"),
        (format!("{real}="), &ca_only, "nomatch"),
        (format!("{real}\ndecision=match"), &ca_only, "nomatch"),
        ("SHA256:../../etc/passwd".into(), &ca_only, "nomatch"),
        ("SHA256:%s%n%x".into(), &ca_only, "nomatch"),
        ("SHA256:\u{1b}[2J".into(), &ca_only, "nomatch"),
        // other forms: print everything, sshd does the matching
        (md5.clone(), &all, "serve"),
        ("MD5:".into(), &all, "serve"),
        ("MD5:zz:zz".into(), &all, "serve"),
        (real.to_lowercase(), &all, "serve"),
        ("SHA512:abc".into(), &all, "serve"),
        ("".into(), &all, "serve"),
        (" ".into(), &all, "serve"),
        ("x".repeat(10_000), &all, "serve"),
        ("\u{e5}\u{7528}".into(), &all, "serve"),
    ];
    for (fp, want, decision) in &cases {
        let what = format!("fp {:?}", fp.chars().take(40).collect::<String>());
        let (out, lines) = logged(&env.log, 1, || env.kw.keys_as_keyward(&user, Some(fp)));
        no_crash(&out, &what);
        assert_eq!(out.code, Some(0), "{what}: {out}");
        assert_eq!(sorted(materials(&out.stdout)), **want, "{what}: {out}");
        assert_eq!(
            out.stdout.lines().count(),
            want.len(),
            "{what}: nothing but key lines: {out}"
        );
        assert_eq!(lines.len(), 1, "{what}: one decision line");
        assert_eq!(
            field(&lines[0], "decision"),
            *decision,
            "{what}: {}",
            lines[0].raw
        );
    }
    assert_eq!(nginx.count(&user), 1, "all from the cache");
}

/// A line the directory serves, and whether keyward may pass it to sshd
/// (and as what).
struct Served {
    line: String,
    /// `Some(expected output line)` when it must be served.
    out: Option<String>,
}

#[test]
fn robust_hostile_key_lines_are_dropped_and_logged_never_passed_through() {
    let keys = TestDir::new("robust-lines-keys");
    let k: Vec<SshKey> = (0..16)
        .map(|i| SshKey::ed25519(keys.path(), &format!("k{i}")))
        .collect();
    let ca = SshKey::ed25519(keys.path(), "ca");
    let cert = fs::read_to_string(ca.sign_user_cert(&k[15], "id", &["p"])).unwrap();
    let bob_key = SshKey::ed25519(keys.path(), "bob");
    let pl = |i: usize| k[i].public_line();
    let (t0, b0) = {
        let l = pl(0);
        let mut it = l.split(' ');
        (it.next().unwrap().to_owned(), it.next().unwrap().to_owned())
    };
    let ok = |line: String, out: String| Served {
        line,
        out: Some(out),
    };
    let bad = |line: String| Served { line, out: None };
    let lines = vec![
        ok(pl(0), pl(0)),
        ok(
            format!("command=\"x\",from=\"*\" {}", pl(1)),
            format!("command=\"x\",from=\"*\" {}", pl(1)),
        ),
        ok(
            format!("restrict,command=\"echo \\\"a, b\\\" c\" {}", pl(2)),
            format!("restrict,command=\"echo \\\"a, b\\\" c\" {}", pl(2)),
        ),
        ok(format!("{}\r", pl(3)), pl(3)), // CRLF file
        ok(
            format!("command=\"x\"\t{}", pl(4)),
            format!("command=\"x\" {}", pl(4)),
        ),
        ok(
            format!("COMMAND=\"x\" {}", pl(5)),
            format!("COMMAND=\"x\" {}", pl(5)),
        ),
        ok(
            format!("cert-authority,principals=\"p\" {}", ca.public_line()),
            format!("cert-authority,principals=\"p\" {}", ca.public_line()),
        ),
        bad(format!("{t0} {b0}")), // duplicate of the first
        bad(format!("{}\rrestrict", pl(6))),
        bad(format!("\rcommand=\"evil\" {}", pl(7))),
        bad(format!("no-such-option {}", pl(8))),
        bad(format!("command=\"echo unterminated {}", pl(9))),
        bad(format!("from=\"*\" ,command=\"x\" {}", pl(10))),
        bad(format!("{} kwt\u{1b}]0;evil\u{7}", pl(11))),
        bad(format!("{} kwt\u{85}command=\"x\"", pl(12))),
        bad(format!("restrict,command=\"x\", {}", pl(13))),
        bad(format!("command=x {}", pl(14))),
        bad(format!("from=\"*\",restrict=\"yes\" {}", pl(14))),
        bad(cert.trim().to_owned()),
        bad("ssh-ed25519".into()),
        bad(format!("{t0} AAAAnot-base64!!")),
        bad(format!("environment=\"A=1\" {t0}")),
    ];
    let n_bad = lines.iter().filter(|l| l.out.is_none()).count();
    let mut file = String::from("#keyward user=bob\n# ");
    file += &bob_key.public_line();
    file += "\n\n";
    for l in &lines {
        file += &l.line;
        file.push('\n');
    }
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()));
    let user = fake_user();
    nginx.put_keys(&user, &file);

    for as_keyward in [true, false] {
        let r = if as_keyward {
            env.keys_as_keyward(&user, None)
        } else {
            env.keys(&user, None)
        };
        assert_eq!(r.out.code, Some(0), "{r}");
        let got: BTreeSet<&str> = r.out.stdout.lines().collect();
        let want: BTreeSet<&str> = lines.iter().filter_map(|l| l.out.as_deref()).collect();
        assert_eq!(
            got, want,
            "exactly the legitimate lines, re-serialised: {r}"
        );
        assert_eq!(r.out.stdout.lines().count(), want.len(), "{r}");
        assert!(
            !r.out.stdout.chars().any(|c| c.is_control() && c != '\n'),
            "no control character reaches sshd: {r}"
        );
        assert!(!r.out.stdout.contains(&bob_key.public_material()), "{r}");
        assert_eq!(r.field("served"), Some(want.len().to_string()), "{r}");
        assert_eq!(r.field("dropped"), Some(n_bad.to_string()), "{r}");
        let drop = r.field("drop").unwrap_or_default();
        assert!(
            drop.contains("control character") && drop.contains("directory:"),
            "drops are logged with their line: {r}"
        );
        assert!(!r.log.raw.contains('\r') && !r.log.raw.contains('\u{1b}'));
    }

    // the legitimate lines really work with sshd's own parser
    let out = must(Command::new("ssh-keygen").arg("-lf").arg({
        let p = env.path().join("served.keys");
        fs::write(&p, env.kw.keys(&user, None).stdout).unwrap();
        p
    }));
    assert_eq!(out.stdout.lines().count(), 7, "{out}");
}

#[test]
fn robust_nul_in_a_directory_body_is_never_passed_through() {
    let keys = TestDir::new("robust-nul-keys");
    let (a, z) = (
        SshKey::ed25519(keys.path(), "a"),
        SshKey::ed25519(keys.path(), "z"),
    );
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("1s").max_stale("1h"));
    let user = fake_user();
    let hostile = format!("{}\n{}\0restrict\n", a.public_line(), z.public_line());
    nginx.put_keys(&user, &hostile);
    let r = env.keys(&user, None);
    assert!(!r.out.stdout.contains(&z.public_material()), "{r}");
    assert!(!r.out.stdout.contains('\0'), "{r}");
    // keyward refuses the whole response (a NUL means it is not a text key
    // list): nothing cached, fail closed, and the log says why
    closed(&r.out, "NUL body, nothing cached");
    assert!(r.field("reason").is_some_and(|w| !w.is_empty()), "{r}");
    assert!(!env.entry(&user).exists());

    // with a good entry: the good entry is served stale, not the NUL body
    nginx.put_keys(&user, &body(&[&a]));
    let r = env.keys(&user, None);
    assert_eq!(r.materials(), mats(&[&a]), "{r}");
    let good = fs::read(env.entry(&user)).unwrap();
    nginx.put_keys(&user, &hostile);
    age_past(decode(&good).fetched_at, 1);
    let r = env.keys(&user, Some(&z.fingerprint()));
    assert_eq!(r.out.code, Some(0), "{r}");
    assert_eq!(r.out.stdout, "", "{r}");
    assert_eq!(r.field("source").as_deref(), Some("stale"), "{r}");
    assert_eq!(fs::read(env.entry(&user)).unwrap(), good);
}

#[test]
fn robust_directory_cannot_smuggle_keys_for_another_user() {
    let keys = TestDir::new("robust-smuggle-keys");
    let (a, b) = (
        SshKey::ed25519(keys.path(), "a"),
        SshKey::ed25519(keys.path(), "b"),
    );
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("5m"));
    let (alice, bob) = (fake_user(), fake_user());
    // alice's file claims, unsigned, to be bob's, and carries bob's key in
    // comments; bob's file has bob's key only
    nginx.put_keys(
        &alice,
        &format!(
            "#keyward user={bob} serial=99 expires=2099-01-01T00:00:00Z\n# {}\n#{}\n{}\n",
            b.public_line(),
            b.public_line(),
            a.public_line()
        ),
    );
    nginx.put_keys(&bob, &body(&[&b]));
    let ra = env.keys_as_keyward(&alice, None);
    assert_eq!(ra.materials(), mats(&[&a]), "{ra}");
    let rb = env.keys_as_keyward(&bob, None);
    assert_eq!(rb.materials(), mats(&[&b]), "{rb}");
    // with bob's fingerprint, alice's lookup serves nothing
    let r = env.keys_as_keyward(&alice, Some(&b.fingerprint()));
    assert_eq!(r.out.stdout, "", "{r}");
    assert_eq!(r.decision(), "nomatch", "{r}");
    // every cache entry holds only its own user's file
    assert!(!decode(&fs::read(env.entry(&alice)).unwrap())
        .body
        .lines()
        .any(|l| !l.starts_with('#') && l.contains(&b.public_material())));

    // names that would walk the URL or the cache path to bob's file
    let before = nginx.total();
    for n in [
        "..".to_string(),
        format!("../{bob}"),
        format!("{alice}/../{bob}"),
        format!("./{bob}"),
        format!("{bob}/"),
    ] {
        let out = env.kw.keys_as_keyward(&n, Some(&b.fingerprint()));
        closed(&out, &n);
        assert!(!out.stdout.contains(&b.public_material()));
    }
    assert_eq!(nginx.total(), before, "{:?}", nginx.accesses());
    // A valid name that looks like an encoded path: encoded once
    // more, it stays one path element: a file nobody has (404, no keys).
    let n = format!("{alice}%2F..%2F{bob}");
    let r = env.keys_as_keyward(&n, Some(&b.fingerprint()));
    assert_eq!(
        (r.out.code, r.decision().as_str()),
        (Some(0), "nokeys"),
        "{r}"
    );
    assert!(!r.out.stdout.contains(&b.public_material()));
    let asked: Vec<_> = nginx.accesses().into_iter().skip(before).collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(
        asked[0].uri,
        format!("/users/{alice}%252F..%252F{bob}.keys")
    );
    assert_eq!(asked[0].status, 404);
}
