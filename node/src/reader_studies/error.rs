//! What can go wrong with a reader study at this site, named so that callers (and the CLI's
//! messages) can tell a missing study from a site that has not joined, a store failure from a
//! round that a site refused.

use thiserror::Error;

use super::jobs::EmError;
use super::local::LocalError;
use super::manifest::ManifestError;
use crate::site::store::StoreError;

#[derive(Debug, Error)]
pub enum ReaderStudyError {
    #[error("the report is not released: a log is not witnessed by the quorum ({0})")]
    Unwitnessed(String),
    #[error("no study {0} at this site")]
    Unknown(String),
    #[error("this site does not coordinate study {0}")]
    NotCoordinator(String),
    #[error("this site has not joined study {0}; run `fedanno study join {0}` first")]
    NotJoined(String),
    #[error("the manifest names {named} as coordinator; this site is {this}")]
    WrongCoordinator { named: String, this: String },
    #[error("this site's certificate has no coordinator role")]
    NoCoordinatorRole,
    #[error("{joined} sites have joined; the study needs at least {needed}")]
    TooFewSites { joined: u32, needed: u32 },
    #[error("{0} is not a valid site id")]
    SiteId(String),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error(transparent)]
    Jobs(#[from] EmError),
    /// This site's own contribution was refused by one of its checks.
    #[error("{0}")]
    Refused(String),
    /// A release from the coordinator that this site cannot accept.
    #[error("{0}")]
    Release(String),
    #[error("no randomness for a round key")]
    Randomness,
    #[error("a computation task failed: {0}")]
    Task(String),
}
