//! Bulk file work for `keyward publish` (a hundred thousand small files a
//! run): reading without touching access times, and spreading independent
//! per-file work over a few threads.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Most threads used: the work is CPU- and syscall-bound, and more threads
/// than cores only add contention.
const MAX_THREADS: usize = 8;

/// Opens `path` for reading with `flags`, without updating its access time
/// when allowed (`O_NOATIME`: the file's owner or root): each read of an
/// unchanged file would otherwise dirty its inode, a journal write per file.
pub fn open_noatime(path: &Path, flags: libc::c_int) -> io::Result<File> {
    let open = |f| {
        OpenOptions::new()
            .read(true)
            .custom_flags(f | libc::O_CLOEXEC)
            .open(path)
    };
    match open(flags | libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(flags),
        r => r,
    }
}

/// `f` of every item, in order, on up to one thread per core, each
/// taking a contiguous share of at least `min_per_thread` items; the first
/// error (in item order) is returned. A panic in a thread is resumed here.
pub fn map<T, R, E>(
    items: &[T],
    min_per_thread: usize,
    f: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send,
{
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
        .min(items.len() / min_per_thread.max(1))
        .max(1);
    if threads == 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Result<Vec<R>, E>>()))
            .collect();
        let mut all = Vec::with_capacity(items.len());
        for h in handles {
            match h.join() {
                Ok(part) => all.extend(part?),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(all)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_order_and_returns_the_first_error() {
        let items: Vec<u32> = (0..10_000).collect();
        let doubled = map(&items, 100, |i| Ok::<_, String>(i * 2)).unwrap();
        assert_eq!(doubled, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let e = map(&items, 100, |&i| {
            if i == 7000 || i == 9000 {
                Err(i)
            } else {
                Ok(i)
            }
        });
        assert_eq!(e, Err(7000));
        assert_eq!(map(&[] as &[u32], 100, |&i| Ok::<_, ()>(i)), Ok(vec![]));
    }

    #[test]
    fn reads_without_touching_the_access_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "x").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_times(std::fs::FileTimes::new().set_accessed(old))
            .unwrap();
        let mut s = String::new();
        io::Read::read_to_string(&mut open_noatime(&path, 0).unwrap(), &mut s).unwrap();
        assert_eq!(s, "x");
        assert_eq!(std::fs::metadata(&path).unwrap().accessed().unwrap(), old);
    }
}
