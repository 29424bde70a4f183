//! The `#keyward user= serial= expires=` header of signed directory files.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pam_keyward::entry::Kind;
use pam_keyward::signed::{check_header, parse_header, parse_utc};
use pam_keyward::state::Floor;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = parse_utc(s);
    if let Ok(h) = parse_header(s) {
        // what was parsed renders back to the same header
        assert_eq!(parse_header(&h.to_line()).unwrap(), h);
        for kind in [Kind::Keys, Kind::Principals] {
            let _ = check_header(&h, "alice", kind, 1_800_000_000);
        }
        // the rollback floor's rule, on what was parsed
        let _ = Floor::of(5, s).admits(h.serial, s);
    }
});
