//! `fedanno-tests`: end-to-end and multi-node scenarios that span modules, run with
//! `cargo test --workspace`. Shared helpers for those tests live here: where the test data is,
//! and how to make a throwaway site.

pub mod network;

use std::path::{Path, PathBuf};

use fedanno_node::site::{self, Site};

/// `tests/data/` of the workspace (public DICOM files and reference values, see LICENSES.md).
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// Creates a site in a fresh temporary directory and opens it.
pub fn temp_site(name: &str) -> (tempfile::TempDir, Site) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let dir = tmp.path().join("site");
    site::init(&dir, name, None).unwrap_or_else(|e| panic!("init: {e}"));
    let site = Site::open(&dir).unwrap_or_else(|e| panic!("open: {e}"));
    (tmp, site)
}
