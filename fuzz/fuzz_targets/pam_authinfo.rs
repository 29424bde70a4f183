//! SSH_AUTH_INFO_0 as sshd hands it to the PAM session stage.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pam_keyward::pam::authinfo::AuthInfo;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let info = AuthInfo::parse(s);
    let _ = info.has_publickey();
    let _ = info.labels();
    for m in info.publickeys() {
        let _ = m.label();
    }
});
