//! authorized_keys lines: parse, and a parsed line must re-serialise to one
//! line that parses to the same key and options.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pam_keyward::keyline::{parse_line, parse_options, split_options};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = split_options(s);
    let _ = parse_options(s);
    if let Ok(Some(k)) = parse_line(s) {
        let out = k.to_line();
        assert!(!out.contains('\n'));
        let again = parse_line(&out).expect("re-serialised line parses").expect("not blank");
        assert_eq!(again.options, k.options);
        assert_eq!(again.key.key_data(), k.key.key_data());
    }
});
