//! Accounts, temporary uid switches and the permanent privilege drop.
//!
//! keyward needs root only to read users' own authorized_keys files
//! (`[files]`). It reads each file with the user's own uid, then drops to the
//! cache owner for good (groups, gid, uid, capabilities, no_new_privs)
//! before any network I/O. All of this runs before any thread exists, which
//! uid and capability changes (per-thread in the kernel) require.

use std::io;

/// Accounts come from the OS layer; re-exported for the callers here.
pub use crate::os::nss::{account, Account};

pub fn euid() -> u32 {
    // SAFETY: cannot fail.
    unsafe { libc::geteuid() }
}

fn check(rc: libc::c_int, what: &str) -> Result<(), String> {
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("{what}: {}", io::Error::last_os_error()))
    }
}

/// Runs `f` with the effective uid/gid (and only group) of `acct`, then
/// returns to root. Used by root only, to read a user's files as that user.
pub fn as_user<T>(acct: &Account, f: impl FnOnce() -> T) -> Result<T, String> {
    let gid = acct.gid as libc::gid_t;
    // SAFETY: plain syscalls; the previous ids are restored below.
    unsafe {
        check(libc::setgroups(1, &gid), "setgroups")?;
        check(libc::setegid(gid), "setegid")?;
        if let Err(e) = check(libc::seteuid(acct.uid), "seteuid") {
            libc::setegid(0);
            return Err(e);
        }
    }
    let out = f();
    unsafe {
        // Failing to get root back would leave us half-switched: stop.
        if libc::seteuid(0) != 0
            || libc::setegid(0) != 0
            || libc::setgroups(0, std::ptr::null()) != 0
        {
            return Err(format!("restoring root: {}", io::Error::last_os_error()));
        }
    }
    Ok(out)
}

/// The permanent drop to the `[cache] owner` (when root), capabilities
/// cleared: how every command leaves root before any network I/O.
pub fn drop_to(owner: &str) -> Result<(), String> {
    let acct = if euid() == 0 {
        account(owner).map_err(|e| format!("looking up [cache] owner: {e}"))?
    } else {
        None
    };
    drop_privileges(acct.as_ref()).map_err(|e| format!("dropping privileges to {owner:?}: {e}"))
}

/// Permanently becomes `acct` (when root) and clears every capability.
/// When not root, only clears capabilities and sets no_new_privs.
pub fn drop_privileges(acct: Option<&Account>) -> Result<(), String> {
    if euid() == 0 {
        let acct = acct.ok_or("running as root but the cache owner account does not exist")?;
        if acct.uid == 0 || acct.gid == 0 {
            return Err(format!(
                "[cache] owner {:?} has uid {} gid {}: it must be an unprivileged account (neither may be 0)",
                acct.name, acct.uid, acct.gid
            ));
        }
        // Needs CAP_SETPCAP, which only root still has here.
        caps::clear(None, caps::CapSet::Bounding).map_err(|e| format!("bounding set: {e}"))?;
        let gid = acct.gid as libc::gid_t;
        unsafe {
            check(libc::setgroups(1, &gid), "setgroups")?;
            check(libc::setresgid(gid, gid, gid), "setresgid")?;
            check(libc::setresuid(acct.uid, acct.uid, acct.uid), "setresuid")?;
            // Make sure there is no way back.
            if libc::setuid(0) == 0 || libc::seteuid(0) == 0 {
                return Err("privilege drop did not stick".into());
            }
        }
        verify_ids(acct.uid, acct.gid)?;
    }
    // Usually nothing is held (sshd starts us as the unprivileged user):
    // one capget(2) says so, where caps::read builds a set per set.
    if holds_capabilities() {
        for set in [caps::CapSet::Permitted, caps::CapSet::Inheritable] {
            if caps::read(None, set).map(|c| !c.is_empty()).unwrap_or(true) {
                caps::clear(None, set).map_err(|e| format!("clearing {set:?}: {e}"))?;
            }
        }
    }
    let _ = caps::clear(None, caps::CapSet::Ambient);
    check(
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) },
        "PR_SET_NO_NEW_PRIVS",
    )
}

/// Whether the permitted or the inheritable set holds any capability (or
/// capget fails, which counts as holding): one capget(2), version 3.
fn holds_capabilities() -> bool {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget with a v3 header and the two data words v3 fills.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    rc != 0 || data.iter().any(|d| d.permitted != 0 || d.inheritable != 0)
}

/// All three uids and gids (real, effective, saved) must be the target's:
/// a saved id of 0 would be a way back to root.
fn verify_ids(uid: u32, gid: u32) -> Result<(), String> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: out-parameters only.
    check(
        unsafe { libc::getresuid(&mut r, &mut e, &mut s) },
        "getresuid",
    )?;
    if [r, e, s] != [uid; 3] {
        return Err(format!(
            "privilege drop incomplete: uids {r}/{e}/{s}, want {uid}"
        ));
    }
    check(
        unsafe { libc::getresgid(&mut r, &mut e, &mut s) },
        "getresgid",
    )?;
    if [r, e, s] != [gid; 3] {
        return Err(format!(
            "privilege drop incomplete: gids {r}/{e}/{s}, want {gid}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_capget_agrees_with_caps() {
        let held = |set| !caps::read(None, set).unwrap().is_empty();
        assert_eq!(
            holds_capabilities(),
            held(caps::CapSet::Permitted) || held(caps::CapSet::Inheritable)
        );
    }

    #[test]
    fn root_account_exists() {
        let root = account("root").unwrap().unwrap();
        assert_eq!(root.uid, 0);
        assert!(account("no-such-user-kw").unwrap().is_none());
        assert!(account("a\0b").is_err());
    }
}
