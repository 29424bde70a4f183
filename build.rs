//! Links the `keyward` binary with the login path's functions first.
//!
//! sshd runs `keyward keys` for every key offered, and on a cached lookup
//! the page faults on scattered code cost more than the code itself: the
//! kernel maps 64 KiB around each fault, and link-time optimisation spreads
//! the few hundred functions a lookup runs across 2 MB of text. The symbol
//! ordering file (bench/login-path.order, written by
//! `bench/bench.py --write-order`) lists them, so the linker puts them next
//! to each other: without it a cached lookup takes 15–16 more page faults
//! and 1.3–1.6 MiB more peak RSS (`bench/ab.py`, docs/BENCHMARKS.md). Names
//! missing from the binary (another compiler or dependency version) are
//! skipped silently: the order only places code.
//!
//! Only lld reads such a file. Rust links x86_64-unknown-linux-gnu with its
//! own lld since 1.90; elsewhere, or when a linker is configured, nothing
//! is added. `KEYWARD_SYMBOL_ORDER=0` turns it off.

use std::env;
use std::process::Command;

const ORDER: &str = "bench/login-path.order";

fn main() {
    println!("cargo:rerun-if-changed={ORDER}");
    println!("cargo:rerun-if-env-changed=KEYWARD_SYMBOL_ORDER");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let path =
        std::path::Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join(ORDER);
    if path.is_file() && ordering_applies() {
        println!(
            "cargo:rustc-link-arg-bin=keyward=-Wl,--symbol-ordering-file={}",
            path.display()
        );
        println!("cargo:rustc-link-arg-bin=keyward=-Wl,--no-warn-symbol-ordering");
    }
}

fn ordering_applies() -> bool {
    let var = |k: &str| env::var(k).unwrap_or_default();
    if var("KEYWARD_SYMBOL_ORDER") == "0"
        || var("PROFILE") != "release"
        || var("TARGET") != "x86_64-unknown-linux-gnu"
        || env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
    {
        return false;
    }
    // A linker or linker flavour chosen in RUSTFLAGS may not be lld.
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    if flags.contains("linker")
        || flags.contains("link-self-contained")
        || flags.contains("fuse-ld")
    {
        return false;
    }
    rustc_minor().is_some_and(|m| m >= 90)
}

/// The minor version of the compiler cargo uses (`rustc 1.95.0 (…)` → 95).
fn rustc_minor() -> Option<u32> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc).arg("-V").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.split_whitespace().nth(1)?;
    version.split('.').nth(1)?.parse().ok()
}
