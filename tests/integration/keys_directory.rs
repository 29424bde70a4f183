//! `keyward keys` against a real nginx key directory (and fault servers):
//! caching, conditional requests, mirrors, the time budget, stale serving,
//! fingerprint filtering, policy, file-safety refusals and the one syslog
//! line per invocation.
//!
//! Contract: exit 0 = answered (0..n lines), exit 1 = fail closed with empty
//! stdout, exit 2 = usage error.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::support::fault::dead_url;
use crate::support::*;

/// Keys for a test, in their own directory.
struct Keys {
    dir: TestDir,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            dir: TestDir::new("dirkeys"),
        }
    }

    fn ed(&self, name: &str) -> SshKey {
        SshKey::generate(self.dir.path(), name, KeyType::Ed25519)
    }

    fn kind(&self, name: &str, kind: KeyType) -> SshKey {
        SshKey::generate(self.dir.path(), name, kind)
    }
}

fn body(keys: &[&SshKey]) -> String {
    keys.iter().map(|k| k.public_line() + "\n").collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn expect_keys(r: &Lookup, keys: &[&SshKey]) {
    assert_eq!(r.out.code, Some(0), "{r}");
    assert_eq!(
        sorted(r.materials()),
        sorted(keys.iter().map(|k| k.public_material()).collect()),
        "{r}"
    );
}

fn expect_fail_closed(r: &Lookup) {
    assert_eq!(r.out.code, Some(1), "must fail closed: {r}");
    assert_eq!(r.out.stdout, "", "fail closed prints nothing: {r}");
    assert_eq!(r.decision(), "fail", "{r}");
    assert!(
        r.field("reason").is_some_and(|v| !v.is_empty()),
        "a failure says why: {r}"
    );
    assert!(!r.out.stderr.trim().is_empty(), "reason on stderr too: {r}");
}

fn age(r: &Lookup) -> u64 {
    r.field("age_s")
        .unwrap_or_else(|| panic!("no age_s: {r}"))
        .parse()
        .unwrap()
}

#[test]
fn keys_200_served_cached_and_logged() {
    let keys = Keys::new();
    let (a, b) = (keys.ed("a"), keys.kind("b", KeyType::Ecdsa(256)));
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("5m"));
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a, &b]));

    let r = env.keys(&user, None);
    expect_keys(&r, &[&a, &b]);
    assert_eq!(r.decision(), "serve", "{r}");
    assert_eq!(r.field("source").as_deref(), Some("directory"), "{r}");
    assert_eq!(r.field("keys").as_deref(), Some("2"), "{r}");
    assert_eq!(r.field("served").as_deref(), Some("2"), "{r}");
    assert_eq!(r.field("dropped").as_deref(), Some("0"), "{r}");
    assert_eq!(r.field("fp"), None, "{r}");
    assert!(r.field("ms").is_some() && r.field("age_s").is_some(), "{r}");
    assert_eq!(r.log.facility, "authpriv", "{r}");
    assert_eq!(r.log.program, "keyward", "{r}");
    assert_eq!(nginx.count(&user), 1);
    assert_eq!(nginx.accesses_for(&user)[0].status, 200);

    // the entry is on disk, owned by keyward, not group/world-writable
    let md = fs::metadata(env.entry(&user)).expect("cache entry written");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(Some(md.uid()), user_ids("keyward").map(|(u, _)| u));
    assert_eq!(md.mode() & 0o022, 0, "cache entry mode {:o}", md.mode());

    // fresh cache: answered with no request at all, as root and as keyward
    for _ in 0..3 {
        let r = env.keys(&user, None);
        expect_keys(&r, &[&a, &b]);
        assert_eq!(r.field("source").as_deref(), Some("cache"), "{r}");
    }
    let r = env.keys_as_keyward(&user, Some(&a.fingerprint()));
    assert_eq!(r.field("source").as_deref(), Some("cache"), "{r}");
    assert_eq!(r.decision(), "match", "{r}");
    assert_eq!(
        nginx.count(&user),
        1,
        "fresh cache must not touch the network"
    );
}

#[test]
fn keys_304_with_etag_refreshes_the_entry_age() {
    let keys = Keys::new();
    let a = keys.ed("a");
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("3s"));
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a]));

    let r = env.keys(&user, None);
    expect_keys(&r, &[&a]);
    assert_eq!(nginx.accesses_for(&user)[0].if_none_match, None);

    sleep(Duration::from_millis(3600)); // past ttl
    let r = env.keys(&user, None);
    expect_keys(&r, &[&a]);
    let log = nginx.accesses_for(&user);
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(
        log[1].status, 304,
        "revalidation should be conditional: {log:?}"
    );
    assert!(
        log[1].if_none_match.is_some(),
        "If-None-Match must carry the stored ETag: {log:?}"
    );
    assert_eq!(r.field("source").as_deref(), Some("directory"), "{r}");
    assert_eq!(age(&r), 0, "a 304 resets the age: {r}");

    // age reset: fresh again, no request
    let r = env.keys(&user, None);
    expect_keys(&r, &[&a]);
    assert_eq!(r.field("source").as_deref(), Some("cache"), "{r}");
    assert!(age(&r) <= 2, "{r}");
    assert_eq!(nginx.count(&user), 2);
}

#[test]
fn keys_404_means_no_keys_and_is_remembered() {
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).negative_ttl("30s"));
    let user = fake_user();

    let r = env.keys(&user, None);
    assert_eq!(r.out.code, Some(0), "404 is an answer: {r}");
    assert_eq!(r.out.stdout, "", "{r}");
    assert_eq!(r.decision(), "nokeys", "{r}");
    assert_eq!(r.field("served").as_deref(), Some("0"), "{r}");
    assert_eq!(nginx.accesses_for(&user)[0].status, 404);

    let r = env.keys(
        &user,
        Some("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    );
    assert_eq!(r.out.code, Some(0), "{r}");
    assert_eq!(r.out.stdout, "", "{r}");
    assert_eq!(r.decision(), "nokeys", "{r}");
    assert_eq!(
        nginx.count(&user),
        1,
        "a 404 is remembered for negative_ttl"
    );
}

#[test]
fn keys_500_fails_closed_without_cache() {
    let nginx = Nginx::builder()
        .location("location ^~ /err/ { return 500; }")
        .start();
    let env = KeysEnv::new(|c| c.url(nginx.url("/err/{user}.keys")));
    let user = fake_user();
    let r = env.keys(&user, None);
    expect_fail_closed(&r);
    assert_eq!(nginx.accesses_for(&user)[0].status, 500);
}

#[test]
fn keys_5xx_first_mirror_fails_over_to_second() {
    let keys = Keys::new();
    let a = keys.ed("a");
    let nginx = Nginx::builder()
        .location("location ^~ /err/ { return 503; }")
        .start();
    let env = KeysEnv::new(|c| c.url(nginx.url("/err/{user}.keys")).url(nginx.users_url()));
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a]));
    let r = env.keys(&user, None);
    expect_keys(&r, &[&a]);
    let log = nginx.accesses_for(&user);
    assert_eq!(
        log.iter().map(|a| a.status).collect::<Vec<_>>(),
        vec![503, 200],
        "mirrors tried in order"
    );
}

#[test]
fn keys_dead_first_mirror_fails_over_to_second() {
    let keys = Keys::new();
    let a = keys.ed("a");
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(dead_url()).url(nginx.users_url()).timeout("3s"));
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a]));
    let r = env.keys(&user, Some(&a.fingerprint()));
    expect_keys(&r, &[&a]);
    assert_eq!(r.decision(), "match", "{r}");
    assert_eq!(r.field("source").as_deref(), Some("directory"), "{r}");
    assert_eq!(nginx.count(&user), 1);
}

#[test]
fn keys_black_hole_returns_within_the_budget() {
    let hole = FaultServer::black_hole();
    let env = KeysEnv::new(|c| c.url(hole.users_url()).timeout("2s"));
    let user = fake_user();
    let t = Instant::now();
    let r = env.keys(&user, None);
    let took = t.elapsed();
    expect_fail_closed(&r);
    assert!(hole.connections() >= 1, "the black hole was tried");
    assert!(
        r.out.elapsed < Duration::from_secs(5),
        "budget 2s, keyward took {:?}",
        r.out.elapsed
    );
    let _ = took;
}

#[test]
fn keys_black_hole_all_mirrors_share_one_budget() {
    // Two black holes: the budget is for the whole lookup, not per mirror.
    let h1 = FaultServer::black_hole();
    let h2 = FaultServer::black_hole();
    let env = KeysEnv::new(|c| c.url(h1.users_url()).url(h2.users_url()).timeout("2s"));
    let r = env.keys(&fake_user(), None);
    expect_fail_closed(&r);
    assert!(
        r.out.elapsed < Duration::from_secs(5),
        "budget 2s across all mirrors, keyward took {:?}",
        r.out.elapsed
    );
}

#[test]
fn keys_black_hole_first_mirror_leaves_time_for_the_second() {
    // README: "each mirror gets a fair share of what is left".
    let keys = Keys::new();
    let a = keys.ed("a");
    let hole = FaultServer::black_hole();
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(hole.users_url()).url(nginx.users_url()).timeout("3s"));
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a]));
    let r = env.keys(&user, None);
    expect_keys(&r, &[&a]);
    assert!(r.out.elapsed < Duration::from_secs(6), "{r}");
}

#[test]
fn keys_slow_drip_is_cut_at_the_budget() {
    let keys = Keys::new();
    let a = keys.ed("a");
    let drip = FaultServer::slow_drip(Duration::from_millis(200), &body(&[&a]));
    let env = KeysEnv::new(|c| c.url(drip.users_url()).timeout("2s"));
    let r = env.keys(&fake_user(), None);
    expect_fail_closed(&r);
    assert!(
        r.out.elapsed < Duration::from_secs(5),
        "budget 2s, keyward took {:?}",
        r.out.elapsed
    );
    // cut by the clock, not by the size cap
    let reason = r.field("reason").unwrap_or_default();
    assert!(
        reason.contains("timed out") || reason.contains("timeout"),
        "{r}"
    );
}

#[test]
fn keys_truncated_body_is_not_used() {
    let keys = Keys::new();
    let (a, b) = (keys.ed("a"), keys.ed("b"));
    // The part that arrives is a complete, valid key line: still refused.
    let trunc = FaultServer::truncated(4096, &body(&[&b]));
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(trunc.users_url()).timeout("3s"));
    let user = fake_user();
    let r = env.keys(&user, None);
    expect_fail_closed(&r);
    assert!(trunc.connections() >= 1);

    // with a good second mirror, the truncated one is skipped
    let mut env = env;
    env.reconfigure(|c| KwConfig {
        urls: vec![trunc.users_url(), nginx.users_url()],
        ..c
    });
    nginx.put_keys(&user, &body(&[&a]));
    let r = env.keys(&user, None);
    expect_keys(&r, &[&a]);
}

#[test]
fn keys_oversize_response_is_refused() {
    let keys = Keys::new();
    let a = keys.ed("a");
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).max_bytes(1024));
    let user = fake_user();
    // A valid key followed by padding comments: 8 KiB > max_bytes.
    let mut big = body(&[&a]);
    while big.len() < 8192 {
        big.push_str("# padding padding padding padding padding padding padding\n");
    }
    nginx.put_keys(&user, &big);
    let r = env.keys(&user, None);
    expect_fail_closed(&r);
    assert!(
        !env.entry(&user).exists() || {
            // an entry may exist only if it was not filled with this body
            !fs::read_to_string(env.entry(&user))
                .unwrap_or_default()
                .contains("padding")
        },
        "oversize body must not be cached"
    );
}

#[test]
fn keys_html_garbage_is_unavailable_not_an_empty_answer() {
    let keys = Keys::new();
    let a = keys.ed("a");
    let nginx = Nginx::start();
    let user = fake_user();
    nginx.put(
        &format!("html/{user}.keys"),
        "<!DOCTYPE html>\n<html><head><title>Login</title></head>\n<body>Please sign in</body></html>\n",
    );
    let mut env = KeysEnv::new(|c| c.url(nginx.url("/html/{user}.keys")));
    let r = env.keys(&user, None);
    expect_fail_closed(&r);

    // garbage first, good second: the second answers
    nginx.put_keys(&user, &body(&[&a]));
    env.reconfigure(|c| KwConfig {
        urls: vec![nginx.url("/html/{user}.keys"), nginx.users_url()],
        ..c
    });
    let r = env.keys(&user, None);
    expect_keys(&r, &[&a]);
    assert_eq!(nginx.count(&user), 3, "{:?}", nginx.accesses_for(&user));
}

#[test]
fn keys_redirect_is_not_followed() {
    let keys = Keys::new();
    let a = keys.ed("a");
    let nginx = Nginx::builder()
        .location("location ^~ /moved/ { rewrite ^/moved/(.*)$ /users/$1 redirect; }")
        .start();
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a]));
    let env = KeysEnv::new(|c| c.url(nginx.url("/moved/{user}.keys")));
    let r = env.keys(&user, None);
    expect_fail_closed(&r);
    let log = nginx.accesses_for(&user);
    assert_eq!(log.len(), 1, "the redirect must not be followed: {log:?}");
    assert_eq!(log[0].status, 302);
}

#[test]
fn keys_stale_entry_served_while_down_then_refused_after_max_stale() {
    let keys = Keys::new();
    let a = keys.ed("a");
    let nginx = Nginx::start();
    let mut env = KeysEnv::new(|c| {
        c.url(nginx.users_url())
            .ttl("1s")
            .max_stale("4s")
            .timeout("2s")
    });
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a]));
    let warm = Instant::now();
    let r = env.keys(&user, None);
    expect_keys(&r, &[&a]);

    // every mirror down (connection refused)
    env.reconfigure(|c| KwConfig {
        urls: vec![dead_url(), dead_url()],
        ..c
    });
    sleep(Duration::from_millis(1600).saturating_sub(warm.elapsed()));
    let r = env.keys(&user, Some(&a.fingerprint()));
    expect_keys(&r, &[&a]);
    assert_eq!(r.field("source").as_deref(), Some("stale"), "{r}");
    assert_eq!(r.decision(), "match", "{r}");
    assert!(age(&r) >= 1, "{r}");
    assert!(
        r.log.raw.contains("unavailable")
            || r.field("warning").is_some()
            || r.field("reason").is_some(),
        "serving stale must say why: {r}"
    );

    // past max_stale: fail closed
    sleep(Duration::from_millis(5300).saturating_sub(warm.elapsed()));
    let r = env.keys(&user, Some(&a.fingerprint()));
    expect_fail_closed(&r);
}

#[test]
fn keys_removed_from_directory_stop_being_served_after_ttl() {
    let keys = Keys::new();
    let (a, b) = (keys.ed("a"), keys.ed("b"));
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("2s"));
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a, &b]));
    let r = env.keys(&user, None);
    expect_keys(&r, &[&a, &b]);

    nginx.put_keys(&user, &body(&[&a]));
    sleep(Duration::from_millis(2600));
    let r = env.keys(&user, None);
    expect_keys(&r, &[&a]);
    let r = env.keys(&user, Some(&b.fingerprint()));
    assert_eq!(r.out.code, Some(0), "{r}");
    assert_eq!(r.out.stdout, "", "removed key must not be served: {r}");
    assert_eq!(r.decision(), "nomatch", "{r}");

    // the whole file removed: 404, nothing served
    nginx.remove_keys(&user);
    sleep(Duration::from_millis(2600));
    let r = env.keys(&user, Some(&a.fingerprint()));
    assert_eq!(r.out.code, Some(0), "{r}");
    assert_eq!(r.out.stdout, "", "{r}");
    assert_eq!(r.decision(), "nokeys", "{r}");
}

#[test]
fn keys_fingerprint_filter_keeps_cert_authority_lines() {
    let keys = Keys::new();
    let (a, b, ca) = (keys.ed("a"), keys.ed("b"), keys.ed("ca"));
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()));
    let user = fake_user();
    nginx.put_keys(
        &user,
        &format!(
            "{}{}{}\n",
            body(&[&a]),
            body(&[&b]),
            ca.cert_authority_line()
        ),
    );

    let r = env.keys(&user, Some(&a.fingerprint()));
    expect_keys(&r, &[&a, &ca]);
    assert_eq!(r.decision(), "match", "{r}");
    assert_eq!(r.field("fp"), Some(a.fingerprint()), "{r}");
    assert_eq!(r.field("served").as_deref(), Some("2"), "{r}");
    let ca_line = r
        .out
        .lines()
        .into_iter()
        .find(|l| l.contains(&ca.public_material()))
        .unwrap()
        .to_owned();
    assert!(ca_line.starts_with("cert-authority "), "{r}");

    // unknown fingerprint: only the CA line (sshd may still match a cert)
    let other = keys.ed("other");
    let r = env.keys(&user, Some(&other.fingerprint()));
    expect_keys(&r, &[&ca]);
    assert_eq!(r.decision(), "nomatch", "{r}");

    // a fingerprint in another form: everything
    let md5 = "MD5:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff";
    let r = env.keys(&user, Some(md5));
    expect_keys(&r, &[&a, &b, &ca]);

    // no fingerprint: everything, decision=serve
    let r = env.keys(&user, None);
    expect_keys(&r, &[&a, &b, &ca]);
    assert_eq!(r.decision(), "serve", "{r}");
}

#[test]
fn keys_policy_drops_bad_lines_and_keeps_options_verbatim() {
    let keys = Keys::new();
    let good = keys.ed("good");
    let from = keys.ed("from");
    let cmd = keys.ed("cmd");
    let expired = keys.ed("expired");
    let future = keys.ed("future");
    let small = keys.kind("small", KeyType::Rsa(1024));
    let big = keys.kind("big", KeyType::Rsa(2048));
    let ecdsa = keys.kind("ecdsa", KeyType::Ecdsa(256));
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| {
        let mut c = c.url(nginx.users_url()).min_rsa_bits(2048);
        c.key_types = Some(vec!["ssh-ed25519".into(), "ssh-rsa".into()]);
        c
    });
    let user = fake_user();
    let from_line = format!("from=\"127.0.0.1\" {}", from.public_line());
    let cmd_line = format!(
        "command=\"echo a b\",no-pty,environment=\"X=1 2\" {}",
        cmd.public_line()
    );
    let text = [
        "# a comment".to_owned(),
        String::new(),
        good.public_line(),
        from_line.clone(),
        cmd_line.clone(),
        format!("expiry-time=\"20000101\" {}", expired.public_line()),
        format!("expiry-time=\"29991231\" {}", future.public_line()),
        small.public_line(),
        big.public_line(),
        ecdsa.public_line(),
        good.public_line(),                         // duplicate
        "ssh-ed25519 AAAAthis-is-not-a-key".into(), // invalid
    ]
    .join("\n")
        + "\n";
    nginx.put_keys(&user, &text);

    let r = env.keys(&user, None);
    expect_keys(&r, &[&good, &from, &cmd, &big, &future]);
    assert_eq!(r.field("served").as_deref(), Some("5"), "{r}");
    assert_eq!(
        r.field("dropped").as_deref(),
        Some("5"),
        "expired, RSA 1024, ecdsa (type not allowed), duplicate, invalid: {r}"
    );
    // options byte-for-byte
    let printed = r.out.lines();
    let opt_of = |k: &SshKey| {
        printed
            .iter()
            .find(|l| l.contains(&k.public_material()))
            .map(|l| {
                l[..l.find(&k.public_material()).unwrap()]
                    .trim_end()
                    .to_owned()
            })
            .unwrap()
    };
    assert_eq!(opt_of(&from), "from=\"127.0.0.1\"", "{r}");
    assert_eq!(
        opt_of(&cmd),
        "command=\"echo a b\",no-pty,environment=\"X=1 2\"",
        "{r}"
    );
    assert_eq!(opt_of(&good), "", "{r}");
    assert_eq!(opt_of(&future), "expiry-time=\"29991231\"", "{r}");

    // the small RSA key asked for by fingerprint: nomatch, and the log says why
    let r = env.keys(&user, Some(&small.fingerprint()));
    assert_eq!(r.out.code, Some(0), "{r}");
    assert_eq!(r.out.stdout, "", "{r}");
    assert_eq!(r.decision(), "nomatch", "{r}");
    let reason = r.field("reason").unwrap_or_default();
    assert!(
        reason.contains("1024") || reason.contains("min_rsa_bits"),
        "{r}"
    );
}

#[test]
fn keys_denied_user_gets_nothing_and_no_request() {
    let keys = Keys::new();
    let a = keys.ed("a");
    let nginx = Nginx::start();
    let user = fake_user();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).deny_users(&["root", &user]));
    nginx.put_keys(&user, &body(&[&a]));
    nginx.put_keys("root", &body(&[&a]));
    for u in [user.as_str(), "root"] {
        let r = env.keys(u, Some(&a.fingerprint()));
        assert_eq!(r.out.code, Some(0), "{r}");
        assert_eq!(r.out.stdout, "", "{r}");
        assert_eq!(r.decision(), "deny", "{r}");
        assert!(r.field("reason").is_some(), "{r}");
    }
    assert_eq!(nginx.total(), 0, "{:?}", nginx.accesses());
}

/// `deny_users = ["root"]` denies every uid-0 account, not just the name.
#[test]
fn keys_second_root_account_is_denied_like_root() {
    let keys = Keys::new();
    let a = keys.ed("a");
    let nginx = Nginx::start();
    let toor = TestUser::builder().uid0().create();
    assert_eq!(toor.uid, 0);
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).deny_users(&["root"]));
    nginx.put_keys(&toor.name, &body(&[&a]));
    let r = env.keys(&toor.name, Some(&a.fingerprint()));
    assert_eq!(r.out.code, Some(0), "{r}");
    assert_eq!(r.out.stdout, "", "{r}");
    assert_eq!(r.decision(), "deny", "{r}");
    assert!(
        r.field("reason").unwrap_or_default().contains("uid 0"),
        "{r}"
    );
    assert_eq!(nginx.total(), 0, "{:?}", nginx.accesses());
}

/// sshd's `%U` (`keys %u %f %U`): with no local files the lookup asks NSS
/// nothing (strace: no nsswitch.conf, no passwd), and the uid-0 rule judges
/// the uid sshd passed. Without it, NSS is asked as before.
#[test]
fn keys_uid_from_sshd_skips_nss_and_still_denies_uid_0() {
    let keys = Keys::new();
    let a = keys.ed("a");
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("5m").deny_users(&["root"]));
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a]));
    let fp = a.fingerprint();

    let r = env.keys_with_uid(&user, &fp, "1000");
    expect_keys(&r, &[&a]);
    assert_eq!(r.field("uid").as_deref(), Some("1000"), "{r}");

    // A name NSS does not know, which sshd says is uid 0: denied, unfetched.
    let root_alias = fake_user();
    nginx.put_keys(&root_alias, &body(&[&a]));
    let r = env.keys_with_uid(&root_alias, &fp, "0");
    assert_eq!(r.out.code, Some(0), "{r}");
    assert_eq!(r.out.stdout, "", "{r}");
    assert_eq!(r.decision(), "deny", "{r}");
    assert!(
        r.field("reason").unwrap_or_default().contains("uid 0"),
        "{r}"
    );
    assert_eq!(nginx.count(&root_alias), 0, "{:?}", nginx.accesses());

    // Not a number (e.g. %u where %U belongs): fail closed, say why.
    let r = env.keys_with_uid(&user, &fp, &user);
    assert_eq!(r.out.code, Some(1), "{r}");
    assert_eq!(r.out.stdout, "", "{r}");
    assert!(
        r.field("reason")
            .unwrap_or_default()
            .contains("uid argument"),
        "{r}"
    );

    // What the process opens, with and without the uid (cache hit both).
    let opened = |args: &[&str]| {
        let trace = env.path().join(format!("strace-{}", unique()));
        let mut c = Command::new("strace");
        c.args(["-f", "-qq", "-e", "trace=open,openat", "-o"])
            .arg(&trace)
            .arg("setpriv")
            .args(["--reuid=keyward", "--regid=keyward", "--clear-groups"])
            .arg(&env.kw.bin)
            .arg("--config")
            .arg(&env.kw.config)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir("/");
        let out = run(&mut c, Duration::from_secs(60));
        (out, fs::read_to_string(&trace).unwrap())
    };
    let nss_files = ["/etc/nsswitch.conf", "/etc/passwd"];
    let (out, with_uid) = opened(&["keys", &user, &fp, "1000"]);
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains(&a.public_material()), "{out}");
    let keyward_part = |t: &str| {
        // setpriv itself looks "keyward" up; keyward's part starts at execve.
        t.lines()
            .skip_while(|l| !l.contains(env.kw.config.to_str().unwrap()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let with_uid = keyward_part(&with_uid);
    assert!(!with_uid.is_empty(), "config never opened?");
    for f in nss_files {
        assert!(!with_uid.contains(f), "{f} opened with %U:\n{with_uid}");
    }
    // Without it NSS is asked, and a name it does not know leaves the
    // uid-0 rule without a uid: fail closed, nothing printed.
    let (out, without) = opened(&["keys", &user, &fp]);
    let without = keyward_part(&without);
    assert!(
        nss_files.iter().any(|f| without.contains(f)),
        "no NSS lookup without %U?\n{without}"
    );
    assert_eq!((out.code, out.stdout.as_str()), (Some(1), ""), "{out}");
}

/// The drop to the cache owner refuses an owner whose gid is 0 (its files
/// and the process would keep root's group): fail closed, say why.
#[test]
fn keys_cache_owner_with_gid_0_is_refused() {
    let keys = Keys::new();
    let a = keys.ed("a");
    let nginx = Nginx::start();
    let owner = TestUser::builder().gid0().create();
    assert_eq!(owner.gid, 0);
    let name = owner.name.clone();
    let env = KeysEnv::new(|mut c| {
        c.owner = Some(name);
        c.url(nginx.users_url())
    });
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a]));
    let r = env.keys(&user, None);
    assert_eq!(r.out.code, Some(1), "{r}");
    assert_eq!(r.out.stdout, "", "{r}");
    let reason = r.field("reason").unwrap_or_default();
    assert!(
        reason.contains("gid 0") && reason.contains("unprivileged"),
        "{r}"
    );
    assert_eq!(
        nginx.total(),
        0,
        "nothing fetched as root: {:?}",
        nginx.accesses()
    );
}

#[test]
fn keys_group_writable_cache_entry_fails_closed() {
    let keys = Keys::new();
    let a = keys.ed("a");
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("5m"));
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a]));
    expect_keys(&env.keys(&user, None), &[&a]);

    let entry = env.entry(&user);
    let mode = fs::metadata(&entry).unwrap().permissions().mode() & 0o7777;
    let bad = mode | 0o020;
    chmod(&entry, bad);
    for as_keyward in [false, true] {
        let r = if as_keyward {
            env.keys_as_keyward(&user, Some(&a.fingerprint()))
        } else {
            env.keys(&user, Some(&a.fingerprint()))
        };
        expect_fail_closed(&r);
        let reason = r.field("reason").unwrap();
        assert!(
            reason.contains(&entry.display().to_string()),
            "reason names the file: {r}"
        );
        assert!(
            reason.contains(&format!("{bad:04o}")) || reason.contains(&format!("{bad:o}")),
            "reason names the mode {bad:04o}: {r}"
        );
        assert!(r.out.stderr.contains(&entry.display().to_string()), "{r}");
    }
}

#[test]
fn keys_unsafe_config_fails_closed() {
    let env = KeysEnv::new(|c| c.url(dead_url()));
    let user = fake_user();
    for mode in [0o664, 0o646] {
        chmod(&env.kw.config, mode);
        let out = env.kw.keys(&user, None);
        assert_eq!(out.code, Some(1), "config mode {mode:o}: {out}");
        assert_eq!(out.stdout, "", "{out}");
        let cfg = env.kw.config.display().to_string();
        assert!(out.stderr.contains(&cfg), "stderr names the config: {out}");
        assert!(
            out.stderr.contains(&format!("{mode:04o}"))
                || out.stderr.contains(&format!("{mode:o}")),
            "stderr names the mode: {out}"
        );
    }
    chmod(&env.kw.config, 0o644);
    // owned by someone else than root
    chown_to(&env.kw.config, "keyward");
    let out = env.kw.keys(&user, None);
    assert_eq!(out.code, Some(1), "config owned by keyward: {out}");
    assert_eq!(out.stdout, "", "{out}");
}

#[test]
fn keys_config_unknown_key_is_rejected_with_its_line() {
    let env = KeysEnv::new(|c| c.url(dead_url()));
    let text = env
        .config
        .to_toml()
        .replacen("[cache]\n", "[cache]\nmax_stael = \"1d\"\n", 1);
    env.kw.write_config(&text);
    let out = env.kw.keys(&fake_user(), None);
    assert_eq!(out.code, Some(1), "{out}\n{text}");
    assert_eq!(out.stdout, "", "{out}");
    assert!(out.stderr.contains("max_stael"), "{out}");
    assert!(
        out.stderr.contains("line"),
        "the error names its line: {out}"
    );
}

#[test]
fn keys_usage_errors_exit_2_and_bad_names_fail_closed() {
    let env = KeysEnv::new(|c| c.url(dead_url()));
    for args in [
        &["keys"][..],
        &["keys", "a", "b", "c", "d"],
        &["frobnicate"],
    ] {
        let out = env.kw.run(args);
        assert_eq!(out.code, Some(2), "{args:?}: {out}");
        assert_eq!(out.stdout, "", "{args:?}: {out}");
    }
    // A third argument is sshd's %U: not a number fails closed, logged.
    let out = env.kw.run(&["keys", "a", "b", "c"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stdout, "", "{out}");
    assert!(out.stderr.contains("uid argument"), "{out}");
    for bad in ["../etc/passwd", "a b", "x\ny", ".hidden", &"a".repeat(40)] {
        let out = env.kw.keys(bad, None);
        assert_eq!(out.code, Some(1), "user {bad:?}: {out}");
        assert_eq!(out.stdout, "", "user {bad:?}: {out}");
    }
    // A name that looks like an option is still a login-path call (sshd
    // passes %u as it is): refused by the user-name check, with its log line.
    let r = env.keys("-rf", None);
    assert_eq!(r.out.code, Some(1), "{r}");
    assert_eq!(r.out.stdout, "", "{r}");
    assert_eq!(r.decision(), "fail", "{r}");
    assert!(
        r.field("reason")
            .unwrap_or_default()
            .contains("invalid user name"),
        "{r}"
    );
    // Help and version keep their meaning.
    let out = env.kw.run(&["keys", "--help"]);
    assert_eq!(out.code, Some(0), "{out}");
    let out = env.kw.run(&["keys", "--", "-rf"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stdout, "", "{out}");
    // (The 40-letter name is valid: its lookup found the
    // dead mirror and recorded it in `.health/`, keyward's own state.)
    assert!(
        !fs::read_dir(&env.cache)
            .unwrap()
            .any(|e| e.unwrap().file_name() != ".health"),
        "nothing written to the cache for invalid names"
    );
}

#[test]
fn keys_corrupt_cache_entry_is_never_served() {
    let keys = Keys::new();
    let (a, evil) = (keys.ed("a"), keys.ed("evil"));
    let nginx = Nginx::start();
    let mut env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("5m"));
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a]));
    expect_keys(&env.keys(&user, None), &[&a]);

    // someone appends a key to the entry (keeping owner and mode)
    let entry = env.entry(&user);
    let mut text = fs::read_to_string(&entry).unwrap();
    text.push_str(&evil.public_line());
    text.push('\n');
    fs::write(&entry, text).unwrap();

    // directory reachable: refetched, the injected key is not served
    let r = env.keys(&user, None);
    expect_keys(&r, &[&a]);
    assert_eq!(nginx.count(&user), 2, "a corrupt entry is refetched");

    // directory down and the entry corrupt again: fail closed
    let mut text = fs::read_to_string(&entry).unwrap();
    text.push_str(&evil.public_line());
    text.push('\n');
    fs::write(&entry, text).unwrap();
    env.reconfigure(|c| KwConfig {
        urls: vec![dead_url()],
        ..c
    });
    let r = env.keys(&user, Some(&evil.fingerprint()));
    assert!(
        !r.out.stdout.contains(&evil.public_material()),
        "corrupt entry served: {r}"
    );
    expect_fail_closed(&r);
}

#[test]
fn keys_environment_proxies_are_never_used() {
    let keys = Keys::new();
    let a = keys.ed("a");
    let nginx = Nginx::start();
    let trap = FaultServer::black_hole();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).timeout("2s"));
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a]));
    let mut cmd = env.kw.command(&["keys", &user]);
    let proxy = trap.url("");
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env(var, &proxy);
    }
    cmd.env("no_proxy", "").env("NO_PROXY", "");
    let out = run(&mut cmd, Duration::from_secs(30));
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(materials(&out.stdout), vec![a.public_material()], "{out}");
    assert_eq!(trap.connections(), 0, "the environment's proxy was used");
    assert_eq!(nginx.count(&user), 1);
}

#[test]
fn keys_max_keys_caps_what_is_served() {
    let keys = Keys::new();
    let ks: Vec<SshKey> = (0..4).map(|i| keys.ed(&format!("k{i}"))).collect();
    let nginx = Nginx::start();
    let env = KeysEnv::new(|mut c| {
        c.max_keys = Some(2);
        c.url(nginx.users_url())
    });
    let user = fake_user();
    nginx.put_keys(&user, &body(&ks.iter().collect::<Vec<_>>()));
    let r = env.keys(&user, None);
    assert_eq!(r.out.code, Some(0), "{r}");
    assert_eq!(r.materials().len(), 2, "{r}");
    assert_eq!(r.field("served").as_deref(), Some("2"), "{r}");
    assert_eq!(r.field("dropped").as_deref(), Some("2"), "{r}");
}

#[test]
fn keys_unsafe_cache_directory_fails_closed() {
    let keys = Keys::new();
    let a = keys.ed("a");
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()));
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a]));
    expect_keys(&env.keys(&user, None), &[&a]);
    chmod(&env.cache, 0o770);
    let r = env.keys(&user, Some(&a.fingerprint()));
    expect_fail_closed(&r);
    let reason = r.field("reason").unwrap();
    assert!(
        reason.contains(&env.cache.display().to_string()) && reason.contains("0770"),
        "reason names the directory and its mode: {r}"
    );
    // a cache owned by another account than keyward/root
    chmod(&env.cache, 0o750);
    let stranger = TestUser::new();
    chown_to(&env.cache, &stranger.name);
    let r = env.keys(&user, None);
    expect_fail_closed(&r);
    chown_to(&env.cache, "keyward");
}

#[test]
fn keys_durations_need_a_unit() {
    let env = KeysEnv::new(|c| c.url(dead_url()));
    for (k, bad) in [("ttl", "300"), ("ttl", "5 parsecs"), ("max_stale", "")] {
        let mut cfg = env.config.clone();
        match k {
            "ttl" => cfg.ttl = Some(bad.into()),
            _ => cfg.max_stale = Some(bad.into()),
        }
        env.kw.write_config(&cfg.to_toml());
        let out = env.kw.keys(&fake_user(), None);
        assert_eq!(out.code, Some(1), "{k} = {bad:?}: {out}");
        assert_eq!(out.stdout, "", "{out}");
        assert!(
            out.stderr.contains(k) || out.stderr.contains("line"),
            "the error points at the setting: {out}"
        );
    }
}

#[test]
fn keys_local_files_merge_with_the_directory() {
    let keys = Keys::new();
    let (d, f, both) = (keys.ed("d"), keys.ed("f"), keys.ed("both"));
    let nginx = Nginx::start();
    let env = KeysEnv::new(|mut c| {
        c.files = vec!["%h/.ssh/authorized_keys".into()];
        c.url(nginx.users_url())
    });
    let user = TestUser::new();
    nginx.put_keys(&user.name, &body(&[&d, &both]));
    let ssh = user.home.join(".ssh");
    fs::create_dir_all(&ssh).unwrap();
    let ak = ssh.join("authorized_keys");
    fs::write(&ak, body(&[&f, &both])).unwrap();
    for p in [&ssh, &ak] {
        chown_to(p, &user.name);
    }
    chmod(&ssh, 0o700);
    chmod(&ak, 0o600);

    // as root (files need it); a key in both sources is printed once
    let r = env.keys(&user.name, None);
    expect_keys(&r, &[&d, &f, &both]);
    assert_eq!(r.field("source").as_deref(), Some("files+directory"), "{r}");

    // a group-writable authorized_keys is skipped like sshd skips it; the
    // directory still answers
    chmod(&ak, 0o620);
    let r = env.keys(&user.name, Some(&f.fingerprint()));
    assert_eq!(r.out.code, Some(0), "{r}");
    assert!(
        !r.materials().contains(&f.public_material()),
        "unsafe local file must not be used: {r}"
    );
    assert_eq!(r.decision(), "nomatch", "{r}");
    assert!(
        r.log.raw.contains(&ak.display().to_string()),
        "the skipped file is reported: {r}"
    );
    let r = env.keys(&user.name, Some(&d.fingerprint()));
    expect_keys(&r, &[&d]);
}

#[test]
fn keys_garbage_200_does_not_replace_a_good_cache_entry() {
    // A captive portal or a broken deploy answering 200 with something that
    // is not a key file must not wipe a user's keys.
    let keys = Keys::new();
    let a = keys.ed("a");
    let nginx = Nginx::start();
    let env = KeysEnv::new(|c| c.url(nginx.users_url()).ttl("1s").max_stale("1h"));
    let user = fake_user();
    nginx.put_keys(&user, &body(&[&a]));
    expect_keys(&env.keys(&user, None), &[&a]);

    nginx.put_keys(
        &user,
        "Service temporarily unavailable, please retry later\n",
    );
    sleep(Duration::from_millis(1600));
    let r = env.keys(&user, Some(&a.fingerprint()));
    expect_keys(&r, &[&a]);
    assert_eq!(r.field("source").as_deref(), Some("stale"), "{r}");
    assert_eq!(nginx.count(&user), 2);
    assert!(
        !fs::read_to_string(env.entry(&user))
            .unwrap()
            .contains("temporarily"),
        "garbage must not be cached"
    );
}
