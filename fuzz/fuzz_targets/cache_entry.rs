//! Cache entries read from disk: corrupt bytes are an error, never a panic,
//! and a decoded entry encodes back to bytes that decode to the same entry.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pam_keyward::cache::Entry;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Entry::decode(data) {
        assert_eq!(Entry::decode(&e.encode()).as_ref(), Ok(&e));
    }
});
