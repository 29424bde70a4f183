//! What the `keyward` binary asks of the system at start-up (issue 16): the
//! unwinder is linked in, so no libgcc_s.so.1 is loaded (its constructor
//! alone runs 12 CPUID instructions, VM exits on a cloud guest), and its
//! `_dl_find_object` calls are answered by keyward (build.rs, main.rs), so
//! the binary still starts on glibc 2.34 (RHEL 9).

use std::process::Command;
use std::time::Duration;

use crate::support::keyward::KEYWARD_BIN;
use crate::support::*;

fn readelf(args: &[&str]) -> String {
    let out = run(
        Command::new("readelf").args(args).arg(KEYWARD_BIN),
        Duration::from_secs(60),
    );
    assert!(out.success(), "readelf {args:?}: {out}");
    out.stdout
}

#[test]
fn binary_loads_no_libgcc_s_and_needs_glibc_2_34_at_most() {
    let needed: Vec<String> = readelf(&["-d", "-W"])
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .map(|l| {
            l.split('[')
                .nth(1)
                .unwrap_or("")
                .trim_end_matches(']')
                .to_owned()
        })
        .collect();
    // libc, and the loader itself when TLS needs `__tls_get_addr` (debug builds).
    assert!(
        needed
            .iter()
            .all(|n| n == "libc.so.6" || n.starts_with("ld-linux")),
        "shared libraries loaded at start: {needed:?}"
    );

    // Every version the binary requires of glibc (symbols and the
    // GLIBC_ABI_* markers alike), from the version-needs section.
    let versions = readelf(&["-V", "-W"]);
    let newest = versions
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut p = v.split('.');
            Some((
                p.next()?.parse::<u32>().ok()?,
                p.next().unwrap_or("0").parse::<u32>().ok()?,
            ))
        })
        .max()
        .expect("no GLIBC_ version needed");
    assert!(
        newest <= (2, 34),
        "needs GLIBC_{}.{}: RHEL 9 has 2.34",
        newest.0,
        newest.1
    );
    assert!(
        !versions.contains("GLIBC_ABI_DT_RELR"),
        "DT_RELR needs glibc 2.36"
    );

    // keyward's answer to the unwinder is internal: it interposes nothing.
    let dynsyms = readelf(&["--dyn-syms", "-W"]);
    assert!(!dynsyms.contains("_dl_find_object"), "{dynsyms}");
}
