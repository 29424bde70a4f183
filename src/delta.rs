//! Signed deltas of the directory's sorted files (the index, the
//! revocation list): what changed from one published version to another,
//! so that a host pays bytes in proportion to the change, not to the file.
//!
//! Both files are one header line and then lines sorted bytewise with no
//! duplicates. A delta from serial S to serial T is that file's set
//! difference, with the hashes of both full texts and T's header line:
//!
//! ```text
//! #keyward-delta kind=index from=100 from_sha256=HEX to=105 to_sha256=HEX expires=2026-12-01T00:00:00Z
//! =#keyward-index serial=105 expires=2026-12-01T00:00:00Z
//! -alice 100 3f2c9a0b11d2e3f4 alice.keys
//! +alice 105 9a8b7c6d5e4f3a2b alice.keys
//! +carol 105 0123456789abcdef carol.keys
//! ```
//!
//! Entries are sorted bytewise by their line (the text after `-`/`+`), each
//! line at most once: a `-` line is in S's text, a `+` line is not, so
//! applying is one merge over S's lines. A host applies a delta only to the
//! text whose SHA-256 is `from_sha256`, and keeps the result only if its
//! SHA-256 is `to_sha256`: the signature over the delta then vouches for
//! the whole new text as the full file's signature would. A delta with
//! `from` = `to` is empty: "nothing changed since S".
//!
//! Pure: the format, diff, compose and apply.

use std::collections::BTreeMap;

/// The first bytes of every delta (never a user file's `#keyward `, an
/// index's `#keyward-index` or a list's `#keyward kind=revoked`).
pub const PREFIX: &str = "#keyward-delta";
/// Largest delta accepted: a delta is dropped by publish long before it
/// nears the size of the file it describes.
pub const MAX_BYTES: u64 = crate::index::MAX_BYTES;

/// The set difference between two versions of a file, and the new header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Change {
    /// The header line of the new text (without its newline).
    pub header: String,
    /// Line → true for `+` (added), false for `-` (removed); sorted.
    pub lines: BTreeMap<String, bool>,
}

/// A delta file's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// `index` or `revoked`: which file it applies to.
    pub kind: String,
    pub from: u64,
    pub from_sha256: [u8; 32],
    pub to: u64,
    pub to_sha256: [u8; 32],
    /// Unix time after which it is not used (signed mode).
    pub expires: Option<i64>,
    pub change: Change,
}

pub fn sha256(text: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// Header and data lines of a text that must end with a newline.
fn split(text: &str) -> Result<(&str, std::str::Lines<'_>), String> {
    if !text.ends_with('\n') {
        return Err("does not end with a newline".into());
    }
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    Ok((header, lines))
}

/// The change from `old` to `new`, both a header line and then strictly
/// ascending lines (an error otherwise).
pub fn diff(old: &str, new: &str) -> Result<Change, String> {
    let (_, mut a) = split(old)?;
    let (header, mut b) = split(new)?;
    let mut out = Change {
        header: header.to_owned(),
        lines: BTreeMap::new(),
    };
    let ascending = |prev: &mut Option<&'_ str>, l: &str, which: &str| -> Result<(), String> {
        if prev.is_some_and(|p| p.as_bytes() >= l.as_bytes()) {
            return Err(format!("the {which} text is not sorted or has duplicates"));
        }
        Ok(())
    };
    let (mut pa, mut pb): (Option<&str>, Option<&str>) = (None, None);
    let (mut x, mut y) = (a.next(), b.next());
    loop {
        match (x, y) {
            (None, None) => break,
            (Some(l), None) => {
                ascending(&mut pa, l, "old")?;
                out.lines.insert(l.to_owned(), false);
                (pa, x) = (Some(l), a.next());
            }
            (None, Some(r)) => {
                ascending(&mut pb, r, "new")?;
                out.lines.insert(r.to_owned(), true);
                (pb, y) = (Some(r), b.next());
            }
            (Some(l), Some(r)) => match l.as_bytes().cmp(r.as_bytes()) {
                std::cmp::Ordering::Equal => {
                    ascending(&mut pa, l, "old")?;
                    ascending(&mut pb, r, "new")?;
                    (pa, x) = (Some(l), a.next());
                    (pb, y) = (Some(r), b.next());
                }
                std::cmp::Ordering::Less => {
                    ascending(&mut pa, l, "old")?;
                    out.lines.insert(l.to_owned(), false);
                    (pa, x) = (Some(l), a.next());
                }
                std::cmp::Ordering::Greater => {
                    ascending(&mut pb, r, "new")?;
                    out.lines.insert(r.to_owned(), true);
                    (pb, y) = (Some(r), b.next());
                }
            },
        }
    }
    Ok(out)
}

/// `first` then `second` as one change (`second` must apply to the text
/// `first` gives).
pub fn compose(first: &Change, second: &Change) -> Result<Change, String> {
    let mut lines = first.lines.clone();
    for (l, &add) in &second.lines {
        match lines.get(l) {
            // Added, then removed (or removed, then added back): no change.
            Some(&prev) if prev != add => {
                lines.remove(l);
            }
            Some(_) => {
                let what = if add { "adds" } else { "removes" };
                return Err(format!("both deltas {what} the line {l:?}"));
            }
            None => {
                lines.insert(l.clone(), add);
            }
        }
    }
    Ok(Change {
        header: second.header.clone(),
        lines,
    })
}

/// The text `change` makes of `old`: one merge. Refuses a `-` line that is
/// not in `old` and a `+` line that already is.
pub fn apply(old: &str, change: &Change) -> Result<String, String> {
    let (_, mut rest) = split(old)?;
    let mut out = String::with_capacity(old.len() + change.lines.len() * 64);
    out.push_str(&change.header);
    out.push('\n');
    let mut cur = rest.next();
    for (l, &add) in &change.lines {
        while let Some(c) = cur.filter(|c| c.as_bytes() < l.as_bytes()) {
            out.push_str(c);
            out.push('\n');
            cur = rest.next();
        }
        let present = cur == Some(l.as_str());
        match (add, present) {
            (true, false) => {
                out.push_str(l);
                out.push('\n');
            }
            (false, true) => cur = rest.next(),
            (true, true) => return Err(format!("the delta adds a line already there: {l:?}")),
            (false, false) => return Err(format!("the delta removes a line not there: {l:?}")),
        }
    }
    while let Some(c) = cur {
        out.push_str(c);
        out.push('\n');
        cur = rest.next();
    }
    Ok(out)
}

/// The fields of a delta's first line (its change still empty).
fn parse_head(first: &str) -> Result<Delta, String> {
    let rest = first
        .strip_prefix(PREFIX)
        .filter(|r| r.starts_with(' '))
        .ok_or("not a keyward delta (no #keyward-delta header)")?;
    let mut f: BTreeMap<&str, &str> = BTreeMap::new();
    for field in rest.split(' ').skip(1) {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| format!("bad delta header field {field:?}"))?;
        if !matches!(
            k,
            "kind" | "from" | "from_sha256" | "to" | "to_sha256" | "expires"
        ) {
            return Err(format!("unknown delta header field {k:?}"));
        }
        if f.insert(k, v).is_some() {
            return Err(format!("delta header field {k:?} given twice"));
        }
    }
    let get = |k: &str| f.get(k).copied().ok_or(format!("delta header has no {k}="));
    let num = |k: &str| -> Result<u64, String> {
        let v = get(k)?;
        v.parse().map_err(|_| format!("bad delta {k} {v:?}"))
    };
    let sha = |k: &str| -> Result<[u8; 32], String> {
        let v = get(k)?;
        crate::index::unhex::<32>(v).ok_or(format!("bad delta {k} {v:?}"))
    };
    let kind = get("kind")?;
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(format!("bad delta kind {kind:?}"));
    }
    let expires = match f.get("expires") {
        Some(v) => Some(crate::signed::parse_utc(v).ok_or(format!("bad delta expires {v:?}"))?),
        None => None,
    };
    Ok(Delta {
        kind: kind.to_owned(),
        from: num("from")?,
        from_sha256: sha("from_sha256")?,
        to: num("to")?,
        to_sha256: sha("to_sha256")?,
        expires,
        change: Change::default(),
    })
}

impl Delta {
    /// Whether it says "nothing changed since `from`".
    pub fn is_empty(&self) -> bool {
        self.from == self.to && self.from_sha256 == self.to_sha256 && self.change.lines.is_empty()
    }

    pub fn render(&self) -> String {
        use crate::index::hex;
        let mut s = format!(
            "{PREFIX} kind={} from={} from_sha256={} to={} to_sha256={}",
            self.kind,
            self.from,
            hex(&self.from_sha256),
            self.to,
            hex(&self.to_sha256)
        );
        if let Some(e) = self.expires {
            s.push_str(&format!(" expires={}", crate::signed::format_utc(e)));
        }
        s.push_str("\n=");
        s.push_str(&self.change.header);
        s.push('\n');
        for (l, &add) in &self.change.lines {
            s.push(if add { '+' } else { '-' });
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    /// Parses and checks a delta file: every field once, entries strictly
    /// ascending, nothing a line could not carry.
    pub fn parse(text: &str) -> Result<Delta, String> {
        if text.len() as u64 > MAX_BYTES {
            return Err("delta too large".into());
        }
        if text.contains(['\0', '\r']) {
            return Err("delta contains NUL or CR".into());
        }
        let (first, mut lines) = split(text).map_err(|e| format!("delta {e}"))?;
        let head = parse_head(first)?;
        let header = lines
            .next()
            .and_then(|l| l.strip_prefix('='))
            .filter(|h| h.starts_with('#'))
            .ok_or("delta has no =HEADER line")?;
        let mut change = Change {
            header: header.to_owned(),
            lines: BTreeMap::new(),
        };
        let mut prev: Option<&str> = None;
        for (i, raw) in lines.enumerate() {
            let n = i + 3;
            let (add, l) = match raw.split_at_checked(1) {
                Some(("+", l)) => (true, l),
                Some(("-", l)) => (false, l),
                _ => return Err(format!("delta line {n}: neither +LINE nor -LINE")),
            };
            if l.is_empty() {
                return Err(format!("delta line {n}: empty"));
            }
            if prev.is_some_and(|p| p.as_bytes() >= l.as_bytes()) {
                return Err(format!("delta line {n}: unsorted or duplicate"));
            }
            prev = Some(l);
            change.lines.insert(l.to_owned(), add);
        }
        let d = Delta { change, ..head };
        if d.to < d.from {
            return Err(format!("delta goes back (from {} to {})", d.from, d.to));
        }
        if d.to == d.from && !d.is_empty() {
            return Err("a delta to its own serial must be empty".into());
        }
        Ok(d)
    }

    /// The text this delta makes of `old` (the text at `from`), checked
    /// against both hashes: a delta never applies to another text, and
    /// never gives a text it was not signed for.
    pub fn apply_to(&self, old: &str) -> Result<String, String> {
        if sha256(old) != self.from_sha256 {
            return Err("from_sha256 is not the stored text's".into());
        }
        let new = apply(old, &self.change)?;
        if sha256(&new) != self.to_sha256 {
            return Err("the result's SHA-256 is not to_sha256".into());
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(header: &str, lines: &[&str]) -> String {
        let mut s = format!("{header}\n");
        for l in lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    fn delta(old: &str, new: &str, from: u64, to: u64) -> Delta {
        Delta {
            kind: "index".into(),
            from,
            from_sha256: sha256(old),
            to,
            to_sha256: sha256(new),
            expires: Some(1_900_000_000),
            change: diff(old, new).unwrap(),
        }
    }

    #[test]
    fn diff_apply_and_the_file_round_trip() {
        let old = text(
            "#keyward-index serial=1",
            &["alice 1 a", "bob 1 b", "dave 1 d"],
        );
        let new = text(
            "#keyward-index serial=2",
            &["alice 1 a", "bob 2 b", "carol 2 c"],
        );
        let d = delta(&old, &new, 1, 2);
        let f = d.render();
        assert!(
            f.starts_with("#keyward-delta kind=index from=1 from_sha256="),
            "{f}"
        );
        assert!(
            f.ends_with("=#keyward-index serial=2\n-bob 1 b\n+bob 2 b\n+carol 2 c\n-dave 1 d\n"),
            "{f}"
        );
        let back = Delta::parse(&f).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.apply_to(&old).unwrap(), new);
        // Never to another text.
        let other = text("#keyward-index serial=1", &["alice 1 a", "bob 1 b"]);
        assert!(back.apply_to(&other).unwrap_err().contains("from_sha256"));
        // An empty delta.
        let e = delta(&new, &new, 2, 2);
        assert!(e.is_empty());
        assert_eq!(
            Delta::parse(&e.render()).unwrap().apply_to(&new).unwrap(),
            new
        );
    }

    #[test]
    fn a_delta_whose_result_is_not_to_sha256_is_refused() {
        let old = text("#h serial=1", &["a", "b"]);
        let new = text("#h serial=2", &["a", "c"]);
        let mut d = delta(&old, &new, 1, 2);
        d.to_sha256 = sha256(&old);
        assert!(d.apply_to(&old).unwrap_err().contains("to_sha256"));
        // A removal of a line not there, an addition of one there.
        let mut d = delta(&old, &new, 1, 2);
        d.change.lines.insert("x".into(), false);
        assert!(d.apply_to(&old).unwrap_err().contains("not there"));
        let mut d = delta(&old, &new, 1, 2);
        d.change.lines.insert("a".into(), true);
        assert!(d.apply_to(&old).unwrap_err().contains("already there"));
    }

    #[test]
    fn malformed_deltas_are_refused() {
        let old = text("#h serial=1", &["a", "b"]);
        let new = text("#h serial=2", &["a", "c"]);
        let good = delta(&old, &new, 1, 2).render();
        assert!(Delta::parse(&good).is_ok());
        let (head, _) = good.split_once('\n').unwrap();
        let h = |s: &str| good.replacen(head, s, 1);
        let sha = crate::index::hex(&sha256(&old));
        for bad in [
            good.trim_end().to_owned(),
            good.replace("\n-b\n", "\n-b\r\n"),
            good.replace("#keyward-delta", "#keyward-deltax"),
            good.replace("#keyward-delta", "#keyward"),
            good.replace("\n=#h", "\n#h"),
            good.replace("\n=#h serial=2", "\n=h"),
            good.replace("\n-b\n", "\n b\n"),
            good.replace("\n-b\n", "\n-\n"),
            good.replace("-b\n+c\n", "+c\n-b\n"),
            good.replace("-b\n+c\n", "-b\n+b\n"),
            good.replace("kind=index", "kind=Index"),
            good.replace("kind=index", "kind=index kind=index"),
            good.replace("kind=index", "kind=index color=red"),
            good.replace(" from=1 ", " from=x "),
            good.replace(" to=2 ", " to=0 "),
            good.replace(" to=2 ", " to=1 "),
            good.replace(&sha, &sha.to_uppercase()),
            good.replace(&sha, &sha[2..]),
            good.replace(" expires=2030-03-17T17:46:40Z", " expires=soon"),
            h("#keyward-delta kind=index from=1 to=2"),
            h("#keyward-delta"),
            format!("{head}\n"),
            String::new(),
        ] {
            assert!(Delta::parse(&bad).is_err(), "{bad:?}");
        }
        // An unsigned one has no expires.
        let mut d = delta(&old, &new, 1, 2);
        d.expires = None;
        assert_eq!(Delta::parse(&d.render()).unwrap(), d);
    }

    #[test]
    fn unsorted_texts_have_no_diff() {
        let sorted = text("#h", &["a", "b"]);
        assert!(diff(&text("#h", &["b", "a"]), &sorted).is_err());
        assert!(diff(&sorted, &text("#h", &["a", "a"])).is_err());
        assert!(diff(&sorted, "#h\na").is_err());
    }

    /// A text of sorted unique lines from a set of small numbers.
    fn from_set(serial: u64, set: &std::collections::BTreeSet<u8>) -> String {
        let mut s = format!("#h serial={serial}\n");
        for n in set {
            s.push_str(&format!("u{n:03} {}\n", n % 7));
        }
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// diff then apply gives the new text; a chain of diffs composed
        /// gives the same text as applying each in turn, and as the direct
        /// diff; every delta file reads back as itself.
        #[test]
        fn diff_compose_apply_round_trip(
            sets in proptest::collection::vec(
                proptest::collection::btree_set(any::<u8>(), 0..40), 2..6)
        ) {
            let texts: Vec<String> = sets.iter().enumerate()
                .map(|(i, s)| from_set(i as u64, s)).collect();
            let mut composed = diff(&texts[0], &texts[0]).unwrap();
            let mut cur = texts[0].clone();
            for w in texts.windows(2) {
                let step = diff(&w[0], &w[1]).unwrap();
                prop_assert_eq!(apply(&w[0], &step).unwrap(), w[1].clone());
                cur = apply(&cur, &step).unwrap();
                composed = compose(&composed, &step).unwrap();
            }
            let last = texts.last().unwrap();
            prop_assert_eq!(&cur, last);
            prop_assert_eq!(apply(&texts[0], &composed).unwrap(), last.clone());
            prop_assert_eq!(&composed, &diff(&texts[0], last).unwrap());
            let d = Delta {
                kind: "revoked".into(), from: 0, from_sha256: sha256(&texts[0]),
                to: texts.len() as u64 - 1, to_sha256: sha256(last),
                expires: None, change: composed,
            };
            let back = Delta::parse(&d.render()).unwrap();
            prop_assert_eq!(back.apply_to(&texts[0]).unwrap(), last.clone());
        }

        #[test]
        fn parse_never_panics(s in "#keyward-delta [a-z_=0-9 ]{0,60}\n(=#h\n)?([-+ ][a-c]{0,3}\n){0,6}") {
            let _ = Delta::parse(&s);
        }
    }
}
