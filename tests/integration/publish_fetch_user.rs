//! Forge fetches of `keyward publish` run as root never go to the network
//! as root: they run as the `[cache] owner` (`keyward`) or `--fetch-user`,
//! seen from the kernel's own table of the connections to nginx.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::keysenv::KeysEnv;
use crate::support::*;

/// The uids owning client sockets connected to 127.0.0.1:`port`
/// (`/proc/net/tcp`: the remote address, the state, the uid column).
fn client_uids(port: u16) -> BTreeSet<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Established only: a socket in TIME_WAIT has no owner (uid 0).
            (f.get(2) == Some(&remote.as_str()) && f.get(3) == Some(&"01"))
                .then(|| f[7].parse().unwrap())
        })
        .collect()
}

/// Runs publish (`args` after SRC OUT) and, while it runs, every uid that
/// held a connection to nginx.
fn publish_watching(env: &KeysEnv, port: u16, args: &[&str]) -> (Out, BTreeSet<u32>) {
    let mut cmd = env.kw.command(args);
    let run = std::thread::spawn(move || run(&mut cmd, Duration::from_secs(60)));
    let mut uids = BTreeSet::new();
    while !run.is_finished() {
        uids.extend(client_uids(port));
        std::thread::sleep(Duration::from_millis(5));
    }
    (run.join().unwrap(), uids)
}

fn owner_uid(path: &Path) -> u32 {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(path).unwrap())
}

#[test]
fn forge_fetches_of_a_root_publish_run_as_the_unprivileged_account() {
    let keys = TestDir::new("fetchuser");
    let signer = SshKey::ed25519(keys.path(), "signer");
    let a = SshKey::ed25519(keys.path(), "a").public_line();
    // Served slowly (200 bytes a second), so each connection lasts long
    // enough to be seen in /proc/net/tcp.
    let nginx = Nginx::builder()
        .location("location /gh/ { limit_rate 200; }")
        .start();
    let pad = "x".repeat(500);
    nginx.put("gh/alice.keys", format!("{a} alice-{pad}\n"));
    nginx.put("gh/bob-gh.keys", format!("{a} bob-{pad}\n"));
    must(Command::new("chmod").args(["-R", "a+rX"]).arg(&nginx.root));
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).timeout("20s"));
    let work = TestDir::new("fetchuserout");
    let out = work.join("out");
    let users = work.write("users", "alice\nbob bob-gh\n", 0o600);
    let template = nginx.url("/gh/{user}.keys");
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "publish",
            &template,
            out.to_str().unwrap(),
            "--users",
            users.to_str().unwrap(),
            "--signer",
            signer.path.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let call = |extra: &[&'static str]| {
        let v = args(extra);
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        publish_watching(&env, nginx.port, &refs)
    };

    // Root, no option: the fetches run as the [cache] owner, keyward.
    let (keyward_uid, _) = user_ids("keyward").unwrap();
    let (first, uids) = call(&[]);
    assert_eq!(first.code, Some(0), "{first}");
    assert!(first.stderr.contains("fetching as keyward"), "{first}");
    assert_eq!(uids, BTreeSet::from([keyward_uid]), "{first}");
    // OUT is still written by root (the users file, 0600 root, was read too).
    assert!(out.join("alice.keys").is_file() && out.join("bob.keys").is_file());
    assert_eq!(owner_uid(&out.join("alice.keys")), 0);
    assert_eq!(nginx.count("/gh/bob-gh.keys"), 1);

    // --fetch-user names another account.
    let (nobody_uid, _) = user_ids("nobody").unwrap();
    nginx.put("gh/alice.keys", format!("{a} alice-changed-{pad}\n"));
    must(Command::new("chmod").args(["-R", "a+rX"]).arg(&nginx.root));
    let (second, uids) = call(&["--fetch-user", "nobody"]);
    assert_eq!(second.code, Some(0), "{second}");
    assert_eq!(uids, BTreeSet::from([nobody_uid]), "{second}");
    assert!(std::fs::read_to_string(out.join("alice.keys"))
        .unwrap()
        .contains("alice-changed-"));

    // An account that does not exist, or root itself: refused before any
    // fetch, OUT as it was.
    let before = std::fs::read(out.join("alice.keys")).unwrap();
    let requests = nginx.total();
    for (user, want) in [
        ("no-such-user-kw", "does not exist"),
        ("root", "must not run as root"),
    ] {
        let v = args(&["--fetch-user", user]);
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        let r = env.kw.run(&refs);
        assert_eq!(r.code, Some(2), "{r}");
        assert!(r.stderr.contains(want), "{want}: {r}");
    }
    assert_eq!(nginx.total(), requests, "no fetch was made");
    assert_eq!(std::fs::read(out.join("alice.keys")).unwrap(), before);

    // Not root: --fetch-user is refused (only root switches accounts).
    let v = args(&["--fetch-user", "nobody"]);
    let refs: Vec<&str> = v.iter().map(String::as_str).collect();
    let r = env.kw.run_as("keyward", &refs);
    assert_eq!(r.code, Some(2), "{r}");
    assert!(r.stderr.contains("only root switches accounts"), "{r}");
}
