//! Layer 1, site data: the site directory and everything that stays at the site. This file
//! is the directory itself: `config.toml`, `keys/` and `fedanno.db`, and nothing else by
//! default; it owns `fedanno init` (create all three, refusing to touch an existing site) and
//! opening a site for the other commands. Below it: the configuration ([`config`]), the keys
//! ([`identity`]), the SQLite store ([`store`], the only module that names rusqlite, one
//! thread), DICOM reading, pseudonymisation and writing ([`dicom`], the only module that names
//! the DICOM crates), header ingest ([`ingest`]), day arithmetic ([`calendar`]), the wall clock
//! ([`clock`]) and atomic file writes ([`files`]).

pub mod calendar;
pub mod clock;
pub mod config;
pub mod dicom;
pub mod files;
pub mod identity;
pub mod ingest;
pub mod store;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fedanno_protocol::ids::SiteId;
use serde::Serialize;
use thiserror::Error;

use crate::site::config::{CONFIG_FILE, Config, ConfigError, DB_FILE, KEYS_DIR};
use crate::site::dicom::deid::Pseudonymizer;
use crate::site::store::{OpenMode, Store, StoreError, StoreThread};
use identity::{IdentityError, PublicKeys};

#[derive(Debug, Error)]
pub enum SiteError {
    #[error("{0} already holds a fedanno site (config.toml exists); refusing to overwrite it")]
    Exists(PathBuf),
    #[error(
        "{0} is not a fedanno site directory (no config.toml); run `fedanno init --dir {0} --site-name NAME`"
    )]
    NotASite(PathBuf),
    #[error("invalid site name: {0}")]
    Name(String),
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is readable by other users (mode {mode:o}): it holds patient identifiers; run `chmod {fix} {}`",
        path.display(),
        path.display()
    )]
    NotPrivate {
        path: PathBuf,
        mode: u32,
        fix: &'static str,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `init` created (printed by the CLI).
#[derive(Debug, Serialize)]
pub struct InitReport {
    pub dir: String,
    pub site_id: String,
    pub site_name: String,
    pub config: String,
    pub database: String,
    pub keys: PublicKeys,
}

/// Creates a new site in `dir`.
pub fn init(dir: &Path, name: &str, id: Option<&str>) -> Result<InitReport, SiteError> {
    let config_path = dir.join(CONFIG_FILE);
    if config_path.exists() || dir.join(DB_FILE).exists() {
        return Err(SiteError::Exists(dir.into()));
    }
    let site_id = match id {
        Some(id) => SiteId::new(id).map_err(|e| SiteError::Name(e.to_string()))?,
        None => SiteId::from_display_name(name).map_err(|e| SiteError::Name(e.to_string()))?,
    };
    if name.trim().is_empty() {
        return Err(SiteError::Name("the site name must not be empty".into()));
    }
    make_private_dir(dir)?;
    let config = Config::new(name.trim(), site_id);
    // Keys first: if they cannot be made, no half-made site is left claiming to exist.
    let keys = identity::generate(&dir.join(KEYS_DIR))?;
    let db = dir.join(DB_FILE);
    let (store, thread) = Store::open(&db, OpenMode::Create)?;
    drop(store);
    thread.join();
    // config.toml last: its presence marks a complete site.
    let text = config.to_documented_toml();
    files::write_atomic(&config_path, |f| f.write_all(text.as_bytes())).map_err(|e| {
        SiteError::Create {
            path: config_path.clone(),
            source: match e {
                files::AtomicWriteError::Io { source, .. } => source,
                other => std::io::Error::new(other.kind(), other),
            },
        }
    })?;
    Ok(InitReport {
        dir: dir.display().to_string(),
        site_id: config.site.id.to_string(),
        site_name: config.site.name.clone(),
        config: config_path.display().to_string(),
        database: db.display().to_string(),
        keys,
    })
}

/// Creates the site directory (if needed) readable by its owner only: it will hold original
/// patient identifiers and file paths.
fn make_private_dir(dir: &Path) -> Result<(), SiteError> {
    use std::os::unix::fs::PermissionsExt;
    let create = |source| SiteError::Create {
        path: dir.into(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(create)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(create)
}

/// Refuses a site whose directory, database or write-ahead log other local users can read,
/// naming the file and the `chmod` that fixes it (as ssh does for keys).
pub fn check_private(dir: &Path) -> Result<(), SiteError> {
    use std::os::unix::fs::PermissionsExt;
    let db = dir.join(DB_FILE);
    let wal = dir.join(format!("{DB_FILE}-wal"));
    for (path, fix) in [(dir.to_path_buf(), "700"), (db, "600"), (wal, "600")] {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue; // a missing file is named by whoever needs it
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SiteError::NotPrivate { path, mode, fix });
        }
    }
    Ok(())
}

/// An opened site: configuration and a running store.
pub struct Site {
    pub dir: PathBuf,
    pub config: Config,
    pub store: Store,
    thread: StoreThread,
}

impl Site {
    pub fn open(dir: &Path) -> Result<Site, SiteError> {
        if !dir.join(CONFIG_FILE).exists() {
            return Err(SiteError::NotASite(dir.into()));
        }
        check_private(dir)?;
        let config = Config::load(dir)?;
        let (store, thread) = Store::open(&dir.join(DB_FILE), OpenMode::Existing)?;
        Ok(Site {
            dir: dir.into(),
            config,
            store,
            thread,
        })
    }

    /// The site's pseudonymiser (loads the pseudonymisation secret).
    pub fn pseudonymizer(&self) -> Result<Arc<Pseudonymizer>, SiteError> {
        let secret = identity::load_pseudonym_secret(&self.dir.join(KEYS_DIR))?;
        Ok(Arc::new(Pseudonymizer::new(
            &secret,
            self.config.deid.date_shift_max_days,
        )))
    }

    /// Stops the store thread after the last handle is gone.
    pub fn close(self) {
        let Site { store, thread, .. } = self;
        drop(store);
        thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_creates_a_complete_site_and_refuses_a_second_time() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        let r = init(&dir, "St. Mary's", None).unwrap();
        assert_eq!(r.site_id, "st-mary-s");
        assert!(dir.join(CONFIG_FILE).exists() && dir.join(DB_FILE).exists());
        assert!(matches!(
            init(&dir, "Other", None),
            Err(SiteError::Exists(_))
        ));
        let site = Site::open(&dir).unwrap();
        assert_eq!(site.config.site.name, "St. Mary's");
        site.pseudonymizer().unwrap();
        site.close();
    }

    #[test]
    fn opening_a_non_site_explains_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Site::open(tmp.path()).err().unwrap().to_string();
        assert!(err.contains("fedanno init"), "{err}");
    }
}
