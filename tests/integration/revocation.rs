//! Revocation lists: KRL specs with real ssh-keygen keys and certificates,
//! keyward's list built from them, and the KRL `ssh-keygen -k` builds from
//! the same revocations. For every key and certificate keyward's verdict
//! must be the one `ssh-keygen -Q` gives on the KRL (sshd's own check), and
//! the one the test expects.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pam_keyward::revocation::krl::{self, Options};
use pam_keyward::revocation::list::{self, CertQuery, Header, ListFile, Revocations};
use pam_keyward::revocation::spec::{self, AnyKey};

use crate::support::sshkeys::SshKey;
use crate::support::*;

/// `ssh-keygen -s CA -I ID -n alice -z SERIAL KEY.pub` → the certificate.
fn cert(dir: &Path, ca: &SshKey, key: &SshKey, id: &str, serial: u64, name: &str) -> PathBuf {
    must(
        Command::new("ssh-keygen")
            .arg("-q")
            .arg("-s")
            .arg(&ca.path)
            .args(["-I", id, "-n", "alice", "-z", &serial.to_string()])
            .arg(&key.pub_path),
    );
    let out = dir.join(format!("{name}-cert.pub"));
    fs::rename(format!("{}-cert.pub", key.path.display()), &out).unwrap();
    out
}

fn line(p: &Path) -> String {
    fs::read_to_string(p).unwrap().trim().to_owned()
}

/// `ssh-keygen -Q -f KRL FILE`: true when revoked (exit 1), false when
/// not (exit 0); anything else fails the test.
fn krl_says_revoked(krl: &Path, file: &Path) -> bool {
    let out = run(
        Command::new("ssh-keygen")
            .arg("-Q")
            .arg("-f")
            .arg(krl)
            .arg(file),
        Duration::from_secs(60),
    );
    match out.code {
        Some(0) => false,
        Some(1) if out.stdout.contains("REVOKED") => true,
        _ => panic!("ssh-keygen -Q {}: {out}", file.display()),
    }
}

/// keyward's verdict for the key or certificate in `file`.
fn list_verdict(list: &ListFile, file: &Path) -> Option<list::Revoked> {
    match AnyKey::parse(&line(file)).unwrap() {
        AnyKey::Plain(k) => list.key(k.key_data()).unwrap(),
        AnyKey::Cert(c) => list
            .cert(&CertQuery {
                key: spec::sha256_of(&c.key),
                key_sha1: Some(spec::sha1_of(&c.key).unwrap()),
                ca: spec::sha256_of(&c.ca),
                ca_sha1: Some(spec::sha1_of(&c.ca).unwrap()),
                serial: c.serial,
                key_id: &c.key_id,
            })
            .unwrap(),
    }
}

/// Reads `dir`'s `NAME.spec` files (sorted), each scoped to `NAME.pub`
/// when there is one, as publish will.
fn read_specs(dir: &Path) -> Result<Vec<spec::Spec>, String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".spec"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| {
            let ca_path = dir.join(format!("{}.pub", n.trim_end_matches(".spec")));
            let ca = match fs::read(&ca_path) {
                Ok(b) => Some(
                    spec::parse_ca(ca_path.file_name().unwrap().to_str().unwrap(), &b)
                        .map_err(|e| e.to_string())?,
                ),
                Err(_) => None,
            };
            spec::parse(n, &fs::read(dir.join(n)).unwrap(), ca.as_ref()).map_err(|e| e.to_string())
        })
        .collect()
}

#[test]
fn list_verdicts_agree_with_ssh_keygen_on_the_krl_for_every_kind_of_line() {
    let td = TestDir::new("revocation");
    let d = td.path();
    let src = d.join("revoked");
    fs::create_dir(&src).unwrap();
    let ca1 = SshKey::ed25519(d, "ca1");
    let ca2 = SshKey::ed25519(d, "ca2");
    let ca3 = SshKey::ed25519(d, "ca3");
    let by_key = SshKey::ed25519(d, "by-key");
    let by_sha1 = SshKey::generate(d, "by-sha1", sshkeys::KeyType::Ecdsa(256));
    let by_sha256 = SshKey::generate(d, "by-sha256", sshkeys::KeyType::Rsa(2048));
    let by_hash = SshKey::ed25519(d, "by-hash");
    let bare = SshKey::ed25519(d, "bare");
    let fine = SshKey::ed25519(d, "fine");
    let holder = SshKey::ed25519(d, "holder");
    let listed = SshKey::ed25519(d, "listed");

    let c_range = cert(d, &ca1, &holder, "alice@laptop", 150, "range");
    let c_range_hi = cert(d, &ca1, &holder, "alice@laptop", 199, "range-hi");
    let c_after = cert(d, &ca1, &holder, "alice@laptop", 200, "after");
    let c_hex = cert(d, &ca1, &holder, "alice@laptop", 1000, "hex");
    let c_id = cert(d, &ca1, &holder, "gone@corp", 500, "id");
    let c_id0 = cert(d, &ca1, &holder, "gone@corp", 0, "id0");
    let c_other_ca = cert(d, &ca2, &holder, "gone@corp", 150, "other-ca");
    let c_bare = cert(d, &ca2, &holder, "bob@desk", 777, "bare-cert");
    let c_bare_next = cert(d, &ca2, &holder, "bob@desk", 778, "bare-cert-next");
    let c_of_revoked_key = cert(d, &ca2, &by_key, "carol", 9, "of-revoked-key");
    let c_of_sha1_key = cert(d, &ca2, &by_sha1, "dave", 10, "of-sha1-key");
    let c_by_revoked_ca = cert(d, &ca3, &holder, "erin", 11, "by-revoked-ca");
    let c_listed = cert(d, &ca2, &listed, "frank", 12, "cert-listed");
    let c_listed_other = cert(d, &ca1, &listed, "frank", 13, "cert-listed-other");
    let c_spaced_id = cert(d, &ca1, &holder, "build bot", 600, "spaced-id");

    fs::write(
        src.join("users.spec"),
        format!(
            "# no CA: keys only (and bare certificates, for their own CA)\n\
             key: {}\n\
             sha1: {}\n\
             SHA256: {}\n\
             hash: {}   # as ssh-keygen -l prints it\n\
             \n\
             {}\n\
             {}\n\
             hash: {}\n\
             key: {}\n",
            by_key.public_line(),
            by_sha1.public_line(),
            by_sha256.public_line(),
            by_hash.fingerprint(),
            bare.public_line(),
            line(&c_bare),
            ca3.fingerprint(),
            line(&c_listed),
        ),
    )
    .unwrap();
    fs::write(
        src.join("ca1.spec"),
        "serial: 100-199\nid: gone@corp\n  serial: 0x3e8 # 1000\nID:\tbuild bot  \n",
    )
    .unwrap();
    fs::copy(&ca1.pub_path, src.join("ca1.pub")).unwrap();

    let specs = read_specs(&src).unwrap();
    let r = Revocations::from_specs(&specs);
    let text = r.render(&Header {
        serial: Some(42),
        expires: Some(1_893_456_000),
        krl: None,
    });
    assert_eq!(list::check(&text).unwrap().serial, Some(42));
    let list_path = d.join("revoked.list");
    fs::write(&list_path, &text).unwrap();
    let list = ListFile::open(&list_path, 0).unwrap();
    let krl_path = d.join("revoked.krl");
    krl::build(
        &r,
        &krl_path,
        &Options {
            version: Some(42),
            ..Options::default()
        },
    )
    .unwrap();

    let cases: Vec<(&str, PathBuf, Option<&str>)> = vec![
        ("key:", by_key.pub_path.clone(), Some("key users.spec:2")),
        (
            "sha1:",
            by_sha1.pub_path.clone(),
            Some("key-sha1 users.spec:3"),
        ),
        (
            "sha256:",
            by_sha256.pub_path.clone(),
            Some("key users.spec:4"),
        ),
        ("hash:", by_hash.pub_path.clone(), Some("key users.spec:5")),
        (
            "bare key",
            bare.pub_path.clone(),
            Some("key-sha1 users.spec:7"),
        ),
        ("not listed", fine.pub_path.clone(), None),
        ("CA key itself", ca1.pub_path.clone(), None),
        ("serial in range", c_range, Some("serial ca1.spec:1")),
        ("serial at range end", c_range_hi, Some("serial ca1.spec:1")),
        ("serial after range", c_after, None),
        ("serial in hex", c_hex, Some("serial ca1.spec:3")),
        ("id for its CA", c_id, Some("key-id ca1.spec:2")),
        ("id, serial 0", c_id0, Some("key-id ca1.spec:2")),
        ("same id and serial, other CA", c_other_ca, None),
        ("bare certificate", c_bare, Some("serial users.spec:8")),
        ("next serial of a bare certificate", c_bare_next, None),
        (
            "certificate of a revoked key",
            c_of_revoked_key,
            Some("key users.spec:2"),
        ),
        (
            "certificate of a sha1-revoked key",
            c_of_sha1_key,
            Some("key-sha1 users.spec:3"),
        ),
        (
            "certificate by a revoked CA",
            c_by_revoked_ca,
            Some("ca-key users.spec:9"),
        ),
        // key: with a certificate revokes its key as a plain key: the
        // certificate, the key, and the key's other certificates.
        (
            "certificate listed with key:",
            c_listed,
            Some("key users.spec:10"),
        ),
        (
            "key of a certificate listed with key:",
            listed.pub_path.clone(),
            Some("key users.spec:10"),
        ),
        (
            "other certificate of that key",
            c_listed_other,
            Some("key users.spec:10"),
        ),
        ("id with a blank", c_spaced_id, Some("key-id ca1.spec:4")),
    ];
    for (what, file, want) in cases {
        let ours = list_verdict(&list, &file);
        let theirs = krl_says_revoked(&krl_path, &file);
        let ours_text = ours
            .as_ref()
            .map(|r| format!("{} {}", r.by.as_str(), r.source));
        assert_eq!(ours_text.as_deref(), want, "{what}: keyward's list");
        assert_eq!(ours.is_some(), theirs, "{what}: list and KRL disagree");
    }
    // The KRL's version is the list's serial.
    let dump = must(
        Command::new("ssh-keygen")
            .arg("-Q")
            .arg("-l")
            .arg("-f")
            .arg(&krl_path),
    );
    assert!(
        dump.stdout.contains("# KRL version 42\n"),
        "{}",
        dump.stdout
    );
}

#[test]
fn serial_and_id_without_a_ca_key_are_refused_like_ssh_keygen_does() {
    let td = TestDir::new("revocation-noca");
    let d = td.path();
    for (i, line) in ["serial: 5", "id: someone"].iter().enumerate() {
        let spec_path = d.join(format!("n{i}.spec"));
        fs::write(&spec_path, format!("# comment\n{line}\n")).unwrap();
        let e = read_specs(d).unwrap_err();
        assert!(e.starts_with(&format!("n{i}.spec:2: ")), "{e}");
        assert!(e.contains("requires a CA key"), "{e}");
        let out = run(
            Command::new("ssh-keygen")
                .arg("-k")
                .arg("-f")
                .arg(d.join("x.krl"))
                .arg(&spec_path),
            Duration::from_secs(60),
        );
        assert!(!out.success(), "ssh-keygen accepted {line:?} without -s");
        fs::remove_file(&spec_path).unwrap();
    }
}

/// 100,000 revoked key hashes: sizes of keyward's list and of the KRL, and
/// the time of one lookup (open + binary search, as a login does) against
/// `ssh-keygen -Q` on the KRL. Prints numbers; asserts only correctness.
/// `cargo test --test integration revocation::measure -- --ignored --nocapture`
#[test]
#[ignore]
fn measure_100k_revocations() {
    let td = TestDir::new("revocation-bench");
    let d = td.path();
    let n = 100_000u32;
    let mut spec_text = String::new();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..n {
        let mut h = [0u8; 32];
        for b in h.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        spec_text.push_str(&format!("hash: SHA256:{}\n", list::b64(&h)));
    }
    let key = SshKey::ed25519(d, "probe");
    let revoked = SshKey::ed25519(d, "revoked");
    spec_text.push_str(&format!("hash: {}\n", revoked.fingerprint()));
    fs::write(d.join("bulk.spec"), &spec_text).unwrap();

    let t = Instant::now();
    let specs = read_specs(d).unwrap();
    let r = Revocations::from_specs(&specs);
    let text = r.render(&Header {
        serial: Some(1),
        expires: Some(1_893_456_000),
        krl: None,
    });
    list::check(&text).unwrap();
    let build_list = t.elapsed();
    let list_path = d.join("revoked.list");
    fs::write(&list_path, &text).unwrap();
    let t = Instant::now();
    let krl_path = d.join("revoked.krl");
    krl::build(&r, &krl_path, &Options::default()).unwrap();
    let build_krl = t.elapsed();
    let gz = |p: &Path| -> usize {
        must(
            Command::new("sh")
                .arg("-c")
                .arg(format!("gzip -9c {} | wc -c", p.display())),
        )
        .stdout
        .trim()
        .parse()
        .unwrap()
    };

    let probe = AnyKey::parse(&key.public_line()).unwrap();
    let hit = AnyKey::parse(&revoked.public_line()).unwrap();
    let rounds = 2000;
    let t = Instant::now();
    for _ in 0..rounds {
        let l = ListFile::open(&list_path, 0).unwrap();
        assert!(l.key(probe.plain()).unwrap().is_none());
        assert!(l.key(hit.plain()).unwrap().is_some());
    }
    let per_lookup = t.elapsed() / (2 * rounds);
    let q_rounds = 5;
    let mut q_total = Duration::ZERO;
    for _ in 0..q_rounds {
        let t = Instant::now();
        assert!(!krl_says_revoked(&krl_path, &key.pub_path));
        q_total += t.elapsed();
    }
    assert!(krl_says_revoked(&krl_path, &revoked.pub_path));
    println!(
        "revocations={} list_bytes={} list_gzip={} krl_bytes={} krl_gzip={} \
         list_build_ms={} krl_build_ms={} list_lookup_us={:.1} ssh_keygen_q_ms={:.1}",
        n + 1,
        fs::metadata(&list_path).unwrap().len(),
        gz(&list_path),
        fs::metadata(&krl_path).unwrap().len(),
        gz(&krl_path),
        build_list.as_millis(),
        build_krl.as_millis(),
        per_lookup.as_secs_f64() * 1e6,
        q_total.as_secs_f64() * 1e3 / q_rounds as f64,
    );
}

/// `ssh-keygen -Y verify -n keyward` of `file` with `file.sig` by `signer`.
fn sig_verifies(dir: &Path, signer: &SshKey, file: &Path) -> bool {
    let allowed = dir.join("allowed_signers");
    fs::write(&allowed, format!("pub@kw {}\n", signer.public_line())).unwrap();
    let sig = format!("{}.sig", file.display());
    let out = run(
        Command::new("sh")
            .arg("-c")
            .arg(r#"exec ssh-keygen -Y verify -n keyward -I pub@kw -f "$1" -s "$2" < "$3""#)
            .args([
                "sh".as_ref(),
                allowed.as_os_str(),
                sig.as_ref(),
                file.as_os_str(),
            ]),
        Duration::from_secs(20),
    );
    out.success()
}

/// `keyward publish SRC OUT --signer S --validity 1d [--serial N]`.
fn publish(kw: &Keyward, src: &Path, out: &Path, signer: &SshKey, serial: Option<u64>) -> Out {
    let serial = serial.map(|s| s.to_string());
    let mut args = vec![
        "publish",
        src.to_str().unwrap(),
        out.to_str().unwrap(),
        "--signer",
        signer.path.to_str().unwrap(),
        "--validity",
        "1d",
    ];
    if let Some(s) = &serial {
        args.extend(["--serial", s]);
    }
    run(&mut kw.command(&args), Duration::from_secs(120))
}

/// The index's revocation line: (serial, hash).
fn index_revoked_line(out: &Path) -> Option<(Option<u64>, [u8; 8])> {
    let text = fs::read_to_string(out.join("keyward.index")).unwrap();
    let idx = pam_keyward::index::Index::parse(&text).unwrap();
    let l = idx.get(pam_keyward::index::REVOKED)?;
    assert_eq!(l.path, "revoked.list");
    Some((l.serial, l.hash))
}

#[test]
fn publish_writes_the_signed_list_and_krl_that_ssh_keygen_verifies_and_the_index_names_it() {
    let td = TestDir::new("revpublish");
    let d = td.path();
    let kw = Keyward::install();
    let signer = SshKey::ed25519(d, "signer");
    let ca = SshKey::ed25519(d, "ca");
    let other_ca = SshKey::ed25519(d, "other-ca");
    let gone = SshKey::ed25519(d, "gone");
    let fine = SshKey::ed25519(d, "fine");
    let src = td.subdir("src");
    let out = td.subdir("out");
    fs::write(src.join("alice.keys"), format!("{}\n", fine.public_line())).unwrap();

    // Without SRC/revoked/: nothing of revocation is written.
    let p = publish(&kw, &src, &out, &signer, Some(1000));
    assert!(p.success(), "{p}");
    assert!(!out.join("revoked.list").exists());
    assert!(!out.join("revoked.krl").exists());
    assert_eq!(index_revoked_line(&out), None);

    let rev = src.join("revoked");
    fs::create_dir(&rev).unwrap();
    fs::write(
        rev.join("users.spec"),
        format!("key: {}\n", gone.public_line()),
    )
    .unwrap();
    fs::write(rev.join("ci.spec"), "serial: 100-199\nid: gone@corp\n").unwrap();
    fs::copy(&ca.pub_path, rev.join("ci.pub")).unwrap();
    let c_serial = cert(d, &ca, &fine, "alice@laptop", 150, "serial");
    let c_id = cert(d, &ca, &fine, "gone@corp", 500, "id");
    let c_fine = cert(d, &ca, &fine, "alice@laptop", 200, "not-revoked");
    let c_other = cert(d, &other_ca, &fine, "gone@corp", 150, "other");

    let p = publish(&kw, &src, &out, &signer, Some(1000));
    assert!(p.success(), "{p}");
    assert!(
        p.stdout
            .contains("revocations: 2 spec(s), 1 key(s), 1 CA(s)"),
        "{p}"
    );
    let list_path = out.join("revoked.list");
    let krl_path = out.join("revoked.krl");
    for f in [&list_path, &krl_path] {
        assert!(sig_verifies(d, &signer, f), "{}", f.display());
    }
    // A signature of the list is not one of the KRL.
    fs::copy(
        format!("{}.sig", list_path.display()),
        d.join("swapped.sig"),
    )
    .unwrap();
    fs::copy(&krl_path, d.join("swapped")).unwrap();
    assert!(!sig_verifies(d, &signer, &d.join("swapped")));

    let text = fs::read_to_string(&list_path).unwrap();
    let h = list::check(&text).unwrap();
    // The serial continues past the users' files of the same run.
    let serial = h.serial.unwrap();
    assert!(serial >= 1000, "{text}");
    assert!(h.expires.is_some());
    assert!(text.starts_with("#keyward kind=revoked serial="), "{text}");
    assert_eq!(
        index_revoked_line(&out),
        Some((Some(serial), pam_keyward::index::digest(text.as_bytes())))
    );
    // keyward's list and sshd's KRL say the same for each.
    let list = ListFile::open(&list_path, 0).unwrap();
    for (file, revoked) in [
        (&gone.pub_path, true),
        (&fine.pub_path, false),
        (&c_serial, true),
        (&c_id, true),
        (&c_fine, false),
        (&c_other, false),
    ] {
        assert_eq!(
            krl_says_revoked(&krl_path, file),
            revoked,
            "{}",
            file.display()
        );
        assert_eq!(
            list_verdict(&list, file).is_some(),
            revoked,
            "{}",
            file.display()
        );
    }

    // Nothing changed: the same bytes, the same serial (hosts get a 304).
    let p = publish(&kw, &src, &out, &signer, Some(1000));
    assert!(p.success(), "{p}");
    assert!(p.stdout.contains("unchanged"), "{p}");
    assert_eq!(fs::read_to_string(&list_path).unwrap(), text);

    // A new revocation: a higher serial (never lower, whatever --serial
    // says), a new index line, a KRL that has it.
    fs::write(
        rev.join("users.spec"),
        format!("key: {}\nkey: {}\n", gone.public_line(), fine.public_line()),
    )
    .unwrap();
    let p = publish(&kw, &src, &out, &signer, Some(5));
    assert!(p.success(), "{p}");
    let text2 = fs::read_to_string(&list_path).unwrap();
    let serial2 = list::check(&text2).unwrap().serial.unwrap();
    assert!(serial2 > serial, "{serial2} after {serial}");
    assert_eq!(
        index_revoked_line(&out),
        Some((Some(serial2), pam_keyward::index::digest(text2.as_bytes())))
    );
    assert!(krl_says_revoked(&krl_path, &fine.pub_path));
    assert!(sig_verifies(d, &signer, &krl_path));
    assert!(sig_verifies(d, &signer, &list_path));

    // `publish --check` takes the list, the KRL and their signatures as
    // part of the tree, and names a damaged one.
    let check = || {
        let pubkey = signer.pub_path.to_str().unwrap();
        let args = [
            "publish",
            "--check",
            out.to_str().unwrap(),
            "--signer",
            pubkey,
        ];
        run(&mut kw.command(&args), Duration::from_secs(120))
    };
    let c = check();
    assert_eq!(c.code, Some(0), "{c}");
    let good_krl = fs::read(&krl_path).unwrap();
    let mut bad = good_krl.clone();
    bad.push(0);
    fs::write(&krl_path, &bad).unwrap();
    let c = check();
    assert_ne!(c.code, Some(0), "{c}");
    assert!(
        format!("{}{}", c.stdout, c.stderr).contains("revoked.krl"),
        "{c}"
    );
    fs::write(&krl_path, &good_krl).unwrap();

    // A spec that does not parse fails the run, naming it; nothing changes.
    // (The delta folders' files too.)
    let before: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .flat_map(|p| match p.is_dir() {
            true => fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect(),
            false => vec![p],
        })
        .map(|p| (p.clone(), fs::read(&p).unwrap()))
        .collect();
    fs::write(rev.join("bad.spec"), "serial: 5\n").unwrap();
    fs::write(src.join("bob.keys"), format!("{}\n", fine.public_line())).unwrap();
    let p = publish(&kw, &src, &out, &signer, None);
    assert!(!p.success(), "{p}");
    assert!(p.stderr.contains("bad.spec:1"), "{p}");
    for (path, bytes) in &before {
        assert_eq!(&fs::read(path).unwrap(), bytes, "{}", path.display());
    }
    assert!(!out.join("bob.keys").exists());
}
