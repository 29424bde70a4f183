//! keyward: thin entry point. Parse arguments, run, map to an exit code.
//!
//! sshd runs `keyward keys` once per offered key and twice for the accepted
//! one, so start-up is most of a login's cost. `no_main` skips std's runtime
//! set-up (its main-thread stack guard parses /proc/self/maps, an eighth of a
//! cached lookup's instructions). What that set-up gives is not needed here:
//! SIGPIPE keeps its default action (a vanished reader ends keyward, which
//! fails closed) and stdout is flushed before returning.

// Only for the real binary: under `cargo test` the harness brings its main.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
use std::ffi::{c_char, c_int};
#[cfg(not(test))]
use std::io::Write;

#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    let started = std::time::Instant::now();
    // glibc hands argv to std through .init_array, so args_os works here.
    let code = pam_keyward::cli::main(std::env::args_os().collect(), started);
    let _ = std::io::stdout().flush();
    code
}

// The unwinder is linked in (libgcc_eh, as gcc's -static-libgcc does), not
// loaded: libgcc_s.so.1 costs every start 6 page faults, 9 system calls and
// its constructor's 12 CPUID instructions, each a VM exit on a cloud guest
// (docs/BENCHMARKS.md). Only this binary: the PAM module keeps libgcc_s.
#[cfg(all(not(test), target_os = "linux", target_env = "gnu"))]
#[link(name = "gcc_eh", kind = "static")]
extern "C" {}

/// libgcc_eh (GCC 12) finds unwind tables with glibc 2.35's
/// `_dl_find_object`. build.rs links this binary with
/// `--wrap=_dl_find_object`, so the unwinder calls this function instead:
/// the binary keeps starting on glibc 2.34 (RHEL 9), and glibc's own
/// `_dl_find_object` is not interposed for anyone else. See `os::unwind`.
///
/// # Safety
/// As glibc's: `result` points to a writable `struct dl_find_object`.
#[cfg(all(not(test), target_os = "linux", target_env = "gnu"))]
#[no_mangle]
pub unsafe extern "C" fn __wrap__dl_find_object(
    pc: *mut std::ffi::c_void,
    result: *mut pam_keyward::os::unwind::DlFindObject,
) -> c_int {
    // SAFETY: the caller's promise, passed on.
    unsafe { pam_keyward::os::unwind::dl_find_object(pc, result) }
}
