//! `keyward publish` end to end from LDAP and from a forge: signed
//! in-process, incremental, `--check`, the upload order, and the published
//! tree serving a real sshd login.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::keyward::toml_str;
use crate::support::slapd::{self, Person, Slapd, READER, READER_PW};
use crate::support::*;

fn header_serial(file: &Path) -> u64 {
    let text = std::fs::read_to_string(file).unwrap();
    let first = text.lines().next().unwrap();
    let serial = first
        .split(' ')
        .find_map(|f| f.strip_prefix("serial="))
        .unwrap();
    serial.parse().unwrap()
}

fn body_lines(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines().skip(1).map(str::to_owned).collect()
}

#[test]
fn publish_from_ldap_serves_a_real_sshd_login_and_a_failing_server_leaves_out_untouched() {
    if !slapd::available() {
        skip(
            "publish_from_ldap_serves_a_real_sshd_login_and_a_failing_server_leaves_out_untouched",
            "slapd and ldap-utils are not installed (scripts/test.sh installs them)",
        );
        return;
    }
    let keys = TestDir::new("ldappub");
    let signer = SshKey::ed25519(keys.path(), "signer");
    let login = SshKey::ed25519(keys.path(), "login");
    let other: Vec<String> = (0..3)
        .map(|i| SshKey::ed25519(keys.path(), &format!("o{i}")).public_line())
        .collect();
    let user = TestUser::new();
    let people = [
        Person {
            uid: &user.name,
            ou: None,
            keys: vec![login.public_line()],
        },
        Person {
            uid: "bob",
            ou: None,
            keys: vec![other[0].clone(), other[1].clone()],
        },
        Person {
            uid: "carol",
            ou: None,
            keys: vec![],
        },
        Person {
            uid: "dave",
            ou: None,
            keys: vec![other[2].clone()],
        },
        Person {
            uid: "dave",
            ou: Some("contractors"),
            keys: vec![other[0].clone()],
        },
        Person {
            uid: "erin",
            ou: None,
            keys: vec![other[1].clone(), "ssh-ed25519 AAAA-not-a-key".into()],
        },
    ];
    let s = Slapd::start(&people, &["contractors"], false);
    let pw = s.password_file("bind.pw", READER_PW);
    let nginx = Nginx::start();
    let out = nginx.root.join("users");
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).timeout("3s"));
    let toml = env.config.to_toml().replacen(
        "[directory]\n",
        &format!(
            "[directory]\nsigners = [{}]\n",
            toml_str(&signer.public_line())
        ),
        1,
    );
    env.kw.write_config(&toml);
    let url = s.url("(objectClass=account)");
    let publish = |password_file: &Path| {
        env.kw.run(&[
            "publish",
            &url,
            out.to_str().unwrap(),
            "--bind-dn",
            READER,
            "--bind-password-file",
            password_file.to_str().unwrap(),
            "--signer",
            signer.path.to_str().unwrap(),
        ])
    };
    let first = publish(&pw);
    // dave is refused (two entries): exit 1, everyone else published.
    assert_eq!(first.code, Some(1), "{first}");
    assert!(first.stderr.contains("signing in-process"), "{first}");
    assert!(
        first
            .stderr
            .contains("2 entries have the name dave: never merged"),
        "{first}"
    );
    assert!(first.stdout.contains("bob: 2 key(s) published"), "{first}");
    assert!(first.stdout.contains("erin: 1 key(s) published"), "{first}");
    assert!(first.stdout.contains("  dropped line 2"), "{first}");
    let names: Vec<String> = files_under(&out).into_keys().collect();
    for absent in ["carol.keys", "dave.keys"] {
        assert!(!names.contains(&absent.to_owned()), "{absent} in {names:?}");
    }
    // The upload order: everything but the index, then the index.
    let exclude = first
        .stdout
        .find("--exclude 'keyward.index*'")
        .expect("upload order");
    let index_last = first
        .stdout
        .find("--include 'keyward.index'")
        .expect("upload order");
    assert!(exclude < index_last, "{first}");

    let check = env.kw.run(&["publish", "--check", out.to_str().unwrap()]);
    assert_eq!(check.code, Some(0), "{check}");
    assert!(check.stdout.contains("fit to upload"), "{check}");

    must(Command::new("chmod").args(["-R", "a+rX"]).arg(&nginx.root));
    let sshd = Sshd::builder()
        .authorized_keys_command(&env.kw.authorized_keys_command())
        .authorized_keys_command_user("keyward")
        .start();
    let r = sshd.login(&user.name, &login.path, "id -un");
    assert!(
        r.ok,
        "login through a tree published from LDAP: {r}\n{}",
        sshd.log_text()
    );
    assert_eq!(r.stdout().trim(), user.name);

    // A refused bind and a server that is down: publish fails, OUT as it was.
    let before = files_under(&out);
    let wrong = s.password_file("wrong.pw", "not the password");
    let refused = publish(&wrong);
    assert_eq!(refused.code, Some(2), "{refused}");
    assert!(refused.stderr.contains("Invalid credentials"), "{refused}");
    assert_eq!(files_under(&out), before);
    s.stop();
    let down = publish(&pw);
    assert_eq!(down.code, Some(2), "{down}");
    assert!(down.stderr.contains("unreachable"), "{down}");
    assert_eq!(files_under(&out), before);
}

#[test]
fn publish_from_a_forge_keeps_a_failed_users_file_and_check_finds_tampering() {
    let keys = TestDir::new("forgepub");
    let signer = SshKey::ed25519(keys.path(), "signer");
    let k: Vec<String> = (0..4)
        .map(|i| SshKey::ed25519(keys.path(), &format!("k{i}")).public_line())
        .collect();
    // A missing file is a 503 here (the forge failing), not a 404.
    let nginx = Nginx::builder()
        .location("location /gh/ { try_files $uri =503; }")
        .start();
    nginx.put("gh/alice.keys", format!("{}\n", k[0]));
    nginx.put("gh/bob-gh.keys", format!("{}\n", k[1]));
    nginx.put("gh/carol.keys", format!("{}\n", k[2]));
    must(Command::new("chmod").args(["-R", "a+rX"]).arg(&nginx.root));
    let work = TestDir::new("forgeout");
    let out = work.join("out");
    let users = work.write("users", "alice\nbob bob-gh\ncarol\n", 0o644);
    let kw = Keyward::install();
    let template = nginx.url("/gh/{user}.keys");
    // No ssh-keygen on the PATH: the signatures are made in-process.
    let publish = |validity: &str| {
        let mut c = kw.command(&[
            "publish",
            &template,
            out.to_str().unwrap(),
            "--users",
            users.to_str().unwrap(),
            "--signer",
            signer.path.to_str().unwrap(),
            "--validity",
            validity,
        ]);
        c.env("PATH", "/nonexistent");
        run(&mut c, Duration::from_secs(60))
    };
    let first = publish("7d");
    assert_eq!(first.code, Some(0), "{first}");
    assert_eq!(
        body_lines(&out.join("bob.keys")),
        [k[1].clone()],
        "bob is read from bob-gh"
    );
    let carol = std::fs::read(out.join("carol.keys")).unwrap();
    let carol_sig = std::fs::read(out.join("carol.keys.sig")).unwrap();

    // carol's fetch fails; alice changed: carol's file stays as it was.
    nginx.remove("gh/carol.keys");
    nginx.put("gh/alice.keys", format!("{}\n", k[3]));
    must(Command::new("chmod").args(["-R", "a+rX"]).arg(&nginx.root));
    let second = publish("7d");
    assert_eq!(second.code, Some(1), "{second}");
    assert!(
        second.stderr.contains("carol: no answer from the source")
            && second.stderr.contains("the file published before is kept")
            && second.stderr.contains("HTTP 503"),
        "{second}"
    );
    assert_eq!(std::fs::read(out.join("carol.keys")).unwrap(), carol);
    assert_eq!(
        std::fs::read(out.join("carol.keys.sig")).unwrap(),
        carol_sig
    );
    assert_eq!(body_lines(&out.join("alice.keys")), [k[3].clone()]);

    // Near expiry (7d left of a 30d validity): re-signed in the same run,
    // the kept user too, with the same keys and a higher serial.
    let serial = header_serial(&out.join("carol.keys"));
    let third = publish("30d");
    assert_eq!(third.code, Some(1), "{third}");
    assert!(header_serial(&out.join("carol.keys")) > serial);
    assert_eq!(body_lines(&out.join("carol.keys")), [k[2].clone()]);

    let pubkey = signer.pub_path.to_str().unwrap();
    let check = |what: &str| {
        let c = kw.run(&[
            "publish",
            "--check",
            out.to_str().unwrap(),
            "--signer",
            pubkey,
        ]);
        eprintln!("{what}: {c}");
        c
    };
    assert_eq!(check("as published").code, Some(0));
    // Tampering, a missing file and stray files are each named.
    std::fs::remove_file(out.join("bob.keys")).unwrap();
    let alice = out.join("alice.keys");
    let mut text = std::fs::read_to_string(&alice).unwrap();
    text.push_str(&format!("{}\n", k[0]));
    std::fs::write(&alice, text).unwrap();
    std::fs::write(out.join("mallory.keys"), format!("{}\n", k[0])).unwrap();
    let bad = check("tampered");
    assert_eq!(bad.code, Some(1), "{bad}");
    for want in [
        "bob.keys: listed in keyward.index for bob, missing",
        "alice.keys: its hash is not the one keyward.index gives",
        "alice.keys: signature does not verify",
        "mallory.keys: stray",
        "do not upload",
    ] {
        assert!(bad.stdout.contains(want), "{want}: {bad}");
    }
}
