//! Signed key directory files (pure).
//!
//! With `[directory] signers`, every directory file must come with a detached
//! SSHSIG signature (`{url}.sig`, from `ssh-keygen -Y sign -n keyward`) by a
//! pinned signer, and must start with a header that binds it to one user and
//! a time window:
//!
//! ```text
//! #keyward user=alice serial=1795430000 expires=2026-12-01T00:00:00Z
//! #keyward user=deploy kind=principals serial=1795430000 expires=2026-12-01T00:00:00Z
//! ```
//!
//! `user` stops a valid file being replayed for another user, `kind` a
//! principals file being served as a key list or the other way round (a
//! keys file has no `kind`, so hosts older than principals support refuse a
//! principals file as an unknown header field), `expires`
//! stops an old file (or a frozen mirror answering 304) being served forever,
//! and `serial` (never lower than the cached one) stops a rollback. The
//! header is an authorized_keys comment, so sshd and other tools ignore it.

use ssh_key::{PublicKey, SshSig};

use crate::entry::Kind;

/// The SSHSIG namespace keyward signatures use.
pub const NAMESPACE: &str = "keyward";
const PREFIX: &str = "#keyward ";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub user: String,
    pub kind: Kind,
    pub serial: u64,
    /// Unix time after which the file is refused.
    pub expires: i64,
}

impl Header {
    pub fn to_line(&self) -> String {
        let kind = match self.kind {
            Kind::Keys => "",
            Kind::Principals => " kind=principals",
        };
        format!(
            "{PREFIX}user={}{kind} serial={} expires={}",
            self.user,
            self.serial,
            format_utc(self.expires)
        )
    }
}

/// Whether `user` fits a header's `user=` field so that [`parse_header`]
/// reads back exactly this name: fields are split at spaces and at their
/// first `=`, and the header ends at the line break. A space would start a
/// field of the name's choosing (`alice kind=principals`: a keys file that
/// reads as alice's principals file); `=` is refused too, so no reader that
/// splits a field elsewhere can take it for another field; control
/// characters (line breaks among them) end or hide the line. The writer
/// refuses such a name and the reader refuses such a field.
pub fn check_user(user: &str) -> Result<(), String> {
    let bad = |c: char| c == ' ' || c == '=' || c.is_control();
    match user.chars().find(|&c| bad(c)) {
        _ if user.is_empty() => Err("empty user in the header".into()),
        Some(c) => Err(format!(
            "user name {user:?} contains {c:?}, which a #keyward header cannot carry"
        )),
        None => Ok(()),
    }
}

/// What a `#keyward` header's `kind=` says the file is (a keys file has
/// none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Principals,
    /// The directory's revocation list (`revocation::list`): no `user=`.
    Revoked,
}

/// The fields of a `#keyward` header line, each given at most once; any
/// other field is an error, so that a file of a kind a reader does not
/// know is refused, never taken for one it knows. Which fields a kind
/// needs is its own parser's rule ([`parse_header`], [`parse_list_header`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    pub user: Option<String>,
    pub kind: Option<FileKind>,
    pub serial: Option<u64>,
    pub expires: Option<i64>,
    /// A revocation list's KRL: the SHA-256 of `revoked.krl` published
    /// with it (unpadded base64), which binds the KRL to the list.
    pub krl: Option<String>,
}

/// Parses the header fields of `line` (the file's first line).
pub fn parse_fields(line: &str) -> Result<Fields, String> {
    let rest = line
        .strip_prefix(PREFIX)
        .ok_or("signed file does not start with a #keyward header")?;
    let mut f = Fields::default();
    for field in rest.split(' ').filter(|f| !f.is_empty()) {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| format!("bad header field {field:?}"))?;
        let dup = match k {
            "user" => {
                check_user(v)?;
                f.user.replace(v.to_owned()).is_some()
            }
            "kind" => f
                .kind
                .replace(match v {
                    "principals" => FileKind::Principals,
                    "revoked" => FileKind::Revoked,
                    _ => return Err(format!("bad kind {v:?}")),
                })
                .is_some(),
            "serial" => f
                .serial
                .replace(v.parse::<u64>().map_err(|_| format!("bad serial {v:?}"))?)
                .is_some(),
            "expires" => f
                .expires
                .replace(parse_utc(v).ok_or_else(|| format!("bad expires {v:?}"))?)
                .is_some(),
            "krl" => {
                let b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
                if v.len() != 43 || !v.bytes().all(b64) {
                    return Err(format!("bad krl {v:?} (a SHA-256 in unpadded base64)"));
                }
                f.krl.replace(v.to_owned()).is_some()
            }
            _ => return Err(format!("unknown header field {k:?}")),
        };
        if dup {
            return Err(format!("header field {k:?} given twice"));
        }
    }
    Ok(f)
}

/// Parses a user's file header, which must be the first line of the file.
pub fn parse_header(body: &str) -> Result<Header, String> {
    let f = parse_fields(body.lines().next().unwrap_or_default())?;
    if f.krl.is_some() {
        return Err("a user's file header has no krl=".into());
    }
    let kind = match f.kind {
        None => Kind::Keys,
        Some(FileKind::Principals) => Kind::Principals,
        Some(FileKind::Revoked) => {
            return Err("signed file is a revocation list, not a user's file".into())
        }
    };
    Ok(Header {
        user: f.user.ok_or("header has no user=")?,
        kind,
        serial: f.serial.ok_or("header has no serial=")?,
        expires: f.expires.ok_or("header has no expires=")?,
    })
}

/// The header of a revocation list: `kind=revoked`, no `user=` (it is the
/// whole directory's); `serial=` and `expires=` are optional here (an
/// unsigned list has neither) and required by [`check_list_header`];
/// `krl=` names the KRL published with the list.
pub fn parse_list_header(line: &str) -> Result<Fields, String> {
    let f = parse_fields(line).map_err(|e| format!("not a keyward revocation list header: {e}"))?;
    if f.kind != Some(FileKind::Revoked) {
        return Err("not a keyward revocation list (no kind=revoked in its header)".into());
    }
    if f.user.is_some() {
        return Err("a revocation list header has no user=".into());
    }
    Ok(f)
}

/// The signed-file rules for a revocation list's header: a serial (the
/// rollback floor is `state::Floor`'s rule) and an expiry not yet reached.
pub fn check_list_header(
    serial: Option<u64>,
    expires: Option<i64>,
    now: i64,
) -> Result<u64, String> {
    let serial = serial.ok_or("signed revocation list has no serial=")?;
    let expires = expires.ok_or("signed revocation list has no expires=")?;
    if expires <= now {
        return Err(format!(
            "signed revocation list expired at {}",
            format_utc(expires)
        ));
    }
    Ok(serial)
}

/// Checks a parsed header against the request: right user and kind, not
/// expired. (The rollback floor is `state::Floor`'s rule.)
pub fn check_header(h: &Header, user: &str, kind: Kind, now: i64) -> Result<(), String> {
    if h.user != user {
        return Err(format!(
            "signed file is for user {:?}, not {user:?}",
            h.user
        ));
    }
    if h.kind != kind {
        return Err(format!(
            "signed file is a {} file, not a {} file",
            h.kind.as_str(),
            kind.as_str()
        ));
    }
    if h.expires <= now {
        return Err(format!("signed file expired at {}", format_utc(h.expires)));
    }
    Ok(())
}

/// Which key signed a file: the SHA-256 fingerprint of a pinned signer.
/// Entries and floors record it, so that removing a signer from the
/// config voids what it signed.
pub type Signer = ssh_key::Fingerprint;

/// A signer key's fingerprint, as entries and floors record it.
pub fn fingerprint(key: &PublicKey) -> Signer {
    key.fingerprint(ssh_key::HashAlg::Sha256)
}

/// Verifies `sig_pem` over `body` against the pinned `signers`; returns
/// the signer that made it.
pub fn verify(body: &[u8], sig_pem: &[u8], signers: &[PublicKey]) -> Result<Signer, String> {
    let sig = SshSig::from_pem(sig_pem).map_err(|e| format!("bad signature file: {e}"))?;
    if sig.namespace() != NAMESPACE {
        return Err(format!(
            "signature namespace {:?} is not {NAMESPACE:?}",
            sig.namespace()
        ));
    }
    let signer = signers
        .iter()
        .find(|s| s.key_data() == sig.public_key())
        .ok_or_else(|| {
            let fp =
                PublicKey::from(sig.public_key().clone()).fingerprint(ssh_key::HashAlg::Sha256);
            format!("signed by {fp}, which is not a configured signer")
        })?;
    signer
        .verify(NAMESPACE, body, &sig)
        .map_err(|e| format!("signature does not verify: {e}"))?;
    Ok(fingerprint(signer))
}

/// Everything a signed directory answer must pass.
pub fn check_file(
    body: &str,
    sig_pem: &[u8],
    signers: &[PublicKey],
    user: &str,
    kind: Kind,
    now: i64,
) -> Result<(Header, Signer), String> {
    let signer = verify(body.as_bytes(), sig_pem, signers)?;
    let h = parse_header(body)?;
    check_header(&h, user, kind, now)?;
    Ok((h, signer))
}

/// `YYYY-MM-DDTHH:MM:SSZ` → Unix time.
pub fn parse_utc(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let e = crate::keyline::ExpiryTime {
        year: y as i32,
        month: mo,
        day: d,
        hour: h,
        minute: mi,
        second: se,
        utc: true,
    };
    e.epoch()
}

/// Unix time → `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_utc(t: i64) -> String {
    let u = crate::os::clock::utc_fields(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        u.year, u.month, u.day, u.hour, u.minute, u.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_round_trip() {
        for t in [0, 1, 86399, 951782400, 1795430000, 4102444800] {
            assert_eq!(parse_utc(&format_utc(t)), Some(t), "{t}");
        }
        assert_eq!(format_utc(1893456000), "2030-01-01T00:00:00Z");
        assert!(parse_utc("2030-01-01 00:00:00Z").is_none());
        assert!(parse_utc("2030-13-01T00:00:00Z").is_none());
        assert!(parse_utc("2030-01-01T00:00:00").is_none());
        assert!(parse_utc("+030-01-01T00:00:00Z").is_none());
    }

    #[test]
    fn header_parse_and_checks() {
        let body = "#keyward user=alice serial=5 expires=2030-01-01T00:00:00Z\nssh-ed25519 AAAA\n";
        let h = parse_header(body).unwrap();
        assert_eq!(
            h,
            Header {
                user: "alice".into(),
                kind: Kind::Keys,
                serial: 5,
                expires: 1893456000
            }
        );
        assert_eq!(parse_header(&format!("{}\n", h.to_line())).unwrap(), h);
        let now = 1893456000 - 10;
        let k = Kind::Keys;
        assert!(check_header(&h, "alice", k, now).is_ok());
        assert!(check_header(&h, "bob", k, now)
            .unwrap_err()
            .contains("not \"bob\""));
        assert!(check_header(&h, "alice", k, 1893456000)
            .unwrap_err()
            .contains("expired"));
        // A keys file is never a principals file, nor the reverse.
        let err = check_header(&h, "alice", Kind::Principals, now).unwrap_err();
        assert!(err.contains("a keys file, not a principals file"), "{err}");
        let p = Header {
            user: "deploy@corp".into(),
            kind: Kind::Principals,
            ..h
        };
        assert_eq!(
            p.to_line(),
            "#keyward user=deploy@corp kind=principals serial=5 expires=2030-01-01T00:00:00Z"
        );
        assert_eq!(parse_header(&p.to_line()).unwrap(), p);
        assert!(check_header(&p, "deploy@corp", k, now).is_err());
        assert!(check_header(&p, "deploy@corp", Kind::Principals, now).is_ok());
        // The rollback rule is state::Floor's (tested there).
    }

    #[test]
    fn bad_headers() {
        for b in [
            "",
            "ssh-ed25519 AAAA\n",
            "# keyward user=a serial=1 expires=2030-01-01T00:00:00Z",
            "#keyward user=a serial=x expires=2030-01-01T00:00:00Z",
            "#keyward user=a serial=1",
            "#keyward user=a user=b serial=1 expires=2030-01-01T00:00:00Z",
            "#keyward user=a serial=1 expires=2030-01-01T00:00:00Z extra=1",
            "#keyward user=a serial=1 expires=tomorrow",
            "#keyward user=a kind=keys serial=1 expires=2030-01-01T00:00:00Z",
            "#keyward user=a kind=principals kind=principals serial=1 expires=2030-01-01T00:00:00Z",
            "#keyward user=a kind=revoked serial=1 expires=2030-01-01T00:00:00Z",
            "#keyward kind=revoked serial=1 expires=2030-01-01T00:00:00Z",
        ] {
            assert!(parse_header(b).is_err(), "{b:?}");
        }
    }

    #[test]
    fn a_revocation_list_header_is_never_a_users_and_the_reverse() {
        let line = "#keyward kind=revoked serial=7 expires=2030-01-01T00:00:00Z";
        let sv = |l: &str| parse_list_header(l).map(|f| (f.serial, f.expires, f.krl));
        assert_eq!(sv(line), Ok((Some(7), Some(1893456000), None)));
        // Field order is free, as in every header; unsigned: neither field.
        assert_eq!(
            sv("#keyward expires=2030-01-01T00:00:00Z kind=revoked serial=7"),
            Ok((Some(7), Some(1893456000), None))
        );
        assert_eq!(sv("#keyward kind=revoked"), Ok((None, None, None)));
        let krl = "rdfa9pYnZd6QEBqzkP2ZkVohtuy6xKe89ol+YJiDGRY";
        assert_eq!(
            sv(&format!("#keyward kind=revoked serial=7 krl={krl}")),
            Ok((Some(7), None, Some(krl.to_owned())))
        );
        // The KRL's hash binds a list, never a user's file.
        for bad in [
            format!("#keyward kind=revoked krl={krl} krl={krl}"),
            format!("#keyward kind=revoked krl={krl}="),
            "#keyward kind=revoked krl=abc".to_owned(),
        ] {
            assert!(parse_list_header(&bad).is_err(), "{bad:?}");
        }
        let user_krl =
            format!("#keyward user=alice serial=7 expires=2030-01-01T00:00:00Z krl={krl}\n");
        assert!(parse_header(&user_krl).unwrap_err().contains("krl="));
        let e = parse_header(line).unwrap_err();
        assert!(e.contains("revocation list, not a user's file"), "{e}");
        for bad in [
            "#keyward user=alice serial=7 expires=2030-01-01T00:00:00Z",
            "#keyward user=alice kind=principals serial=7 expires=2030-01-01T00:00:00Z",
            "#keyward user=alice kind=revoked serial=7 expires=2030-01-01T00:00:00Z",
            "#keyward kind=revoked kind=revoked",
            "#keyward kind=revoked serial=7 extra=1",
            "#keyward kind=revokedx",
            "#keyward-index kind=revoked",
            "#keyward  kind=revoked serial=x",
        ] {
            assert!(parse_list_header(bad).is_err(), "{bad:?}");
        }
        let now = 1893456000 - 1;
        assert_eq!(check_list_header(Some(7), Some(1893456000), now), Ok(7));
        assert!(check_list_header(Some(7), Some(1893456000), now + 1)
            .unwrap_err()
            .contains("expired"));
        assert!(check_list_header(None, Some(1893456000), now).is_err());
        assert!(check_list_header(Some(7), None, now).is_err());
    }

    #[test]
    fn names_a_header_cannot_carry_are_refused_by_writer_and_reader() {
        for ok in [
            "alice",
            "a@corp.example.com",
            "CORP\\alice",
            "host$",
            "ålice",
            "a#b",
            "a,b",
        ] {
            assert_eq!(check_user(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "a b", "a=b", "a\tb", "a\nb", "a\rb", "a\x1bb", "a\u{85}b", " ", "=",
        ] {
            assert!(check_user(bad).is_err(), "{bad:?}");
        }
        // What writing such a name would give: a keys file of user
        // `alice kind=principals` reads as alice's principals file.
        let forged = Header {
            user: "alice kind=principals".into(),
            kind: Kind::Keys,
            serial: 5,
            expires: 1893456000,
        };
        let read = parse_header(&forged.to_line()).unwrap();
        assert_eq!((read.user.as_str(), read.kind), ("alice", Kind::Principals));
        assert!(check_user(&forged.user).is_err(), "the writer refuses it");
        // The reader refuses a user field the writer never writes.
        for line in [
            "#keyward user=a=b serial=1 expires=2030-01-01T00:00:00Z",
            "#keyward user= serial=1 expires=2030-01-01T00:00:00Z",
            "#keyward user=a\x1bb serial=1 expires=2030-01-01T00:00:00Z",
            "#keyward user=a\u{85}b serial=1 expires=2030-01-01T00:00:00Z",
        ] {
            assert!(parse_header(line).is_err(), "{line:?}");
        }
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Write the header of name N, parse it: N again, or N is refused.
        #[test]
        fn a_header_reads_back_its_name_or_the_name_is_refused(
            user in "[a-z =#\\t\\n\\r\\x00-\\x1f\\x7f\\u{85}\\u{a0}\\u{2028}åé@.$-]{0,12}|\\PC{0,12}",
            principals in any::<bool>(),
            serial in any::<u64>(),
            expires in 0i64..253402300799,
        ) {
            let kind = if principals { Kind::Principals } else { Kind::Keys };
            let h = Header { user: user.clone(), kind, serial, expires };
            let read = parse_header(&format!("{}\nssh-ed25519 AAAA\n", h.to_line()));
            match check_user(&user) {
                Ok(()) => prop_assert_eq!(read, Ok(h)),
                Err(_) => prop_assert_ne!(read, Ok(h)),
            }
        }

        /// Whatever a header line says, what the reader takes from it is a
        /// name the writer writes, and writing it again gives the same header.
        #[test]
        fn every_parsed_header_is_one_the_writer_writes(
            fields in proptest::collection::vec(
                "user=[a-z =\\t\\x1b]{0,6}|kind=principals|serial=[0-9]{1,3}|expires=2030-01-01T00:00:00Z|[a-z]{1,3}",
                0..6,
            ),
            sep in "[ ]{1,2}",
        ) {
            let line = format!("#keyward {}", fields.join(&sep));
            if let Ok(h) = parse_header(&line) {
                prop_assert_eq!(check_user(&h.user), Ok(()));
                prop_assert_eq!(parse_header(&h.to_line()), Ok(h));
            }
        }
    }

    // `ssh-keygen -Y sign -f signer -n keyward` (and `-n file`) over "hello\n".
    const SIGNER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEuN5jeku28miWD/dsgOlgRMzx0WmOXKdjCBqGn1/Whc signer";
    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWSsRefCqjWZhyz7BRzqrg3BmBiJqp/8FK8vqpIWfsB other";
    const SIG_KEYWARD: &str = "-----BEGIN SSH SIGNATURE-----
U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAgS43mN6S7byaJYP92yA6WBEzPHR
aY5cp2MIGoafX9aFwAAAAHa2V5d2FyZAAAAAAAAAAGc2hhNTEyAAAAUwAAAAtzc2gtZWQy
NTUxOQAAAEACwKenf5fSY2hMB8iqRtugV4xgSVuMOkSU2tBzNf2Ha5C7awKrLatYNbEaF7
MAY4v5ZiRdhZ73CqHZzpjdE1YJ
-----END SSH SIGNATURE-----\n";
    const SIG_FILE_NS: &str = "-----BEGIN SSH SIGNATURE-----
U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAgS43mN6S7byaJYP92yA6WBEzPHR
aY5cp2MIGoafX9aFwAAAAEZmlsZQAAAAAAAAAGc2hhNTEyAAAAUwAAAAtzc2gtZWQyNTUx
OQAAAECcSxlsVQX6kI3fbTFt9oCnLSFbGjFD1dXI+7gtnf8wreySOkc7ZQXrgRLn5SDl0x
kBU7UXi8c5XLbNcdxx3IsD
-----END SSH SIGNATURE-----\n";

    #[test]
    fn only_a_pinned_signer_in_the_keyward_namespace_verifies() {
        let signer = PublicKey::from_openssh(SIGNER).unwrap();
        let other = PublicKey::from_openssh(OTHER).unwrap();
        let body = b"hello\n";
        let sig = SIG_KEYWARD.as_bytes();
        let fp = fingerprint(&signer);
        assert_eq!(verify(body, sig, std::slice::from_ref(&signer)), Ok(fp));
        // Found among several pinned keys, whatever the order.
        assert_eq!(verify(body, sig, &[other.clone(), signer.clone()]), Ok(fp));
        let e = verify(body, sig, std::slice::from_ref(&other)).unwrap_err();
        assert!(e.contains("not a configured signer"), "{e}");
        assert!(e.contains(&signer.fingerprint(ssh_key::HashAlg::Sha256).to_string()));
        assert!(verify(body, sig, &[]).is_err());
        let e = verify(b"hello!\n", sig, std::slice::from_ref(&signer)).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
        // A signature made for another purpose (ssh-keygen's "file") is not one.
        let e = verify(body, SIG_FILE_NS.as_bytes(), &[signer]).unwrap_err();
        assert!(e.contains("namespace \"file\""), "{e}");
    }

    #[test]
    fn utc_every_field_and_separator_is_checked() {
        assert_eq!(parse_utc("2030-01-01T00:00:00Z"), Some(1893456000));
        for (i, c) in [
            (4, '-'),
            (7, '-'),
            (10, 'T'),
            (13, ':'),
            (16, ':'),
            (19, 'Z'),
        ] {
            let mut s: Vec<char> = "2030-01-01T00:00:00Z".chars().collect();
            assert_eq!(s[i], c);
            s[i] = '0';
            let s: String = s.into_iter().collect();
            assert!(parse_utc(&s).is_none(), "{s}");
        }
        for ok in [
            "2030-12-31T23:59:59Z",
            "2030-01-31T00:00:00Z",
            "2016-12-31T23:59:60Z",
        ] {
            assert!(parse_utc(ok).is_some(), "{ok}");
        }
        for bad in [
            "2030-00-01T00:00:00Z",
            "2030-13-01T00:00:00Z",
            "2030-01-00T00:00:00Z",
            "2030-01-32T00:00:00Z",
            "2030-01-01T24:00:00Z",
            "2030-01-01T00:60:00Z",
            "2030-01-01T00:00:61Z",
            "2030-01-01T0a:00:00Z",
            "2030-01-01T00:00:00Z ",
        ] {
            assert!(parse_utc(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn utc_formatting_across_leap_days_centuries_and_the_epoch() {
        // Python: datetime(1970, 1, 1) + timedelta(seconds=t).
        for (t, s) in [
            (-1, "1969-12-31T23:59:59Z"),
            (-86400, "1969-12-31T00:00:00Z"),
            (-62135596800, "0001-01-01T00:00:00Z"),
            (68256000, "1972-03-01T00:00:00Z"),
            (951782399, "2000-02-28T23:59:59Z"),
            (951782400, "2000-02-29T00:00:00Z"),
            (951868800, "2000-03-01T00:00:00Z"),
            (4107542399, "2100-02-28T23:59:59Z"),
            (4107542400, "2100-03-01T00:00:00Z"),
            (1709251199, "2024-02-29T23:59:59Z"),
            (1709251200, "2024-03-01T00:00:00Z"),
            (946684799, "1999-12-31T23:59:59Z"),
            (253402300799, "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(format_utc(t), s, "{t}");
            assert_eq!(parse_utc(s), Some(t), "{s}");
        }
    }

    #[test]
    fn garbage_signature_refused() {
        assert!(verify(b"x", b"not a signature", &[])
            .unwrap_err()
            .contains("bad signature"));
    }
}
