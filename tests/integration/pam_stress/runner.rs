//! Running pamtester under libpam_wrapper (retrying the runs libpam_wrapper itself breaks).

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Exit(i32),
    Signal(i32),
    TimedOut,
}

pub struct Run {
    pub status: Status,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// Why runs were repeated: libpam_wrapper itself failed (see [`infra`]).
    pub retries: Vec<&'static str>,
}

/// A worker's private service directory and scratch files.
pub struct Worker {
    pub svc_dir: PathBuf,
    pub svc: String,
    pub out: PathBuf,
    pub err: PathBuf,
}

impl Worker {
    pub fn new(world: &World, k: usize) -> Worker {
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
/// arguments, framed so that its exact return code is visible. The
/// arguments end with `services=SVC` (the module acts only for the services
/// it lists, sshd by default): last, so the position of a bad argument and
/// a count above the bound stay as the case has them.
pub fn service_file(module: &Path, svc: &str, args: &[u8]) -> Vec<u8> {
    let mut args = args.to_vec();
    if !args.is_empty() {
        args.push(b' ');
    }
    args.extend_from_slice(services_arg(svc).as_bytes());
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
        line.extend_from_slice(&args);
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

/// The longest service name [`service_file`] takes: the budget below
/// reserves room for it whatever the pid (a replayed seed must generate
/// the same cases).
const MAX_SVC_LEN: usize = 40;

fn services_arg(svc: &str) -> String {
    assert!(svc.len() <= MAX_SVC_LEN, "service name {svc} too long");
    format!("services={svc}")
}

/// The longest argument text that keeps every service line short enough.
pub fn args_budget(module: &Path) -> usize {
    let prefix = format!(
        "password [success=ok ignore=1 default=die] {} ",
        module.display()
    );
    MAX_LINE - 1 - prefix.len() - " services=".len() - MAX_SVC_LEN
}

pub fn os(bytes: &[u8]) -> OsString {
    OsString::from_vec(bytes.to_vec())
}

pub fn pamtester_args(svc: &str, case: &Case) -> Vec<OsString> {
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
pub fn infra(run: &Run) -> Option<&'static str> {
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
pub fn remove_wrapper_dir(pid: u32) {
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
pub fn run_once(cmd: &mut Command, w: &Worker, timeout: Duration) -> Run {
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
pub fn run_case(
    world: &World,
    w: &Worker,
    case: &Case,
    valgrind: Option<&[OsString]>,
    timeout: Duration,
) -> Run {
    let args = encode_args(&case.pieces);
    fs::write(
        w.svc_dir.join(&w.svc),
        service_file(&world.module, &w.svc, &args),
    )
    .unwrap();
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
