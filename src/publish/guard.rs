//! The mass-removal guard: a source that suddenly lists far fewer users (an
//! LDAP filter typo, an emptied group, a folder half-copied) must not wipe
//! the published tree and lock the fleet out. Before anything is written,
//! publish counts the users published in OUT that this run would remove;
//! above `--max-removed` it refuses and leaves OUT as it was.

use std::collections::{BTreeSet, HashSet};

use crate::entry::Kind;

/// How many of the published users one run may remove (`--max-removed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxRemoved {
    /// A share of the users published before, in percent (0 to 100).
    Percent(u32),
    /// A number of users.
    Count(usize),
}

/// The default: a tenth of the published users.
pub const DEFAULT: MaxRemoved = MaxRemoved::Percent(10);

impl MaxRemoved {
    /// `10%` or `250` (pure).
    pub fn parse(s: &str) -> Result<MaxRemoved, String> {
        let bad = || format!("{s:?}: expected a share like 10% (0% to 100%) or a number of users");
        match s.strip_suffix('%') {
            Some(p) => match p.parse::<u32>() {
                Ok(p) if p <= 100 => Ok(MaxRemoved::Percent(p)),
                _ => Err(bad()),
            },
            None => s.parse().map(MaxRemoved::Count).map_err(|_| bad()),
        }
    }

    fn show(self) -> String {
        match self {
            MaxRemoved::Percent(p) => format!("{p}%"),
            MaxRemoved::Count(n) => n.to_string(),
        }
    }

    /// Whether removing `removed` of `published` users is within the limit.
    /// One leaver never needs the option (10 % of a small team is less
    /// than one person), unless it is the last user: a tree with nobody
    /// left is the lock-out this guard is for.
    fn allows(self, removed: usize, published: usize) -> bool {
        if removed == 0 {
            return true;
        }
        match self {
            MaxRemoved::Percent(100) => true,
            MaxRemoved::Percent(0) => false,
            MaxRemoved::Percent(p) => {
                let share = published.saturating_mul(p as usize) / 100;
                removed <= share.max(1) && removed < published
            }
            MaxRemoved::Count(n) => removed <= n,
        }
    }
}

/// The user and kind a published file name is for (`alice.keys`,
/// `deploy.principals` and their `.sig`), None for any other name.
pub fn published_name(name: &str) -> Option<(&str, Kind)> {
    let base = name.strip_suffix(".sig").unwrap_or(name);
    // Called for every name in OUT: no allocation per name.
    if let Some(user) = base.strip_suffix(".keys") {
        return Some((user, Kind::Keys));
    }
    base.strip_suffix(".principals")
        .map(|user| (user, Kind::Principals))
}

/// Refuses (pure) when this run would remove more users than `max`
/// allows: `in_out` the file names in OUT, `kept` every (user, kind) this
/// run publishes or keeps (its kind as `Kind::as_str`), sorted. A user
/// counts as removed when any of its files goes.
pub fn check<'a>(
    in_out: impl IntoIterator<Item = &'a str>,
    kept: &[(&str, &str)],
    max: MaxRemoved,
) -> Result<(), String> {
    let mut published = HashSet::new();
    let mut removed = BTreeSet::new();
    for name in in_out {
        // A signature goes with its file: counting the file is enough.
        let Some((user, kind)) = published_name(name).filter(|_| !name.ends_with(".sig")) else {
            continue;
        };
        published.insert(user);
        if kept.binary_search(&(user, kind.as_str())).is_err() {
            removed.insert(user);
        }
    }
    if max.allows(removed.len(), published.len()) {
        return Ok(());
    }
    let examples: Vec<&str> = removed.iter().take(5).copied().collect();
    let more = match removed.len() - examples.len() {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    Err(format!(
        "this run would remove {} of the {} users published there ({}%: {}{more}), \
         more than --max-removed {} allows; nothing was changed. Check the source \
         (an LDAP filter, an emptied group, a missing folder); if the removals are \
         meant, run again with --max-removed 100%",
        removed.len(),
        published.len(),
        removed.len() * 100 / published.len().max(1),
        examples.join(", "),
        max.show(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(users: &[&'static str]) -> Vec<(&'static str, &'static str)> {
        let mut k: Vec<_> = users.iter().map(|u| (*u, "keys")).collect();
        k.sort();
        k
    }

    #[test]
    fn parses_a_share_or_a_count() {
        assert_eq!(MaxRemoved::parse("10%"), Ok(MaxRemoved::Percent(10)));
        assert_eq!(MaxRemoved::parse("100%"), Ok(MaxRemoved::Percent(100)));
        assert_eq!(MaxRemoved::parse("25"), Ok(MaxRemoved::Count(25)));
        for bad in ["101%", "-1", "ten", "%", "5.5%", ""] {
            assert!(MaxRemoved::parse(bad).is_err(), "{bad}");
        }
    }

    fn sorted<'a>(k: &BTreeSet<(&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
        k.iter().copied().collect()
    }

    #[test]
    fn counts_users_removed_from_what_out_holds() {
        let names: Vec<String> = (0..20)
            .flat_map(|i| [format!("u{i:02}.keys"), format!("u{i:02}.keys.sig")])
            .chain(["keyward.index".into(), "ops.principals".into()])
            .collect();
        let all = || names.iter().map(String::as_str);
        let mut k: BTreeSet<(&str, &str)> = (0..20)
            .map(|i| (names[2 * i].strip_suffix(".keys").unwrap(), "keys"))
            .collect();
        k.insert(("ops", "principals"));
        assert_eq!(check(all(), &sorted(&k), DEFAULT), Ok(()));
        // 2 of 21 users gone: within 10 %; 3 is not.
        k.remove(&("u00", "keys"));
        k.remove(&("ops", "principals"));
        assert_eq!(check(all(), &sorted(&k), DEFAULT), Ok(()));
        k.remove(&("u01", "keys"));
        let e = check(all(), &sorted(&k), DEFAULT).unwrap_err();
        assert!(e.contains("remove 3 of the 21 users"), "{e}");
        assert!(
            e.contains("u00, u01, ops") || e.contains("ops, u00, u01"),
            "{e}"
        );
        assert!(e.contains("--max-removed 10%"), "{e}");
        assert_eq!(check(all(), &sorted(&k), MaxRemoved::Count(3)), Ok(()));
        assert!(check(all(), &sorted(&k), MaxRemoved::Count(2)).is_err());
        // An emptied source.
        let e = check(all(), &kept(&[]), DEFAULT).unwrap_err();
        assert!(
            e.contains("remove 21 of the 21") && e.contains("and 16 more"),
            "{e}"
        );
        assert_eq!(check(all(), &kept(&[]), MaxRemoved::Percent(100)), Ok(()));
    }

    #[test]
    fn one_leaver_passes_but_never_the_last_user() {
        let out = ["a.keys", "b.keys", "c.keys"];
        assert_eq!(check(out, &kept(&["a", "b"]), DEFAULT), Ok(()));
        assert!(check(out, &kept(&["a"]), DEFAULT).is_err());
        assert!(check(["a.keys"], &kept(&[]), DEFAULT).is_err());
        assert_eq!(check(["a.keys"], &kept(&["a"]), DEFAULT), Ok(()));
        // A first publish removes nothing.
        assert_eq!(check([], &kept(&[]), MaxRemoved::Percent(0)), Ok(()));
        assert!(check(out, &kept(&["a", "b"]), MaxRemoved::Percent(0)).is_err());
    }
}
