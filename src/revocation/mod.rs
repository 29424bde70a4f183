//! Revoked keys and certificates: ssh-keygen's KRL specs as the input
//! (`spec`), keyward's own sorted, signed list that a host searches without
//! reading it whole (`list`), and a real OpenSSH KRL for sshd's
//! `RevokedKeys` (`krl`). The design: docs/REVOCATION.md.

pub mod krl;
pub mod list;
pub mod spec;
