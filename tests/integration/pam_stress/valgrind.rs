//! valgrind on a fixed sample, with a leaking C module as the positive control.

use super::*;

pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One `<error>` of valgrind's XML output.
#[derive(Debug)]
pub struct VgError {
    pub kind: String,
    pub what: String,
    pub leaked_bytes: u64,
    pub objs: Vec<String>,
    pub fns: Vec<String>,
}

pub fn tag<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let a = s.find(&open)? + open.len();
    let b = s[a..].find(&close)? + a;
    Some(&s[a..b])
}

pub fn tags<'a>(s: &'a str, name: &str) -> Vec<&'a str> {
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

pub fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

pub fn vg_errors(xml: &str) -> Vec<VgError> {
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
    pub fn in_object(&self, so: &Path) -> bool {
        let so = so.to_string_lossy();
        self.objs.iter().any(|o| *o == so)
    }

    pub fn short(&self) -> String {
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
pub fn valgrind_prefix(xml: &Path) -> Vec<OsString> {
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
pub const SAMPLE: &[(&str, &str, &str, &str, &str)] = &[
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

pub fn valgrind_cases(world: &World) -> Vec<Case> {
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
pub fn positive_control(world: &World) -> Option<Vec<VgError>> {
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
pub fn pam_stress_valgrind_sample() {
    if !have("valgrind") {
        skip(
            "pam_stress_valgrind_sample",
            "valgrind is not installed (apt-get install -y valgrind)",
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
        None => skip(
            "pam_stress_valgrind_sample",
            "no C compiler (cc): the positive control (a leaking C module) did not run",
        ),
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
