//! keyward: managed, audited SSH authorized keys.
//!
//! This library is both the `pam_keyward.so` PAM module (cdylib) and the code
//! the `keyward` binary runs. Pure logic (parsing, policy, decisions) lives in
//! modules without I/O so it is unit-tested without a network.

pub mod audit;
pub mod cache;
pub mod checkconfig;
pub mod cli;
pub mod config;
pub mod directory;
pub mod doctor;
pub mod entry;
pub mod explain;
pub mod fetch;
pub mod files;
pub mod keyline;
pub mod layers;
pub mod lookup;
pub mod metrics;
pub mod os;
pub mod pam;
pub mod policy;
pub mod privdrop;
pub mod publish;
pub mod report;
pub mod safepath;
pub mod signed;
pub mod sshd;
pub mod state;
pub mod sync;
pub mod term;
pub mod username;
