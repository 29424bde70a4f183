//! Guard: the Debian packages that scripts/demo.sh and
//! scripts/test.sh install must cover what the build, the tests and the demo
//! use, so that a new dependency cannot silently break a fresh machine's
//! first run. Each script must stand on its own: a fresh Debian 12 has only
//! the `Priority: required` / `Essential: yes` packages (what debootstrap's
//! minbase installs), plus whatever the script installs and their
//! dependencies.
//!
//! What "used" means here, found from the sources and the built artifacts:
//! - the build: `cc` (rustc links through it, the `cc` crate compiles C with
//!   it), `c++` for the fuzz targets (libFuzzer is C++), and for every shared
//!   library the binaries link (ELF NEEDED, from `ldd`) the link-time
//!   `libX.so` file, whose package is the -dev one (libpam.so: libpam0g-dev);
//! - the tests: every program named as a string literal in a call of
//!   `Command::new` or of a test helper that takes a `program: &str`, every
//!   `lib*.so` a test preloads, every `pam_*.so` a test stack names;
//! - the demo: the programs `demo.sh --print-commands` lists (the demo
//!   checks them itself after installing).
//!
//! Each is resolved to a file on this machine and that file to its package
//! through dpkg's file lists (following symlinks and /usr-merge paths).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const BIN_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];
const LIB_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib",
];
/// Test helpers that run a program named by their first argument. A new
/// helper with a `program: &str` parameter must be added here (checked).
const WRAPPERS: &[&str] = &["Command::new", "must_out", "cmd_out", "account_cmd", "have"];
/// Programs the scripts that the test run uses call directly: test.sh
/// itself, and package.sh (the packaging tests run it).
const SCRIPT_COMMANDS: &[(&str, &str)] = &[
    ("ssh-keygen", "scripts/test.sh"),
    ("pgrep", "scripts/test.sh"),
    ("dpkg-query", "scripts/test.sh"),
    ("gzip", "scripts/package.sh"),
    ("python3", "scripts/package.sh"),
];

#[derive(Default)]
struct Pkg {
    depends: Vec<Vec<String>>,
    base: bool,
}

/// Installed packages as dpkg knows them, and which package owns each file.
struct Dpkg {
    pkgs: HashMap<String, Pkg>,
    /// virtual package → installed packages that provide it
    provides: HashMap<String, Vec<String>>,
    /// normalised path → owning packages
    owners: HashMap<String, Vec<String>>,
}

/// `libc6 (>= 2.34):any` → `libc6`.
fn dep_name(s: &str) -> String {
    let s = s.split('(').next().unwrap_or("").trim();
    s.split(':').next().unwrap_or("").trim().to_owned()
}

/// One path for the /usr-merged and the unmerged spelling of a file.
fn norm(path: &str) -> String {
    for d in ["/bin/", "/sbin/", "/lib/", "/lib64/"] {
        if path.starts_with(d) {
            return format!("/usr{path}");
        }
    }
    path.to_owned()
}

impl Dpkg {
    fn load() -> Dpkg {
        let status = fs::read_to_string("/var/lib/dpkg/status").expect("/var/lib/dpkg/status");
        let mut pkgs = HashMap::new();
        let mut provides: HashMap<String, Vec<String>> = HashMap::new();
        for stanza in status.split("\n\n") {
            let mut f: HashMap<&str, String> = HashMap::new();
            let mut last = "";
            for line in stanza.lines() {
                if line.starts_with([' ', '\t']) {
                    if let Some(v) = f.get_mut(last) {
                        v.push_str(line);
                    }
                } else if let Some((k, v)) = line.split_once(':') {
                    last = k;
                    f.insert(k, v.trim().to_owned());
                }
            }
            let (Some(name), Some(st)) = (f.get("Package"), f.get("Status")) else {
                continue;
            };
            if !st.ends_with(" installed") {
                continue;
            }
            let mut p = Pkg {
                base: f.get("Priority").map(String::as_str) == Some("required")
                    || f.get("Essential").map(String::as_str) == Some("yes"),
                ..Pkg::default()
            };
            for k in ["Pre-Depends", "Depends"] {
                for group in f.get(k).map(String::as_str).unwrap_or("").split(',') {
                    let alts: Vec<String> = group
                        .split('|')
                        .map(dep_name)
                        .filter(|s| !s.is_empty())
                        .collect();
                    if !alts.is_empty() {
                        p.depends.push(alts);
                    }
                }
            }
            for v in f
                .get("Provides")
                .map(String::as_str)
                .unwrap_or("")
                .split(',')
            {
                let v = dep_name(v);
                if !v.is_empty() {
                    provides.entry(v).or_default().push(name.clone());
                }
            }
            pkgs.insert(name.clone(), p);
        }
        let mut owners: HashMap<String, Vec<String>> = HashMap::new();
        for e in fs::read_dir("/var/lib/dpkg/info").unwrap().flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = file.strip_suffix(".list") else {
                continue;
            };
            let pkg = stem.split(':').next().unwrap().to_owned();
            for path in fs::read_to_string(e.path()).unwrap_or_default().lines() {
                owners.entry(norm(path)).or_default().push(pkg.clone());
            }
        }
        Dpkg {
            pkgs,
            provides,
            owners,
        }
    }

    fn installed(&self, name: &str) -> bool {
        self.pkgs.contains_key(name)
    }

    /// What a fresh machine has after installing `roots`: the base packages,
    /// `roots`, and everything they depend on (an alternative group counts
    /// through whichever alternative is installed here).
    fn closure(&self, roots: &[String]) -> HashSet<String> {
        let mut seen = HashSet::new();
        let mut todo: VecDeque<String> = roots.iter().cloned().collect();
        todo.extend(
            self.pkgs
                .iter()
                .filter(|(_, p)| p.base)
                .map(|(n, _)| n.clone()),
        );
        while let Some(n) = todo.pop_front() {
            if !seen.insert(n.clone()) {
                continue;
            }
            let Some(p) = self.pkgs.get(&n) else {
                continue;
            };
            for alts in &p.depends {
                let pick = alts.iter().find_map(|a| {
                    if self.installed(a) {
                        Some(a.clone())
                    } else {
                        self.provides.get(a).and_then(|v| v.first().cloned())
                    }
                });
                if let Some(d) = pick {
                    todo.push_back(d);
                }
            }
        }
        seen
    }

    /// The packages owning `path`, or else the first link on the way to its
    /// target that a package owns (`cc` → /etc/alternatives/cc → gcc). Not
    /// further: libpam.so is libpam0g-dev's even though its target is
    /// libpam0g's.
    fn owners_of(&self, path: &Path) -> BTreeSet<String> {
        let mut cur = lexical(path);
        for _ in 0..20 {
            if let Some(o) = self.owners.get(&norm(&cur.to_string_lossy())) {
                return o.iter().cloned().collect();
            }
            let Ok(target) = fs::read_link(&cur) else {
                break;
            };
            cur = lexical(&cur.parent().unwrap_or(Path::new("/")).join(target));
        }
        BTreeSet::new()
    }
}

/// `path` with `.` and `..` taken out, without following symlinks.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// A thing the build, the tests or the demo use, and where it was found.
struct Use {
    what: String,
    why: String,
    file: Option<PathBuf>,
}

fn find_program(name: &str) -> Option<PathBuf> {
    if name.starts_with('/') {
        return Path::new(name).exists().then(|| PathBuf::from(name));
    }
    BIN_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn find_lib(name: &str) -> Option<PathBuf> {
    LIB_DIRS
        .iter()
        .flat_map(|d| {
            [
                Path::new(d).join(name),
                Path::new(d).join("security").join(name),
            ]
        })
        .find(|p| p.exists())
}

fn program(name: &str, why: &str) -> Use {
    Use {
        what: format!("program `{name}`"),
        why: why.to_owned(),
        file: find_program(name),
    }
}

/// The link-time files of the shared libraries `artifact` links directly
/// (its NEEDED entries).
fn link_libraries(artifact: &Path) -> Vec<Use> {
    let dynamic = must(Command::new("readelf").arg("-d").arg(artifact));
    let mut out = Vec::new();
    for line in dynamic.stdout.lines().filter(|l| l.contains("(NEEDED)")) {
        let Some(soname) = line.split('[').nth(1).and_then(|s| s.split(']').next()) else {
            continue;
        };
        if soname.starts_with("ld-linux") {
            continue;
        }
        let Some(i) = soname.find(".so") else {
            continue;
        };
        let dev = &soname[..i + 3];
        let found = must(Command::new("cc").arg(format!("-print-file-name={dev}")));
        let path = found.stdout.trim();
        out.push(Use {
            what: format!("link-time library {dev}"),
            why: format!("{} links {soname}", artifact.display()),
            file: path.starts_with('/').then(|| PathBuf::from(path)),
        });
    }
    assert!(
        !out.is_empty(),
        "no NEEDED entries in {}",
        artifact.display()
    );
    out
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// String literals following `prefix("` in `text`.
fn literal_args<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    let pat = format!("{prefix}(\"");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&pat) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + pat.len()..];
        // `have(` must not match `behave(`, `Command::new(` is exact anyway.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(end) = rest.find('"') {
            out.push(&rest[..end]);
        }
    }
    out
}

/// Tokens like `libpam_wrapper.so` / `pam_unix.so` in `text`.
fn so_tokens(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices(prefix) {
        if text[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let tok: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        if let Some(stem) = tok.strip_suffix(".so") {
            out.push(format!("{stem}.so"));
        }
    }
    out
}

/// What the tests run and load, found in tests/**/*.rs.
fn test_uses() -> Vec<Use> {
    let mut files = Vec::new();
    rs_files(&Path::new(REPO).join("tests"), &mut files);
    let mut programs: BTreeMap<String, String> = BTreeMap::new();
    let mut libs: BTreeMap<String, String> = BTreeMap::new();
    let mut helpers = Vec::new();
    for f in &files {
        let text = fs::read_to_string(f).unwrap();
        let rel = f.strip_prefix(REPO).unwrap().display().to_string();
        for w in WRAPPERS {
            for p in literal_args(&text, w) {
                programs.entry(p.to_owned()).or_insert_with(|| rel.clone());
            }
        }
        for (i, _) in text.match_indices("(program: &str") {
            let name: String = text[..i]
                .chars()
                .rev()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if text[..i - name.len()].ends_with("fn ") {
                helpers.push((name, rel.clone()));
            }
        }
        for l in so_tokens(&text, "lib")
            .into_iter()
            .chain(so_tokens(&text, "pam_"))
        {
            libs.entry(l).or_insert_with(|| rel.clone());
        }
    }
    for (name, file) in &helpers {
        assert!(
            WRAPPERS.contains(&name.as_str()),
            "{file}: helper {name}(program: &str) runs programs by name: add it to WRAPPERS in \
             tests/integration/packages.rs so that their packages are checked"
        );
    }
    let mut out: Vec<Use> = programs
        .iter()
        .filter(|(p, _)| !p.contains("keyward")) // ours: installed by a packaging test
        .map(|(p, file)| program(p, &format!("{file} runs it")))
        .collect();
    for (l, file) in libs {
        // Ours (the module under test, or a library a test builds itself).
        if l.contains("keyward") || l == "leak.so" {
            continue;
        }
        let found = find_lib(&l);
        if found.is_none() && !l.starts_with("libpam_wrapper") && !l.starts_with("pam_") {
            continue; // a name in a comment or message, not something loaded
        }
        out.push(Use {
            what: format!("library {l}"),
            why: format!("{file} loads it"),
            file: found,
        });
    }
    out
}

fn script_list(script: &str, flag: &str) -> Vec<String> {
    let out = run(
        Command::new("bash")
            .arg(Path::new(REPO).join("scripts").join(script))
            .arg(flag),
        Duration::from_secs(30),
    );
    assert!(out.success(), "bash scripts/{script} {flag}: {out}");
    let list: Vec<String> = out.stdout.split_whitespace().map(str::to_owned).collect();
    assert!(!list.is_empty(), "scripts/{script} {flag} printed nothing");
    list
}

/// Every use must come from a package in `closure`; returns what does not.
fn uncovered(dpkg: &Dpkg, closure: &HashSet<String>, uses: &[Use], script: &str) -> Vec<String> {
    let mut bad = Vec::new();
    for u in uses {
        let Some(file) = &u.file else {
            bad.push(format!(
                "{} ({}) is not on this machine, so no package of scripts/{script} provides it: \
                 add the package that does",
                u.what, u.why
            ));
            continue;
        };
        let owners = dpkg.owners_of(file);
        if owners.iter().any(|o| o == "keyward") {
            continue; // installed by a packaging test: our own
        }
        if owners.is_empty() {
            bad.push(format!(
                "{} ({}) is {}, which no Debian package owns: a fresh machine does not have it",
                u.what,
                u.why,
                file.display()
            ));
        } else if !owners.iter().any(|o| closure.contains(o)) {
            bad.push(format!(
                "{} ({}) comes from {} ({}): add it to scripts/{script}'s packages",
                u.what,
                u.why,
                owners.iter().cloned().collect::<Vec<_>>().join(" or "),
                file.display()
            ));
        }
    }
    bad
}

fn build_uses() -> Vec<Use> {
    let mut uses = vec![program(
        "cc",
        "rustc links with it; the cc crate compiles C",
    )];
    for artifact in [
        PathBuf::from(env!("CARGO_BIN_EXE_keyward")),
        built_pam_module(),
    ] {
        uses.extend(link_libraries(&artifact));
    }
    uses
}

#[test]
fn demo_packages_cover_its_build_and_run() {
    let dpkg = Dpkg::load();
    let packages = script_list("demo.sh", "--print-packages");
    for p in &packages {
        assert!(
            dpkg.installed(p),
            "demo.sh installs {p}, which is not installed here"
        );
    }
    let closure = dpkg.closure(&packages);
    let mut uses = build_uses();
    for c in script_list("demo.sh", "--print-commands") {
        uses.push(program(&c, "demo.sh runs it"));
    }
    let bad = uncovered(&dpkg, &closure, &uses, "demo.sh");
    assert!(
        bad.is_empty(),
        "scripts/demo.sh on a fresh machine:\n{}",
        bad.join("\n")
    );
}

#[test]
fn test_sh_packages_cover_build_tests_and_demo() {
    let dpkg = Dpkg::load();
    let packages = script_list("test.sh", "--print-packages");
    for p in &packages {
        assert!(
            dpkg.installed(p),
            "test.sh installs {p}, which is not installed here"
        );
    }
    let closure = dpkg.closure(&packages);
    let mut uses = build_uses();
    uses.push(program("c++", "the fuzz targets build libFuzzer (C++)"));
    for (c, script) in SCRIPT_COMMANDS {
        uses.push(program(c, &format!("{script} runs it")));
    }
    uses.extend(test_uses());
    // The tests run the demo: it must not have to install anything then.
    for c in script_list("demo.sh", "--print-commands") {
        uses.push(program(&c, "the demo test runs demo.sh, which runs it"));
    }
    let mut bad = uncovered(&dpkg, &closure, &uses, "test.sh");
    for p in script_list("demo.sh", "--print-packages") {
        if !closure.contains(&p) {
            bad.push(format!(
                "demo.sh installs {p} but test.sh does not: the demo test would install it \
                 in the middle of the test run"
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "scripts/test.sh on a fresh machine:\n{}",
        bad.join("\n")
    );
}

/// The guard itself: it finds what it must find, and fails when a package
/// is missing from a list.
#[test]
fn package_guard_sees_uses_and_missing_packages() {
    let dpkg = Dpkg::load();
    let base = dpkg.closure(&[]);
    // A fresh minbase has around 90 packages; the closure is not everything.
    assert!(
        (60..400).contains(&base.len()),
        "base closure of {} packages",
        base.len()
    );
    assert!(base.contains("libc6") && base.contains("passwd") && base.contains("util-linux"));
    assert!(!base.contains("libpam0g-dev") && !base.contains("nginx"));

    let build = build_uses();
    let pam = build
        .iter()
        .find(|u| u.what == "link-time library libpam.so")
        .expect("the binaries link libpam");
    let owners = dpkg.owners_of(pam.file.as_ref().expect("libpam.so found"));
    assert!(owners.contains("libpam0g-dev"), "{owners:?}");

    let tests = test_uses();
    for needle in [
        "program `/usr/sbin/sshd`",
        "program `pamtester`",
        "library libpam_wrapper.so",
        "library pam_unix.so",
    ] {
        assert!(
            tests.iter().any(|u| u.what == needle),
            "{needle} among {:?}",
            tests.iter().map(|u| &u.what).collect::<Vec<_>>()
        );
    }
    // Without libpam0g-dev, the demo's list no longer covers the build.
    let mut short = script_list("demo.sh", "--print-packages");
    short.retain(|p| p != "libpam0g-dev");
    let bad = uncovered(&dpkg, &dpkg.closure(&short), &build, "demo.sh");
    assert!(
        bad.iter()
            .any(|b| b.contains("libpam.so") && b.contains("libpam0g-dev")),
        "{bad:?}"
    );
}
