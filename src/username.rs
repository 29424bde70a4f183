//! User-name validation, before a name touches a path or a URL (pure).

/// Why a user name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadUser {
    #[error("empty user name")]
    Empty,
    #[error("user name longer than {0} bytes")]
    TooLong(usize),
    #[error("user name must start with a letter, digit or underscore")]
    BadStart,
    #[error("user name contains a character outside the POSIX portable set")]
    BadChar,
}

/// POSIX portable user names ([A-Za-z0-9._-], not starting with `-`), also
/// not starting with `.` so a name can never be `.`/`..` or a hidden file in
/// the cache directory. A trailing `$` (Samba machine accounts) is allowed.
pub fn validate(name: &str, max_len: usize) -> Result<(), BadUser> {
    if name.is_empty() {
        return Err(BadUser::Empty);
    }
    if name.len() > max_len {
        return Err(BadUser::TooLong(max_len));
    }
    let bytes = name.as_bytes();
    if !(bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_') {
        return Err(BadUser::BadStart);
    }
    let body = name.strip_suffix('$').unwrap_or(name);
    if !body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(BadUser::BadChar);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_portable_names() {
        for n in [
            "alice",
            "a",
            "_svc",
            "bob.smith",
            "web-01",
            "HOST$",
            "u_1-2.3",
        ] {
            assert_eq!(validate(n, 32), Ok(()), "{n}");
        }
        assert_eq!(validate(&"a".repeat(32), 32), Ok(()));
    }

    #[test]
    fn refuses_everything_else() {
        assert_eq!(validate("", 32), Err(BadUser::Empty));
        assert_eq!(validate(&"a".repeat(33), 32), Err(BadUser::TooLong(32)));
        assert_eq!(validate(&"a".repeat(10_000), 32), Err(BadUser::TooLong(32)));
        for n in ["-rf", ".", "..", ".hidden"] {
            assert_eq!(validate(n, 32), Err(BadUser::BadStart), "{n}");
        }
        for n in [
            "a/b", "a/../b", "a%2f", "a b", "a\nb", "a\0b", "ålice", "a$b", "a$$", "a:b", "a@b",
        ] {
            assert!(validate(n, 32).is_err(), "{n:?}");
        }
    }
}
