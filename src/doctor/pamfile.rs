//! PAM configuration files as PAM reads them: logical lines (comments,
//! `\\` continuations, `[...]` controls), `@include`, `include` and
//! `substack` followed, one type at a time. Pure; files are read through a
//! loader so tests need no /etc/pam.d.

use std::path::{Path, PathBuf};

/// One module line after includes are followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModLine {
    pub kind: String,
    pub control: String,
    /// As written (`pam_unix.so` or an absolute path).
    pub module: String,
    pub args: Vec<String>,
    /// `FILE:LINE`, plus ` via @include at FILE:LINE` when included.
    pub origin: String,
    /// Line number in the top file this entry comes from (the include line).
    pub top_line: usize,
    /// From a `substack` include: its `done` and jumps stay inside it, and
    /// a jump in the parent counts the whole substack as one module.
    pub substack: bool,
}

impl ModLine {
    /// `pam_unix.so` for `/lib/security/pam_unix.so` too.
    pub fn base(&self) -> &str {
        self.module.rsplit('/').next().unwrap_or(&self.module)
    }

    /// The line as a PAM file would have it (comments, continuations gone).
    pub fn text(&self) -> String {
        let mut t = format!("{} {} {}", self.kind, self.control, self.module);
        for a in &self.args {
            t.push(' ');
            t.push_str(a);
        }
        t
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Module {
        kind: String,
        control: String,
        module: String,
        args: Vec<String>,
        line: usize,
    },
    /// Debian's `@include FILE`: every type from FILE.
    AtInclude { file: String, line: usize },
    /// `TYPE include|substack FILE`: lines of TYPE from FILE.
    Include {
        kind: String,
        file: String,
        line: usize,
        substack: bool,
    },
}

/// Splits a PAM file into items: comments removed, `\` continuations
/// joined, `[...]` controls kept whole, a leading `-` on the type dropped.
fn parse(text: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            start = i + 1;
        }
        let line = raw.split('#').next().unwrap_or_default();
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        let full = full.trim();
        if full.is_empty() {
            continue;
        }
        if let Some(rest) = full.strip_prefix("@include") {
            items.push(Item::AtInclude {
                file: rest.trim().to_owned(),
                line: start,
            });
            continue;
        }
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut bracket = false;
        for c in full.chars() {
            match c {
                '[' if cur.is_empty() => {
                    bracket = true;
                    cur.push(c);
                }
                ']' if bracket => {
                    bracket = false;
                    cur.push(c);
                }
                ' ' | '\t' if !bracket => {
                    if !cur.is_empty() {
                        words.push(std::mem::take(&mut cur));
                    }
                }
                c => cur.push(c),
            }
        }
        if !cur.is_empty() {
            words.push(cur);
        }
        if words.len() < 3 {
            continue;
        }
        let kind = words[0].trim_start_matches('-').to_ascii_lowercase();
        let control = words[1].clone();
        if control == "include" || control == "substack" {
            items.push(Item::Include {
                substack: control == "substack",
                kind,
                file: words[2].clone(),
                line: start,
            });
        } else {
            items.push(Item::Module {
                kind,
                control,
                module: words[2].clone(),
                args: words[3..].to_vec(),
                line: start,
            });
        }
    }
    items
}

/// The `kind` lines of `file`, includes followed up to `depth` levels.
/// `load(name)` returns the text of an included file (None: unreadable);
/// an include that cannot be read becomes an `<include NAME>` pseudo module,
/// which counts as able to check a password (the safe assumption).
pub fn flatten(
    kind: &str,
    label: &str,
    text: &str,
    load: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Vec<ModLine> {
    flatten_at(kind, label, text, load, depth, None, false)
}

fn flatten_at(
    kind: &str,
    label: &str,
    text: &str,
    load: &dyn Fn(&str) -> Option<String>,
    depth: usize,
    via: Option<(&str, usize)>,
    in_substack: bool,
) -> Vec<ModLine> {
    let mut out = Vec::new();
    let origin = |line: usize| match via {
        Some((v, _)) => format!("{label}:{line} via {v}"),
        None => format!("{label}:{line}"),
    };
    for item in parse(text) {
        let (file, line, substack) = match item {
            Item::Module {
                kind: k,
                control,
                module,
                args,
                line,
            } => {
                if k == kind {
                    out.push(ModLine {
                        kind: k,
                        control,
                        module,
                        args,
                        origin: origin(line),
                        top_line: via.map_or(line, |(_, l)| l),
                        substack: in_substack,
                    });
                }
                continue;
            }
            Item::AtInclude { file, line } => (file, line, in_substack),
            Item::Include {
                kind: k,
                file,
                line,
                substack,
            } if k == kind => (file, line, in_substack || substack),
            Item::Include { .. } => continue,
        };
        let here = format!("include at {}", origin(line));
        let top = via.map_or(line, |(_, l)| l);
        let name = file.rsplit('/').next().unwrap_or(&file).to_owned();
        match (depth > 0).then(|| load(&file)).flatten() {
            Some(t) => out.extend(flatten_at(
                kind,
                &name,
                &t,
                load,
                depth - 1,
                Some((&here, top)),
                substack,
            )),
            None => out.push(ModLine {
                kind: kind.to_owned(),
                control: "include".into(),
                module: format!("<include {file}>"),
                args: Vec::new(),
                origin: origin(line),
                top_line: top,
                substack,
            }),
        }
    }
    out
}

/// Reads an included file the way PAM does: relative names from /etc/pam.d.
pub fn load_include(name: &str) -> Option<String> {
    let p = if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        Path::new("/etc/pam.d").join(name)
    };
    std::fs::read_to_string(p).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_and_comments() {
        let items = parse(
            "auth requisite \\\n  pam_keyward.so a=1 # comment\n# auth required pam_unix.so\n",
        );
        assert_eq!(items.len(), 1);
        match &items[0] {
            Item::Module {
                module, args, line, ..
            } => {
                assert_eq!(module, "pam_keyward.so");
                assert_eq!(args, &vec!["a=1".to_string()]);
                assert_eq!(*line, 1);
            }
            other => panic!("{other:?}"),
        }
    }
}
