//! `pam_keyward.so`: blocks password and keyboard-interactive logins in
//! sshd's `auth` stack (with audited exemptions), and records which key
//! opened each session. It acts only for the PAM services in `services=`
//! (default `sshd`) and answers PAM_IGNORE to every other one.
//!
//! ```text
//! auth     requisite  pam_keyward.so  allow_group=breakglass
//! session  required   pam_keyward.so  require_publickey allow_group=breakglass
//! ```
//!
//! This file is the FFI layer only: it reads the PAM items, hands them to
//! the pure code in [`decide`] (arguments in [`args`], `SSH_AUTH_INFO_0` in
//! [`authinfo`]) and logs the one record it returns with `pam_syslog(3)`
//! (facility authpriv, prefix `pam_keyward(SERVICE:STAGE):`; no
//! `openlog`, which would change the host program's ident).
//!
//! The entry points are written here rather than with `pamsm::pam_module!`
//! so that everything, argument conversion included, runs inside
//! `catch_unwind`, and a non-UTF-8 argument is logged like any other bad
//! argument instead of being refused silently. A caught panic fails closed
//! (`PAM_SERVICE_ERR`; `PAM_IGNORE` for setcred, which must never fail).

pub mod args;
pub mod authinfo;
pub mod decide;
pub mod nss;

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use pamsm::{LogLvl, Pam, PamError, PamLibExt};

use crate::audit::Severity;
use args::{ArgError, Args};
use decide::{Context, Ret, Stage, Verdict};

// `entry` views the raw handle as `&Pam`. pamsm 0.5.5 declares `Pam`
// `#[repr(transparent)]` over `*const c_void` (its own `pam_module!` takes it
// by value in `extern "C"` signatures), but the field is private, so a later
// version could change it: Cargo.toml pins `=0.5.5`, and this fails the build
// if the layout ever differs.
const _: () = assert!(
    std::mem::size_of::<Pam>() == std::mem::size_of::<*const c_void>()
        && std::mem::align_of::<Pam>() == std::mem::align_of::<*const c_void>()
);

/// `PAM_TTY` from `<security/_pam_types.h>` (pamsm has no getter).
const PAM_TTY: c_int = 3;

#[link(name = "pam")]
extern "C" {
    fn pam_get_item(pamh: *const c_void, item_type: c_int, item: *mut *const c_void) -> c_int;
}

fn code(ret: Ret) -> c_int {
    (match ret {
        Ret::Success => PamError::SUCCESS,
        Ret::Ignore => PamError::IGNORE,
        Ret::AuthErr => PamError::AUTH_ERR,
        Ret::PermDenied => PamError::PERM_DENIED,
        Ret::ServiceErr => PamError::SERVICE_ERR,
    }) as c_int
}

fn lossy(item: Result<Option<&CStr>, PamError>) -> String {
    match item {
        Ok(Some(s)) => s.to_string_lossy().into_owned(),
        _ => String::new(),
    }
}

/// The PAM items every record names.
fn context(pam: &Pam, pamh: *const c_void) -> Context {
    let (user, user_lossy) = match pam.get_cached_user() {
        Ok(Some(u)) => match u.to_str() {
            Ok(s) => (Some(s.to_owned()), false),
            Err(_) => (Some(u.to_string_lossy().into_owned()), true),
        },
        _ => (None, false),
    };
    let mut tty: *const c_void = std::ptr::null();
    // SAFETY: pamh is the live handle of this call; PAM_TTY is a C string
    // item owned by libpam.
    let tty = unsafe {
        if pam_get_item(pamh, PAM_TTY, &mut tty) == 0 && !tty.is_null() {
            CStr::from_ptr(tty as *const c_char)
                .to_string_lossy()
                .into_owned()
        } else {
            String::new()
        }
    };
    Context {
        service: lossy(pam.get_service()),
        user,
        user_lossy,
        rhost: lossy(pam.get_rhost()),
        tty,
    }
}

fn emit(pam: &Pam, verdict: &Verdict) {
    if let Some((severity, record)) = &verdict.log {
        let lvl = match severity {
            Severity::Err => LogLvl::ERR,
            Severity::Warning => LogLvl::WARNING,
            Severity::Notice => LogLvl::NOTICE,
            Severity::Info => LogLvl::INFO,
        };
        // Records are escaped (no NUL, no control characters).
        let _ = pam.syslog(lvl, &record.to_string());
    }
}

/// `argv` as byte strings.
///
/// # Safety
/// `argv` must point to `argc` C strings (as PAM guarantees).
unsafe fn raw_args<'a>(argc: c_int, argv: *const *const c_char) -> Result<Vec<&'a [u8]>, ArgError> {
    let bad = |reason: &str| ArgError {
        position: 0,
        arg: String::new(),
        reason: reason.to_owned(),
    };
    if argc < 0 {
        return Err(bad("negative argc"));
    }
    if argc == 0 {
        return Ok(Vec::new());
    }
    if argv.is_null() {
        return Err(bad("argv is NULL"));
    }
    if argc as usize > args::MAX_ARGS {
        return Err(bad(&format!(
            "{argc} arguments, at most {} allowed",
            args::MAX_ARGS
        )));
    }
    let mut out = Vec::with_capacity(argc as usize);
    for i in 0..argc as usize {
        let p = *argv.add(i);
        if p.is_null() {
            return Err(ArgError {
                position: i + 1,
                arg: String::new(),
                reason: "NULL argument".into(),
            });
        }
        out.push(CStr::from_ptr(p).to_bytes());
    }
    Ok(out)
}

/// One callback, inside catch_unwind.
///
/// # Safety
/// `pamh` is a live PAM handle, `argv` holds `argc` C strings.
unsafe fn run(
    stage: Stage,
    pam: &Pam,
    pamh: *const c_void,
    argc: c_int,
    argv: *const *const c_char,
) -> Ret {
    let parsed = raw_args(argc, argv).and_then(|raw| Args::parse_bytes(&raw));
    let args = match parsed {
        Ok(a) => a,
        Err(e) => {
            let v = decide::bad_args(&e, &context(pam, pamh), stage);
            emit(pam, &v);
            return v.ret;
        }
    };
    let ctx = context(pam, pamh);
    if let Some(v) = decide::other_service(&args, &ctx, stage) {
        emit(pam, &v);
        return v.ret;
    }
    let verdict = match stage {
        Stage::Authenticate => decide::authenticate(&args, &ctx, &nss::Nss),
        Stage::OpenSession => {
            let info = match pam.getenv("SSH_AUTH_INFO_0") {
                Ok(Some(v)) => Some(v.to_string_lossy().into_owned()),
                _ => None,
            };
            decide::open_session(&args, &ctx, info.as_deref(), &nss::Nss)
        }
        other => decide::passive(other),
    };
    emit(pam, &verdict);
    verdict.ret
}

/// Runs `body`; if it panics, runs `report` (itself guarded: a second
/// panic is caught and its payload leaked rather than dropped) and returns
/// `fail`. Nothing unwinds out of this function.
fn guarded(fail: Ret, body: impl FnOnce() -> Ret, report: impl FnOnce()) -> Ret {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(ret) => ret,
        Err(payload) => {
            let again = catch_unwind(AssertUnwindSafe(move || {
                drop(payload);
                report();
            }));
            if let Err(p) = again {
                std::mem::forget(p);
            }
            fail
        }
    }
}

/// The body of every exported callback.
///
/// # Safety
/// As [`run`]; `pamh` may be NULL (then nothing is touched).
unsafe fn entry(
    stage: Stage,
    pamh: *const c_void,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    let fail = stage.fail_closed();
    if pamh.is_null() {
        return code(fail);
    }
    // SAFETY: `Pam` is `#[repr(transparent)]` over the `pam_handle_t *`
    // (pamsm pinned at =0.5.5; size and alignment asserted above).
    let pam: &Pam = &*(&pamh as *const *const c_void as *const Pam);
    code(guarded(
        fail,
        || run(stage, pam, pamh, argc, argv),
        || emit(pam, &decide::internal_error(&context(pam, pamh), stage)),
    ))
}

macro_rules! callback {
    ($name:ident, $stage:expr) => {
        /// PAM service module entry point (see pam_sm_*(3)).
        ///
        /// # Safety
        /// Called by libpam with a live handle and `argc` C strings in `argv`.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            pamh: *const c_void,
            _flags: c_int,
            argc: c_int,
            argv: *const *const c_char,
        ) -> c_int {
            entry($stage, pamh, argc, argv)
        }
    };
}

callback!(pam_sm_authenticate, Stage::Authenticate);
callback!(pam_sm_setcred, Stage::Setcred);
callback!(pam_sm_acct_mgmt, Stage::Account);
callback!(pam_sm_open_session, Stage::OpenSession);
callback!(pam_sm_close_session, Stage::CloseSession);
callback!(pam_sm_chauthtok, Stage::Chauthtok);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_handle_fails_closed_without_touching_anything() {
        unsafe {
            assert_eq!(
                pam_sm_authenticate(std::ptr::null(), 0, 0, std::ptr::null()),
                PamError::SERVICE_ERR as c_int
            );
            assert_eq!(
                pam_sm_setcred(std::ptr::null(), 0, 0, std::ptr::null()),
                PamError::IGNORE as c_int
            );
        }
    }

    #[test]
    fn raw_args_checks_pointers() {
        unsafe {
            assert!(raw_args(-1, std::ptr::null()).is_err());
            assert!(raw_args(1, std::ptr::null()).is_err());
            assert_eq!(raw_args(0, std::ptr::null()).unwrap().len(), 0);
            let a = c"allow_user=alice";
            let argv = [a.as_ptr(), std::ptr::null()];
            let v = raw_args(1, argv.as_ptr()).unwrap();
            assert_eq!(v, [b"allow_user=alice".as_slice()]);
            let e = raw_args(2, argv.as_ptr()).unwrap_err();
            assert_eq!(e.position, 2);
        }
    }

    #[test]
    fn panics_are_caught_and_fail_closed() {
        let reported = std::cell::Cell::new(false);
        let r = guarded(
            Ret::ServiceErr,
            || panic!("in the body"),
            || reported.set(true),
        );
        assert_eq!(r, Ret::ServiceErr);
        assert!(reported.get());
        // A panic while reporting the first one is caught as well.
        let r = guarded(
            Ret::Ignore,
            || panic!("in the body"),
            || panic!("in the report"),
        );
        assert_eq!(r, Ret::Ignore);
        assert_eq!(
            guarded(Ret::ServiceErr, || Ret::Success, || ()),
            Ret::Success
        );
    }

    #[test]
    fn return_codes_match_libpam() {
        // <security/_pam_types.h>
        assert_eq!(code(Ret::Success), 0);
        assert_eq!(code(Ret::PermDenied), 6);
        assert_eq!(code(Ret::AuthErr), 7);
        assert_eq!(code(Ret::ServiceErr), 3);
        assert_eq!(code(Ret::Ignore), 25);
    }
}
