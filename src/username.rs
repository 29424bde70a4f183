//! User names: which ones keyward serves, and how a name becomes a cache
//! file name (pure). URLs use `config::percent_encode`.
//!
//! sshd runs the command for every name NSS resolves: SSSD's
//! `alice@corp.example.com`, Samba's `host$`, names longer than 32 bytes,
//! upper case, UTF-8. keyward serves all of them and refuses only what is
//! unsafe as a path or URL component or as an argument: `/`, NUL, control
//! characters, `.` and `..`, and a leading `-`.
//!
//! Cache file names are an injective encoding that a filesystem cannot fold:
//! see [`file_name`].

use std::borrow::Cow;

/// Default `[policy] max_username_len`: glibc's LOGIN_NAME_MAX (256, with
/// the NUL) less one. Longer names exist only where NSS itself is unusual;
/// sshd has no limit of its own.
pub const DEFAULT_MAX_LEN: usize = 255;

/// Largest `[policy] max_username_len` the configuration accepts.
pub const MAX_LEN_LIMIT: usize = 1024;

/// Why a user name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadUser {
    #[error("empty user name")]
    Empty,
    #[error("user name longer than {0} bytes ([policy] max_username_len)")]
    TooLong(usize),
    #[error("user name is \".\" or \"..\"")]
    Dots,
    #[error("user name starts with '-' (it would read as an option)")]
    LeadingDash,
    #[error("user name contains '/'")]
    Slash,
    #[error("user name contains a NUL byte")]
    Nul,
    #[error("user name contains a control character")]
    Control,
}

/// Accepts every name sshd and NSS can present except the unsafe ones (see
/// the module comment), up to `max_len` bytes.
pub fn validate(name: &str, max_len: usize) -> Result<(), BadUser> {
    if name.is_empty() {
        return Err(BadUser::Empty);
    }
    if name.len() > max_len {
        return Err(BadUser::TooLong(max_len));
    }
    if name == "." || name == ".." {
        return Err(BadUser::Dots);
    }
    if name.starts_with('-') {
        return Err(BadUser::LeadingDash);
    }
    for c in name.chars() {
        match c {
            '/' => return Err(BadUser::Slash),
            '\0' => return Err(BadUser::Nul),
            // C0, DEL and C1: terminals and log lines, never names.
            c if c.is_control() => return Err(BadUser::Control),
            _ => {}
        }
    }
    Ok(())
}

/// What to do about a refused name (doctor and explain say it).
pub fn fix(e: &BadUser) -> &'static str {
    match e {
        BadUser::TooLong(_) => "raise [policy] max_username_len (up to 1024), or rename the account",
        _ => "keyward never serves such a name (unsafe as a path, a URL or an argument): rename the account",
    }
}

/// Longest file name Linux filesystems store (NAME_MAX).
const NAME_MAX: usize = 255;

/// Prefix of a hashed file name. `%s` is not a valid escape, so no encoded
/// name starts with it.
const HASHED: &str = "%sha256-";

/// Bytes kept as they are in a file name: lower-case ASCII letters, digits
/// and a few punctuation marks that every filesystem stores unchanged.
fn literal(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'$')
}

/// The cache file name of a validated user name.
///
/// - Injective: every other byte becomes `%xx` (lower-case hex), and `%`
///   itself is escaped, so the name decodes back to exactly one user.
/// - Nothing to fold: the result is ASCII without upper-case letters, so a
///   case-insensitive filesystem (vfat, NTFS, APFS, ext4 with casefold)
///   cannot merge `Alice` (`%41lice`) with `alice`, and Unicode
///   normalisation (APFS, ZFS `normalization=`) has nothing to change.
/// - Never starts with `.` (keyward's own files: `.tmp-*`, `.floor`) and
///   never ends with `.` (vfat and NTFS drop a trailing dot).
/// - At most NAME_MAX bytes: a longer encoding becomes
///   `%sha256-<hex of the name>`; the entry header then names the user,
///   and `Cache` checks it.
///
/// Names made only of literal bytes (`alice`, `web-01`, `host$`,
/// `alice@corp.example.com`) are their own file name, with no allocation.
pub fn file_name(user: &str) -> Cow<'_, str> {
    let b = user.as_bytes();
    let last = b.len().saturating_sub(1);
    let escape = |i: usize, c: u8| !literal(c) || (c == b'.' && (i == 0 || i == last));
    if !b.iter().enumerate().any(|(i, &c)| escape(i, c)) && b.len() <= NAME_MAX {
        return Cow::Borrowed(user);
    }
    let mut out = String::with_capacity(b.len() * 3);
    for (i, &c) in b.iter().enumerate() {
        if escape(i, c) {
            out.push('%');
            out.push(HEX[usize::from(c >> 4)] as char);
            out.push(HEX[usize::from(c & 0xf)] as char);
        } else {
            out.push(c as char);
        }
    }
    if out.len() > NAME_MAX {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(user.as_bytes());
        out.clear();
        out.push_str(HASHED);
        for byte in digest {
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0xf)] as char);
        }
    }
    Cow::Owned(out)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// What a file name in the cache directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileName {
    /// The entry of this user.
    User(String),
    /// A hashed name: the user is in the entry's header.
    Hashed,
    /// Not an entry name (temp files, `.floor`, anything else).
    Other,
}

/// The inverse of [`file_name`]: only a name `file_name` would produce is
/// an entry; anything else in the directory is ignored.
pub fn parse_file_name(name: &str) -> FileName {
    if let Some(hex) = name.strip_prefix(HASHED) {
        let ok = hex.len() == 64 && hex.bytes().all(|c| HEX.contains(&c));
        return if ok {
            FileName::Hashed
        } else {
            FileName::Other
        };
    }
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| HEX.iter().position(|&h| h == c);
            match (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(hi), Some(lo)) => out.push((hi << 4 | lo) as u8),
                _ => return FileName::Other,
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    match String::from_utf8(out) {
        // Canonical only: `%61` for `a` is not the name of user `a`.
        Ok(user) if validate(&user, MAX_LEN_LIMIT).is_ok() && file_name(&user) == name => {
            FileName::User(user)
        }
        _ => FileName::Other,
    }
}

/// The file name an entry had before names were encoded (older versions
/// stored POSIX-portable names as they are), when it differs from
/// [`file_name`]: only names with upper-case letters or a trailing dot. Used
/// to find a rollback floor written under the old name.
pub fn legacy_file_name(user: &str) -> Option<&str> {
    let b = user.as_bytes();
    let first_ok = b
        .first()
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
    let body = user.strip_suffix('$').unwrap_or(user);
    let portable = b.len() <= 256
        && first_ok
        && body
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    (portable && file_name(user) != user).then_some(user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_every_name_nss_can_present() {
        for n in [
            "alice",
            "a",
            "_svc",
            "bob.smith",
            "web-01",
            "HOST$",
            "alice@corp.example.com",
            "CORP\\alice",
            "Alice",
            "ålice",
            "a b",
            "a$b",
            "a:b",
            "a%2f",
            ".hidden",
            "...",
        ] {
            assert_eq!(validate(n, 255), Ok(()), "{n}");
        }
        let forty = "u".repeat(40);
        assert_eq!(validate(&forty, DEFAULT_MAX_LEN), Ok(()));
        assert_eq!(validate(&"a".repeat(255), 255), Ok(()));
    }

    #[test]
    fn refuses_what_is_unsafe() {
        assert_eq!(validate("", 255), Err(BadUser::Empty));
        assert_eq!(validate(&"a".repeat(256), 255), Err(BadUser::TooLong(255)));
        assert_eq!(validate(&"a".repeat(33), 32), Err(BadUser::TooLong(32)));
        assert_eq!(validate(".", 255), Err(BadUser::Dots));
        assert_eq!(validate("..", 255), Err(BadUser::Dots));
        assert_eq!(validate("-rf", 255), Err(BadUser::LeadingDash));
        assert_eq!(validate("-", 255), Err(BadUser::LeadingDash));
        assert_eq!(validate("a/b", 255), Err(BadUser::Slash));
        assert_eq!(validate("../etc", 255), Err(BadUser::Slash));
        assert_eq!(validate("a\0b", 255), Err(BadUser::Nul));
        for n in [
            "a\nb", "a\rb", "a\tb", "a\x1bb", "a\x7fb", "a\u{85}b", "a\u{9b}b",
        ] {
            assert_eq!(validate(n, 255), Err(BadUser::Control), "{n:?}");
        }
    }

    #[test]
    fn file_names() {
        let f = |u: &str| file_name(u).into_owned();
        assert!(matches!(file_name("alice"), Cow::Borrowed("alice")));
        assert_eq!(f("alice@corp.example.com"), "alice@corp.example.com");
        assert_eq!(f("host$"), "host$");
        assert_eq!(f("Alice"), "%41lice");
        assert_eq!(f("a%41lice"), "a%2541lice");
        assert_eq!(f(".hidden"), "%2ehidden");
        assert_eq!(f("alice."), "alice%2e");
        assert_eq!(f("a.b"), "a.b");
        assert_eq!(f("ålice"), "%c3%a5lice");
        assert_eq!(f("CORP\\al ice"), "%43%4f%52%50%5cal%20ice");
        let long = "A".repeat(200);
        let h = f(&long);
        assert!(h.starts_with("%sha256-") && h.len() == 8 + 64, "{h}");
        assert_eq!(f(&"a".repeat(255)), "a".repeat(255));
        assert!(f(&"a".repeat(256)).starts_with("%sha256-"));
    }

    #[test]
    fn parse_inverts_file_name_and_ignores_the_rest() {
        for u in ["alice", "Alice", "host$", ".x", "x.", "a b", "ålice", "%41"] {
            assert_eq!(parse_file_name(&file_name(u)), FileName::User(u.into()));
        }
        assert_eq!(
            parse_file_name(&file_name(&"B".repeat(100))),
            FileName::Hashed
        );
        for other in [
            ".tmp-abc",
            ".floor",
            "%61",
            "%4",
            "%zz",
            "%41%",
            "A",
            "%2f",
            "%2e",
            "%2e%2e",
            "%sha256-00",
            "%00",
            "%2dx",
            ".principals",
        ] {
            assert_eq!(parse_file_name(other), FileName::Other, "{other}");
        }
    }

    #[test]
    fn legacy_names() {
        assert_eq!(legacy_file_name("alice"), None);
        assert_eq!(legacy_file_name("Alice"), Some("Alice"));
        assert_eq!(legacy_file_name("HOST$"), Some("HOST$"));
        assert_eq!(legacy_file_name("x."), Some("x."));
        assert_eq!(legacy_file_name("Alice@corp"), None, "never a legacy name");
    }

    /// Lower-cases ASCII and maps every non-ASCII char to one placeholder:
    /// coarser than any filesystem's case folding or normalisation.
    fn fold(s: &str) -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii() {
                    c.to_ascii_lowercase()
                } else {
                    '?'
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 4000,
            max_global_rejects: 1 << 20,
            ..ProptestConfig::default()
        })]

        #[test]
        fn distinct_names_never_share_a_file_even_when_folded(
            a in "[a-zA-Z0-9._@$%\\- \\\\åÅ]{1,12}",
            b in "[a-zA-Z0-9._@$%\\- \\\\åÅ]{1,12}",
        ) {
            prop_assume!(validate(&a, 255).is_ok() && validate(&b, 255).is_ok());
            let (fa, fb) = (file_name(&a), file_name(&b));
            if a != b {
                prop_assert_ne!(fold(&fa), fold(&fb));
            }
            for f in [&fa, &fb] {
                prop_assert!(!f.starts_with('.') && !f.ends_with('.'));
                prop_assert!(f.is_ascii() && !f.bytes().any(|c| c.is_ascii_uppercase()));
                prop_assert!(!f.contains('/') && f.len() <= NAME_MAX);
            }
            prop_assert_eq!(parse_file_name(&fa), FileName::User(a.clone()));
        }

        #[test]
        fn any_valid_name_round_trips(a in "\\PC{1,40}") {
            prop_assume!(validate(&a, 255).is_ok());
            let f = file_name(&a);
            prop_assert!(f.is_ascii() && !f.starts_with('.') && f.len() <= NAME_MAX);
            let want = if f.starts_with(HASHED) { FileName::Hashed } else { FileName::User(a.clone()) };
            prop_assert_eq!(parse_file_name(&f), want);
        }
    }
}
