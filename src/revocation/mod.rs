//! Revoked keys and certificates: ssh-keygen's KRL specs as the input
//! (`spec`), keyward's own sorted, signed list that a host searches without
//! reading it whole (`list`), and a real OpenSSH KRL for sshd's
//! `RevokedKeys` (`krl`); the copy a host enforces at login (`store`),
//! which sync keeps current (`crate::sync::revoked`).
//! The design: docs/REVOCATION.md.

pub mod krl;
pub mod list;
pub mod lookup;
pub mod offline;
pub mod spec;
pub mod store;
