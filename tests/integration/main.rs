//! Integration tests, compiled as one binary (shared helpers in `support`).
//! They run as root on a disposable Debian 12 machine and start private
//! instances of nginx, rsyslog and sshd on 127.0.0.1; see ../shared/TESTING.md.

mod support;

mod binary;
mod chain;
mod chain_sssd;
mod config_layers;
mod delta_sync;
mod demo;
mod docs_examples;
mod doctor;
mod guards;
mod identities;
mod index;
mod journal;
mod keys_directory;
mod keys_sshd;
mod login_args;
mod logjoin;
mod metrics;
mod mirror_health;
mod outage;
mod packages;
mod packaging;
mod packaging_systemd;
mod pam;
mod pam_stress;
mod principals;
mod publish_fetch_user;
mod publish_guard;
mod publish_pipeline;
mod publish_safety;
mod publish_sources;
mod revocation;
mod revocation_krl;
mod revocation_sshd;
mod revocation_sync;
mod robust;
mod signed;
mod stalled_log;
mod state_dir;
mod state_race;
mod sync;
