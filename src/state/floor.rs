//! The rollback floor: the highest signed file accepted for a user (or
//! for the directory index), its one rule, its text format, and whether it
//! binds under the configured signers. Pure.

use crate::entry::Corrupt;
use crate::signed::Signer;

/// The highest signed file accepted for a user: its serial, body hash and
/// the signer that signed it. A floor binds only while its signer is
/// trusted (`binding`); one written before floors recorded their signer
/// binds whatever the signers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Floor {
    pub serial: u64,
    pub sha256: [u8; 32],
    pub signer: Option<Signer>,
}

/// Why a signed file is refused by the floor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rollback {
    #[error("signed file serial {got} is lower than the highest accepted serial {floor} (rollback refused)")]
    Lower { got: u64, floor: u64 },
    #[error(
        "signed file reuses serial {serial} with a different body (rollback or forgery refused)"
    )]
    SameSerialOtherBody { serial: u64 },
}

const FLOOR_MAGIC: &str = "keyward-floor 1";

impl Floor {
    pub fn of(serial: u64, body: &str) -> Floor {
        use sha2::Digest;
        Floor {
            serial,
            sha256: sha2::Sha256::digest(body.as_bytes()).into(),
            signer: None,
        }
    }

    /// The same floor, recorded as `signer`'s.
    pub fn by(self, signer: Option<Signer>) -> Floor {
        Floor { signer, ..self }
    }

    /// The one rollback rule: a lower serial, or the same serial with
    /// another body, is refused.
    pub fn admits(&self, serial: u64, body: &str) -> Result<(), Rollback> {
        if serial < self.serial {
            return Err(Rollback::Lower {
                got: serial,
                floor: self.serial,
            });
        }
        self.admits_floor(&Floor::of(serial, body))
    }

    /// The same rule for a file known by its floor (serial and hash).
    pub fn admits_floor(&self, new: &Floor) -> Result<(), Rollback> {
        if new.serial < self.serial {
            return Err(Rollback::Lower {
                got: new.serial,
                floor: self.serial,
            });
        }
        if new.serial == self.serial && new.sha256 != self.sha256 {
            return Err(Rollback::SameSerialOtherBody { serial: new.serial });
        }
        Ok(())
    }

    /// A newly accepted file against the floor on disk (read under its
    /// lock): refused below it; otherwise the floor to write, if higher.
    pub fn raise(disk: Option<Floor>, new: Floor) -> Result<Option<Floor>, Rollback> {
        match disk {
            Some(d) => d
                .admits_floor(&new)
                .map(|()| (new.serial > d.serial).then_some(new)),
            None => Ok(Some(new)),
        }
    }

    /// The higher of two floors (a new file's floor never lowers it).
    pub fn max(a: Option<Floor>, b: Option<Floor>) -> Option<Floor> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.serial > a.serial { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    pub fn encode(&self) -> String {
        let hex: String = self.sha256.iter().map(|b| format!("{b:02x}")).collect();
        let mut s = format!("{FLOOR_MAGIC}\nserial {}\nsha256 {hex}\n", self.serial);
        if let Some(signer) = &self.signer {
            s.push_str(&format!("signer {signer}\n"));
        }
        s
    }

    pub fn decode(text: &str) -> Result<Floor, Corrupt> {
        let mut lines = text.lines();
        if lines.next() != Some(FLOOR_MAGIC) {
            return Err(Corrupt("unknown floor format"));
        }
        let (mut serial, mut sha, mut signer) = (None, None, None);
        for line in lines {
            match line.split_once(' ') {
                Some(("serial", v)) => serial = v.parse::<u64>().ok(),
                Some(("sha256", v)) => sha = parse_hex32(v),
                Some(("signer", v)) => {
                    signer = Some(v.parse().map_err(|_| Corrupt("bad floor signer"))?)
                }
                _ => return Err(Corrupt("bad floor line")),
            }
        }
        Ok(Floor {
            serial: serial.ok_or(Corrupt("floor has no serial"))?,
            sha256: sha.ok_or(Corrupt("floor has no sha256"))?,
            signer,
        })
    }
}

fn parse_hex32(v: &str) -> Option<[u8; 32]> {
    if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&v[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The floor that binds: none when its signer is no longer trusted (a
/// removed signer's absurd serial must not lock out the new signer). A
/// floor that records no signer binds whatever the signers.
pub fn binding(floor: Option<Floor>, signers: &[Signer]) -> Option<Floor> {
    floor.filter(|f| f.signer.is_none_or(|s| signers.contains(&s)))
}
