//! Layer 4, reader studies: a coordinator's cross-site annotation study (the CLI's
//! `fedanno study`, the manifest's `[study]`), as opposed to a DICOM study, which is always
//! called a DICOM study. Manifests ([`manifest`]), the jobs a site computes and the federated
//! EM and quality drivers written as sequences of secure sums ([`jobs`], pure), a site's side
//! against its own store ([`local`]: case assignment, loading annotations, storing the
//! consensus), the network side ([`network`]: announcements, decisions, progress, rosters,
//! round keys, masked vectors, the differencing guard), and the report ([`summary`] builds it
//! from a run, [`report`] renders it).

mod error;
pub mod jobs;
pub mod local;
pub mod manifest;
pub mod network;
pub mod report;
pub mod states;
pub mod summary;

pub use error::ReaderStudyError;
pub use manifest::{Manifest, ManifestError};
