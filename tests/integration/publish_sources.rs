//! Where publish reads keys from, against real servers: a private slapd
//! (openssh-lpk schema, paging, bind failures, LDAPS and StartTLS with a
//! private CA) read through `ldapsearch`, a forge played by nginx, and
//! in-process SSHSIG signatures checked by `ssh-keygen -Y verify`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pam_keyward::config::{DirectoryConfig, PolicyConfig, UrlTemplate};
use pam_keyward::entry::Kind;
use pam_keyward::sign::{How, Signer};
use pam_keyward::source::forge::{parse_users, Forge};
use pam_keyward::source::ldap::{parse_url, Ldap, LDAPSEARCH, PAGE_SIZE};
use pam_keyward::source::{Got, Listing, Source};

use crate::support::slapd::{self, Person, Slapd, CAPPED, CAPPED_PW, READER, READER_PW};
use crate::support::*;

fn ldap(url: &str) -> Ldap {
    Ldap {
        url: parse_url(url).unwrap(),
        bind_dn: None,
        password_file: None,
        starttls: false,
        ca_file: None,
        user_attribute: "uid".into(),
        key_attribute: "sshPublicKey".into(),
        page_size: PAGE_SIZE,
        timeout: Duration::from_secs(30),
        ldapsearch: LDAPSEARCH.into(),
    }
}

fn bound(s: &Slapd, url: &str, dn: &str, pw: &str) -> Ldap {
    Ldap {
        bind_dn: Some(dn.into()),
        password_file: Some(s.password_file(&format!("pw-{}", unique()), pw)),
        ..ldap(url)
    }
}

fn text_of<'a>(l: &'a Listing, user: &str) -> &'a str {
    match l.items.iter().find(|i| i.user == user).map(|i| &i.got) {
        Some(Got::Text(t)) => t,
        other => panic!("{user}: {other:?} in {l:?}"),
    }
}

fn users(l: &Listing) -> Vec<&str> {
    l.items.iter().map(|i| i.user.as_str()).collect()
}

fn have_slapd(test: &str) -> bool {
    if slapd::available() {
        return true;
    }
    skip(
        test,
        "slapd and ldap-utils are not installed (scripts/test.sh installs them)",
    );
    false
}

#[test]
fn ldap_source_reads_one_several_and_no_keys_and_never_merges_a_name() {
    if !have_slapd("ldap_source_reads_one_several_and_no_keys_and_never_merges_a_name") {
        return;
    }
    let keys = TestDir::new("ldapkeys");
    let k: Vec<String> = (0..5)
        .map(|i| SshKey::ed25519(keys.path(), &format!("k{i}")).public_line())
        .collect();
    let people = [
        Person {
            uid: "alice",
            ou: None,
            keys: vec![k[0].clone()],
        },
        Person {
            uid: "bob",
            ou: None,
            keys: vec![k[1].clone(), k[2].clone()],
        },
        Person {
            uid: "carol",
            ou: None,
            keys: vec![],
        },
        // The same name twice, in two branches: left out, never merged.
        Person {
            uid: "dave",
            ou: None,
            keys: vec![k[3].clone()],
        },
        Person {
            uid: "dave",
            ou: Some("contractors"),
            keys: vec![k[4].clone()],
        },
        // One valid key and one line no parser accepts.
        Person {
            uid: "erin",
            ou: None,
            keys: vec![k[4].clone(), "ssh-ed25519 not-base64 broken".into()],
        },
    ];
    let s = Slapd::start(&people, &["contractors"], false);
    let l = bound(&s, &s.url(""), READER, READER_PW).read().unwrap();
    assert_eq!(users(&l), ["alice", "bob", "erin"], "{l:?}");
    assert_eq!(text_of(&l, "alice"), format!("{}\n", k[0]));
    assert_eq!(text_of(&l, "bob"), format!("{}\n{}\n", k[1], k[2]));
    let refused: Vec<String> = l
        .refused
        .iter()
        .map(|r| format!("{}: {}", r.file, r.why))
        .collect();
    assert_eq!(
        refused,
        [format!(
            "uid=dave,ou=contractors,{p}; uid=dave,{p}: 2 entries have the name dave: never merged",
            p = slapd::PEOPLE
        )],
        "{l:?}"
    );
    assert!(l.items.iter().all(|i| i.kind == Kind::Keys));

    // The bad line is dropped and reported by the same checks as any input.
    let (body, p) = pam_keyward::publish::build_body(
        "erin",
        text_of(&l, "erin"),
        &PolicyConfig::default(),
        None,
        0,
    );
    assert_eq!(body, format!("{}\n", k[4]));
    assert_eq!(p.dropped.len(), 1, "{:?}", p.dropped);
    assert!(p.dropped[0].starts_with("line 2"), "{:?}", p.dropped);

    // The URL's filter narrows the search; anonymous binds work too.
    let one = ldap(&s.url("(uid=bob)")).read().unwrap();
    assert_eq!(users(&one), ["bob"]);
    // A filter that matches nobody is an error, not an empty directory.
    let none = ldap(&s.url("(uid=nobody)")).read().unwrap_err();
    assert!(none.contains("no entries"), "{none}");
}

#[test]
fn ldap_paged_search_reads_past_the_size_limit_and_a_cut_search_fails() {
    if !have_slapd("ldap_paged_search_reads_past_the_size_limit_and_a_cut_search_fails") {
        return;
    }
    let keys = TestDir::new("ldappaged");
    let key = SshKey::ed25519(keys.path(), "k").public_line();
    let names: Vec<String> = (0..120).map(|i| format!("user{i:03}")).collect();
    let people: Vec<Person> = names
        .iter()
        .map(|n| Person {
            uid: n,
            ou: None,
            keys: vec![key.clone()],
        })
        .collect();
    let s = Slapd::start(&people, &[], false);
    // Without paging the reader's limit (50) cuts the search: the proof
    // that the server's limit is in force.
    let plain = run(
        Command::new("ldapsearch")
            .args(["-LLL", "-x", "-H", &format!("ldap://127.0.0.1:{}", s.port)])
            .args([
                "-D",
                READER,
                "-w",
                READER_PW,
                "-b",
                slapd::PEOPLE,
                "(uid=user*)",
                "uid",
            ]),
        Duration::from_secs(30),
    );
    assert_eq!(plain.code, Some(4), "size limit exceeded expected: {plain}");

    for page_size in [PAGE_SIZE, 40] {
        let l = Ldap {
            page_size,
            ..bound(&s, &s.url("(uid=user*)"), READER, READER_PW)
        }
        .read()
        .unwrap();
        assert_eq!(users(&l), names, "page size {page_size}");
    }
    // A server that stops a paged search after 100 entries: the read fails
    // as a whole, never 100 of 120 users.
    let cut = Ldap {
        page_size: 40,
        ..bound(&s, &s.url("(uid=user*)"), CAPPED, CAPPED_PW)
    }
    .read()
    .unwrap_err();
    assert!(
        cut.contains("exit 4") && cut.contains("size limit"),
        "{cut}"
    );
}

#[test]
fn ldap_bind_failure_unsafe_password_file_and_server_down_fail_the_read() {
    if !have_slapd("ldap_bind_failure_unsafe_password_file_and_server_down_fail_the_read") {
        return;
    }
    let keys = TestDir::new("ldapfail");
    let key = SshKey::ed25519(keys.path(), "k").public_line();
    let people = [Person {
        uid: "alice",
        ou: None,
        keys: vec![key],
    }];
    let s = Slapd::start(&people, &[], false);
    let url = s.url("");
    // The password file's one trailing newline is not part of the password.
    bound(&s, &url, READER, READER_PW).read().unwrap();

    let wrong = bound(&s, &url, READER, "not the password")
        .read()
        .unwrap_err();
    assert!(
        wrong.contains("exit 49") && wrong.contains("Invalid credentials"),
        "{wrong}"
    );

    let open = bound(&s, &url, READER, READER_PW);
    chmod(open.password_file.as_deref().unwrap(), 0o644);
    let e = open.read().unwrap_err();
    assert!(e.contains("chmod 600"), "{e}");

    s.stop();
    let down = bound(&s, &url, READER, READER_PW).read().unwrap_err();
    assert!(
        down.contains("exit 255") && down.contains("unreachable"),
        "{down}"
    );
}

#[test]
fn ldaps_and_starttls_verify_the_server_with_a_private_ca() {
    if !have_slapd("ldaps_and_starttls_verify_the_server_with_a_private_ca") {
        return;
    }
    let keys = TestDir::new("ldaptls");
    let key = SshKey::ed25519(keys.path(), "k").public_line();
    let people = [Person {
        uid: "alice",
        ou: None,
        keys: vec![key.clone()],
    }];
    let s = Slapd::start(&people, &[], true);
    let ca = s.ca.clone().unwrap();

    let ldaps = Ldap {
        ca_file: Some(ca.clone()),
        ..bound(&s, &s.ldaps_url(), READER, READER_PW)
    };
    assert_eq!(text_of(&ldaps.read().unwrap(), "alice"), format!("{key}\n"));
    let starttls = Ldap {
        ca_file: Some(ca.clone()),
        starttls: true,
        ..bound(&s, &s.url(""), READER, READER_PW)
    };
    assert_eq!(users(&starttls.read().unwrap()), ["alice"]);

    // Without the private CA the server's certificate is not trusted.
    let untrusted = bound(&s, &s.ldaps_url(), READER, READER_PW)
        .read()
        .unwrap_err();
    assert!(untrusted.contains("exit 255"), "{untrusted}");
    let untrusted = Ldap {
        starttls: true,
        ..bound(&s, &s.url(""), READER, READER_PW)
    }
    .read()
    .unwrap_err();
    assert!(untrusted.contains("failed"), "{untrusted}");
}

/// `ssh-keygen -Y verify` of `sig` over `body` by `signer`'s public key.
fn openssh_verifies(dir: &Path, signer: &SshKey, body: &[u8], sig: &[u8]) -> Out {
    let n = unique();
    let allowed = dir.join(format!("allowed-{n}"));
    write_file(
        &allowed,
        format!("publisher {}\n", signer.public_line()),
        0o644,
    );
    let body_path = dir.join(format!("body-{n}"));
    write_file(&body_path, body, 0o644);
    let sig_path = dir.join(format!("body-{n}.sig"));
    write_file(&sig_path, sig, 0o644);
    run(
        Command::new("sh").arg("-c").arg(format!(
            "ssh-keygen -Y verify -f {} -I publisher -n keyward -s {} < {}",
            allowed.display(),
            sig_path.display(),
            body_path.display()
        )),
        Duration::from_secs(30),
    )
}

#[test]
fn native_signatures_verify_with_ssh_keygen() {
    let dir = TestDir::new("nativesign");
    let body = b"#keyward user=alice serial=7 expires=2030-01-01T00:00:00Z\nssh-ed25519 AAAA x\n";
    for kind in [KeyType::Ed25519, KeyType::Ecdsa(256), KeyType::Ecdsa(384)] {
        let key = SshKey::generate(dir.path(), &format!("signer-{}", unique()), kind);
        let signer = Signer::open(&key.path, How::Auto).unwrap();
        assert!(signer.is_native(), "{kind:?}: {}", signer.describe());
        let sig = signer.sign(body).unwrap();
        let ok = openssh_verifies(dir.path(), &key, body, &sig);
        assert!(ok.success(), "{kind:?}: {ok}");
        assert!(
            ok.stdout.contains("Good \"keyward\" signature"),
            "{kind:?}: {ok}"
        );
        let mut other = body.to_vec();
        other.push(b'\n');
        assert!(
            !openssh_verifies(dir.path(), &key, &other, &sig).success(),
            "{kind:?}"
        );
    }

    // RSA and P-521: ssh-key 0.6.7 cannot sign with RSA keys nor read
    // every P-521 key, so ssh-keygen signs with both.
    for kind in [KeyType::Rsa(3072), KeyType::Ecdsa(521)] {
        let key = SshKey::generate(dir.path(), &format!("k-{}", unique()), kind);
        let signer = Signer::open(&key.path, How::Auto).unwrap();
        assert!(!signer.is_native(), "{kind:?}: {}", signer.describe());
        let sig = signer.sign(body).unwrap();
        assert!(
            openssh_verifies(dir.path(), &key, body, &sig).success(),
            "{kind:?}"
        );
    }

    // An encrypted key: ssh-keygen's path (it asks the passphrase), and
    // "native only" refuses it, naming the way out.
    let enc = dir.join("encrypted");
    must(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "a passphrase", "-f"])
            .arg(&enc),
    );
    let auto = Signer::open(&enc, How::Auto).unwrap();
    assert!(!auto.is_native(), "{}", auto.describe());
    assert!(
        auto.describe().contains("passphrase"),
        "{}",
        auto.describe()
    );
    let refused = Signer::open(&enc, How::Native).err().unwrap();
    assert!(
        refused.contains("--sign-with ssh-keygen") && refused.contains("ssh-agent"),
        "{refused}"
    );

    // A public key (its private half in ssh-agent): ssh-keygen too.
    let key = SshKey::ed25519(dir.path(), "agentkey");
    assert!(!Signer::open(&key.pub_path, How::Auto).unwrap().is_native());
    // ssh-keygen's path signs what the native one signs, in the same format.
    let via = Signer::open(&key.path, How::SshKeygen).unwrap();
    assert!(openssh_verifies(dir.path(), &key, body, &via.sign(body).unwrap()).success());

    // A private key others can read is refused, as ssh-keygen refuses it.
    chmod(&key.path, 0o644);
    let open = Signer::open(&key.path, How::Auto).err().unwrap();
    assert!(open.contains("chmod 600"), "{open}");
}

fn forge_config() -> DirectoryConfig {
    DirectoryConfig {
        timeout: pam_keyward::config::ConfDuration(Duration::from_secs(3)),
        ..DirectoryConfig::default()
    }
}

#[test]
fn forge_source_maps_names_and_marks_a_failed_fetch() {
    let keys = TestDir::new("forgekeys");
    let a = SshKey::ed25519(keys.path(), "a").public_line();
    let b = SshKey::ed25519(keys.path(), "b").public_line();
    let nginx = Nginx::builder()
        .location("location = /gh/carol-gh.keys { return 503; }")
        .location(
            "location = /gh/html.keys { default_type text/html; return 200 '<html>login</html>'; }",
        )
        .start();
    nginx.put("gh/alice.keys", format!("{a}\n"));
    nginx.put("gh/bob-gh.keys", format!("{b} bob@laptop\n"));
    nginx.put("gh/bob.keys", format!("{a} not bob's\n"));
    must(Command::new("chmod").args(["-R", "a+rX"]).arg(&nginx.root));
    let list = parse_users(
        "# local remote\nalice\nbob bob-gh\ncarol carol-gh\ndan\nhtml\n",
        255,
    )
    .unwrap();
    let forge = Forge {
        template: UrlTemplate::parse(&nginx.url("/gh/{user}.keys")).unwrap(),
        users: list,
        directory: forge_config(),
        jobs: 4,
    };
    let l = forge.read().unwrap();
    assert_eq!(users(&l), ["alice", "bob", "carol", "html"], "{l:?}");
    assert_eq!(text_of(&l, "alice"), format!("{a}\n"));
    // bob is read from the forge's bob-gh, never from its own bob.
    assert_eq!(text_of(&l, "bob"), format!("{b} bob@laptop\n"));
    assert_eq!(nginx.count("/gh/bob.keys"), 0);
    for failed in ["carol", "html"] {
        let got = &l.items.iter().find(|i| i.user == failed).unwrap().got;
        assert!(matches!(got, Got::Failed(_)), "{failed}: {got:?}");
    }
    let notes = l.notes.join("\n");
    assert!(notes.contains("dan: ") && notes.contains("404"), "{notes}");
    assert!(
        matches!(&l.items[2].got, Got::Failed(why) if why.contains("HTTP 503")),
        "{l:?}"
    );

    // Every fetch failing is no listing at all.
    let down = Forge {
        template: UrlTemplate::parse(&nginx.url("/gh/{user}.keys")).unwrap(),
        users: parse_users("carol carol-gh\n", 255).unwrap(),
        directory: forge_config(),
        jobs: 1,
    };
    assert!(down.read().is_err());
}
