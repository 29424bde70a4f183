//! keyward-sync.timer: enabled, active, and the last sync recent and
//! successful. Rules are pure; `probe` asks systemctl.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::os::command::run_command;
use crate::report::Check;
use crate::term::human_age;

pub const TIMER: &str = "keyward-sync.timer";
pub const SERVICE: &str = "keyward-sync.service";

/// What systemctl said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// `systemctl is-enabled` output (`enabled`, `disabled`, `not-found`…).
    pub enabled: String,
    /// `systemctl is-active` output (`active`, `inactive`…).
    pub active: String,
    /// Unix time the service last exited (None: never ran).
    pub last_exit: Option<u64>,
    /// The service's `Result` (`success`, `exit-code`…).
    pub result: String,
}

/// Parses `systemctl show --timestamp=unix -p ExecMainExitTimestamp,Result`.
pub fn parse_show(text: &str) -> (Option<u64>, String) {
    let mut last = None;
    let mut result = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("ExecMainExitTimestamp=") {
            last = v.trim().strip_prefix('@').and_then(|n| n.parse().ok());
        } else if let Some(v) = line.strip_prefix("Result=") {
            result = v.trim().to_owned();
        }
    }
    (last, result)
}

/// The `systemd.timer` and `systemd.last_sync` checks. A sync older than
/// `max_age` means the cache is not being kept warm.
pub fn checks(s: &State, now: u64, max_age: Duration) -> Vec<Check> {
    let mut out = Vec::new();
    match (s.enabled.as_str(), s.active.as_str()) {
        ("enabled" | "enabled-runtime" | "static" | "alias", "active") => out.push(Check::ok(
            "systemd.timer",
            format!("{TIMER} is {} and active", s.enabled),
        )),
        ("not-found", _) | ("", _) => out.push(Check::warn(
            "systemd.timer",
            format!("{TIMER} is not installed: nothing keeps the cache warm, every stale entry costs a login a directory round trip"),
            "install the keyward package (it ships the timer), then systemctl enable --now keyward-sync.timer",
        )),
        (e, a) => out.push(Check::warn(
            "systemd.timer",
            format!("{TIMER} is {e} and {a}: nothing keeps the cache warm"),
            "systemctl enable --now keyward-sync.timer",
        )),
    }
    match s.last_exit {
        None => out.push(Check::warn(
            "systemd.last_sync",
            format!("{SERVICE} never ran"),
            format!("systemctl start {SERVICE} && journalctl -u {SERVICE}"),
        )),
        Some(t) => {
            let age = now.saturating_sub(t);
            if s.result != "success" {
                out.push(Check::warn(
                    "systemd.last_sync",
                    format!(
                        "the last sync ({} ago) ended with result {}",
                        human_age(age),
                        s.result
                    ),
                    format!(
                        "journalctl -u {SERVICE} (the syslog line decision=sync-fail says why)"
                    ),
                ));
            } else if age > max_age.as_secs() {
                out.push(Check::warn(
                    "systemd.last_sync",
                    format!(
                        "the last sync ran {} ago (more than {})",
                        human_age(age),
                        human_age(max_age.as_secs())
                    ),
                    format!("systemctl status {TIMER} {SERVICE}"),
                ));
            } else {
                out.push(Check::ok(
                    "systemd.last_sync",
                    format!("the last sync ran {} ago and succeeded", human_age(age)),
                ));
            }
        }
    }
    out
}

/// Whether systemd is the init system here.
pub fn running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn systemctl(args: &[&str]) -> String {
    run_command(
        Command::new("systemctl").args(args),
        Duration::from_secs(10),
    )
    .map(|o| o.stdout.trim().to_owned())
    .unwrap_or_default()
}

pub fn probe() -> State {
    let (last_exit, result) = parse_show(&systemctl(&[
        "show",
        "--timestamp=unix",
        "-p",
        "ExecMainExitTimestamp,Result",
        SERVICE,
    ]));
    State {
        enabled: systemctl(&["is-enabled", TIMER]),
        active: systemctl(&["is-active", TIMER]),
        last_exit,
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    #[test]
    fn show_output() {
        assert_eq!(
            parse_show("ExecMainExitTimestamp=@1700000000\nResult=success\n"),
            (Some(1_700_000_000), "success".into())
        );
        assert_eq!(
            parse_show("ExecMainExitTimestamp=\nResult=success\n").0,
            None
        );
    }

    #[test]
    fn rules() {
        let hour = Duration::from_secs(3600);
        let good = State {
            enabled: "enabled".into(),
            active: "active".into(),
            last_exit: Some(1000),
            result: "success".into(),
        };
        assert!(checks(&good, 1300, hour)
            .iter()
            .all(|c| c.status == Status::Ok));
        let old = checks(&good, 1000 + 7200, hour);
        assert_eq!(old[1].status, Status::Warn);
        assert!(old[1].found.contains("2h ago"));
        let failed = State {
            result: "exit-code".into(),
            ..good.clone()
        };
        assert!(checks(&failed, 1300, hour)[1].found.contains("exit-code"));
        let disabled = State {
            enabled: "disabled".into(),
            active: "inactive".into(),
            ..good.clone()
        };
        let c = checks(&disabled, 1300, hour);
        assert_eq!(c[0].status, Status::Warn);
        assert_eq!(
            c[0].fix.as_deref(),
            Some("systemctl enable --now keyward-sync.timer")
        );
        let never = State {
            last_exit: None,
            ..good
        };
        assert!(checks(&never, 1300, hour)[1].found.contains("never ran"));
    }
}
