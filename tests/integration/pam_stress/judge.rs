//! Judging one run against the oracle, and describing it when it fails.

use super::*;

/// What pamtester's stderr says.
#[derive(Debug, Default)]
pub struct Seen {
    /// Operations started (`performing operation - …`).
    pub started: usize,
    /// The pam_strerror text of the failed operation, if one failed.
    pub failure: Option<String>,
    /// The module's records: (syslog priority, message).
    pub records: Vec<(u32, String)>,
    /// libpam's own complaints about the service file.
    pub config_errors: Vec<String>,
    /// Lines that are neither libpam_wrapper's nor pamtester's.
    pub stray: Vec<String>,
}

pub fn parse(stderr: &str, svc: &str, case: &Case) -> Seen {
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

pub fn decision_of(msg: &str) -> &str {
    let rest = msg.strip_prefix("decision=").unwrap_or("");
    rest.split(' ').next().unwrap_or("")
}

/// `position=N` of an error record (None when absent or cut off).
pub fn position_of(msg: &str) -> Option<Option<usize>> {
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
pub struct Verdict {
    /// (operation, return code seen)
    pub ops: Vec<(Op, Ret)>,
    pub decisions: Vec<String>,
}

/// Checks a run against the oracle. `valgrind_status`: valgrind's own
/// error exit code (99) is accepted in place of pamtester's (the sample
/// reports valgrind's findings itself).
pub fn judge(
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
pub fn show(bytes: &[u8]) -> String {
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

pub fn describe(world: &World, case: &Case) -> String {
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

pub fn excerpt(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_owned();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &s[..end], s.len())
}
