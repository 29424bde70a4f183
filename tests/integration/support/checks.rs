//! Small assertions and helpers shared by the robustness tests: what a
//! fail-closed answer looks like, the syslog lines a call caused, key sets,
//! and generated tables for docs/ROBUSTNESS.md.

use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use super::rsyslog::LogLine;
use super::{lock, Out, Rsyslog, SshKey};

/// Runs `f`, then returns its result and the keyward syslog lines it caused
/// (waiting for at least `min` of them).
pub fn logged<T>(log: &Rsyslog, min: usize, f: impl FnOnce() -> T) -> (T, Vec<LogLine>) {
    let before = log.lines_of("keyward").len();
    let t = f();
    let lines = log.wait_for_n(before + min, Duration::from_secs(10), |l| {
        l.program == "keyward"
    });
    (t, lines.into_iter().skip(before).collect())
}

pub fn field(l: &LogLine, k: &str) -> String {
    l.field(k).unwrap_or_default()
}

pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

pub fn mats(keys: &[&SshKey]) -> Vec<String> {
    sorted(keys.iter().map(|k| k.public_material()).collect())
}

pub fn body(keys: &[&SshKey]) -> String {
    keys.iter().map(|k| k.public_line() + "\n").collect()
}

/// No panic message, no signal death: the process ended on its own terms.
pub fn no_crash(out: &Out, what: &str) {
    assert!(
        matches!(out.code, Some(0..=2)),
        "{what}: unexpected exit (panic/signal?): {out}"
    );
    assert!(!out.stderr.contains("panicked"), "{what}: panic: {out}");
}

/// A failure that is fail-closed: exit 1, nothing on stdout.
pub fn closed(out: &Out, what: &str) {
    assert_eq!(out.code, Some(1), "{what}: must fail closed: {out}");
    assert_eq!(out.stdout, "", "{what}: fail closed prints nothing: {out}");
    no_crash(out, what);
}

/// Writes a generated section to `$CARGO_TARGET_TMPDIR/robustness/` and,
/// with `KEYWARD_ROBUSTNESS_DOC=1`, into docs/ROBUSTNESS.md between
/// `<!-- BEGIN section -->` and `<!-- END section -->`.
pub fn publish(section: &str, text: &str) {
    static DOC: Mutex<()> = Mutex::new(());
    let _g = lock(&DOC);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("robustness");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("{section}.md")), text).unwrap();
    println!("{text}");
    if std::env::var_os("KEYWARD_ROBUSTNESS_DOC").is_some() {
        let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ROBUSTNESS.md");
        let old = fs::read_to_string(&doc).unwrap();
        let (begin, end) = (
            format!("<!-- BEGIN {section} -->"),
            format!("<!-- END {section} -->"),
        );
        let (Some(b), Some(e)) = (old.find(&begin), old.find(&end)) else {
            panic!("{} has no {begin} … {end} markers", doc.display());
        };
        let new = format!("{}{begin}\n{text}{}", &old[..b], &old[e..]);
        fs::write(&doc, new).unwrap();
    }
}
