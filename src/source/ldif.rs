//! LDIF as `ldapsearch -LLL` prints it (RFC 2849, pure): entries separated
//! by blank lines, `attr: value`, `attr:: base64`, folded lines (a leading
//! space continues the line before), `#` comments, and search references
//! (`ref: ldap://…`, an entry without `dn`).

use base64ct::{Base64, Encoding};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    /// (attribute description as printed, value), in order.
    pub attrs: Vec<(String, String)>,
}

impl Entry {
    /// Every value of `attr` (compared without case, `;options` ignored).
    pub fn values(&self, attr: &str) -> Vec<String> {
        self.attrs
            .iter()
            .filter(|(a, _)| a.split(';').next().unwrap_or(a).eq_ignore_ascii_case(attr))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ldif {
    pub entries: Vec<Entry>,
    /// URLs of search references (parts of the tree held elsewhere).
    pub references: Vec<String>,
}

/// Parses `ldapsearch -LLL` output.
pub fn parse(text: &str) -> Result<Ldif, String> {
    let mut out = Ldif::default();
    for (no, record) in records(text) {
        let mut dn = None;
        let mut attrs = Vec::new();
        for (i, line) in record.iter().enumerate() {
            let (name, value) =
                attr_value(line).map_err(|e| format!("LDIF line {}: {e}", no + i))?;
            match name.as_str() {
                "dn" if dn.is_none() && i == 0 => dn = Some(value),
                "ref" if dn.is_none() => out.references.push(value),
                "version" if dn.is_none() && i == 0 => {}
                _ if dn.is_none() => {
                    return Err(format!("LDIF line {}: {name:?} before any dn:", no + i))
                }
                _ => attrs.push((name, value)),
            }
        }
        if let Some(dn) = dn {
            out.entries.push(Entry { dn, attrs });
        }
    }
    Ok(out)
}

/// The records of the text: unfolded lines without comments, with the
/// line number each record starts at.
fn records(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut out: Vec<(usize, Vec<String>)> = Vec::new();
    let mut current: Option<(usize, Vec<String>)> = None;
    let mut in_comment = false;
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(cont) = line.strip_prefix(' ') {
            // A folded comment continues the comment.
            if !in_comment {
                if let Some(last) = current.as_mut().and_then(|(_, r)| r.last_mut()) {
                    last.push_str(cont);
                }
            }
            continue;
        }
        in_comment = line.starts_with('#');
        if in_comment {
            continue;
        }
        if line.is_empty() {
            out.extend(current.take());
            continue;
        }
        current
            .get_or_insert_with(|| (i + 1, Vec::new()))
            .1
            .push(line.to_owned());
    }
    out.extend(current);
    out
}

fn attr_value(line: &str) -> Result<(String, String), String> {
    let (name, rest) = line
        .split_once(':')
        .ok_or_else(|| format!("no colon in {line:?}"))?;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-;.".contains(&b))
    {
        return Err(format!("bad attribute description {name:?}"));
    }
    let value = if let Some(b64) = rest.strip_prefix(':') {
        let bytes =
            Base64::decode_vec(b64.trim()).map_err(|_| format!("{name}: bad base64 value"))?;
        String::from_utf8(bytes).map_err(|_| format!("{name}: value is not UTF-8 text"))?
    } else if rest.starts_with('<') {
        return Err(format!("{name}: URL values (:<) are not read"));
    } else {
        rest.trim_start_matches(' ').to_owned()
    };
    Ok((name.to_owned(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_folded_lines_base64_and_references() {
        let text = "dn: uid=alice,ou=people,dc=example,dc=com\n\
uid: alice\n\
sshPublicKey: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDPMfwLtLu8ssdo0mwnJ/vRGH\n \
MD+DCCpN6dFEcKVLr8A laptop\n\
sshPublicKey:: c3NoLWVkMjU1MTkgQUFBQSBrZXkgd2l0aCB0cmFpbGluZyBuZXdsaW5lCg==\n\
\n\
# a comment\n\
#  folded\n \
comment\n\
dn:: dWlkPWLDtmIsZGM9eA==\n\
UID: b\u{f6}b\n\
\n\
# search reference\n\
ref: ldap://other.example.com/ou=people,dc=example,dc=com??sub\n\
\n";
        let l = parse(text).unwrap();
        assert_eq!(l.entries.len(), 2);
        let a = &l.entries[0];
        assert_eq!(a.dn, "uid=alice,ou=people,dc=example,dc=com");
        assert_eq!(a.values("uid"), ["alice"]);
        assert_eq!(
            a.values("sshpublickey"),
            [
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDPMfwLtLu8ssdo0mwnJ/vRGHMD+DCCpN6dFEcKVLr8A laptop",
                "ssh-ed25519 AAAA key with trailing newline\n",
            ]
        );
        assert_eq!(l.entries[1].dn, "uid=b\u{f6}b,dc=x");
        assert_eq!(l.entries[1].values("uid"), ["b\u{f6}b"]);
        assert_eq!(
            l.references,
            ["ldap://other.example.com/ou=people,dc=example,dc=com??sub"]
        );
    }

    #[test]
    fn malformed_ldif_is_an_error() {
        assert!(parse("uid: alice\n").is_err());
        assert!(parse("dn: x\nno colon here\n").is_err());
        assert!(parse("dn: x\nuid:: !!!\n").is_err());
        assert!(parse("dn: x\nuid:< file:///etc/passwd\n").is_err());
        assert_eq!(parse("").unwrap(), Ldif::default());
    }
}
