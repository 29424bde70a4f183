//! The revocation part of a sync run: the list (by delta when the index
//! announces deltas, then as ever), the time it was last confirmed current
//! (the offline bound's clock), and the KRL for sshd's `RevokedKeys`.

use super::{delta, krl, revoked, Summary, SYNC_LOCK_WAIT};
use crate::config::Config;
use crate::directory::HttpDirectory;
use crate::os::clock::now_secs;
use crate::signed::Signer;
use crate::statestore::FloorStore;

/// The revocation list (what the index said of it: `listed`), the time it
/// was confirmed current, and the KRL for sshd.
pub(super) fn run(
    config: &Config,
    dir: &HttpDirectory,
    floors: &FloorStore,
    signers: Option<&[Signer]>,
    listed: &Option<Option<(crate::index::Digest, String)>>,
    deltas: bool,
    summary: &mut Summary,
) {
    use revoked::Listed;
    let l = match listed {
        None => Listed::NoIndex,
        Some(None) => Listed::Absent,
        Some(Some((hash, path))) => Listed::Line { hash: *hash, path },
    };
    let (rv, rdelta) = delta::revoked(config, dir, floors, signers, l, deltas);
    summary.revoked_delta = rdelta;
    summary.revoked_confirmed = confirm_revoked(config, floors, &rv, l);
    if let Some(dest) = &config.revocation.sshd_krl {
        let list_path = match l {
            Listed::Line { path, .. } => path,
            _ => revoked::DEFAULT_PATH,
        };
        summary.krl = Some(krl::sync(config, dest, dir, floors, list_path));
    }
    summary.revoked = Some(rv);
}

/// Records that the revocation list is confirmed current when this run
/// heard so from the directory (`revocation::offline`: the offline
/// bound's clock), under the list's state lock: the list fetched (200) or
/// not modified (304), the index naming the installed list, or the index
/// listing none. A bare 404 for the list without an index is no
/// confirmation: anyone on the path can answer it.
fn confirm_revoked(
    config: &Config,
    floors: &FloorStore,
    rv: &revoked::Outcome,
    listed: revoked::Listed,
) -> Option<Result<u64, String>> {
    let heard = match rv.how {
        "installed" | "unchanged" | "304" => true,
        "none" => listed == revoked::Listed::Absent,
        _ => false,
    };
    if !heard {
        return None;
    }
    let confirm = || {
        let lock = floors
            .lock(revoked::FLOOR, SYNC_LOCK_WAIT)
            .map_err(|e| e.to_string())?;
        crate::revocation::offline::confirm(config, now_secs(), &lock)
    };
    Some(confirm())
}
