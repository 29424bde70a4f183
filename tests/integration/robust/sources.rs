//! Every source combination under every directory fault and cache state:
//! local files never make a failure fail open.
//!
//! docs/SECURITY.md: every failure fails closed (exit non-zero, nothing on
//! stdout). With `[files]` configured, keyward could still print the local
//! keys when the directory is down and nothing usable is cached; it must
//! not, because then sshd would accept them while the directory's answer
//! (which may have removed a key, or denied the user) is unknown. The table
//! below is the specification; each cell is one `keyward keys` run.

use std::fs;
use std::os::unix::fs::symlink;

use pam_keyward::cache::{Entry, Status};

use crate::support::cachefiles::*;
use crate::support::checks::*;
use crate::support::fault::dead_url;
use crate::support::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sources {
    Directory,
    FilesAndDirectory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    /// 200 with the current key D.
    Up,
    /// 404: authoritative "no keys".
    NotFound,
    /// Connection refused.
    Down,
    Http500,
    /// 200 with an HTML page (captive portal).
    Garbage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cached {
    Nothing,
    /// Key S, younger than ttl.
    Fresh,
    /// Key S, older than ttl, younger than max_stale.
    Stale,
    /// Key S, older than max_stale.
    TooOld,
    /// Key S with one body byte flipped (checksum mismatch).
    Corrupt,
    /// A symbolic link to a fresh entry holding key S.
    Symlink,
}

/// What keyward must answer.
#[derive(Debug, PartialEq, Eq)]
enum Want {
    /// Exit 0 printing exactly these keys (F = local file, D = directory,
    /// S = cached), with this `source=`.
    Serve(&'static [char], &'static str),
    /// Exit 1, nothing on stdout, `decision=fail`.
    FailClosed,
}

/// The specification.
fn want(src: Sources, dir: Dir, cached: Cached) -> Want {
    use Cached::*;
    use Dir::*;
    use Want::*;
    let files = src == Sources::FilesAndDirectory;
    let both = |with: &'static [char], without: &'static [char], source| match files {
        true => Serve(with, source),
        false => Serve(without, source),
    };
    let src_name = |s: &'static str, f: &'static str| if files { f } else { s };
    match (cached, dir) {
        // Someone tampered with the cache: never followed, whatever else.
        (Symlink, _) => FailClosed,
        (Fresh, _) => both(&['F', 'S'], &['S'], src_name("cache", "files+cache")),
        (_, Up) => both(
            &['F', 'D'],
            &['D'],
            src_name("directory", "files+directory"),
        ),
        (_, NotFound) => both(&['F'], &[], src_name("directory", "files+directory")),
        (Stale, Down | Http500 | Garbage) => {
            both(&['F', 'S'], &['S'], src_name("stale", "files+stale"))
        }
        (Nothing | TooOld | Corrupt, Down | Http500 | Garbage) => FailClosed,
    }
}

struct Bench {
    _keys: TestDir,
    f: SshKey,
    d: SshKey,
    s: SshKey,
    nginx: Nginx,
    user: TestUser,
    env: KeysEnv,
}

impl Bench {
    fn start() -> Bench {
        let keys = TestDir::new("robust-sources-keys");
        let [f, d, s] = ["f", "d", "s"].map(|n| SshKey::ed25519(keys.path(), n));
        let nginx = Nginx::builder()
            .location("location ^~ /err/ { return 500; }")
            .location("location ^~ /html/ { types { } default_type text/html; }")
            .start();
        let user = TestUser::new();
        nginx.put_keys(&user.name, &body(&[&d]));
        nginx.put(
            &format!("html/{}.keys", user.name),
            "<!DOCTYPE html>\n<html><body><form>Wi-Fi login</form></body></html>\n",
        );
        // The user's own authorized_keys, safe as sshd's StrictModes wants.
        let ssh = user.home.join(".ssh");
        fs::create_dir_all(&ssh).unwrap();
        let ak = ssh.join("authorized_keys");
        fs::write(&ak, body(&[&f])).unwrap();
        for p in [&ssh, &ak] {
            chown_to(p, &user.name);
        }
        chmod(&ssh, 0o700);
        chmod(&ak, 0o600);
        let env = KeysEnv::new(|c| c.ttl("1m").max_stale("1h").timeout("2s"));
        Bench {
            _keys: keys,
            f,
            d,
            s,
            nginx,
            user,
            env,
        }
    }

    fn configure(&mut self, src: Sources, dir: Dir) {
        let url = match dir {
            Dir::Up => self.nginx.users_url(),
            Dir::NotFound => self.nginx.url("/nobody/{user}.keys"),
            Dir::Down => dead_url(),
            Dir::Http500 => self.nginx.url("/err/{user}.keys"),
            Dir::Garbage => self.nginx.url("/html/{user}.keys"),
        };
        self.env.reconfigure(|c| KwConfig {
            urls: vec![url],
            files: match src {
                Sources::Directory => vec![],
                Sources::FilesAndDirectory => vec!["%h/.ssh/authorized_keys".into()],
            },
            ..c
        });
    }

    /// An entry holding key S, `age` seconds old, as keyward writes it.
    fn entry_bytes(&self, age: u64) -> Vec<u8> {
        Entry {
            fetched_at: now_s() - age,
            status: Status::Keys,
            etag: None,
            url: self.nginx.users_url().replace("{user}", &self.user.name),
            serial: None,
            signer: None,
            body: body(&[&self.s]),
        }
        .encode()
    }

    fn plant(&self, cached: Cached) {
        let entry = self.env.entry(&self.user.name);
        let _ = fs::remove_file(&entry);
        match cached {
            Cached::Nothing => {}
            Cached::Fresh => plant_entry(&entry, &self.entry_bytes(0)),
            Cached::Stale => plant_entry(&entry, &self.entry_bytes(600)),
            Cached::TooOld => plant_entry(&entry, &self.entry_bytes(7200)),
            Cached::Corrupt => {
                let mut b = self.entry_bytes(600);
                let last = b.len() - 2;
                b[last] ^= 0x01;
                plant_entry(&entry, &b);
            }
            Cached::Symlink => {
                let target = self.env.cache.join(format!(".kwt-target-{}", unique()));
                plant_entry(&target, &self.entry_bytes(0));
                symlink(&target, &entry).unwrap();
            }
        }
    }

    fn key(&self, c: char) -> &SshKey {
        match c {
            'F' => &self.f,
            'D' => &self.d,
            _ => &self.s,
        }
    }

    fn cleanup(&self) {
        for e in fs::read_dir(&self.env.cache).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with(".kwt-target-") {
                let _ = fs::remove_file(e.path());
            }
        }
        let _ = fs::remove_file(self.env.entry(&self.user.name));
    }
}

#[test]
fn robust_sources_times_faults_local_files_never_fail_open() {
    let mut b = Bench::start();
    let mut table = String::from(
        "`[files]` = the user's own `~/.ssh/authorized_keys` holding key F; the directory \
         answers key D when up; a cached entry holds key S (ttl 1m, max_stale 1h). \
         \"fail closed\" = exit 1, nothing printed, `decision=fail`.\n\n\
         | Sources | Directory | Cache entry | Printed | `source=` |\n|---|---|---|---|---|\n",
    );
    let mut cells = 0;
    for src in [Sources::Directory, Sources::FilesAndDirectory] {
        for dir in [
            Dir::Up,
            Dir::NotFound,
            Dir::Down,
            Dir::Http500,
            Dir::Garbage,
        ] {
            b.configure(src, dir);
            for cached in [
                Cached::Nothing,
                Cached::Fresh,
                Cached::Stale,
                Cached::TooOld,
                Cached::Corrupt,
                Cached::Symlink,
            ] {
                b.plant(cached);
                let r = b.env.keys(&b.user.name, None);
                let what = format!("{src:?} × directory {dir:?} × cache {cached:?}");
                let (printed, source) = match want(src, dir, cached) {
                    Want::FailClosed => {
                        closed(&r.out, &what);
                        assert_eq!(r.decision(), "fail", "{what}: {r}");
                        assert!(r.field("reason").is_some(), "{what}: {r}");
                        ("fail closed".to_owned(), "—".to_owned())
                    }
                    Want::Serve(ks, source) => {
                        let want: Vec<&SshKey> = ks.iter().map(|c| b.key(*c)).collect();
                        assert_eq!(r.out.code, Some(0), "{what}: {r}");
                        assert_eq!(sorted(r.materials()), mats(&want), "{what}: {r}");
                        assert_eq!(r.field("source").as_deref(), Some(source), "{what}: {r}");
                        let shown: Vec<String> = ks.iter().map(char::to_string).collect();
                        let shown = if shown.is_empty() {
                            "nothing (exit 0)".to_owned()
                        } else {
                            shown.join(" + ")
                        };
                        (shown, format!("`{source}`"))
                    }
                };
                cells += 1;
                table += &format!(
                    "| {} | {dir:?} | {cached:?} | {printed} | {source} |\n",
                    match src {
                        Sources::Directory => "directory",
                        Sources::FilesAndDirectory => "files + directory",
                    }
                );
                b.cleanup();
            }
        }
    }
    assert_eq!(cells, 60);
    publish("sources-matrix", &table);
}
