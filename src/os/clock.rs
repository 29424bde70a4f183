//! "Now", as every rule about age and expiry sees it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in whole seconds. A clock before 1970 reads as 0, which makes
/// every cache entry look as if it came from the future: refetched, never
/// trusted as fresh (see `state`).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Unix time in milliseconds (mirror health: retry intervals below a second).
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whole seconds since `t` (a file's mtime); 0 for a time in the future.
pub fn secs_since(t: SystemTime) -> u64 {
    SystemTime::now()
        .duration_since(t)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
