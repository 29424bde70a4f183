//! The PAM module's view of accounts: group membership through NSS (what
//! every PAM module does), on top of the one OS layer. No network of our own.

use super::decide::Accounts;
use crate::os::nss;

/// The system's user and group databases.
pub struct Nss;

impl Accounts for Nss {
    fn user_gids(&self, user: &str) -> Result<Option<Vec<u32>>, String> {
        let acct = match nss::account(user) {
            Ok(Some(acct)) => acct,
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("getpwnam_r: {e}")),
        };
        nss::groups_of(user, acct.gid)
            .map(Some)
            .map_err(|e| format!("getgrouplist: {e}"))
    }

    fn group_gid(&self, group: &str) -> Result<Option<u32>, String> {
        nss::group(group)
            .map(|g| g.map(|g| g.gid))
            .map_err(|e| format!("getgrnam_r: {e}"))
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
