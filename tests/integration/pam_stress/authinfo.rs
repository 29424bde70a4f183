//! `SSH_AUTH_INFO_0` values of every kind the generator uses, and whether one holds a public key.

use super::*;

pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = ((c[0] as u32) << 16)
            | ((*c.get(1).unwrap_or(&0) as u32) << 8)
            | (*c.get(2).unwrap_or(&0) as u32);
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

pub const INFO_KINDS: &[&str] = &[
    "missing",
    "empty",
    "blank-lines",
    "ed25519",
    "ecdsa",
    "rsa",
    "cert",
    "key+password",
    "password+key",
    "two-keys",
    "password",
    "kbd-interactive",
    "hostbased",
    "garbage-base64",
    "random-base64",
    "truncated-cert",
    "cert-blob-as-plain",
    "plain-blob-as-cert",
    "type-no-blob",
    "method-only",
    "crlf",
    "leading-blanks",
    "nbsp-before-method",
    "uppercase-method",
    "submethod",
    "not-utf8",
    "format-string",
    "key-after-32-lines",
    "key-then-40-lines",
    "over-64k",
    "exactly-64k",
    "huge-line",
    "control-chars",
    "random-bytes",
];

/// The value of `SSH_AUTH_INFO_0` for an info kind (None: not set).
pub fn auth_info(world: &World, kind: &str, r: &mut Rng) -> Option<Vec<u8>> {
    let (ed, ec, rsa, cert) = (&world.ed, &world.ec, &world.rsa, &world.cert);
    let cert_blob = cert.split(' ').nth(1).unwrap();
    let ed_blob = ed.split(' ').nth(1).unwrap();
    let s: String = match kind {
        "missing" => return None,
        "empty" => String::new(),
        "blank-lines" => "\n\n  \r\n\t\n".into(),
        "ed25519" => format!("publickey {ed}\n"),
        "ecdsa" => format!("publickey {ec}\n"),
        "rsa" => format!("publickey {rsa}\n"),
        "cert" => format!("publickey {cert}\n"),
        "key+password" => format!("publickey {ed}\npassword\n"),
        "password+key" => format!("password\npublickey {ec}\n"),
        "two-keys" => format!("publickey {ed}\npublickey {cert}"),
        "password" => "password\n".into(),
        "kbd-interactive" => "keyboard-interactive/pam\n".into(),
        "hostbased" => format!("hostbased {ed}\n"),
        "garbage-base64" => "publickey ssh-ed25519 AAAA!!!!not*base64\n".into(),
        "random-base64" => {
            let n = 1 + r.below(300);
            let data = r.bytes(n);
            let ty = r.pick(&[
                "ssh-ed25519",
                "ssh-rsa",
                "ecdsa-sha2-nistp256",
                "ssh-ed25519-cert-v01@openssh.com",
                "ssh-rsa-cert-v01@openssh.com",
                "sk-ssh-ed25519@openssh.com",
            ]);
            format!("publickey {ty} {}\n", base64(&data))
        }
        "truncated-cert" => format!(
            "publickey ssh-ed25519-cert-v01@openssh.com {}\n",
            &cert_blob[..cert_blob.len() / 2]
        ),
        "cert-blob-as-plain" => format!("publickey ssh-ed25519 {cert_blob}\n"),
        "plain-blob-as-cert" => format!("publickey ssh-ed25519-cert-v01@openssh.com {ed_blob}\n"),
        "type-no-blob" => "publickey ssh-ed25519\n".into(),
        "method-only" => "publickey\n".into(),
        "crlf" => format!("publickey {ed}\r\npassword\r\n"),
        "leading-blanks" => format!("  \t publickey {ed}\n"),
        "nbsp-before-method" => format!("\u{a0}publickey {ed}\n"),
        "uppercase-method" => format!("PUBLICKEY {ed}\n"),
        "submethod" => format!("publickey/x {ed}\n"),
        "not-utf8" => {
            let mut v = b"publickey \xff\xfe \xfd\xfc\n".to_vec();
            v.extend_from_slice(b"password\xc3\n");
            return Some(v);
        }
        "format-string" => "publickey %n%n%s%s %x%x%n\n".into(),
        "key-after-32-lines" => format!("{}publickey {ed}\n", "password\n".repeat(40)),
        "key-then-40-lines" => format!("publickey {ed}\n{}", "password\n".repeat(40)),
        "over-64k" => format!("publickey {ed}\n{}", "x".repeat(INFO_MAX_LEN)),
        "exactly-64k" => {
            let head = format!("publickey {ed}\n");
            format!("{head}{}", "y".repeat(INFO_MAX_LEN - head.len()))
        }
        "huge-line" => format!("publickey ssh-ed25519 {}\n", "A".repeat(60_000)),
        "control-chars" => "publickey \x1b[31m\x07 \x08\x7f\x01\npassword\x0c\n".into(),
        "random-bytes" => {
            let n = r.below(2000);
            return Some(r.bytes(n));
        }
        other => panic!("unknown info kind {other}"),
    };
    Some(s.into_bytes())
}

/// Whether the value names a `publickey` method with a key that parses, per
/// the contract: lines as sshd writes them (`METHOD[/SUB][ KEYTYPE
/// BASE64]`, CRLF tolerated, blank lines skipped), the first 32 lines,
/// values up to 64 KiB (longer ones are not parsed at all), read as UTF-8
/// (invalid bytes replaced). The word `publickey` alone is not enough: the
/// only parseable keys the generator writes are the world's real ones.
pub fn has_publickey(world: &World, info: &[u8]) -> bool {
    let real = [&world.ed, &world.ec, &world.rsa, &world.cert];
    let s = String::from_utf8_lossy(info);
    if s.len() > INFO_MAX_LEN {
        return false;
    }
    s.split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .take(INFO_MAX_LINES)
        .any(|l| {
            let mut toks = l.split_ascii_whitespace();
            let method = toks.next().unwrap_or("");
            let key = format!(
                "{} {}",
                toks.next().unwrap_or(""),
                toks.next().unwrap_or("")
            );
            method.split('/').next() == Some("publickey")
                && real
                    .iter()
                    .any(|r| r.split(' ').take(2).collect::<Vec<_>>().join(" ") == key)
        })
}
