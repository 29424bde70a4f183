//! Accounts and groups through NSS, the way sshd and PAM see them: users
//! (`getpwnam_r`, `getpwuid_r`), groups (`getgrnam_r`, `getgrgid_r`), a
//! user's group list (`getgrouplist`) and the shadow entry (`getspnam_r`).
//! Every call is the reentrant one, with a buffer that grows on `ERANGE`;
//! "no such name" is `Ok(None)`, anything else an error.

use std::ffi::{c_char, c_int, CStr, CString};
use std::io;

/// Buffers for the reentrant lookups grow on ERANGE up to this size.
const MAX_BUF: usize = 1 << 20;
/// More groups than this is treated as a lookup error.
const MAX_GROUPS: usize = 1 << 16;

/// A passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// A group entry with its listed (supplementary) members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The shadow fields sshd and pam_unix look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadow {
    /// The password field (`*`, `!…` locked, a hash, or empty).
    pub password: String,
    /// Account expiry in days since 1970, when set.
    pub expire: Option<i64>,
}

/// getpwnam_r(3): "0 or ENOENT or ESRCH or EBADF or EPERM or ...: the given
/// name or uid was not found" (the same for the group and shadow calls).
fn not_found(rc: c_int) -> bool {
    matches!(
        rc,
        0 | libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM
    )
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

/// `p` as an owned string ("" for NULL).
///
/// # Safety
/// `p` is NULL or a C string that lives for the call.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// Runs one `get*_r` call with a growing buffer. `call` gets the buffer
/// and returns the call's code and, when an entry was found, what was read
/// out of it (before the buffer is reused).
fn reentrant<T>(
    mut call: impl FnMut(&mut [c_char]) -> (c_int, Option<T>),
) -> io::Result<Option<T>> {
    // glibc's own getpwnam starts at 1 KiB (NSS_BUFLEN_PASSWD): enough for
    // a passwd line, and no more fresh heap pages than needed (each is a
    // page fault on the login path).
    let mut buf = vec![0 as c_char; 1024];
    loop {
        let (rc, found) = call(&mut buf);
        if rc == libc::ERANGE && buf.len() < MAX_BUF {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return match found {
            Some(v) => Ok(Some(v)),
            None if not_found(rc) => Ok(None),
            None => Err(io::Error::from_raw_os_error(rc)),
        };
    }
}

/// # Safety
/// `pwd` was filled by a successful getpw*_r call whose buffer is alive.
unsafe fn account_of(pwd: &libc::passwd) -> Account {
    Account {
        name: text(pwd.pw_name),
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        home: text(pwd.pw_dir),
        shell: text(pwd.pw_shell),
    }
}

/// The account called `name`.
pub fn account(name: &str) -> io::Result<Option<Account>> {
    let c = c_name(name)?;
    reentrant(|buf| {
        // SAFETY: all-zero is a valid `passwd`; the out-pointers and the
        // buffer outlive the call, and the entry is copied out before the
        // buffer is reused.
        unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut res = std::ptr::null_mut();
            let rc = libc::getpwnam_r(c.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut res);
            (rc, (!res.is_null()).then(|| account_of(&pwd)))
        }
    })
}

/// The account with `uid`.
pub fn account_by_uid(uid: u32) -> io::Result<Option<Account>> {
    reentrant(|buf| {
        // SAFETY: as in `account`.
        unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut res = std::ptr::null_mut();
            let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut res);
            (rc, (!res.is_null()).then(|| account_of(&pwd)))
        }
    })
}

/// # Safety
/// `grp` was filled by a successful getgr*_r call whose buffer is alive.
unsafe fn group_of(grp: &libc::group) -> Group {
    let mut members = Vec::new();
    let mut m = grp.gr_mem;
    while !m.is_null() && !(*m).is_null() {
        members.push(text(*m));
        m = m.add(1);
    }
    Group {
        name: text(grp.gr_name),
        gid: grp.gr_gid,
        members,
    }
}

/// The group called `name`.
pub fn group(name: &str) -> io::Result<Option<Group>> {
    let c = c_name(name)?;
    reentrant(|buf| {
        // SAFETY: as in `account`.
        unsafe {
            let mut grp: libc::group = std::mem::zeroed();
            let mut res = std::ptr::null_mut();
            let rc = libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut res);
            (rc, (!res.is_null()).then(|| group_of(&grp)))
        }
    })
}

/// The group with `gid`.
pub fn group_by_gid(gid: u32) -> io::Result<Option<Group>> {
    reentrant(|buf| {
        // SAFETY: as in `account`.
        unsafe {
            let mut grp: libc::group = std::mem::zeroed();
            let mut res = std::ptr::null_mut();
            let rc = libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut res);
            (rc, (!res.is_null()).then(|| group_of(&grp)))
        }
    })
}

/// Every group `user` is in: `gid` (the primary group) first, then the
/// groups that list the user.
pub fn groups_of(user: &str, gid: u32) -> io::Result<Vec<u32>> {
    let c = c_name(user)?;
    let mut n: usize = 64;
    loop {
        let mut groups: Vec<libc::gid_t> = vec![0; n];
        let mut count = n as c_int;
        // SAFETY: `groups` holds `count` entries; count is updated.
        let rc = unsafe { libc::getgrouplist(c.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate((count.max(0) as usize).min(n));
            return Ok(groups);
        }
        // glibc sets count to the number needed.
        let needed = (count.max(0) as usize).max(n * 2);
        if needed > MAX_GROUPS {
            return Err(io::Error::other(format!("more than {MAX_GROUPS} groups")));
        }
        n = needed;
    }
}

/// Every account whose primary group is `gid`. Walks the whole passwd
/// database (getpwent_r): for doctor, never on the login path. The walk's
/// position is process-wide state; nothing else here enumerates accounts.
pub fn accounts_in_primary_group(gid: u32) -> io::Result<Vec<Account>> {
    let mut out = Vec::new();
    let mut buf = vec![0 as c_char; 16384];
    // SAFETY: setpwent/getpwent_r/endpwent as documented; each entry is
    // copied out before the buffer is reused.
    unsafe {
        libc::setpwent();
        let result = loop {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut res = std::ptr::null_mut();
            let rc = libc::getpwent_r(&mut pwd, buf.as_mut_ptr(), buf.len(), &mut res);
            if rc == libc::ERANGE && buf.len() < MAX_BUF {
                let len = buf.len();
                buf.resize(len * 4, 0);
                continue;
            }
            if res.is_null() {
                // ENOENT: the end of the database.
                break if rc == 0 || rc == libc::ENOENT {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(rc))
                };
            }
            if pwd.pw_gid == gid {
                out.push(account_of(&pwd));
            }
        };
        libc::endpwent();
        result.map(|()| out)
    }
}

/// The shadow entry of `name` (root only: others get an error).
pub fn shadow(name: &str) -> io::Result<Option<Shadow>> {
    let c = c_name(name)?;
    reentrant(|buf| {
        // SAFETY: as in `account`.
        unsafe {
            let mut sp: libc::spwd = std::mem::zeroed();
            let mut res = std::ptr::null_mut();
            let rc = libc::getspnam_r(c.as_ptr(), &mut sp, buf.as_mut_ptr(), buf.len(), &mut res);
            let found = (!res.is_null()).then(|| Shadow {
                password: text(sp.sp_pwdp),
                expire: (sp.sp_expire >= 0).then_some(sp.sp_expire as i64),
            });
            (rc, found)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_its_group() {
        let root = account("root").unwrap().unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(account_by_uid(0).unwrap().unwrap().name, "root");
        assert_eq!(group("root").unwrap().unwrap().gid, 0);
        assert_eq!(group_by_gid(0).unwrap().unwrap().name, "root");
        assert!(groups_of("root", 0).unwrap().contains(&0));
        assert!(accounts_in_primary_group(0)
            .unwrap()
            .iter()
            .any(|a| a.name == "root"));
    }

    #[test]
    fn unknown_names_are_none_and_nul_is_an_error() {
        assert_eq!(account("no-such-user-kw-4711").unwrap(), None);
        assert_eq!(group("no-such-group-kw-4711").unwrap(), None);
        assert_eq!(account_by_uid(4_000_000_000).unwrap(), None);
        assert!(account("a\0b").is_err());
        assert!(group("a\0b").is_err());
        assert!(groups_of("a\0b", 0).is_err());
    }

    #[test]
    fn shadow_as_root() {
        // The tests run as root (scripts/test.sh).
        let s = shadow("root").unwrap().unwrap();
        assert!(!s.password.is_empty());
        assert_eq!(shadow("no-such-user-kw-4711").unwrap(), None);
    }
}
