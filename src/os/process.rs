//! This process: its parent, and the alarm that ends it.

/// The parent process id (for keyward keys: the sshd that ran it, which
/// logs the matching "Accepted publickey" line under this pid).
pub fn parent_pid() -> u32 {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// Ends the process with SIGALRM after `secs` seconds (its default action
/// terminates: a hung keyward fails closed).
pub fn arm_alarm(secs: u64) {
    // SAFETY: alarm only schedules SIGALRM.
    unsafe {
        libc::alarm(secs.min(u32::MAX as u64) as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_is_not_us() {
        assert_ne!(parent_pid(), std::process::id());
        assert_ne!(parent_pid(), 0);
    }
}
