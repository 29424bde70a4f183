//! pam_keyward.so under stress (issue 7): thousands of pamtester runs with
//! random module arguments, PAM items, users, `SSH_AUTH_INFO_0` values and
//! operations, plus valgrind on a fixed sample.
//!
//! How a run is set up
//! - pamtester under libpam_wrapper (as in `pam.rs`): each worker thread has
//!   a private service directory holding one service file (libpam_wrapper
//!   copies the whole directory on every pam_start) that names the module
//!   by absolute path. The machine's /etc/pam.d is never read or changed.
//! - Every facility runs pam_keyward first, with a control that makes the
//!   module's exact return code visible to pamtester:
//!   `[success=ok ignore=1 default=die]` followed by `pam_debug.so …=system_err`
//!   and `pam_permit` (the session facility swaps success and ignore). The
//!   code the contract promises (PAM_IGNORE; PAM_SUCCESS for the session
//!   calls) lets the operation pass, the other one of the two fails it with
//!   "System error", and any failure code ends the stack with that code
//!   (`default=die`), which pamtester prints as pam_strerror(3).
//! - The module's log records: without `PAM_WRAPPER_USE_SYSLOG`,
//!   libpam_wrapper prints pam_syslog(3) on stderr
//!   (`PWRAP_<LEVEL>[…] - SYSLOG(<priority>): <message>`; level 2 shows
//!   notice and info too). So this file needs no `/dev/log` and does not
//!   take the PAM log lock of `pam.rs`.
//! - An oracle written from the contract (DESIGN.md "PAM module" and the
//!   README) predicts, for each operation, the return code and the
//!   `decision=` of the one record the module writes (or no record).
//!
//! What every run must satisfy: no death by signal, exit 0 or 1, no hang
//! (killed after [`TIMEOUT`]), no panic message on stderr (a panic caught by
//! catch_unwind is still a bug), no stray output line (a record that let a
//! raw newline through would show up as one), the predicted outcome of every
//! operation, the predicted records in order (with the syslog priority that
//! goes with the decision, and `position=` of the first bad argument).
//!
//! Environment:
//! - `KW_PAM_STRESS_N` invocations (default 2000);
//! - `KW_PAM_STRESS_SEED` replays a run (the seed is printed);
//! - `KW_PAM_STRESS_ONLY=i` runs only case `i` of that seed;
//! - `KW_PAM_STRESS_THREADS` parallel pamtesters (default: CPUs, 2 to 4);
//! - `KW_PAM_STRESS_SHOW_RETRIES=1` prints the runs repeated because of
//!   libpam_wrapper (see [`infra`]).
//!
//! The valgrind sample ([`SAMPLE`], every operation, bad arguments, odd
//! input) runs `valgrind --trace-children=no … pamtester` with
//! `LD_PRELOAD=libpam_wrapper.so` in the environment: valgrind passes the
//! preload on to pamtester (the module's records on stderr prove that the
//! private service was used). Only errors with a stack frame in the
//! module's file count against it; what valgrind finds elsewhere (pamtester,
//! libpam, libpam_wrapper, libc) is reported. A tiny C module that leaks
//! and reads out of bounds is the positive control of that attribution. The
//! test is skipped, with a note, where valgrind is not installed.
//!
//! Limits of the method (libpam 1.5.2): a service-file line longer than
//! 1023 bytes is cut into chunks that libpam parses as lines of their own,
//! so an argument near the module's 4096-byte bound (or a list of more than
//! 256 names) cannot reach a module from a service file; those bounds are
//! covered by the unit tests and the argument fuzz target. `#` starts a
//! comment anywhere on a line, and an argument with a space or tab has to
//! be written `[like this]`; the generator respects all three.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::*;

/// One pamtester run normally takes a few milliseconds.
const TIMEOUT: Duration = Duration::from_secs(10);
/// One pamtester run under valgrind takes one or two seconds.
const VALGRIND_TIMEOUT: Duration = Duration::from_secs(300);
/// libpam reads service-file lines in 1024-byte chunks; stay well below.
const MAX_LINE: usize = 1000;
/// The module's bound on `SSH_AUTH_INFO_0` (bytes) and lines it looks at.
const INFO_MAX_LEN: usize = 64 * 1024;
const INFO_MAX_LINES: usize = 32;
/// The module's bound on the number of arguments.
const MAX_ARGS: usize = 64;

/// The PAM tests of `pam.rs` (in this and in other test processes) hold an
/// flock on this file while they run. The tests here take it too: they
/// keep both CPUs busy, and their thousands of pamtesters would otherwise
/// race those of `pam.rs` for libpam_wrapper's runtime directories (see
/// [`infra`]), where only the runs here know to retry.
const PAM_LOCK: &str = "/run/keyward-tests-pam.lock";

/// Holds the flock on [`PAM_LOCK`] (an flock belongs to the open file, so
/// it also excludes `pam.rs` tests of this same process).
struct PamLock {
    _file: fs::File,
}

impl PamLock {
    fn acquire() -> PamLock {
        let f = fs::File::create(PAM_LOCK).expect(PAM_LOCK);
        // SAFETY: a valid fd; blocks until the holder is done.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {PAM_LOCK}");
        PamLock { _file: f }
    }
}

// ---------------------------------------------------------------------------
// Random numbers (seeded, reproducible)
// ---------------------------------------------------------------------------

/// SplitMix64: small, fast, and the same sequence everywhere.
struct Rng(u64);

impl Rng {
    /// The generator of case `stream` of run `seed`: a case's inputs do not
    /// depend on which thread runs it or in which order.
    fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        assert!(n > 0);
        (self.next() % n as u64) as usize
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }

    /// Random bytes without NUL (nothing with a NUL reaches PAM).
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() % 255) as u8 + 1).collect()
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: not a number")),
        Err(_) => default,
    }
}

/// `KW_PAM_STRESS_SEED` (decimal or 0x-hex), else from the clock.
fn seed() -> u64 {
    match std::env::var("KW_PAM_STRESS_SEED") {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("KW_PAM_STRESS_SEED={v:?}: not a number"))
        }
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            (t.as_nanos() as u64) ^ ((std::process::id() as u64) << 32)
        }
    }
}

// ---------------------------------------------------------------------------
// PAM return codes and operations
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ret {
    Success,
    Ignore,
    AuthErr,
    PermDenied,
    ServiceErr,
}

impl Ret {
    fn name(self) -> &'static str {
        match self {
            Ret::Success => "PAM_SUCCESS",
            Ret::Ignore => "PAM_IGNORE",
            Ret::AuthErr => "PAM_AUTH_ERR",
            Ret::PermDenied => "PAM_PERM_DENIED",
            Ret::ServiceErr => "PAM_SERVICE_ERR",
        }
    }

    /// What pamtester prints when the module returned this and it is not
    /// what the operation lets through (see the file comment: an
    /// unexpected SUCCESS or IGNORE reaches pam_debug's system_err).
    fn message(self) -> &'static str {
        match self {
            Ret::AuthErr => "Authentication failure",
            Ret::PermDenied => "Permission denied",
            Ret::ServiceErr => "Error in service module",
            Ret::Success | Ret::Ignore => "System error",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Authenticate,
    Setcred,
    AcctMgmt,
    OpenSession,
    CloseSession,
    Chauthtok,
}

impl Op {
    const ALL: [Op; 6] = [
        Op::Authenticate,
        Op::Setcred,
        Op::AcctMgmt,
        Op::OpenSession,
        Op::CloseSession,
        Op::Chauthtok,
    ];

    /// The pamtester operation.
    fn word(self) -> &'static str {
        match self {
            Op::Authenticate => "authenticate",
            Op::Setcred => "setcred",
            Op::AcctMgmt => "acct_mgmt",
            Op::OpenSession => "open_session",
            Op::CloseSession => "close_session",
            Op::Chauthtok => "chauthtok",
        }
    }

    /// The code the test stack lets through for this operation.
    fn ok(self) -> Ret {
        match self {
            Op::OpenSession | Op::CloseSession => Ret::Success,
            _ => Ret::Ignore,
        }
    }

    /// pamtester's `op(FLAGS)` choices (the module ignores flags).
    fn flag_choices(self) -> &'static [&'static str] {
        match self {
            Op::Authenticate => &[
                "PAM_SILENT",
                "PAM_DISALLOW_NULL_AUTHTOK",
                "PAM_SILENT|PAM_DISALLOW_NULL_AUTHTOK",
            ],
            Op::Setcred => &[
                "PAM_ESTABLISH_CRED",
                "PAM_REFRESH_CRED",
                "PAM_REINITIALIZE_CRED|PAM_SILENT",
            ],
            Op::Chauthtok => &["PAM_CHANGE_EXPIRED_AUTHTOK", "PAM_SILENT"],
            _ => &["PAM_SILENT"],
        }
    }

    /// The return code seen by pamtester for a failed operation.
    fn ret_of_message(self, msg: &str) -> Option<Ret> {
        match msg {
            "Authentication failure" => Some(Ret::AuthErr),
            "Permission denied" => Some(Ret::PermDenied),
            "Error in service module" => Some(Ret::ServiceErr),
            "System error" => Some(match self.ok() {
                Ret::Success => Ret::Ignore,
                _ => Ret::Success,
            }),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Module arguments
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Kind {
    Flag(&'static str),
    AllowUser(Vec<String>),
    AllowGroup(Vec<String>),
    /// Invalid, and why (for the report).
    Bad(&'static str),
}

/// One module argument: the bytes the module receives, and what it is.
#[derive(Clone, Debug)]
struct Piece {
    raw: Vec<u8>,
    kind: Kind,
}

impl Piece {
    fn flag(name: &'static str) -> Piece {
        Piece {
            raw: name.as_bytes().to_vec(),
            kind: Kind::Flag(name),
        }
    }

    fn allow_user(names: Vec<String>) -> Piece {
        Piece {
            raw: format!("allow_user={}", names.join(",")).into_bytes(),
            kind: Kind::AllowUser(names),
        }
    }

    fn allow_group(names: Vec<String>) -> Piece {
        Piece {
            raw: format!("allow_group={}", names.join(",")).into_bytes(),
            kind: Kind::AllowGroup(names),
        }
    }

    fn bad(raw: impl Into<Vec<u8>>, why: &'static str) -> Piece {
        Piece {
            raw: raw.into(),
            kind: Kind::Bad(why),
        }
    }

    /// The argument as written in the service file: `[…]` when it is empty
    /// or holds a space or tab (libpam's syntax for such arguments).
    fn encoded(&self) -> Vec<u8> {
        let raw = &self.raw;
        assert!(
            !raw.iter().any(|b| matches!(b, b'#' | b'\n' | 0)),
            "generator bug: {} cannot be written in a service file",
            show(raw)
        );
        if raw.is_empty() || raw.iter().any(|b| matches!(b, b' ' | b'\t')) {
            assert!(!raw.contains(&b']'), "generator bug: {}", show(raw));
            let mut v = vec![b'['];
            v.extend_from_slice(raw);
            v.push(b']');
            v
        } else {
            assert!(raw[0] != b'[', "generator bug: {}", show(raw));
            raw.clone()
        }
    }
}

fn encode_args(pieces: &[Piece]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        if i > 0 {
            v.push(b' ');
        }
        v.extend(p.encoded());
    }
    v
}

/// What the arguments mean, per the contract: unknown or malformed
/// arguments (or more than 64) make every callback fail closed.
#[derive(Debug, Default)]
struct ArgsModel {
    /// Some(position of the first bad argument, 1-based; 0 = the whole line)
    bad: Option<usize>,
    users: Vec<String>,
    groups: Vec<String>,
    audit_only: bool,
    require_publickey: bool,
    missing_ok: bool,
}

impl ArgsModel {
    fn of(pieces: &[Piece]) -> ArgsModel {
        let mut m = ArgsModel::default();
        if pieces.len() > MAX_ARGS {
            m.bad = Some(0);
            return m;
        }
        for (i, p) in pieces.iter().enumerate() {
            match &p.kind {
                Kind::Bad(_) => {
                    m.bad = Some(i + 1);
                    return m;
                }
                Kind::Flag("audit_only") => m.audit_only = true,
                Kind::Flag("require_publickey") => m.require_publickey = true,
                Kind::Flag("missing_ok") => m.missing_ok = true,
                Kind::Flag(_) => {}
                Kind::AllowUser(n) => m.users.extend(n.iter().cloned()),
                Kind::AllowGroup(n) => m.groups.extend(n.iter().cloned()),
            }
        }
        m
    }
}

// ---------------------------------------------------------------------------
// The fixture: module, users, groups, keys, input pools
// ---------------------------------------------------------------------------

struct World {
    dir: TestDir,
    /// A root-owned copy of the module (a concurrent build cannot change it).
    module: PathBuf,
    /// Real accounts: root, a user with no extra group, a member of `group`.
    real_users: Vec<String>,
    plain: String,
    member: String,
    group: String,
    /// An existing group nobody is in.
    lonely: String,
    /// The groups (`id -Gn`) of every pool name NSS knows.
    membership: HashMap<String, HashSet<String>>,
    /// User names that are not real accounts: unknown, odd, invalid.
    odd_users: Vec<Vec<u8>>,
    /// Valid names for `allow_user=` / `allow_group=`.
    user_names: Vec<String>,
    group_names: Vec<String>,
    bad_pieces: Vec<Piece>,
    /// Values for rhost, tty and ruser.
    items: Vec<Vec<u8>>,
    /// `TYPE BASE64` of an ed25519, an ECDSA and an RSA key, and of a user
    /// certificate for the ed25519 key.
    ed: String,
    ec: String,
    rsa: String,
    cert: String,
    // Dropped last, users before their groups.
    _users: Vec<TestUser>,
    _groups: Vec<TestGroup>,
}

fn material(line: &str) -> String {
    let v: Vec<&str> = line.split_whitespace().take(2).collect();
    v.join(" ")
}

impl World {
    fn new(name: &str) -> World {
        let dir = TestDir::new(name);
        let module = dir.join("pam_keyward.so");
        must(
            Command::new("install")
                .args(["-m", "644", "-o", "root", "-g", "root"])
                .arg(built_pam_module())
                .arg(&module),
        );
        let group = TestGroup::new();
        let lonely = TestGroup::new();
        let plain = TestUser::new();
        let member = TestUser::builder().group(&group.name).create();

        let ed = SshKey::ed25519(dir.path(), "ed");
        let ec = SshKey::generate(dir.path(), "ec", KeyType::Ecdsa(256));
        let rsa = SshKey::generate(dir.path(), "rsa", KeyType::Rsa(2048));
        let ca = SshKey::ed25519(dir.path(), "ca");
        let cert = ca.sign_user_cert(&ed, "kw stress laptop", &[&plain.name]);
        let cert = material(&fs::read_to_string(cert).unwrap());

        let pid = std::process::id();
        let real_users = vec!["root".to_owned(), plain.name.clone(), member.name.clone()];
        // Valid in allow_user= (and usable as PAM_USER): the accounts, an
        // unknown name, and names that are odd but pass the argument rules.
        let mut user_names = real_users.clone();
        user_names.extend([
            format!("kwnosuch{pid}"),
            "ünïcödé".into(),
            "名前".into(),
            "HOST$".into(),
            "alice.smith@corp.example".into(),
            "%s%n%x".into(),
            "root\u{200b}".into(), // zero-width space: not whitespace, not root
            "Root".into(),
            "a[b".into(),
            "'q'\"dq\"<t>;|*".into(),
            "a\\b".into(),
            "x".repeat(256), // the longest name allowed
        ]);
        let mut odd_users: Vec<Vec<u8>> = user_names[3..]
            .iter()
            .map(|s| s.clone().into_bytes())
            .collect();
        odd_users.extend([
            b"a b".to_vec(),
            b"tab\tuser".to_vec(),
            b"new\nline".to_vec(),
            b"x".repeat(300),
            b"\xff\xfeuser".to_vec(),
            Vec::new(),
            b"'; DROP TABLE users; --".to_vec(),
            b"\x1b[2J\x07".to_vec(),
            b"a:b".to_vec(),
            b"../../etc/passwd".to_vec(),
            b"root ".to_vec(),
            b"root\r".to_vec(),
            "\u{a0}root".as_bytes().to_vec(),
        ]);
        let group_names: Vec<String> = vec![
            group.name.clone(),
            lonely.name.clone(),
            "root".into(),
            plain.name.clone(),  // the user private group: plain's primary group
            member.name.clone(), // member's primary group
            format!("kwgnosuch{pid}"),
            "ünïgrüp".into(),
            "%n%n%n".into(),
            "wheel$".into(),
            "g".repeat(256),
        ];

        let mut membership: HashMap<String, HashSet<String>> = HashMap::new();
        for name in &user_names {
            if name.is_empty() || name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let out = run(
                Command::new("id").args(["-Gn", "--", name]),
                Duration::from_secs(30),
            );
            if out.success() {
                let groups: HashSet<String> =
                    out.stdout.split_whitespace().map(str::to_owned).collect();
                membership.insert(name.clone(), groups);
            }
        }
        for (u, g) in [
            ("root", "root"),
            (plain.name.as_str(), plain.name.as_str()),
            (member.name.as_str(), group.name.as_str()),
            (member.name.as_str(), member.name.as_str()),
        ] {
            assert!(
                membership.get(u).is_some_and(|s| s.contains(g)),
                "{u} must be in {g}: {membership:?}"
            );
        }
        for u in &user_names[3..] {
            assert!(!membership.contains_key(u), "{u:?} exists on this machine");
        }

        let bad_pieces = vec![
            Piece::bad("alow_user=root", "unknown"),
            Piece::bad("nullok", "unknown"),
            Piece::bad("use_first_pass", "unknown"),
            Piece::bad("Debug", "unknown"),
            Piece::bad("audit-only", "unknown"),
            Piece::bad("allow_users=root", "unknown"),
            Piece::bad("ALLOW_USER=root", "unknown"),
            Piece::bad("ünknown", "unknown"),
            Piece::bad("=", "unknown"),
            Piece::bad("=debug", "unknown"),
            Piece::bad("--debug", "unknown"),
            Piece::bad("%s%n%s%n", "unknown"),
            Piece::bad("u".repeat(600), "unknown (long)"),
            Piece::bad("debug=1", "flag with value"),
            Piece::bad("audit_only=yes", "flag with value"),
            Piece::bad("missing_ok=", "flag with value"),
            Piece::bad("require_publickey=true", "flag with value"),
            Piece::bad("allow_user", "needs a value"),
            Piece::bad("allow_group", "needs a value"),
            Piece::bad("allow_user=", "empty name"),
            Piece::bad("allow_group=", "empty name"),
            Piece::bad("allow_user=root,,x", "empty name"),
            Piece::bad("allow_user=root,", "empty name"),
            Piece::bad("allow_group=,root", "empty name"),
            Piece::bad("allow_user=,", "empty name"),
            Piece::bad("allow_user=a b", "space"),
            Piece::bad("allow_user=root,bad name", "space"),
            Piece::bad("allow_group=a\tb", "tab"),
            Piece::bad("allow_user=a\x0bb", "control"),
            Piece::bad("allow_user=a\rb", "control"),
            Piece::bad("allow_user=a\x1bb", "control"),
            Piece::bad("allow_user=a\x7fb", "control"),
            Piece::bad("allow_user=a:b", "':'"),
            Piece::bad("allow_group=a=b", "'='"),
            Piece::bad("allow_user=../x", "'/'"),
            Piece::bad("allow_user=a\u{a0}b", "NBSP"),
            Piece::bad("allow_user=a\u{2028}b", "line separator"),
            Piece::bad("allow_group=a\u{3000}b", "ideographic space"),
            Piece::bad("allow_group=a\u{85}b", "NEL"),
            Piece::bad(b"allow_user=r\xffot".to_vec(), "not UTF-8"),
            Piece::bad(b"debug\xc3".to_vec(), "not UTF-8"),
            Piece::bad(b"\xc0\xaf".to_vec(), "not UTF-8"),
            Piece::bad(b"allow_group=\xed\xa0\x80".to_vec(), "not UTF-8"),
            Piece::bad(format!("allow_user={}", "a".repeat(257)), "name too long"),
            Piece::bad("", "empty argument"),
        ];
        let items: Vec<Vec<u8>> = vec![
            b"192.0.2.7".to_vec(),
            b"2001:db8::7".to_vec(),
            b"host.example.org".to_vec(),
            Vec::new(),
            b"a\nb".to_vec(),
            b"%n%n%n%n%s".to_vec(),
            b"x".repeat(3000),
            b"\xff\xfe\xfd".to_vec(),
            b"\x1b[31mred\x1b[0m".to_vec(),
            b"decision=exempt user=root".to_vec(),
            b"\"q\" \\ back".to_vec(),
            b"pts/7".to_vec(),
            b"/dev/pts/0".to_vec(),
            "ünï".as_bytes().to_vec(),
            b"a=b=c".to_vec(),
        ];
        World {
            module,
            real_users,
            plain: plain.name.clone(),
            member: member.name.clone(),
            group: group.name.clone(),
            lonely: lonely.name.clone(),
            membership,
            odd_users,
            user_names,
            group_names,
            bad_pieces,
            items,
            ed: ed.public_material(),
            ec: ec.public_material(),
            rsa: rsa.public_material(),
            cert,
            _users: vec![plain, member],
            _groups: vec![group, lonely],
            dir,
        }
    }

    /// Whether `user` (PAM_USER as bytes) is exempt under `m`, per the
    /// contract: named in allow_user (exactly), or a member (primary or
    /// supplementary) of an allow_group group; a name that is empty or not
    /// UTF-8 never is.
    fn exempt(&self, m: &ArgsModel, user: &[u8]) -> bool {
        let Ok(user) = std::str::from_utf8(user) else {
            return false;
        };
        if user.is_empty() {
            return false;
        }
        if m.users.iter().any(|u| u == user) {
            return true;
        }
        match self.membership.get(user) {
            Some(groups) => m.groups.iter().any(|g| groups.contains(g)),
            None => false,
        }
    }
}

// ---------------------------------------------------------------------------
// SSH_AUTH_INFO_0
// ---------------------------------------------------------------------------

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = ((c[0] as u32) << 16)
            | ((*c.get(1).unwrap_or(&0) as u32) << 8)
            | (*c.get(2).unwrap_or(&0) as u32);
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

const INFO_KINDS: &[&str] = &[
    "missing",
    "empty",
    "blank-lines",
    "ed25519",
    "ecdsa",
    "rsa",
    "cert",
    "key+password",
    "password+key",
    "two-keys",
    "password",
    "kbd-interactive",
    "hostbased",
    "garbage-base64",
    "random-base64",
    "truncated-cert",
    "cert-blob-as-plain",
    "plain-blob-as-cert",
    "type-no-blob",
    "method-only",
    "crlf",
    "leading-blanks",
    "nbsp-before-method",
    "uppercase-method",
    "submethod",
    "not-utf8",
    "format-string",
    "key-after-32-lines",
    "key-then-40-lines",
    "over-64k",
    "exactly-64k",
    "huge-line",
    "control-chars",
    "random-bytes",
];

/// The value of `SSH_AUTH_INFO_0` for an info kind (None: not set).
fn auth_info(world: &World, kind: &str, r: &mut Rng) -> Option<Vec<u8>> {
    let (ed, ec, rsa, cert) = (&world.ed, &world.ec, &world.rsa, &world.cert);
    let cert_blob = cert.split(' ').nth(1).unwrap();
    let ed_blob = ed.split(' ').nth(1).unwrap();
    let s: String = match kind {
        "missing" => return None,
        "empty" => String::new(),
        "blank-lines" => "\n\n  \r\n\t\n".into(),
        "ed25519" => format!("publickey {ed}\n"),
        "ecdsa" => format!("publickey {ec}\n"),
        "rsa" => format!("publickey {rsa}\n"),
        "cert" => format!("publickey {cert}\n"),
        "key+password" => format!("publickey {ed}\npassword\n"),
        "password+key" => format!("password\npublickey {ec}\n"),
        "two-keys" => format!("publickey {ed}\npublickey {cert}"),
        "password" => "password\n".into(),
        "kbd-interactive" => "keyboard-interactive/pam\n".into(),
        "hostbased" => format!("hostbased {ed}\n"),
        "garbage-base64" => "publickey ssh-ed25519 AAAA!!!!not*base64\n".into(),
        "random-base64" => {
            let n = 1 + r.below(300);
            let data = r.bytes(n);
            let ty = r.pick(&[
                "ssh-ed25519",
                "ssh-rsa",
                "ecdsa-sha2-nistp256",
                "ssh-ed25519-cert-v01@openssh.com",
                "ssh-rsa-cert-v01@openssh.com",
                "sk-ssh-ed25519@openssh.com",
            ]);
            format!("publickey {ty} {}\n", base64(&data))
        }
        "truncated-cert" => format!(
            "publickey ssh-ed25519-cert-v01@openssh.com {}\n",
            &cert_blob[..cert_blob.len() / 2]
        ),
        "cert-blob-as-plain" => format!("publickey ssh-ed25519 {cert_blob}\n"),
        "plain-blob-as-cert" => format!("publickey ssh-ed25519-cert-v01@openssh.com {ed_blob}\n"),
        "type-no-blob" => "publickey ssh-ed25519\n".into(),
        "method-only" => "publickey\n".into(),
        "crlf" => format!("publickey {ed}\r\npassword\r\n"),
        "leading-blanks" => format!("  \t publickey {ed}\n"),
        "nbsp-before-method" => format!("\u{a0}publickey {ed}\n"),
        "uppercase-method" => format!("PUBLICKEY {ed}\n"),
        "submethod" => format!("publickey/x {ed}\n"),
        "not-utf8" => {
            let mut v = b"publickey \xff\xfe \xfd\xfc\n".to_vec();
            v.extend_from_slice(b"password\xc3\n");
            return Some(v);
        }
        "format-string" => "publickey %n%n%s%s %x%x%n\n".into(),
        "key-after-32-lines" => format!("{}publickey {ed}\n", "password\n".repeat(40)),
        "key-then-40-lines" => format!("publickey {ed}\n{}", "password\n".repeat(40)),
        "over-64k" => format!("publickey {ed}\n{}", "x".repeat(INFO_MAX_LEN)),
        "exactly-64k" => {
            let head = format!("publickey {ed}\n");
            format!("{head}{}", "y".repeat(INFO_MAX_LEN - head.len()))
        }
        "huge-line" => format!("publickey ssh-ed25519 {}\n", "A".repeat(60_000)),
        "control-chars" => "publickey \x1b[31m\x07 \x08\x7f\x01\npassword\x0c\n".into(),
        "random-bytes" => {
            let n = r.below(2000);
            return Some(r.bytes(n));
        }
        other => panic!("unknown info kind {other}"),
    };
    Some(s.into_bytes())
}

/// Whether the value names a `publickey` method with a key that parses, per
/// the contract: lines as sshd writes them (`METHOD[/SUB][ KEYTYPE
/// BASE64]`, CRLF tolerated, blank lines skipped), the first 32 lines,
/// values up to 64 KiB (longer ones are not parsed at all), read as UTF-8
/// (invalid bytes replaced). The word `publickey` alone is not enough: the
/// only parseable keys the generator writes are the world's real ones.
fn has_publickey(world: &World, info: &[u8]) -> bool {
    let real = [&world.ed, &world.ec, &world.rsa, &world.cert];
    let s = String::from_utf8_lossy(info);
    if s.len() > INFO_MAX_LEN {
        return false;
    }
    s.split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .take(INFO_MAX_LINES)
        .any(|l| {
            let mut toks = l.split_ascii_whitespace();
            let method = toks.next().unwrap_or("");
            let key = format!(
                "{} {}",
                toks.next().unwrap_or(""),
                toks.next().unwrap_or("")
            );
            method.split('/').next() == Some("publickey")
                && real
                    .iter()
                    .any(|r| r.split(' ').take(2).collect::<Vec<_>>().join(" ") == key)
        })
}

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Case {
    /// `seed:index` for random cases, a name for fixed ones.
    label: String,
    pieces: Vec<Piece>,
    /// pamtester's user argument (pam_start).
    user: Vec<u8>,
    /// `-I user=…`: replaces PAM_USER after pam_start.
    user_item: Option<Vec<u8>>,
    /// `-I rhost=…`, `-I tty=…`, `-I ruser=…`
    items: Vec<(&'static str, Vec<u8>)>,
    info_kind: &'static str,
    info: Option<Vec<u8>>,
    /// `-E` of a variable the module does not read.
    other_env: bool,
    ops: Vec<(Op, Option<&'static str>)>,
}

impl Case {
    fn effective_user(&self) -> &[u8] {
        self.user_item.as_deref().unwrap_or(&self.user)
    }
}

/// Random arguments; `user` (PAM_USER) is named in them, or one of its
/// groups, more often than chance would have it.
fn gen_pieces(world: &World, r: &mut Rng, budget: usize, user: &[u8]) -> Vec<Piece> {
    let user = std::str::from_utf8(user).unwrap_or("");
    let own_name: Vec<String> = world
        .user_names
        .iter()
        .filter(|n| *n == user)
        .cloned()
        .collect();
    let own_groups: Vec<String> = match world.membership.get(user) {
        Some(g) => world
            .group_names
            .iter()
            .filter(|n| g.contains(*n))
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    if r.percent(5) {
        // More arguments than the module accepts (all of them valid).
        let n = MAX_ARGS + 1 + r.below(6);
        return (0..n)
            .map(|_| Piece::flag(["debug", "audit_only"][r.below(2)]))
            .collect();
    }
    let mut v = Vec::new();
    for _ in 0..r.below(5) {
        let p = match r.below(100) {
            0..=19 => Piece::flag("audit_only"),
            20..=44 => Piece::flag("require_publickey"),
            45..=54 => Piece::flag("missing_ok"),
            55..=64 => Piece::flag("debug"),
            k => {
                let (pool, own) = if k < 83 {
                    (&world.user_names, &own_name)
                } else {
                    (&world.group_names, &own_groups)
                };
                let pool = if !own.is_empty() && r.percent(40) {
                    own
                } else {
                    pool
                };
                let mut names: Vec<String> =
                    (0..1 + r.below(3)).map(|_| r.pick(pool).clone()).collect();
                if r.percent(10) {
                    names.push(names[0].clone()); // a duplicate in the list
                }
                if k < 83 {
                    Piece::allow_user(names)
                } else {
                    Piece::allow_group(names)
                }
            }
        };
        v.push(p);
    }
    if r.percent(35) {
        for _ in 0..1 + r.below(2) {
            let at = r.below(v.len() + 1);
            v.insert(at, r.pick(&world.bad_pieces).clone());
        }
    }
    if !v.is_empty() && r.percent(10) {
        let again = r.pick(&v).clone();
        v.push(again); // a repeated argument
    }
    while encode_args(&v).len() > budget {
        v.pop();
    }
    v
}

fn gen_case(world: &World, seed: u64, index: usize, budget: usize) -> Case {
    let mut r = Rng::new(seed, index as u64);
    let user = if r.percent(55) {
        r.pick(&world.real_users).clone().into_bytes()
    } else {
        r.pick(&world.odd_users).clone()
    };
    let user_item = if r.percent(8) {
        Some(if r.percent(50) {
            r.pick(&world.real_users).clone().into_bytes()
        } else {
            r.pick(&world.odd_users).clone()
        })
    } else {
        None
    };
    let pieces = gen_pieces(world, &mut r, budget, user_item.as_deref().unwrap_or(&user));
    let mut items = Vec::new();
    for name in ["rhost", "tty", "ruser"] {
        if r.percent(60) {
            items.push((name, r.pick(&world.items).clone()));
        }
    }
    let info_kind = if r.percent(20) {
        "missing"
    } else {
        *r.pick(INFO_KINDS)
    };
    let info = auth_info(world, info_kind, &mut r);
    let weighted = [
        Op::Authenticate,
        Op::Authenticate,
        Op::Authenticate,
        Op::OpenSession,
        Op::OpenSession,
        Op::OpenSession,
        Op::Setcred,
        Op::AcctMgmt,
        Op::CloseSession,
        Op::Chauthtok,
    ];
    let ops = (0..1 + r.below(3))
        .map(|_| {
            let op = *r.pick(&weighted);
            let flags = if r.percent(12) {
                Some(*r.pick(op.flag_choices()))
            } else {
                None
            };
            (op, flags)
        })
        .collect();
    Case {
        label: format!("{seed:#x}:{index}"),
        pieces,
        user,
        user_item,
        items,
        info_kind,
        info,
        other_env: r.percent(10),
        ops,
    }
}

// ---------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------

/// What one operation should do: the return code and the `decision=` of
/// the module's record (None: the module logs nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Step {
    op: Op,
    ret: Ret,
    decision: Option<&'static str>,
}

fn expect_op(world: &World, case: &Case, m: &ArgsModel, op: Op) -> Step {
    let step = |ret, decision| Step { op, ret, decision };
    if m.bad.is_some() {
        // Fail closed, except setcred, which must never fail.
        let ret = match op {
            Op::Setcred => Ret::Ignore,
            _ => Ret::ServiceErr,
        };
        return step(ret, Some("error"));
    }
    let exempt = || world.exempt(m, case.effective_user());
    match op {
        Op::Authenticate => {
            if exempt() {
                step(Ret::Ignore, Some("exempt"))
            } else if m.audit_only {
                step(Ret::Ignore, Some("would-block"))
            } else {
                step(Ret::AuthErr, Some("block"))
            }
        }
        Op::OpenSession => {
            let key = case
                .info
                .as_deref()
                .is_some_and(|i| has_publickey(world, i));
            let missing_ok = case.info.is_none() && m.missing_ok;
            if key || !m.require_publickey || missing_ok {
                step(Ret::Success, Some("session"))
            } else if exempt() {
                step(Ret::Success, Some("exempt"))
            } else if m.audit_only {
                step(Ret::Success, Some("would-refuse"))
            } else {
                step(Ret::PermDenied, Some("refuse"))
            }
        }
        Op::CloseSession => step(Ret::Success, None),
        Op::Setcred | Op::AcctMgmt | Op::Chauthtok => step(Ret::Ignore, None),
    }
}

/// The steps pamtester gets through: up to and including the first
/// operation whose code the stack does not let through.
fn expect(world: &World, case: &Case) -> Vec<Step> {
    let m = ArgsModel::of(&case.pieces);
    let mut steps = Vec::new();
    for (op, _) in &case.ops {
        let s = expect_op(world, case, &m, *op);
        steps.push(s);
        if s.ret != op.ok() {
            break;
        }
    }
    steps
}

/// Syslog priorities that go with a decision (err=3, warning=4,
/// notice=5, info=6); auth decisions are warnings when they carry a note
/// (a group that does not exist, a lookup error).
fn priorities(op: Op, decision: &str) -> &'static [u32] {
    match (op, decision) {
        (_, "error") => &[3],
        (Op::OpenSession, "session") => &[6],
        (Op::OpenSession, "refuse") => &[4],
        (Op::OpenSession, _) => &[5],
        _ => &[4, 5],
    }
}

// ---------------------------------------------------------------------------
// Running pamtester
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Exit(i32),
    Signal(i32),
    TimedOut,
}

struct Run {
    status: Status,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    /// Why runs were repeated: libpam_wrapper itself failed (see [`infra`]).
    retries: Vec<&'static str>,
}

/// A worker's private service directory and scratch files.
struct Worker {
    svc_dir: PathBuf,
    svc: String,
    out: PathBuf,
    err: PathBuf,
}

impl Worker {
    fn new(world: &World, k: usize) -> Worker {
        let base = world.dir.subdir(&format!("w{k}"));
        let svc_dir = base.join("svc");
        fs::create_dir_all(&svc_dir).unwrap();
        Worker {
            svc_dir,
            // Unique on the machine: libpam_wrapper runtime directories
            // can be shared by accident (see `infra`).
            svc: format!("kwstress{}w{k}", std::process::id()),
            out: base.join("stdout"),
            err: base.join("stderr"),
        }
    }
}

/// The service file: every facility runs the module with the case's
/// arguments, framed so that its exact return code is visible.
fn service_file(module: &Path, args: &[u8]) -> Vec<u8> {
    let mut text = Vec::new();
    for (facility, control, debug) in [
        (
            "auth",
            "[success=ok ignore=1 default=die]",
            "auth=system_err cred=system_err",
        ),
        (
            "account",
            "[success=ok ignore=1 default=die]",
            "acct=system_err",
        ),
        (
            "password",
            "[success=ok ignore=1 default=die]",
            "prechauthtok=system_err chauthtok=system_err",
        ),
        (
            "session",
            "[success=1 ignore=ok default=die]",
            "open_session=system_err close_session=system_err",
        ),
    ] {
        let mut line = format!("{facility} {control} {} ", module.display()).into_bytes();
        line.extend_from_slice(args);
        assert!(
            line.len() < MAX_LINE,
            "generator bug: service line of {} bytes",
            line.len()
        );
        line.push(b'\n');
        text.extend(line);
        text.extend(format!("{facility} requisite pam_debug.so {debug}\n").into_bytes());
        text.extend(format!("{facility} required pam_permit.so\n").into_bytes());
    }
    text
}

/// The longest argument text that keeps every service line short enough.
fn args_budget(module: &Path) -> usize {
    let prefix = format!(
        "password [success=ok ignore=1 default=die] {} ",
        module.display()
    );
    MAX_LINE - 1 - prefix.len()
}

fn os(bytes: &[u8]) -> OsString {
    OsString::from_vec(bytes.to_vec())
}

fn pamtester_args(svc: &str, case: &Case) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["-v".into()];
    let mut item = |name: &str, value: &[u8]| {
        a.push("-I".into());
        let mut v = format!("{name}=").into_bytes();
        v.extend_from_slice(value);
        a.push(os(&v));
    };
    for (name, value) in &case.items {
        item(name, value);
    }
    if let Some(u) = &case.user_item {
        item("user", u);
    }
    if let Some(info) = &case.info {
        a.push("-E".into());
        let mut v = b"SSH_AUTH_INFO_0=".to_vec();
        v.extend_from_slice(info);
        a.push(os(&v));
    }
    if case.other_env {
        a.push("-E".into());
        a.push("KW_STRESS_OTHER=publickey x".into());
    }
    a.push(svc.into());
    a.push(os(&case.user));
    for (op, flags) in &case.ops {
        match flags {
            Some(f) => a.push(format!("{}({f})", op.word()).into()),
            None => a.push(op.word().into()),
        }
    }
    a
}

/// libpam_wrapper (1.1.4) picks its runtime directory `/tmp/pam.<letter>`
/// with a check-then-mkdir, starting from `pid % 70` and skipping
/// non-alphanumeric letters (so about one pid in five starts at `A` or
/// `a`): two pamtesters that start at the same moment can share one, and
/// the first to exit deletes it under the other. Such runs are repeated
/// (about 0.3 % of them); these are the signs. Each worker's service file
/// has a name of its own, so a shared directory never hands one worker
/// another's arguments.
fn infra(run: &Run) -> Option<&'static str> {
    if !run.stderr.contains("pamtester: invoking pam_start(") && run.status == Status::Exit(1) {
        // libpam_wrapper's constructor gave up before pamtester started:
        // its directory vanished between mkdir and writing the pid file
        // (exit(1) without a word).
        return Some("libpam_wrapper exited before pam_start");
    }
    [
        // the one that found the directory taken
        "Failed to create pam_wrapper config dir",
        "Failed to copy config files",
        // the one whose directory (service file) was deleted under it
        "no modules loaded for",
        "error reading PAM configuration file",
        "failed to initialize handlers",
    ]
    .into_iter()
    .find(|sign| run.stderr.contains(sign))
}

/// Removes the libpam_wrapper runtime directory of a finished pamtester
/// (libpam_wrapper's destructor normally does).
fn remove_wrapper_dir(pid: u32) {
    let Ok(rd) = fs::read_dir("/tmp") else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let is_wrapper = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.len() == 5 && n.starts_with("pam."));
        if is_wrapper && fs::read_to_string(p.join("pid")).ok().as_deref() == Some(&pid.to_string())
        {
            let _ = fs::remove_dir_all(&p);
        }
    }
}

/// Runs `cmd` with stdout and stderr in files (no reader threads), polling
/// for its exit, killing it after `timeout`.
fn run_once(cmd: &mut Command, w: &Worker, timeout: Duration) -> Run {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&w.out).unwrap())
        .stderr(fs::File::create(&w.err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = child.id();
    let mut nap = Duration::from_micros(200);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break match (st.code(), st.signal()) {
                (Some(c), _) => Status::Exit(c),
                (None, Some(s)) => Status::Signal(s),
                (None, None) => unreachable!("exit status without code or signal"),
            };
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break Status::TimedOut;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    // Normally gone already; not after a kill, and not always under
    // valgrind (the directory would stay in /tmp).
    remove_wrapper_dir(pid);
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    Run {
        status,
        stdout: read(&w.out),
        stderr: read(&w.err),
        elapsed,
        retries: Vec::new(),
    }
}

/// Runs one case (under `valgrind` when `prefix` is given).
fn run_case(
    world: &World,
    w: &Worker,
    case: &Case,
    valgrind: Option<&[OsString]>,
    timeout: Duration,
) -> Run {
    let args = encode_args(&case.pieces);
    fs::write(w.svc_dir.join(&w.svc), service_file(&world.module, &args)).unwrap();
    let mut retries = Vec::new();
    loop {
        let mut cmd = match valgrind {
            Some(prefix) => {
                let mut c = Command::new("valgrind");
                c.args(prefix).arg("pamtester");
                c
            }
            None => Command::new("pamtester"),
        };
        cmd.args(pamtester_args(&w.svc, case))
            .env("LD_PRELOAD", "libpam_wrapper.so")
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", &w.svc_dir)
            .env("PAM_WRAPPER_DEBUGLEVEL", "2")
            .env_remove("PAM_WRAPPER_USE_SYSLOG");
        let mut run = run_once(&mut cmd, w, timeout);
        if let Some(why) = infra(&run).filter(|_| retries.len() < 5) {
            retries.push(why);
            if std::env::var_os("KW_PAM_STRESS_SHOW_RETRIES").is_some() {
                eprintln!("retry {}:\n{}", case.label, run.stderr);
            }
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        run.retries = retries;
        return run;
    }
}

// ---------------------------------------------------------------------------
// Judging a run
// ---------------------------------------------------------------------------

/// What pamtester's stderr says.
#[derive(Debug, Default)]
struct Seen {
    /// Operations started (`performing operation - …`).
    started: usize,
    /// The pam_strerror text of the failed operation, if one failed.
    failure: Option<String>,
    /// The module's records: (syslog priority, message).
    records: Vec<(u32, String)>,
    /// libpam's own complaints about the service file.
    config_errors: Vec<String>,
    /// Lines that are neither libpam_wrapper's nor pamtester's.
    stray: Vec<String>,
}

fn parse(stderr: &str, svc: &str, case: &Case) -> Seen {
    // pamtester echoes the user name raw; take that line out first.
    let invoking = format!(
        "pamtester: invoking pam_start({svc}, {}, ...)\n",
        String::from_utf8_lossy(&case.user)
    );
    let stderr = stderr.replacen(&invoking, "", 1);
    let mut seen = Seen::default();
    for line in stderr.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("pamtester: ") {
            if rest.starts_with("performing operation - ") {
                seen.started += 1;
            } else {
                seen.failure = Some(rest.to_owned());
            }
        } else if line.starts_with("PWRAP_") {
            let Some(at) = line.find("] - SYSLOG(") else {
                continue;
            };
            let rest = &line[at + "] - SYSLOG(".len()..];
            let Some((prio, msg)) = rest.split_once("): ") else {
                seen.stray.push(line.to_owned());
                continue;
            };
            let prio: u32 = prio.parse().unwrap_or(99);
            if msg.starts_with("decision=") {
                seen.records.push((prio, msg.to_owned()));
            } else if msg.contains("illegal module")
                || msg.contains("no module name")
                || msg.contains("no control flag")
                || msg.contains("unable to dlopen")
                || msg.contains("bad control")
            {
                seen.config_errors.push(msg.to_owned());
            }
        } else {
            seen.stray.push(line.to_owned());
        }
    }
    seen
}

fn decision_of(msg: &str) -> &str {
    let rest = msg.strip_prefix("decision=").unwrap_or("");
    rest.split(' ').next().unwrap_or("")
}

/// `position=N` of an error record (None when absent or cut off).
fn position_of(msg: &str) -> Option<Option<usize>> {
    if !msg.contains(" ret=PAM_") {
        return None; // cut off by libpam_wrapper's 1 KiB log buffer
    }
    Some(msg.rfind(" position=").map(|i| {
        msg[i + " position=".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap_or(usize::MAX)
    }))
}

/// Per-operation results of a run that passed.
struct Verdict {
    /// (operation, return code seen)
    ops: Vec<(Op, Ret)>,
    decisions: Vec<String>,
}

/// Checks a run against the oracle. `valgrind_status`: valgrind's own
/// error exit code (99) is accepted in place of pamtester's (the sample
/// reports valgrind's findings itself).
fn judge(
    world: &World,
    svc: &str,
    case: &Case,
    run: &Run,
    valgrind: bool,
) -> Result<Verdict, String> {
    match run.status {
        Status::TimedOut => return Err(format!("hung: killed after {:?}", run.elapsed)),
        Status::Signal(s) => return Err(format!("pamtester died of signal {s}")),
        Status::Exit(0 | 1) => {}
        Status::Exit(99) if valgrind => {}
        Status::Exit(c) => return Err(format!("pamtester exited {c} (0 or 1 expected)")),
    }
    if run.stderr.contains("panicked") || run.stdout.contains("panicked") {
        return Err("a panic message on stderr (caught or not, a panic is a bug)".into());
    }
    let seen = parse(&run.stderr, svc, case);
    if !seen.config_errors.is_empty() {
        return Err(format!(
            "libpam rejected the generated service file (a test bug): {:?}",
            seen.config_errors
        ));
    }
    if !seen.stray.is_empty() {
        return Err(format!("unexpected output lines: {:?}", seen.stray));
    }
    let steps = expect(world, case);
    let last = steps.last().expect("at least one operation");
    let want_failure = (last.ret != last.op.ok()).then(|| last.ret.message().to_owned());
    let exit_failed = match run.status {
        Status::Exit(c) if c != 99 => Some(c == 1),
        _ => None,
    };
    let mut problems = Vec::new();
    if seen.started != steps.len() || seen.failure != want_failure {
        problems.push(format!(
            "expected {} operation(s) started and {}, got {} and {}",
            steps.len(),
            want_failure
                .as_deref()
                .map_or("success".to_owned(), |m| format!(
                    "failure {m:?} ({})",
                    last.ret.name()
                )),
            seen.started,
            seen.failure
                .as_deref()
                .map_or("success".to_owned(), |m| format!("failure {m:?}"))
        ));
    }
    if exit_failed.is_some_and(|f| f != want_failure.is_some()) {
        problems.push(format!("exit status {:?} does not match", run.status));
    }
    let want: Vec<(Op, &str)> = steps
        .iter()
        .filter_map(|s| s.decision.map(|d| (s.op, d)))
        .collect();
    let got: Vec<&str> = seen.records.iter().map(|(_, m)| decision_of(m)).collect();
    let want_names: Vec<&str> = want.iter().map(|(_, d)| *d).collect();
    if got != want_names {
        problems.push(format!("expected records {want_names:?}, got {got:?}"));
    } else {
        let bad = ArgsModel::of(&case.pieces).bad;
        for ((op, d), (prio, msg)) in want.iter().zip(&seen.records) {
            if !priorities(*op, d).contains(prio) {
                problems.push(format!("{d} logged with priority {prio}: {msg}"));
            }
            if *d == "error" {
                let want_pos = bad.filter(|p| *p > 0);
                if let Some(pos) = position_of(msg) {
                    if pos != want_pos {
                        problems.push(format!("position {pos:?}, expected {want_pos:?}: {msg}"));
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let ops = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let seen_ret = if i + 1 == steps.len() {
                match &seen.failure {
                    Some(m) => s.op.ret_of_message(m).unwrap_or(s.ret),
                    None => s.op.ok(),
                }
            } else {
                s.op.ok()
            };
            (s.op, seen_ret)
        })
        .collect();
    Ok(Verdict {
        ops,
        decisions: got.iter().map(|s| s.to_string()).collect(),
    })
}

/// Bytes for humans: printable UTF-8 as is, the rest escaped, long values
/// shortened.
fn show(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    let cut = bytes.len() > 120;
    let shown = if cut { &bytes[..80] } else { bytes };
    for chunk in shown.utf8_chunks() {
        for c in chunk.valid().chars() {
            s.extend(c.escape_debug());
        }
        for b in chunk.invalid() {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s.push('"');
    if cut {
        let _ = write!(s, "…({} bytes)", bytes.len());
    }
    s
}

fn describe(world: &World, case: &Case) -> String {
    let args: Vec<String> = case
        .pieces
        .iter()
        .map(|p| match &p.kind {
            Kind::Bad(why) => format!("{} [bad: {why}]", show(&p.raw)),
            _ => show(&p.raw),
        })
        .collect();
    let ops: Vec<String> = case
        .ops
        .iter()
        .map(|(op, f)| match f {
            Some(f) => format!("{}({f})", op.word()),
            None => op.word().to_owned(),
        })
        .collect();
    let items: Vec<String> = case
        .items
        .iter()
        .map(|(k, v)| format!("{k}={}", show(v)))
        .collect();
    let steps: Vec<String> = expect(world, case)
        .iter()
        .map(|s| {
            format!(
                "{}→{}/{}",
                s.op.word(),
                s.ret.name(),
                s.decision.unwrap_or("-")
            )
        })
        .collect();
    format!(
        "case {}\n  args ({}): {}\n  user: {}{}\n  items: {}\n  SSH_AUTH_INFO_0 ({}): {}\n  ops: {}\n  expected: {}",
        case.label,
        case.pieces.len(),
        args.join(" "),
        show(&case.user),
        case.user_item
            .as_ref()
            .map(|u| format!(" (PAM_USER then set to {})", show(u)))
            .unwrap_or_default(),
        items.join(" "),
        case.info_kind,
        case.info.as_deref().map(show).unwrap_or_else(|| "unset".into()),
        ops.join(" "),
        steps.join(" "),
    )
}

fn excerpt(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_owned();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &s[..end], s.len())
}

// ---------------------------------------------------------------------------
// The stress test
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Stats {
    runs: usize,
    retries: BTreeMap<&'static str, usize>,
    ops: BTreeMap<(Op, Ret), usize>,
    decisions: BTreeMap<String, usize>,
    bad_args: usize,
    info_kinds: BTreeMap<&'static str, usize>,
    busy: Duration,
    slowest: Duration,
}

#[test]
fn pam_stress_random_pamtester_runs() {
    let _lock = PamLock::acquire();
    let n = env_usize("KW_PAM_STRESS_N", 2000);
    let seed = seed();
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = env_usize("KW_PAM_STRESS_THREADS", cpus.clamp(2, 4)).max(1);
    let only = std::env::var("KW_PAM_STRESS_ONLY")
        .ok()
        .map(|v| v.trim().parse::<usize>().expect("KW_PAM_STRESS_ONLY"));
    eprintln!(
        "pam_stress: seed {seed:#x} (replay: KW_PAM_STRESS_SEED={seed:#x}), \
         {n} invocations, {threads} threads"
    );
    let world = World::new("pamstress");
    let budget = args_budget(&world.module);
    let indices: Vec<usize> = match only {
        Some(i) => vec![i],
        None => (0..n).collect(),
    };

    let next = AtomicUsize::new(0);
    let stats = Mutex::new(Stats::default());
    let failures: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for k in 0..threads {
            let (world, next, stats, failures, indices) =
                (&world, &next, &stats, &failures, &indices);
            s.spawn(move || {
                let w = Worker::new(world, k);
                loop {
                    let j = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&i) = indices.get(j) else { break };
                    let case = gen_case(world, seed, i, budget);
                    let run = run_case(world, &w, &case, None, TIMEOUT);
                    let verdict = judge(world, &w.svc, &case, &run, false);
                    let mut st = lock(stats);
                    st.runs += 1;
                    for why in &run.retries {
                        *st.retries.entry(why).or_default() += 1;
                    }
                    st.busy += run.elapsed;
                    st.slowest = st.slowest.max(run.elapsed);
                    *st.info_kinds.entry(case.info_kind).or_default() += 1;
                    if ArgsModel::of(&case.pieces).bad.is_some() {
                        st.bad_args += 1;
                    }
                    match verdict {
                        Ok(v) => {
                            for (op, ret) in v.ops {
                                *st.ops.entry((op, ret)).or_default() += 1;
                            }
                            for d in v.decisions {
                                *st.decisions.entry(d).or_default() += 1;
                            }
                        }
                        Err(why) => {
                            drop(st);
                            let report = format!(
                                "{why}\n{}\n  exit: {:?} after {:?}\n  stderr: {}\n  replay: \
                                 KW_PAM_STRESS_SEED={seed:#x} KW_PAM_STRESS_ONLY={i} \
                                 cargo test --test integration pam_stress_random -- --nocapture",
                                describe(world, &case),
                                run.status,
                                run.elapsed,
                                excerpt(&run.stderr, 3000),
                            );
                            lock(failures).push((i, report));
                        }
                    }
                }
            });
        }
    });
    let wall = started.elapsed();
    let st = stats.into_inner().unwrap();
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|(i, _)| *i);

    let mut table = String::new();
    let _ = writeln!(
        table,
        "pam_stress: {} invocations in {:.1} s wall ({} threads; pamtester {:.1} ms mean, {:.0} ms slowest), \
         {} with bad arguments, {} libpam_wrapper retries, {} failed",
        st.runs,
        wall.as_secs_f64(),
        threads,
        st.busy.as_secs_f64() * 1000.0 / st.runs.max(1) as f64,
        st.slowest.as_secs_f64() * 1000.0,
        st.bad_args,
        st.retries.values().sum::<usize>(),
        failures.len()
    );
    for op in Op::ALL {
        let row: Vec<String> = st
            .ops
            .iter()
            .filter(|((o, _), _)| *o == op)
            .map(|((_, r), c)| format!("{} {c}", r.name()))
            .collect();
        let _ = writeln!(table, "  {:<13} {}", op.word(), row.join(", "));
    }
    if !st.retries.is_empty() {
        let r: Vec<String> = st
            .retries
            .iter()
            .map(|(k, v)| format!("{k:?} {v}"))
            .collect();
        let _ = writeln!(table, "  retried: {}", r.join(", "));
    }
    let d: Vec<String> = st
        .decisions
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(table, "  records: {}", d.join(", "));
    let k: Vec<String> = st
        .info_kinds
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(table, "  SSH_AUTH_INFO_0 kinds: {}", k.join(", "));
    eprint!("{table}");

    if !failures.is_empty() {
        let shown: Vec<&str> = failures.iter().take(8).map(|(_, r)| r.as_str()).collect();
        panic!(
            "{} of {} pamtester runs went wrong (seed {seed:#x}); the first {}:\n\n{}",
            failures.len(),
            st.runs,
            shown.len(),
            shown.join("\n\n")
        );
    }
    if only.is_none() {
        assert_eq!(st.runs, n);
        // The mix covered what it is meant to cover.
        for op in Op::ALL {
            assert!(
                st.ops.keys().any(|(o, _)| *o == op) || n < 200,
                "{} never ran",
                op.word()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// valgrind on a sample
// ---------------------------------------------------------------------------

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One `<error>` of valgrind's XML output.
#[derive(Debug)]
struct VgError {
    kind: String,
    what: String,
    leaked_bytes: u64,
    objs: Vec<String>,
    fns: Vec<String>,
}

fn tag<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let a = s.find(&open)? + open.len();
    let b = s[a..].find(&close)? + a;
    Some(&s[a..b])
}

fn tags<'a>(s: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(a) = rest.find(&open) {
        let from = a + open.len();
        let Some(b) = rest[from..].find(&close) else {
            break;
        };
        out.push(&rest[from..from + b]);
        rest = &rest[from + b + close.len()..];
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn vg_errors(xml: &str) -> Vec<VgError> {
    tags(xml, "error")
        .into_iter()
        .map(|e| VgError {
            kind: tag(e, "kind").unwrap_or("?").to_owned(),
            what: tag(e, "what")
                .or_else(|| tag(e, "text"))
                .unwrap_or("")
                .to_owned(),
            leaked_bytes: tag(e, "leakedbytes")
                .and_then(|b| b.parse().ok())
                .unwrap_or(0),
            objs: tags(e, "obj").into_iter().map(str::to_owned).collect(),
            fns: tags(e, "fn").into_iter().map(unescape).collect(),
        })
        .collect()
}

impl VgError {
    /// Whether a frame of the stack lies in the shared object `so`.
    fn in_object(&self, so: &Path) -> bool {
        let so = so.to_string_lossy();
        self.objs.iter().any(|o| *o == so)
    }

    fn short(&self) -> String {
        let frames: Vec<&str> = self.fns.iter().take(4).map(String::as_str).collect();
        let ours = self
            .fns
            .iter()
            .find(|f| f.contains("pam_keyward") || f.starts_with("pam_sm_"))
            .map_or("none named".to_owned(), |f| format!("{f:?}"));
        format!(
            "{} {:?} at {} …; first module frame: {ours}",
            self.kind,
            unescape(&self.what),
            frames.join(" < ")
        )
    }
}

/// valgrind's arguments (before `pamtester`).
fn valgrind_prefix(xml: &Path) -> Vec<OsString> {
    let mut v: Vec<OsString> = [
        "--trace-children=no",
        "--error-exitcode=99",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        "--show-leak-kinds=definite,indirect,possible",
        // Keep symbols of the module after libpam dlclose()s it at pam_end,
        // so that leaks found at exit still name its frames.
        "--keep-debuginfo=yes",
        "--num-callers=50",
        "--xml=yes",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    let mut f = OsString::from("--xml-file=");
    f.push(xml);
    v.push(f);
    v
}

/// The valgrind sample: (label, arguments, user, `SSH_AUTH_INFO_0` kind,
/// operations). Arguments are space-separated; `{plain}`, `{member}`,
/// `{group}` and `{lonely}` name the fixture's accounts; `!ARG` is a bad
/// argument (`!` alone: an empty one, `!NOT-UTF-8`: `allow_user=r\xffot`);
/// `debug*70` repeats an argument. User `NOT-UTF-8` is `r\xffot`.
#[rustfmt::skip]
const SAMPLE: &[(&str, &str, &str, &str, &str)] = &[
    ("auth block", "", "{plain}", "missing", "authenticate"),
    ("auth exempt by name", "allow_user=root,{plain}", "{plain}", "missing", "authenticate"),
    ("auth exempt by group (NSS)", "allow_group=kwgnosuch,{group}", "{member}", "missing", "authenticate"),
    ("auth audit_only, unknown group", "audit_only allow_group={lonely},nosuch debug", "{plain}", "missing", "authenticate"),
    ("auth bad argument", "debug !alow_user=root", "{plain}", "missing", "authenticate"),
    ("auth argument not UTF-8", "!NOT-UTF-8", "{plain}", "missing", "authenticate"),
    ("auth 70 arguments", "debug*70", "{plain}", "missing", "authenticate"),
    ("auth user not UTF-8", "allow_user=root", "NOT-UTF-8", "missing", "authenticate"),
    ("setcred bad argument", "!nullok", "{plain}", "missing", "setcred"),
    ("acct_mgmt", "require_publickey allow_group={group}", "{member}", "missing", "acct_mgmt"),
    ("acct_mgmt empty argument", "!", "{plain}", "missing", "acct_mgmt"),
    ("session ed25519", "require_publickey", "{plain}", "ed25519", "open_session close_session"),
    ("session certificate", "require_publickey debug", "{plain}", "cert", "open_session"),
    ("session password, then ecdsa", "require_publickey", "{plain}", "password+key", "open_session"),
    ("session rsa", "require_publickey", "{plain}", "rsa", "open_session"),
    ("session password refused", "require_publickey", "{plain}", "password", "open_session"),
    ("session over 64 KiB", "require_publickey", "{plain}", "over-64k", "open_session"),
    ("session garbage base64", "require_publickey", "{plain}", "random-base64", "open_session"),
    ("session truncated certificate", "require_publickey", "{plain}", "truncated-cert", "open_session"),
    ("session not UTF-8", "require_publickey", "{plain}", "not-utf8", "open_session"),
    ("session missing, missing_ok", "require_publickey missing_ok", "{plain}", "missing", "open_session"),
    ("session 40 lines, exempt by group", "require_publickey allow_group={group}", "{member}", "key-after-32-lines", "open_session"),
    ("session bad argument", "require_publickey !allow_group=a:b", "{plain}", "ed25519", "open_session"),
    ("close_session", "", "{plain}", "missing", "close_session"),
    ("chauthtok", "audit_only", "{plain}", "missing", "chauthtok"),
    ("every operation, audit_only", "audit_only require_publickey debug", "{plain}", "password", "all"),
    ("odd user and items", "allow_user=ünïcödé,%s%n%x debug", "ünïcödé", "missing", "authenticate open_session"),
];

fn valgrind_cases(world: &World) -> Vec<Case> {
    let mut r = Rng::new(7, 7);
    let fill = |s: &str| {
        s.replace("{plain}", &world.plain)
            .replace("{member}", &world.member)
            .replace("{group}", &world.group)
            .replace("{lonely}", &world.lonely)
    };
    let names = |list: &str| list.split(',').map(str::to_owned).collect::<Vec<_>>();
    let mut cases = Vec::new();
    for &(label, args, user, info_kind, ops) in SAMPLE {
        let mut pieces = Vec::new();
        for arg in args.split_whitespace() {
            let (arg, times) = match arg.split_once('*') {
                Some((a, n)) => (a, n.parse().unwrap()),
                None => (arg, 1),
            };
            let piece = if let Some(bad) = arg.strip_prefix('!') {
                match bad {
                    "NOT-UTF-8" => Piece::bad(b"allow_user=r\xffot".to_vec(), "sample"),
                    _ => Piece::bad(fill(bad), "sample"),
                }
            } else if let Some(list) = arg.strip_prefix("allow_user=") {
                Piece::allow_user(names(&fill(list)))
            } else if let Some(list) = arg.strip_prefix("allow_group=") {
                Piece::allow_group(names(&fill(list)))
            } else {
                Piece::flag(arg)
            };
            pieces.extend(std::iter::repeat_n(piece, times));
        }
        let ops = match ops {
            "all" => Op::ALL.to_vec(),
            _ => ops
                .split_whitespace()
                .map(|w| *Op::ALL.iter().find(|o| o.word() == w).unwrap())
                .collect(),
        };
        let mut case = Case {
            label: label.to_string(),
            pieces,
            user: match user {
                "NOT-UTF-8" => b"r\xffot".to_vec(),
                u => fill(u).into_bytes(),
            },
            user_item: None,
            items: vec![("rhost", b"192.0.2.7".to_vec()), ("tty", b"ssh".to_vec())],
            info_kind,
            info: auth_info(world, info_kind, &mut r),
            other_env: false,
            ops: ops.into_iter().map(|o| (o, None)).collect(),
        };
        if label.starts_with("odd user") {
            case.items = vec![
                ("rhost", b"a\nb %n%n".to_vec()),
                ("tty", b"\xff\xfe".to_vec()),
                ("ruser", b"x".repeat(3000)),
            ];
        }
        cases.push(case);
    }
    cases
}

/// A C module that leaks 1234 bytes and reads past a heap block: proves
/// that the analysis below finds and attributes such errors (None: no C
/// compiler on this machine).
fn positive_control(world: &World) -> Option<Vec<VgError>> {
    if !have("cc") {
        return None;
    }
    let src = world.dir.write(
        "leak.c",
        "#include <stdlib.h>\n#include <string.h>\nstatic volatile char sink;\n\
         int pam_sm_authenticate(void *h, int f, int c, const char **v) {\n\
           char *p = malloc(1234); memset(p, 1, 1234); p = 0;\n\
           char *q = malloc(16); sink = q[16]; free(q);\n\
           (void)h; (void)f; (void)c; (void)v; (void)p; return 7;\n}\n\
         int pam_sm_setcred(void *h, int f, int c, const char **v) {\n\
           (void)h; (void)f; (void)c; (void)v; return 0;\n}\n",
        0o644,
    );
    let so = world.dir.join("leak.so");
    must(
        Command::new("cc")
            .args(["-shared", "-fPIC", "-g", "-O0", "-o"])
            .arg(&so)
            .arg(&src),
    );
    let w = Worker::new(world, 99);
    fs::write(
        w.svc_dir.join(&w.svc),
        format!("auth required {}\n", so.display()),
    )
    .unwrap();
    let xml = world.dir.join("control.xml");
    let mut cmd = Command::new("valgrind");
    cmd.args(valgrind_prefix(&xml))
        .args(["pamtester", &w.svc, "root", "authenticate"])
        .env("LD_PRELOAD", "libpam_wrapper.so")
        .env("PAM_WRAPPER", "1")
        .env("PAM_WRAPPER_SERVICE_DIR", &w.svc_dir)
        .env_remove("PAM_WRAPPER_USE_SYSLOG");
    let run = run_once(&mut cmd, &w, VALGRIND_TIMEOUT);
    assert_eq!(
        run.status,
        Status::Exit(99),
        "positive control: {}",
        run.stderr
    );
    let errors = vg_errors(&String::from_utf8_lossy(&fs::read(&xml).unwrap()));
    let mine: Vec<&VgError> = errors.iter().filter(|e| e.in_object(&so)).collect();
    assert!(
        mine.iter()
            .any(|e| e.kind == "Leak_DefinitelyLost" && e.leaked_bytes == 1234),
        "positive control: the 1234-byte leak in leak.so was not attributed: {errors:?}"
    );
    assert!(
        mine.iter().any(|e| e.kind == "InvalidRead"),
        "positive control: the invalid read in leak.so was not attributed: {errors:?}"
    );
    Some(errors)
}

#[test]
fn pam_stress_valgrind_sample() {
    if !have("valgrind") {
        eprintln!(
            "SKIPPED pam_stress_valgrind_sample: valgrind is not installed \
             (apt-get install -y valgrind)"
        );
        return;
    }
    let _lock = PamLock::acquire();
    let world = World::new("pamvg");
    match positive_control(&world) {
        Some(e) => {
            eprintln!(
            "pam_stress valgrind: positive control (a leaking C module) found and attributed: {}",
            e.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>().join(", ")
        )
        }
        None => eprintln!("pam_stress valgrind: no C compiler, positive control skipped"),
    }
    let cases = valgrind_cases(&world);
    let threads = 2;
    let next = AtomicUsize::new(0);
    #[allow(clippy::type_complexity)]
    let rows: Mutex<
        Vec<(
            usize,
            String,
            Result<(), String>,
            Vec<VgError>,
            Duration,
            Status,
        )>,
    > = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for k in 0..threads {
            let (world, next, rows, cases) = (&world, &next, &rows, &cases);
            s.spawn(move || {
                let w = Worker::new(world, 100 + k);
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(case) = cases.get(i) else { break };
                    let xml = world.dir.join(format!("vg-{i}.xml"));
                    let prefix = valgrind_prefix(&xml);
                    let run = run_case(world, &w, case, Some(&prefix), VALGRIND_TIMEOUT);
                    let verdict =
                        judge(world, &w.svc, case, &run, true)
                            .map(|_| ())
                            .map_err(|why| {
                                format!(
                                    "{why}\n{}\n  stderr: {}",
                                    describe(world, case),
                                    excerpt(&run.stderr, 3000)
                                )
                            });
                    // Lossy: the XML echoes pamtester's (non-UTF-8) arguments.
                    let errors = vg_errors(&String::from_utf8_lossy(
                        &fs::read(&xml).unwrap_or_default(),
                    ));
                    lock(rows).push((
                        i,
                        case.label.clone(),
                        verdict,
                        errors,
                        run.elapsed,
                        run.status,
                    ));
                }
            });
        }
    });
    let wall = started.elapsed();
    let mut rows = rows.into_inner().unwrap();
    rows.sort_by_key(|r| r.0);

    let module = &world.module;
    let mut report = String::new();
    let mut theirs: BTreeMap<String, usize> = BTreeMap::new();
    let (mut ours_total, mut def_ours, mut def_theirs) = (0usize, 0u64, 0u64);
    let mut problems = Vec::new();
    let _ = writeln!(
        report,
        "pam_stress valgrind: {} runs in {:.1} s wall; per run: definitely lost bytes \
         (pam_keyward / elsewhere), errors (pam_keyward / elsewhere)",
        rows.len(),
        wall.as_secs_f64()
    );
    for (_, label, verdict, errors, elapsed, status) in &rows {
        let (ours, other): (Vec<&VgError>, Vec<&VgError>) =
            errors.iter().partition(|e| e.in_object(module));
        let lost = |v: &[&VgError]| -> u64 {
            v.iter()
                .filter(|e| e.kind == "Leak_DefinitelyLost")
                .map(|e| e.leaked_bytes)
                .sum()
        };
        def_ours += lost(&ours);
        def_theirs += lost(&other);
        ours_total += ours.len();
        for e in &other {
            *theirs.entry(e.kind.clone()).or_default() += 1;
        }
        let _ = writeln!(
            report,
            "  {:<36} lost {}/{} B, errors {}/{}, {:?}, {:.1} s{}",
            label,
            lost(&ours),
            lost(&other),
            ours.len(),
            other.len(),
            status,
            elapsed.as_secs_f64(),
            if verdict.is_ok() {
                ""
            } else {
                "  WRONG OUTCOME"
            }
        );
        for e in &ours {
            problems.push(format!("{label}: in pam_keyward: {}", e.short()));
        }
        if *status == Status::Exit(99) && errors.is_empty() {
            problems.push(format!(
                "{label}: valgrind reported errors (exit 99) that its XML output does not show"
            ));
        }
        if let Err(why) = verdict {
            problems.push(format!("{label}: {why}"));
        }
    }
    let _ = writeln!(
        report,
        "  total: pam_keyward {ours_total} errors, {def_ours} bytes definitely lost; \
         elsewhere (pamtester, libpam, libpam_wrapper, libc) {def_theirs} bytes definitely lost, \
         errors by kind {theirs:?}"
    );
    eprint!("{report}");
    assert_eq!(rows.len(), cases.len());
    assert!(
        problems.is_empty(),
        "valgrind sample: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
