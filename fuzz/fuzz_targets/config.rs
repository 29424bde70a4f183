//! keyward.toml: any text gives a config or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = pam_keyward::config::Config::parse(s, std::path::Path::new("fuzz.toml"));
});
