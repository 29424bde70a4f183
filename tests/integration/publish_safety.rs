//! `keyward publish` run as root into an output folder that others can
//! write (a deploy user, a group-writable web root): whatever they plant
//! there, publish never writes, reads or removes anything outside it, and
//! never hangs on it. And it never writes a user name that a header or an
//! index line would read back differently. Real binary, real ssh-keygen.

use std::os::unix::fs::{symlink, FileTypeExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

/// A source folder, an output folder, a signer and the installed binary
/// (no config: publish uses the default policy and `keyward.index`).
struct Publisher {
    dir: TestDir,
    kw: Keyward,
    src: PathBuf,
    out: PathBuf,
    signer: SshKey,
    login: SshKey,
}

impl Publisher {
    fn new() -> Publisher {
        let dir = TestDir::new("pubsafe");
        let signer = SshKey::ed25519(dir.path(), "signer");
        let login = SshKey::ed25519(dir.path(), "login");
        let src = dir.subdir("src");
        let out = dir.subdir("out");
        write_file(
            &src.join("alice.keys"),
            format!("{}\n", login.public_line()),
            0o644,
        );
        Publisher {
            kw: Keyward::install(),
            dir,
            src,
            out,
            signer,
            login,
        }
    }

    fn publish(&self) -> Out {
        self.publish_with(&[])
    }

    fn publish_with(&self, extra: &[&str]) -> Out {
        let mut args = vec![
            "publish",
            self.src.to_str().unwrap(),
            self.out.to_str().unwrap(),
            "--signer",
            self.signer.path.to_str().unwrap(),
            "--validity",
            "1d",
        ];
        args.extend(extra);
        // A publish that follows a FIFO never ends: the timeout says so.
        run(&mut self.kw.command(&args), Duration::from_secs(30))
    }

    /// `ssh-keygen -Y verify` of `out/name` with `out/name.sig`.
    fn verify(&self, name: &str) -> Out {
        let allowed = self.dir.write(
            "allowed_signers",
            format!("keyward@publish {}\n", self.signer.public_line()),
            0o644,
        );
        let body = self.out.join(name);
        let sig = self.out.join(format!("{name}.sig"));
        run(
            Command::new("sh")
                .arg("-c")
                .arg(r#"exec ssh-keygen -Y verify -n keyward -I keyward@publish -f "$1" -s "$2" < "$3""#)
                .args(["sh".as_ref(), allowed.as_os_str(), sig.as_os_str(), body.as_os_str()]),
            Duration::from_secs(20),
        )
    }

    /// The published index, parsed by keyward's own reader.
    fn index_users(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.out.join("keyward.index")).unwrap();
        let idx = pam_keyward::index::Index::parse(&text)
            .unwrap_or_else(|e| panic!("the published index does not parse: {e}\n{text}"));
        // The index's own lines (`:deltas`, `:revoked`) are nobody's.
        idx.lines
            .iter()
            .filter(|l| !l.user.starts_with(':'))
            .map(|l| l.user.to_owned())
            .collect()
    }
}

/// `name` in `dir` is a regular file (not a link, not a FIFO).
fn assert_regular(dir: &Path, name: &str) {
    let md = std::fs::symlink_metadata(dir.join(name))
        .unwrap_or_else(|e| panic!("{name} was not published: {e}"));
    assert!(md.file_type().is_file(), "{name} is {:?}", md.file_type());
}

const PRECIOUS: &str = "root's precious file\n";

/// Every name publish ever wrote to (or had ssh-keygen write to) under a
/// predictable name, and the published names themselves, as links to files
/// outside OUT; a racing writer of OUT keeps re-planting the signature temp
/// names (which a publish may remove before signing) for the whole run.
/// Nothing outside OUT changes, and the tree verifies with OpenSSH.
#[test]
fn publish_never_follows_links_planted_in_out() {
    let p = Publisher::new();
    let victims = p.dir.subdir("victims");
    let planted = [
        ".alice.keys.tmp",
        ".alice.keys.tmp.sig",
        "alice.keys.sig",
        ".keyward.index.tmp",
        ".keyward.index.tmp.sig",
        ".keyward.index.gz.tmp",
        "keyward.index.sig",
        // A stale file: removing it must remove the link, not its target.
        "ghost.keys",
        "ghost.keys.sig",
    ];
    let victim = |name: &str| victims.join(format!("victim{name}"));
    for name in planted {
        write_file(&victim(name), PRECIOUS, 0o644);
        symlink(victim(name), p.out.join(name)).unwrap();
    }

    // The index's delta folder, as a link to a folder outside OUT.
    let victim_dir = p.dir.subdir("victim-folder");
    symlink(&victim_dir, p.out.join("keyward.index.d")).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let racer = {
        let (stop, out, victims) = (stop.clone(), p.out.clone(), victims.clone());
        std::thread::spawn(move || {
            let racing = [".alice.keys.tmp.sig", ".keyward.index.tmp.sig"];
            while !stop.load(Ordering::Relaxed) {
                for name in racing {
                    let _ = symlink(victims.join(format!("victim{name}")), out.join(name));
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let out = p.publish();
    stop.store(true, Ordering::Relaxed);
    racer.join().unwrap();

    for name in planted {
        assert_eq!(
            std::fs::read_to_string(victim(name)).unwrap(),
            PRECIOUS,
            "publish wrote through the link planted at OUT/{name}\n{out}"
        );
    }
    assert!(out.success(), "{out}");
    assert_eq!(
        std::fs::read_dir(&victim_dir).unwrap().count(),
        0,
        "publish wrote deltas through the link planted at OUT/keyward.index.d"
    );
    let md = std::fs::symlink_metadata(p.out.join("keyward.index.d")).unwrap();
    assert!(md.is_dir(), "{md:?}");
    for name in [
        "alice.keys",
        "alice.keys.sig",
        "keyward.index",
        "keyward.index.sig",
    ] {
        assert_regular(&p.out, name);
    }
    assert_regular(&p.out, "keyward.index.gz");
    for name in ["alice.keys", "keyward.index"] {
        let v = p.verify(name);
        assert!(v.success(), "ssh-keygen -Y verify {name}: {v}");
    }
    for name in ["ghost.keys", "ghost.keys.sig"] {
        assert!(
            std::fs::symlink_metadata(p.out.join(name)).is_err(),
            "the stale link {name} was left"
        );
    }
    let body = std::fs::read_to_string(p.out.join("alice.keys")).unwrap();
    assert!(body.contains(&p.login.public_material()), "{body}");
    assert_eq!(p.index_users(), ["alice"]);

    // A second run keeps the unchanged tree (it reads it back) and still
    // never touches the victims.
    let again = p.publish();
    assert!(again.success(), "{again}");
    assert_eq!(
        std::fs::read_to_string(p.out.join("alice.keys")).unwrap(),
        body
    );
    for name in planted {
        assert_eq!(std::fs::read_to_string(victim(name)).unwrap(), PRECIOUS);
    }
}

/// A FIFO where publish reads the previous tree (a user's file, the index)
/// must neither hang publish nor survive it; a directory with a published
/// file's name is left alone without failing the run.
#[test]
fn publish_does_not_hang_on_fifos_planted_in_out() {
    let p = Publisher::new();
    for name in [
        "alice.keys",
        "alice.keys.sig",
        "keyward.index",
        "keyward.index.sig",
        "keyward.index.gz",
    ] {
        must(Command::new("mkfifo").arg(p.out.join(name)));
    }
    std::fs::create_dir(p.out.join("dir.keys")).unwrap();
    let out = p.publish();
    assert!(!out.timed_out, "publish hung on a FIFO in OUT: {out}");
    assert!(out.success(), "{out}");
    for name in [
        "alice.keys",
        "alice.keys.sig",
        "keyward.index",
        "keyward.index.sig",
        "keyward.index.gz",
    ] {
        let ft = std::fs::symlink_metadata(p.out.join(name))
            .unwrap()
            .file_type();
        assert!(!ft.is_fifo() && ft.is_file(), "{name}: {ft:?}");
    }
    assert!(p.verify("alice.keys").success());
    assert!(p.out.join("dir.keys").is_dir());
}

/// Names a `#keyward` header or an index line cannot carry unambiguously
/// are refused, each named on stderr, exit 1; everyone else is published,
/// and a file an older publish wrote for such a name is removed. The
/// dangerous case: the keys file of `bob kind=principals` has a header that
/// reads as bob's principals file, validly signed.
#[test]
fn publish_refuses_names_a_header_or_index_cannot_carry() {
    let p = Publisher::new();
    let key = format!("{}\n", p.login.public_line());
    let refused = [
        "bob kind=principals",
        "carol=admin",
        // An index line's path is printable ASCII without `?#%\`.
        "dåve",
    ];
    for name in refused {
        write_file(&p.src.join(format!("{name}.keys")), &key, 0o644);
    }
    // What an earlier publish left for one of them.
    write_file(&p.out.join("bob kind=principals.keys"), &key, 0o644);

    // Its only published user goes: past the mass-removal guard's default.
    let out = p.publish_with(&["--max-removed", "100%"]);
    assert_eq!(out.code, Some(1), "{out}");
    for name in refused {
        assert!(
            out.stderr
                .contains(&format!("refused {:?}", format!("{name}.keys"))),
            "{name} not named on stderr: {out}"
        );
        for suffix in ["keys", "keys.sig"] {
            assert!(
                std::fs::symlink_metadata(p.out.join(format!("{name}.{suffix}"))).is_err(),
                "{name}.{suffix} was written or left: {out}"
            );
        }
    }
    assert!(out.stdout.contains("alice: 1 key(s) published"), "{out}");
    assert!(p.verify("alice.keys").success());
    assert!(p.verify("keyward.index").success());
    assert_eq!(p.index_users(), ["alice"]);
    let body = std::fs::read_to_string(p.out.join("alice.keys")).unwrap();
    let h = pam_keyward::signed::parse_header(&body).unwrap();
    assert_eq!(h.user, "alice");
}

/// Whoever can write OUT plants a previous file with serial 2^64-1 (and a
/// garbage signature): publish must not keep it nor continue its serial,
/// or every host's rollback floor would refuse all of alice's later files
/// (and every later index) for good.
#[test]
fn publish_does_not_continue_a_serial_planted_in_out() {
    let p = Publisher::new();
    let max = u64::MAX;
    let body = format!(
        "#keyward user=alice serial={max} expires=2099-01-01T00:00:00Z\n{}\n",
        p.login.public_line()
    );
    write_file(&p.out.join("alice.keys"), &body, 0o644);
    write_file(&p.out.join("alice.keys.sig"), "not a signature", 0o644);
    let index = format!(
        "#keyward-index serial={max} expires=2099-01-01T00:00:00Z\nalice {max} 0123456789abcdef alice.keys\n"
    );
    write_file(&p.out.join("keyward.index"), &index, 0o644);
    write_file(&p.out.join("keyward.index.sig"), "not a signature", 0o644);

    let out = p.publish();
    assert!(out.success(), "{out}");
    let text = std::fs::read_to_string(p.out.join("alice.keys")).unwrap();
    let h = pam_keyward::signed::parse_header(&text).unwrap();
    assert!(h.serial < max, "the planted serial was continued: {text}");
    assert!(p.verify("alice.keys").success());
    let itext = std::fs::read_to_string(p.out.join("keyward.index")).unwrap();
    let idx = pam_keyward::index::Index::parse(&itext).unwrap();
    assert!(idx.header.serial.is_some_and(|s| s < max), "{itext}");
    assert_eq!(idx.get("alice").unwrap().serial, Some(h.serial));
    assert!(p.verify("keyward.index").success());

    // A file this signer did sign is built on: the next run keeps it.
    let again = p.publish();
    assert!(again.success(), "{again}");
    assert_eq!(
        std::fs::read_to_string(p.out.join("alice.keys")).unwrap(),
        text
    );
}
