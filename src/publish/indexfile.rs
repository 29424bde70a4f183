//! The directory index publish writes (`keyward.index`, signed like the
//! users' files, plus a gzip copy for servers that send precompressed
//! files): one line per published keys file, and the revocation list's.

use super::*;

/// The index text for what was published (pure); `extra`: lines that are
/// not users' files (the revocation list's).
pub fn build_index(
    results: &[Published],
    extra: &[crate::index::Line],
    serial: u64,
    expires: Option<i64>,
) -> String {
    // Keys files only: principals files are asked for on their own.
    let keys: Vec<&Published> = results.iter().filter(|r| r.kind == Kind::Keys).collect();
    let paths: Vec<String> = keys.iter().map(|r| out_name(&r.user, Kind::Keys)).collect();
    let mut lines: Vec<crate::index::Line> = keys
        .iter()
        .zip(&paths)
        .map(|(r, path)| crate::index::Line {
            user: &r.user,
            serial: r.serial,
            hash: r.hash,
            path,
        })
        .collect();
    lines.extend(extra.iter().cloned());
    let header = crate::index::Header {
        serial: Some(serial),
        expires,
    };
    crate::index::render(&header, &mut lines)
}

pub(super) fn write_index(
    o: &Options,
    out: &OutDir,
    key: Option<&ssh_key::PublicKey>,
    name: &str,
    results: &[Published],
    extra: &[crate::index::Line],
) -> Result<IndexInfo, String> {
    let now = now_secs();
    // The line announcing deltas (`index::DELTAS`), when publish writes them.
    let folder = format!("{name}.d");
    let mut extra = extra.to_vec();
    if o.delta_keep > 0 {
        extra.push(crate::index::Line {
            user: crate::index::DELTAS,
            serial: None,
            hash: [0; 8],
            path: &folder,
        });
    }
    let extra = &extra[..];
    let old_text = previous(o, out, name, key, |t| {
        crate::index::Header::parse(t.lines().next()?).ok()?.serial
    })?;
    let old = old_text
        .as_deref()
        .and_then(|t| crate::index::Header::parse(t.lines().next()?).ok());
    // Unchanged lines, and (signed) not near expiry: keep the index as it is,
    // so every server's conditional request keeps answering 304. The lines
    // are rendered once (a large index takes a while): under the old
    // header to compare, then under the new one.
    let mut rendered = None;
    if let (Some(t), Some(h)) = (&old_text, old) {
        let signed_ok = match (o.signer, h.expires) {
            (Some(_), Some(e)) => fresh_enough(o, e, now) && out.is_file(&format!("{name}.sig")),
            (None, None) => true,
            _ => false,
        };
        if let (true, Some(serial)) = (signed_ok, h.serial) {
            let again = build_index(results, extra, serial, h.expires);
            if again == *t {
                let deltas = index_deltas(o, key, name, Some(t), t)?;
                return Ok(IndexInfo {
                    deltas,
                    path: o.out.join(name),
                    serial,
                    bytes: t.len() as u64,
                    gzip_bytes: out.file_len(&format!("{name}.gz")).unwrap_or(0),
                });
            }
            rendered = Some(again);
        }
    }
    let serial = next_serial(o.serial, old.and_then(|h| h.serial));
    let expires = o.signer.map(|_| o.expires);
    let header = crate::index::Header {
        serial: Some(serial),
        expires,
    };
    let text = match rendered {
        Some(r) => with_header(&r, &header),
        None => build_index(results, extra, serial, expires),
    };
    let (deltas, gz) = deltas_and_gzip(o, key, name, old_text.as_deref(), &text)?;
    replace_index(o, out, name, &text, &gz)?;
    Ok(IndexInfo {
        deltas,
        path: o.out.join(name),
        serial,
        bytes: text.len() as u64,
        gzip_bytes: gz.len() as u64,
    })
}

/// The deltas before the index that they lead to; the compressed copy
/// meanwhile, on a second thread.
fn deltas_and_gzip(
    o: &Options,
    key: Option<&ssh_key::PublicKey>,
    name: &str,
    old: Option<&str>,
    text: &str,
) -> Result<(Option<super::delta::DeltaInfo>, Vec<u8>), String> {
    let (deltas, gz) = std::thread::scope(|s| {
        let gz = s.spawn(|| gzip(text.as_bytes()));
        let deltas = index_deltas(o, key, name, old, text);
        match gz.join() {
            Ok(gz) => (deltas, gz),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    let gz = gz.map_err(|e| format!("compressing the index: {e}"))?;
    Ok((deltas?, gz))
}

/// Writes the index, its signature and its gzip copy into place.
fn replace_index(
    o: &Options,
    out: &OutDir,
    name: &str,
    text: &str,
    gz: &[u8],
) -> Result<(), String> {
    // The compressed copy first: a server preferring it never serves one
    // older than the plain file next to it for long.
    let fail = |e: std::io::Error| format!("{}: {e}", o.out.join(name).display());
    let mut files = vec![out.stage(&format!("{name}.gz"), gz).map_err(fail)?];
    files.extend(stage(o, out, name, text.as_bytes())?);
    let sig = format!("{name}.sig");
    let stale_sig: &[&str] = match o.signer {
        Some(_) => &[],
        None => &[&sig],
    };
    out.commit(files, stale_sig).map_err(fail)
}

/// `text` (an index as `build_index` renders it) under `header` instead of
/// its own: the same as rendering its lines again under `header`.
pub(super) fn with_header(text: &str, header: &crate::index::Header) -> String {
    let lines = text.split_once('\n').map_or("", |(_, rest)| rest);
    format!("{}\n{lines}", header.to_line())
}

/// The index's deltas (`publish/delta.rs`), or none with `--delta-keep 0`.
fn index_deltas(
    o: &Options,
    key: Option<&ssh_key::PublicKey>,
    name: &str,
    old: Option<&str>,
    new: &str,
) -> Result<Option<super::delta::DeltaInfo>, String> {
    if o.delta_keep == 0 {
        super::delta::remove_all(o, name)?;
        return Ok(None);
    }
    let serial = |t: &str| crate::index::Header::parse(t.lines().next()?).ok()?.serial;
    super::delta::update(o, key, name, "index", serial, old, new).map(Some)
}

pub(super) fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    // The default level: an index is mostly hex hashes, and level 9 took
    // twice as long for 0.2 % less (100,000 users: 5.5 MB -> 1.6 MB).
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)?;
    enc.finish()
}
