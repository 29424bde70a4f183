//! The security state lives in `[state] dir`, apart from the cache:
//! removing the cache (`systemctl clean --what=cache`, a cache cleaner)
//! keeps every rollback floor, and floors an older version kept under the
//! cache are moved there once, by the first sync.

use std::fs;
use std::time::Duration;

use crate::signed::{header, now, sign};
use crate::state_race::{keys_floor, signed_env};
use crate::support::keyward::{make_cache_dir, state_dir_of};
use crate::support::*;

/// A signed directory on nginx with serial 200 (key `new`) accepted, and
/// serial 100 (key `revoked`, still valid) ready to be replayed.
struct Replay {
    nginx: Nginx,
    env: KeysEnv,
    user: String,
    old: (String, Vec<u8>),
    _keys: TestDir,
}

impl Replay {
    fn new() -> Replay {
        let keys = TestDir::new("statekeys");
        let signer = SshKey::ed25519(keys.path(), "signer");
        let new_key = SshKey::ed25519(keys.path(), "new");
        let revoked = SshKey::ed25519(keys.path(), "revoked");
        let nginx = Nginx::start();
        let env = signed_env(&signer, nginx.users_url());
        let user = keysenv::fake_user();
        let t = now();
        let current = format!(
            "{}{}\n",
            header(&user, 200, t + 3600),
            new_key.public_line()
        );
        let old = format!(
            "{}{}\n",
            header(&user, 100, t + 3600),
            revoked.public_line()
        );
        let old_sig = sign(keys.path(), &signer, "keyward", &old);
        nginx.put_keys(&user, &current);
        nginx.put(
            &format!("users/{user}.keys.sig"),
            sign(keys.path(), &signer, "keyward", &current),
        );
        let r = env.keys(&user, None);
        assert_eq!(r.materials(), vec![new_key.public_material()], "{r}");
        Replay {
            nginx,
            env,
            user,
            old: (old, old_sig),
            _keys: keys,
        }
    }

    /// The mirror replays serial 100; a lookup must refuse it.
    fn replay_is_refused(&self) {
        self.nginx.put_keys(&self.user, &self.old.0);
        self.nginx
            .put(&format!("users/{}.keys.sig", self.user), &self.old.1);
        std::thread::sleep(Duration::from_millis(20));
        let r = self.env.keys(&self.user, None);
        assert_eq!(r.out.stdout, "", "the revoked key must not be served: {r}");
        assert!(
            r.field("reason")
                .unwrap_or_default()
                .contains("serial 100 is lower than the highest accepted serial 200"),
            "{r}"
        );
    }
}

#[test]
fn removing_the_cache_directory_keeps_the_rollback_floor() {
    let r = Replay::new();
    assert!(keys_floor(&r.env, &r.user).is_file(), "the floor is state");
    // What `systemctl clean --what=cache` does: the directory goes, and
    // the unit's CacheDirectory= makes it again, empty.
    fs::remove_dir_all(&r.env.cache).unwrap();
    fs::create_dir_all(&r.env.cache).unwrap();
    must(
        std::process::Command::new("chown")
            .arg("keyward:keyward")
            .arg(&r.env.cache),
    );
    r.replay_is_refused();
}

/// Floors of the old layout (`<cache>/.floor/USER`) are read until the
/// first sync moves them into the state directory; afterwards they are
/// there, the old ones gone, and still refuse the replay.
#[test]
fn the_first_sync_moves_old_floors_into_the_state_directory() {
    let r = Replay::new();
    let floor = keys_floor(&r.env, &r.user);
    let text = fs::read_to_string(&floor).unwrap();
    // As an older keyward left it: under the cache, the state dir empty.
    let state = state_dir_of(&r.env.cache);
    fs::remove_dir_all(&state).unwrap();
    make_cache_dir(&r.env.cache, "keyward");
    let old_dir = r.env.cache.join(".floor");
    fs::create_dir_all(&old_dir).unwrap();
    fs::write(old_dir.join(&r.user), &text).unwrap();
    must(
        std::process::Command::new("chown")
            .arg("-R")
            .arg("keyward:keyward")
            .arg(&old_dir),
    );
    std::fs::remove_file(r.env.entry(&r.user)).unwrap();
    // Before the sync: the old place still counts.
    r.replay_is_refused();
    let out = r.env.kw.run_as("keyward", &["sync"]);
    assert!(out.code.is_some(), "{out}");
    assert!(state.join(".migrated").is_file(), "{out}");
    assert_eq!(
        fs::read_to_string(&floor).unwrap_or_default(),
        text,
        "{out}"
    );
    assert!(!old_dir.exists(), "the old floors are gone: {out}");
    r.replay_is_refused();
}
