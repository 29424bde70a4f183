//! A cache entry: what the directory last said for one user, and its
//! on-disk encoding (a small text header with the body's length and CRC-32,
//! then the raw body). Pure data and encoding; [`crate::cache`] does the
//! I/O and [`crate::state`] the rules about it.

const MAGIC: &str = "keyward-cache 1";

/// CRC-32/ISO-HDLC (zlib's `crc32`, what entries have always carried), from
/// a compile-time table: no CPU feature detection on the login path.
fn crc32(bytes: &[u8]) -> u32 {
    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    CRC.checksum(bytes)
}

/// Which directory file an entry caches: the user's authorized keys, or
/// the certificate principals the account accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    #[default]
    Keys,
    Principals,
}

impl Kind {
    /// As in log lines, URLs (`.keys`, `.principals`) and signed headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Keys => "keys",
            Kind::Principals => "principals",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The directory answered 200 with this body.
    Keys,
    /// The directory answered 404: the user has no keys.
    NoKeys,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Unix time (seconds) of the last answer from the directory.
    pub fetched_at: u64,
    pub status: Status,
    pub etag: Option<String>,
    /// The mirror URL that answered.
    pub url: String,
    /// Serial of a signed directory file, when signatures are used.
    pub serial: Option<u64>,
    /// The pinned signer that signed it (None: unsigned, or written before
    /// entries recorded their signer).
    pub signer: Option<ssh_key::Fingerprint>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt cache entry: {0}")]
pub struct Corrupt(pub &'static str);

/// Header values must not contain anything that breaks the line format.
fn header_safe(v: &str) -> bool {
    !v.is_empty() && v.len() <= 1024 && !v.chars().any(|c| c.is_control())
}

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        self.encode_for(None)
    }

    /// Encodes the entry with a `user` header line (what `Cache` writes: an
    /// entry names its user, so it is never served for another one).
    pub fn encode_for(&self, user: Option<&str>) -> Vec<u8> {
        let mut out = String::with_capacity(self.body.len() + 256);
        out.push_str(MAGIC);
        out.push('\n');
        if let Some(u) = user.filter(|u| header_safe(u)) {
            out.push_str(&format!("user {u}\n"));
        }
        out.push_str(&format!("fetched_at {}\n", self.fetched_at));
        out.push_str(match self.status {
            Status::Keys => "status 200\n",
            Status::NoKeys => "status 404\n",
        });
        if let Some(etag) = self.etag.as_deref().filter(|e| header_safe(e)) {
            out.push_str(&format!("etag {etag}\n"));
        }
        if header_safe(&self.url) {
            out.push_str(&format!("url {}\n", self.url));
        }
        if let Some(serial) = self.serial {
            out.push_str(&format!("serial {serial}\n"));
        }
        if let Some(signer) = &self.signer {
            out.push_str(&format!("signer {signer}\n"));
        }
        out.push_str(&format!("length {}\n", self.body.len()));
        out.push_str(&format!(
            "crc32 {:08x}

",
            crc32(self.body.as_bytes())
        ));
        out.push_str(&self.body);
        out.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Entry, Corrupt> {
        Entry::decode_for(bytes).map(|(e, _)| e)
    }

    /// Decodes an entry and the user its header names (None in entries
    /// written before the header had one).
    pub fn decode_for(bytes: &[u8]) -> Result<(Entry, Option<String>), Corrupt> {
        let sep = find(bytes, b"\n\n").ok_or(Corrupt("no header end"))?;
        let header = std::str::from_utf8(&bytes[..sep]).map_err(|_| Corrupt("header not UTF-8"))?;
        let body = &bytes[sep + 2..];
        let mut lines = header.lines();
        if lines.next() != Some(MAGIC) {
            return Err(Corrupt("unknown format"));
        }
        let (mut fetched_at, mut status, mut etag, mut url, mut serial, mut length, mut sum) =
            (None, None, None, String::new(), None, None, None);
        let (mut user, mut signer) = (None, None);
        for line in lines {
            let (k, v) = line.split_once(' ').ok_or(Corrupt("bad header line"))?;
            match k {
                "fetched_at" => fetched_at = v.parse::<u64>().ok(),
                "status" => {
                    status = match v {
                        "200" => Some(Status::Keys),
                        "404" => Some(Status::NoKeys),
                        _ => return Err(Corrupt("bad status")),
                    }
                }
                // Same rule as encode: a value encode would not write is
                // not trusted when read either.
                "etag" => etag = header_safe(v).then(|| v.to_owned()),
                "url" => {
                    url = if header_safe(v) {
                        v.to_owned()
                    } else {
                        String::new()
                    }
                }
                "user" => user = Some(v.to_owned()),
                "serial" => serial = Some(v.parse::<u64>().map_err(|_| Corrupt("bad serial"))?),
                "signer" => signer = Some(v.parse().map_err(|_| Corrupt("bad signer"))?),
                "length" => length = v.parse::<usize>().ok(),
                "crc32" => sum = u32::from_str_radix(v, 16).ok(),
                _ => {} // newer writers may add fields
            }
        }
        let fetched_at = fetched_at.ok_or(Corrupt("no fetched_at"))?;
        let status = status.ok_or(Corrupt("no status"))?;
        if length != Some(body.len()) {
            return Err(Corrupt("length mismatch (truncated?)"));
        }
        if sum != Some(crc32(body)) {
            return Err(Corrupt("checksum mismatch"));
        }
        let body = String::from_utf8(body.to_vec()).map_err(|_| Corrupt("body not UTF-8"))?;
        let entry = Entry {
            fetched_at,
            status,
            etag,
            url,
            serial,
            signer,
            body,
        };
        Ok((entry, user))
    }

    /// Seconds since the directory last answered; None if it claims to be
    /// from the future (clock trouble or tampering: not trusted as fresh).
    pub fn age(&self, now: u64) -> Option<u64> {
        now.checked_sub(self.fetched_at)
    }
}

/// Result of reading an entry.
#[derive(Debug)]
pub enum Lookup {
    Missing,
    /// Present but unusable; the reason is logged and the entry replaced.
    Corrupt(Corrupt),
    Found(Entry),
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_zlibs_crc32() {
        // The CRC-32/ISO-HDLC check value: entries written by earlier
        // versions (and by zlib.crc32) keep verifying.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    /// A signed entry comes back with its serial, its signer and its user:
    /// a signer lost on the way would make the entry unusable (and its
    /// floor unbound).
    #[test]
    fn a_signed_entry_round_trips_with_serial_signer_and_user() {
        let e = Entry {
            fetched_at: 1_700_000_000,
            status: Status::Keys,
            etag: Some("\"e1\"".into()),
            url: "http://d/alice".into(),
            serial: Some(42),
            signer: Some(crate::signed::Signer::Sha256([7; 32])),
            body: "ssh-ed25519 AAAA k\n".into(),
        };
        let (back, user) = Entry::decode_for(&e.encode_for(Some("alice"))).unwrap();
        assert_eq!(back, e);
        assert_eq!(user.as_deref(), Some("alice"));
        let unsigned = Entry {
            serial: None,
            signer: None,
            ..e
        };
        assert_eq!(Entry::decode(&unsigned.encode()), Ok(unsigned));
    }
}
