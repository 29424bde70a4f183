//! Group membership through NSS (getpwnam_r, getgrouplist, getgrnam_r):
//! what every PAM module does. Nothing else: no network of our own.

use std::ffi::{c_char, c_int, CString};

use super::decide::Accounts;

/// Buffers for the reentrant lookups grow on ERANGE up to this size.
const MAX_BUF: usize = 1 << 20;
/// More groups than this is treated as a lookup error.
const MAX_GROUPS: usize = 1 << 16;

/// The system's user and group databases.
pub struct Nss;

fn not_found(errno: c_int) -> bool {
    // getpwnam_r(3): "0 or ENOENT or ESRCH or EBADF or EPERM or ...: the
    // given name was not found".
    matches!(
        errno,
        0 | libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM
    )
}

fn errno_text(errno: c_int) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

fn cname(what: &str, name: &str) -> Result<CString, String> {
    CString::new(name).map_err(|_| format!("{what} name contains NUL"))
}

impl Accounts for Nss {
    fn user_gids(&self, user: &str) -> Result<Option<Vec<u32>>, String> {
        let c = cname("user", user)?;
        let gid = match crate::privdrop::account(user) {
            Ok(Some(acct)) => acct.gid,
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("getpwnam_r: {e}")),
        };
        let mut n: usize = 64;
        loop {
            let mut groups: Vec<libc::gid_t> = vec![0; n];
            let mut ngroups: c_int = n as c_int;
            // SAFETY: `groups` holds `ngroups` entries.
            let rc =
                unsafe { libc::getgrouplist(c.as_ptr(), gid, groups.as_mut_ptr(), &mut ngroups) };
            if rc >= 0 {
                groups.truncate((ngroups.max(0) as usize).min(n));
                return Ok(Some(groups));
            }
            // glibc sets ngroups to the number needed.
            let needed = (ngroups.max(0) as usize).max(n * 2);
            if needed > MAX_GROUPS {
                return Err(format!("getgrouplist: more than {MAX_GROUPS} groups"));
            }
            n = needed;
        }
    }

    fn group_gid(&self, group: &str) -> Result<Option<u32>, String> {
        let c = cname("group", group)?;
        let mut size = 4096;
        loop {
            let mut buf = vec![0 as c_char; size];
            // SAFETY: all-zero is a valid `group`.
            let mut grp: libc::group = unsafe { std::mem::zeroed() };
            let mut result: *mut libc::group = std::ptr::null_mut();
            // SAFETY: valid C string, buffer and out-pointers for the call.
            let rc = unsafe {
                libc::getgrnam_r(
                    c.as_ptr(),
                    &mut grp,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut result,
                )
            };
            if rc == libc::ERANGE && size < MAX_BUF {
                size *= 2;
                continue;
            }
            if !result.is_null() {
                return Ok(Some(grp.gr_gid));
            }
            if not_found(rc) {
                return Ok(None);
            }
            return Err(format!("getgrnam_r: {}", errno_text(rc)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_in_group_root() {
        let gids = Nss.user_gids("root").unwrap().unwrap();
        assert!(gids.contains(&0), "{gids:?}");
        assert_eq!(Nss.group_gid("root").unwrap(), Some(0));
    }

    #[test]
    fn unknown_names() {
        assert_eq!(Nss.user_gids("no-such-user-kw-4711").unwrap(), None);
        assert_eq!(Nss.group_gid("no-such-group-kw-4711").unwrap(), None);
        assert!(Nss.user_gids("a\0b").is_err());
    }
}
