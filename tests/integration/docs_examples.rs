//! The examples in README.md and docs/GUIDE.md stay true: every ```toml block
//! passes `keyward check-config`, every ```sshd block `sshd -t` (and keeps an
//! AuthorizedPrincipalsCommand it sets in `sshd -T`), every ```pam block the
//! doctor's PAM reader and the module's own argument parser. The conventions
//! (what the first line of a TOML block says) are in the HTML comment at the
//! top of docs/GUIDE.md.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pam_keyward::doctor::pam::Blocking;
use pam_keyward::doctor::pam::{analyse_auth, blocking, is_keyward, session_check, stack_check};
use pam_keyward::doctor::pamfile::{flatten, load_include};
use pam_keyward::pam::args::Args;
use pam_keyward::report::Status;

use crate::support::keyward::Keyward;
use crate::support::{ensure_system_user, prepare_sshd_host, run, write_file, TestDir};

/// The documents whose examples are checked.
const DOCS: [&str; 2] = ["README.md", "docs/GUIDE.md"];

/// Tags a fenced block may have; anything else fails, so an example cannot
/// escape its check by a new spelling (```conf, ```pam.d).
const KNOWN_TAGS: [&str; 7] = ["toml", "sshd", "sshd_config", "pam", "sh", "text", "yaml"];

/// What the test's fragments are layered on: the quick start's key source.
const SITE_URLS: &str = "[directory]\nurls = [\"https://keys.example.com/users/{user}.keys\"]\n";

#[derive(Debug)]
struct Block {
    /// `README.md:41`: the document and the line of the opening fence.
    at: String,
    tag: String,
    text: String,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fenced blocks of a Markdown text. A fence may be indented (inside a list
/// item): its indentation is removed from the block's lines.
fn blocks(name: &str, text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(usize, usize, String, Vec<String>)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut open {
            None => {
                if let Some(tag) = trimmed.strip_prefix("```") {
                    open = Some((i + 1, indent, tag.trim().to_owned(), Vec::new()));
                }
            }
            Some((start, ind, tag, lines)) => {
                if trimmed == "```" {
                    out.push(Block {
                        at: format!("{name}:{start}"),
                        tag: tag.clone(),
                        text: lines.join("\n") + "\n",
                    });
                    open = None;
                } else {
                    let cut = line.len() - line.trim_start_matches(' ').len();
                    lines.push(line[cut.min(*ind)..].to_owned());
                }
            }
        }
    }
    assert!(open.is_none(), "{name}: a fenced block is never closed");
    out
}

fn all_blocks() -> Vec<Block> {
    let mut out = Vec::new();
    for doc in DOCS {
        let text = fs::read_to_string(repo().join(doc)).unwrap_or_else(|e| panic!("{doc}: {e}"));
        out.extend(blocks(doc, &text));
    }
    out
}

fn tagged(tags: &[&str]) -> Vec<Block> {
    all_blocks()
        .into_iter()
        .filter(|b| tags.contains(&b.tag.as_str()))
        .collect()
}

/// Fails with every problem at once (one broken example should not hide
/// the next).
fn report(what: &str, checked: usize, problems: Vec<String>) {
    eprintln!("{what}: {checked} example(s) checked");
    assert!(
        problems.is_empty(),
        "{} of {checked} {what} example(s) are wrong:\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

#[test]
fn every_fenced_block_has_a_known_tag() {
    let unknown: Vec<String> = all_blocks()
        .iter()
        .filter(|b| !KNOWN_TAGS.contains(&b.tag.as_str()))
        .map(|b| format!("{}: ```{} (known: {})", b.at, b.tag, KNOWN_TAGS.join(" ")))
        .collect();
    assert!(unknown.is_empty(), "{}", unknown.join("\n"));
}

/// How a TOML example becomes a configuration, from its first line.
#[derive(Debug, PartialEq)]
enum TomlKind {
    Main,
    DropIn,
    Fragment,
}

fn toml_kind(text: &str) -> Result<TomlKind, String> {
    let first = text.lines().next().unwrap_or_default();
    if first.starts_with("# /etc/keyward/keyward.toml.d/") {
        Ok(TomlKind::DropIn)
    } else if first == "# /etc/keyward/keyward.toml"
        || first.starts_with("# /etc/keyward/keyward.toml ")
    {
        Ok(TomlKind::Main)
    } else if first.starts_with("# fragment") {
        Ok(TomlKind::Fragment)
    } else {
        Err(format!(
            "first line {first:?} says neither `# /etc/keyward/keyward.toml`, `# /etc/keyward/keyward.toml.d/NAME.toml` nor `# fragment` (see the comment at the top of docs/GUIDE.md)"
        ))
    }
}

#[test]
fn toml_examples_pass_check_config() {
    let examples = tagged(&["toml"]);
    assert!(
        examples.len() >= 5,
        "too few TOML examples found: {examples:?}"
    );
    let k = Keyward::install();
    let packaged = fs::read_to_string(repo().join("packaging/keyward.toml")).unwrap();
    let mut problems = Vec::new();
    for (n, b) in examples.iter().enumerate() {
        let kind = match toml_kind(&b.text) {
            Ok(kind) => kind,
            Err(e) => {
                problems.push(format!("{}: {e}", b.at));
                continue;
            }
        };
        // Each example in its own root-owned directory: a main file and,
        // for drop-ins and fragments, the packaged main file and its .d.
        let dir = k.dir.join(format!("ex{n}"));
        fs::create_dir(&dir).unwrap();
        let main = dir.join("keyward.toml");
        let mut args = vec![
            "--config".to_owned(),
            main.display().to_string(),
            "check-config".into(),
        ];
        if kind == TomlKind::Main {
            write_file(&main, &b.text, 0o644);
        } else {
            write_file(&main, &packaged, 0o644);
            if kind == TomlKind::Fragment {
                write_file(&dir.join("keyward.toml.d/50-site.toml"), SITE_URLS, 0o644);
            }
            let drop_in = dir.join("example.toml");
            write_file(&drop_in, &b.text, 0o644);
            args.extend(["--drop-in".into(), drop_in.display().to_string()]);
        }
        let mut cmd = Command::new(&k.bin);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir("/")
            .args(&args);
        let out = run(&mut cmd, Duration::from_secs(60));
        if !out.success() {
            problems.push(format!(
                "{} ({kind:?}): keyward {} failed:\n{}{}",
                b.at,
                args.join(" "),
                out.stdout,
                out.stderr
            ));
        }
    }
    report("TOML", examples.len(), problems);
}

/// The lines a private sshd configuration needs besides the example.
fn sshd_minimum(dir: &Path) -> String {
    format!(
        "Port 22\nListenAddress 127.0.0.1\nHostKey /etc/ssh/ssh_host_ed25519_key\nPidFile {}/sshd.pid\n",
        dir.display()
    )
}

/// Whether a configuration line sets `keyword` (sshd keywords are
/// case-insensitive).
fn sets(text: &str, keyword: &str) -> bool {
    text.lines().any(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case(keyword))
    })
}

#[test]
fn sshd_examples_pass_sshd_t() {
    let examples = tagged(&["sshd", "sshd_config"]);
    assert!(
        examples.len() >= 3,
        "too few sshd examples found: {examples:?}"
    );
    prepare_sshd_host();
    ensure_system_user("keyward");
    let dir = TestDir::new("docs-sshd");
    let mut problems = Vec::new();
    for (n, b) in examples.iter().enumerate() {
        let conf = dir.join(format!("ex{n}.conf"));
        write_file(
            &conf,
            format!("{}{}", sshd_minimum(dir.path()), b.text),
            0o644,
        );
        let t = run(
            Command::new("/usr/sbin/sshd")
                .arg("-t")
                .arg("-f")
                .arg(&conf),
            Duration::from_secs(30),
        );
        if !t.success() {
            problems.push(format!(
                "{}: sshd -t failed:\n{}{}",
                b.at, t.stdout, t.stderr
            ));
            continue;
        }
        if sets(&b.text, "AuthorizedPrincipalsCommand") {
            let big_t = run(
                Command::new("/usr/sbin/sshd")
                    .arg("-T")
                    .arg("-f")
                    .arg(&conf),
                Duration::from_secs(30),
            );
            let value = big_t
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix("authorizedprincipalscommand "))
                .unwrap_or("(missing)");
            if !big_t.success() || value == "none" || value == "(missing)" {
                problems.push(format!(
                    "{}: sets AuthorizedPrincipalsCommand, but `sshd -T` shows {value:?} (the pre-9.4 order trap: the principals lines must come before AuthorizedKeysCommand)\n{}",
                    b.at, big_t.stderr
                ));
            }
        }
    }
    report("sshd", examples.len(), problems);
}

/// What is wrong with one PAM example, read as the doctor reads a PAM file.
fn pam_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let kinds = ["auth", "account", "session", "password"];
    let lines: Vec<_> = kinds
        .iter()
        .flat_map(|k| flatten(k, "example", text, &load_include, 2))
        .collect();
    // Every line that is not a comment must be read as a module or an
    // include line: the reader skips what PAM would not understand.
    let read: BTreeSet<usize> = lines.iter().map(|m| m.top_line).collect();
    for (i, raw) in text.lines().enumerate() {
        let content = raw.split('#').next().unwrap_or_default().trim();
        if raw.trim_end().ends_with('\\') {
            problems.push(format!("line {}: no continuation lines in examples", i + 1));
        }
        if !content.is_empty() && !read.contains(&(i + 1)) {
            problems.push(format!(
                "line {}: {raw:?} is not a PAM module or include line",
                i + 1
            ));
        }
    }
    for m in &lines {
        let known = [
            "required",
            "requisite",
            "sufficient",
            "optional",
            "include",
            "substack",
        ];
        if !known.contains(&m.control.as_str()) && !m.control.starts_with('[') {
            problems.push(format!(
                "{}: {:?} is not a PAM control",
                m.origin, m.control
            ));
        }
    }
    for m in lines.iter().filter(|m| is_keyward(m)) {
        if let Err(e) = Args::parse(&m.args) {
            problems.push(format!(
                "{}: pam_keyward refuses its arguments: {e}",
                m.origin
            ));
        }
        if m.kind == "auth" && blocking(&m.control) == Blocking::No {
            problems.push(format!(
                "{}: `{}` does not block: its refusal is ignored",
                m.origin, m.control
            ));
        }
    }
    // An example that includes the distribution's stack is a whole sshd
    // file: it must pass the doctor's own checks of /etc/pam.d/sshd.
    let whole = lines
        .iter()
        .any(|m| m.origin.contains(" via ") || m.module.starts_with("<include "));
    if whole {
        let auth: Vec<_> = lines.iter().filter(|m| m.kind == "auth").cloned().collect();
        let session: Vec<_> = lines
            .iter()
            .filter(|m| m.kind == "session")
            .cloned()
            .collect();
        for check in [
            stack_check("example", &analyse_auth(&auth)),
            session_check("example", &session),
        ] {
            if check.status == Status::Fail {
                problems.push(format!(
                    "doctor's {} check fails: {} (fix: {})",
                    check.id,
                    check.found,
                    check.fix.unwrap_or_default()
                ));
            }
        }
    }
    problems
}

#[test]
fn pam_examples_pass_the_doctors_reader() {
    let examples = tagged(&["pam"]);
    assert!(
        examples.len() >= 3,
        "too few PAM examples found: {examples:?}"
    );
    let mut problems = Vec::new();
    for b in &examples {
        for p in pam_problems(&b.text) {
            problems.push(format!("{}: {p}", b.at));
        }
    }
    report("PAM", examples.len(), problems);
}

#[test]
fn pam_checks_catch_what_pam_would_refuse() {
    // The checker itself: each of these is a broken example.
    for (text, expect) in [
        (
            "auth requisite pam_keyward.so alow_group=x\n",
            "refuses its arguments",
        ),
        ("auth sufficient pam_keyward.so\n", "does not block"),
        ("auth pam_keyward.so allow_group=x\n", "not a PAM control"),
        ("...\n", "not a PAM module"),
        (
            "@include common-auth\nauth requisite pam_keyward.so\n",
            "pam.stack check fails",
        ),
    ] {
        let p = pam_problems(text);
        assert!(p.iter().any(|p| p.contains(expect)), "{text:?}: {p:?}");
    }
    assert!(pam_problems("auth requisite pam_keyward.so allow_group=breakglass\n").is_empty());
}
