//! Where the unwinder finds a code address's unwind tables.
//!
//! The `keyward` binary links the unwinder statically (libgcc_eh) instead
//! of loading libgcc_s.so.1 at every start (see main.rs). GCC 12's libgcc_eh
//! asks glibc's `_dl_find_object` (glibc 2.35+) which object holds a code
//! address; referencing it would make the binary refuse to start on glibc
//! 2.34 (RHEL 9). The binary is therefore linked with
//! `--wrap=_dl_find_object` and main.rs answers those calls with
//! [`dl_find_object`] over [`find_object`], which finds the object with
//! `dl_iterate_phdr` (glibc 2.2.5), the way libgcc did before 2.35. Only a
//! panic or a backtrace ever asks.

use std::ffi::{c_int, c_void};

/// The loaded object holding an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Object {
    /// Lowest and highest address of its loadable segments (end exclusive).
    pub start: usize,
    pub end: usize,
    /// Its `PT_GNU_EH_FRAME` segment (`.eh_frame_hdr`), 0 when it has none.
    pub eh_frame: usize,
}

/// The object with a loadable segment that contains `pc`.
pub fn find_object(pc: usize) -> Option<Object> {
    struct Search {
        pc: usize,
        found: Option<Object>,
    }

    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid `info` whose program
        // headers it keeps alive during the call, and `data` is the Search
        // below.
        let (info, search) = unsafe { (&*info, &mut *data.cast::<Search>()) };
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        let base = info.dlpi_addr as usize;
        let mut object = Object {
            start: usize::MAX,
            end: 0,
            eh_frame: 0,
        };
        let mut holds_pc = false;
        for h in headers {
            let at = base.wrapping_add(h.p_vaddr as usize);
            match h.p_type {
                libc::PT_LOAD => {
                    let end = at.wrapping_add(h.p_memsz as usize);
                    object.start = object.start.min(at);
                    object.end = object.end.max(end);
                    holds_pc |= (at..end).contains(&search.pc);
                }
                libc::PT_GNU_EH_FRAME => object.eh_frame = at,
                _ => {}
            }
        }
        if holds_pc {
            search.found = Some(object);
            1
        } else {
            0
        }
    }

    let mut search = Search { pc, found: None };
    // SAFETY: the callback only reads what dl_iterate_phdr hands it and
    // writes to `search`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(visit), (&mut search as *mut Search).cast());
    }
    search.found
}

/// glibc's `struct dl_find_object` (dlfcn.h, x86_64 and aarch64 layout).
#[repr(C)]
pub struct DlFindObject {
    pub dlfo_flags: u64,
    pub dlfo_map_start: *mut c_void,
    pub dlfo_map_end: *mut c_void,
    pub dlfo_link_map: *mut c_void,
    pub dlfo_eh_frame: *mut c_void,
    pub reserved: [u64; 7],
}

/// `_dl_find_object(pc, result)` as glibc documents it: 0 and `result`
/// filled when an object holds `pc`, -1 otherwise. No link map is reported
/// (the unwinder reads only the map range and `dlfo_eh_frame`).
///
/// # Safety
/// `result` points to writable memory for a `DlFindObject`.
pub unsafe fn dl_find_object(pc: *mut c_void, result: *mut DlFindObject) -> c_int {
    match find_object(pc as usize) {
        Some(o) => {
            // SAFETY: the caller's promise.
            unsafe {
                result.write(DlFindObject {
                    dlfo_flags: 0,
                    dlfo_map_start: o.start as *mut c_void,
                    dlfo_map_end: o.end as *mut c_void,
                    dlfo_link_map: std::ptr::null_mut(),
                    dlfo_eh_frame: o.eh_frame as *mut c_void,
                    reserved: [0; 7],
                });
            }
            0
        }
        None => -1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Glibc = unsafe extern "C" fn(*mut c_void, *mut DlFindObject) -> c_int;

    /// glibc's own `_dl_find_object`, where the C library has it (2.35+).
    fn glibc() -> Option<Glibc> {
        let name = c"_dl_find_object";
        // SAFETY: dlsym with a NUL-terminated name; the symbol, when found,
        // has the C signature above (dlfcn.h).
        let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!f.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, Glibc>(f) })
    }

    fn empty() -> DlFindObject {
        DlFindObject {
            dlfo_flags: 0,
            dlfo_map_start: std::ptr::null_mut(),
            dlfo_map_end: std::ptr::null_mut(),
            dlfo_link_map: std::ptr::null_mut(),
            dlfo_eh_frame: std::ptr::null_mut(),
            reserved: [0; 7],
        }
    }

    #[test]
    fn same_unwind_tables_as_glibc() {
        let Some(glibc) = glibc() else {
            eprintln!("glibc before 2.35: nothing to compare with");
            return;
        };
        // Code in this test binary, in libc, and an address in no object.
        let here = same_unwind_tables_as_glibc as *const () as usize;
        let in_libc = libc::getpid as *const () as usize;
        for pc in [here, in_libc] {
            let (mut ours, mut theirs) = (empty(), empty());
            let p = pc as *mut c_void;
            assert_eq!(unsafe { dl_find_object(p, &mut ours) }, 0);
            assert_eq!(unsafe { glibc(p, &mut theirs) }, 0);
            assert_eq!(ours.dlfo_eh_frame, theirs.dlfo_eh_frame, "pc {pc:#x}");
            assert!(!ours.dlfo_eh_frame.is_null());
            let (start, end) = (ours.dlfo_map_start as usize, ours.dlfo_map_end as usize);
            assert!(start <= pc && pc < end, "{start:#x}..{end:#x} {pc:#x}");
        }
        let nowhere = 16 as *mut c_void;
        let mut ours = empty();
        assert_eq!(unsafe { dl_find_object(nowhere, &mut ours) }, -1);
        assert_eq!(unsafe { glibc(nowhere, &mut empty()) }, -1);
    }
}
