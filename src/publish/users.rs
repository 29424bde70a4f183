//! The users' files of one publish run: for each user the source lists,
//! keep the file already published or build and sign a new one (which
//! publish then writes, on one thread).
//! Users are independent of each other, so the work is split over a few
//! threads (reading the old file, parsing and judging every key line and
//! signing cost the same per user): a republish of a large directory where
//! few users changed is bound by this loop.

use super::outdir::{Names, OutDir};
use super::*;

/// Fewer users than this per thread are done on one thread.
const MIN_PER_THREAD: usize = 512;

/// What one user gave.
#[derive(Default)]
pub(super) struct Step {
    /// None: nothing published for the user (a failed fetch with no file
    /// published before).
    pub published: Option<Published>,
    /// A new file to write, then rename into place with every other user's.
    pub write: Option<Write>,
    /// A signature left by an earlier signed run that no longer matches.
    pub stale_sig: Option<String>,
    pub note: Option<String>,
}

/// A user's new file, built and signed.
pub(super) struct Write {
    pub name: String,
    pub body: Vec<u8>,
    pub sig: Option<Vec<u8>>,
}

/// Every user's step, in the order of `items`; the first error fails the
/// run (what was staged is then dropped, leaving OUT as it was).
pub(super) fn steps(
    o: &Options,
    out: &OutDir,
    present: &Names,
    key: Option<&ssh_key::PublicKey>,
    items: &[Item],
    now: i64,
) -> Result<Vec<Step>, String> {
    // ssh-keygen may ask for a passphrase on the terminal: one at a time.
    let min = match o.signer {
        Some(s) if !s.is_native() => usize::MAX,
        _ => MIN_PER_THREAD,
    };
    crate::os::bulk::map(items, min, |i| step(o, out, present, key, i, now))
}

/// One user: the file published before is kept when this run would write
/// the same bytes; otherwise a new file (and signature) is staged.
fn step(
    o: &Options,
    out: &OutDir,
    present: &Names,
    key: Option<&ssh_key::PublicKey>,
    item: &Item,
    now: i64,
) -> Result<Step, String> {
    let (user, kind) = (&item.user, item.kind);
    let name = out_name(user, kind);
    let old = previous(o, out, &name, key, last_serial)?;
    let mut done = Step::default();
    if let Got::Failed(why) = &item.got {
        let kept = match old {
            Some(_) => "the file published before is kept",
            None => "nothing was published for it before",
        };
        done.note = Some(format!("{user}: no answer from the source ({why}); {kept}"));
    }
    let Some(text) = input_text(item, old.as_deref()) else {
        return Ok(done);
    };
    // An unchanged file is left as it is (same bytes, same serial, same
    // mtime and ETag): servers then have nothing to fetch for it.
    if let Some(p) = keep(o, present, user, kind, &text, old.as_deref(), now) {
        done.published = Some(p);
        return Ok(done);
    }
    let header = o.signer.map(|_| Header {
        user: user.clone(),
        kind,
        serial: next_serial(o.serial, old.as_deref().and_then(last_serial)),
        expires: o.expires,
    });
    let (body, published) = build(o, user, kind, &text, header.as_ref(), now);
    let sig = sign(o, &name, body.as_bytes())?;
    if o.signer.is_none() {
        // A signature of an earlier signed run would not match.
        done.stale_sig = Some(format!("{name}.sig"));
    }
    done.published = Some(published);
    done.write = Some(Write {
        name,
        body: body.into_bytes(),
        sig,
    });
    Ok(done)
}
