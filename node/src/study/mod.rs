//! Federated annotation studies: manifests ([`manifest`]), the federated EM and quality
//! releases as sequences of secure sums ([`em`], pure), and a site's side against its own store
//! ([`local`]: case assignment, loading annotations, storing the consensus). The network side
//! (rosters, round keys, masked vectors, the differencing guard) lives in `app::study`; the
//! report in `report`.

pub mod em;
pub mod local;
pub mod manifest;
pub mod summary;

pub use manifest::{Manifest, ManifestError};
