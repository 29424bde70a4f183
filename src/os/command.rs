//! Running a helper program (sshd -T, systemctl) with a time limit.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Output of a finished command.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (stdin /dev/null) and kills it after `timeout`.
pub fn run_command(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    // Both pipes are drained on their own threads so a chatty child never
    // blocks on a full pipe while we wait for it.
    let drain = |pipe: Option<Box<dyn Read + Send>>, limit: u64| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(limit).read_to_end(&mut v);
            }
            v
        })
    };
    let t_out = drain(child.stdout.take().map(|p| Box::new(p) as _), 4 << 20);
    let t_err = drain(child.stderr.take().map(|p| Box::new(p) as _), 1 << 20);
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{:?} timed out", cmd.get_program()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let text = |t: std::thread::JoinHandle<Vec<u8>>| {
        String::from_utf8_lossy(&t.join().unwrap_or_default()).into_owned()
    };
    Ok(Output {
        code: status.code(),
        stdout: text(t_out),
        stderr: text(t_err),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_run_with_a_timeout() {
        let o = run_command(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(
            (o.code, o.stdout.as_str(), o.stderr.as_str()),
            (Some(3), "out\n", "err\n")
        );
        assert!(run_command(Command::new("sleep").arg("5"), Duration::from_millis(100)).is_err());
    }
}
