//! Cache entries on disk, as the robustness tests plant, age and inspect
//! them (the format is keyward's own `cache::Entry`), FIFOs, and a tiny
//! tmpfs for the disk-full case.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pam_keyward::cache::Entry;

use super::{chmod, chown_to, must, run, unique, user_ids};

/// `.tmp-*` files left in a cache directory.
pub fn tmp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Every name in a directory.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Puts `bytes` at `path` (rename over), owned by keyward, 0640: what
/// keyward itself would have written.
pub fn plant_entry(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(format!(".plant-{}", unique()));
    fs::write(&tmp, bytes).unwrap();
    chown_to(&tmp, "keyward");
    chmod(&tmp, 0o640);
    fs::rename(&tmp, path).unwrap();
}

pub fn decode(bytes: &[u8]) -> Entry {
    Entry::decode(bytes).unwrap_or_else(|e| panic!("cache entry does not decode: {e}"))
}

pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits until `fetched_at` is at least `secs` seconds in the past.
pub fn age_past(fetched_at: u64, secs: u64) {
    while now_s() < fetched_at + secs {
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn mkfifo(path: &Path) {
    must(Command::new("mkfifo").arg("-m").arg("0640").arg(path));
}

/// A small tmpfs mounted over a directory; unmounted on drop.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    pub fn mount(path: &Path, size: &str, owner: &str) -> Tmpfs {
        let (uid, gid) = user_ids(owner).unwrap();
        must(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},mode=0750,uid={uid},gid={gid}"))
                .arg("tmpfs")
                .arg(path),
        );
        Tmpfs {
            path: path.to_owned(),
        }
    }

    /// Fills the filesystem with a hidden file until ENOSPC.
    pub fn fill(&self) {
        let mut f = fs::File::create(self.path.join(".filler")).unwrap();
        let chunk = [0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        // the last page may take a smaller write
        while f.write_all(&chunk[..1]).is_ok() {}
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let out = run(
            Command::new("umount").arg(&self.path),
            Duration::from_secs(30),
        );
        if !out.success() {
            let _ = run(
                Command::new("umount").arg("-l").arg(&self.path),
                Duration::from_secs(30),
            );
        }
    }
}
