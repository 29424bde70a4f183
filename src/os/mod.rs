//! The operating-system layer: every libc call and every rule about the
//! machine (clock, accounts, privileges, safe paths) lives here once, so the
//! commands above it share one behaviour.

pub mod bulk;
pub mod clock;
pub mod command;
pub mod flock;
pub mod nss;
pub mod privdrop;
pub mod process;
pub mod safepath;
pub mod secret;
pub mod tally;
pub mod unixsock;
