//! pam_keyward module arguments, as raw bytes (they may not be UTF-8).
#![no_main]
use libfuzzer_sys::fuzz_target;
use pam_keyward::pam::args::Args;

fuzz_target!(|data: &[u8]| {
    // Split on NUL like argv: each piece is one module argument.
    let parts: Vec<&[u8]> = data.split(|b| *b == 0).collect();
    if let Ok(args) = Args::parse_bytes(&parts) {
        // What parsed renders back to arguments that parse the same way.
        let canon = args.canonical();
        let again: Vec<&str> = canon.split(' ').filter(|s| !s.is_empty()).collect();
        assert!(Args::parse(&again).is_ok(), "{canon:?}");
    }
});
