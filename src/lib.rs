//! keyward: managed, audited SSH authorized keys.
//!
//! This library is both the `pam_keyward.so` PAM module (cdylib) and the code
//! the `keyward` binary runs. Pure logic (parsing, policy, decisions) lives in
//! modules without I/O so it is unit-tested without a network. The flow and
//! where each rule lives: ARCHITECTURE.md.

// The command line and the login paths (`keyward keys`, `keyward principals`).
pub mod cli;
pub mod lookup;
pub mod principals;

// Pure rules.
pub mod config;
pub mod delta;
pub mod entry;
pub mod fetch;
pub mod index;
pub mod keyline;
pub mod policy;
pub mod revocation;
pub mod signed;
pub mod sshd;
pub mod state;
pub mod username;

// Sources and sinks.
pub mod audit;
pub mod cache;
pub mod chain;
pub mod directory;
pub mod files;
pub mod health;
pub mod indexcache;
pub mod statestore;

// The operating system: accounts, clock, processes, privileges, safe paths.
pub mod os;

// The other commands and their output.
pub mod checkconfig;
pub mod doctor;
pub mod explain;
pub mod metrics;
pub mod publish;
pub mod report;
pub mod sign;
pub mod source;
pub mod sync;
pub mod term;

// pam_keyward.so.
pub mod pam;
