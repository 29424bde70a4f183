//! keyward: thin entry point. Parse arguments, run, map to an exit code.
//!
//! sshd runs `keyward keys` once per offered key and twice for the accepted
//! one, so start-up is most of a login's cost. `no_main` skips std's runtime
//! set-up (its main-thread stack guard parses /proc/self/maps, an eighth of a
//! cached lookup's instructions). What that set-up gives is not needed here:
//! SIGPIPE keeps its default action (a vanished reader ends keyward, which
//! fails closed), `cli::process` flushes stdout, and it catches every panic
//! (an unwind out of this `extern "C"` function would abort).

// Only for the real binary: under `cargo test` the harness brings its main.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
use std::ffi::{c_char, c_int};

#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    let started = std::time::Instant::now();
    // glibc hands argv to std through .init_array, so args_os works here.
    pam_keyward::cli::process(started)
}
