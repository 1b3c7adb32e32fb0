//! Atomic file writes: the bytes go to a new temporary file beside the target, which is synced
//! and renamed over it, so a reader sees the old file or the whole new one, never a part.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where an atomic write failed.
#[derive(Debug, thiserror::Error)]
pub enum AtomicWriteError {
    #[error("the path names no file")]
    NoFileName,
    /// `action` is "create" (the temporary file), "write" (filling and syncing it) or
    /// "replace" (the rename).
    #[error("cannot {action}: {source}")]
    Io {
        action: &'static str,
        source: io::Error,
    },
}

impl AtomicWriteError {
    /// The kind of the underlying I/O error (`InvalidInput` for a path without a file name).
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            AtomicWriteError::NoFileName => io::ErrorKind::InvalidInput,
            AtomicWriteError::Io { source, .. } => source.kind(),
        }
    }
}

/// Writes `path` atomically: `fill` writes the content into a new temporary file in the same
/// folder, which is then synced and renamed over `path` (and the folder synced, best effort).
/// On failure the temporary file is removed.
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), AtomicWriteError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or(AtomicWriteError::NoFileName)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let err = |action| move |source| AtomicWriteError::Io { action, source };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(err("create"))?;
    let result = fill(&mut file)
        .and_then(|()| file.sync_all())
        .map_err(err("write"))
        .and_then(|()| fs::rename(&tmp, path).map_err(err("replace")));
    if let Err(e) = result {
        // Best effort: the temporary file is ours and useless now.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Best effort: persist the rename itself.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// [`write_atomic`] of a byte string, with an error that names the file.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), WriteFileError> {
    write_atomic(path, |f| io::Write::write_all(f, bytes)).map_err(|source| WriteFileError {
        path: path.to_path_buf(),
        source,
    })
}

/// A failed [`write_bytes`], naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct WriteFileError {
    pub path: PathBuf,
    #[source]
    pub source: AtomicWriteError,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(path: &Path, bytes: &'static [u8]) -> Result<(), AtomicWriteError> {
        write_bytes(path, bytes).map_err(|e| e.source)
    }

    #[test]
    fn writes_whole_files_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        put(&path, b"one").unwrap();
        put(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let failed = write_atomic(&path, |_| Err(io::Error::other("no")));
        assert!(matches!(
            failed,
            Err(AtomicWriteError::Io {
                action: "write",
                ..
            })
        ));
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let no_name = put(Path::new("/"), b"").unwrap_err();
        assert_eq!(no_name.kind(), io::ErrorKind::InvalidInput);
    }
}
