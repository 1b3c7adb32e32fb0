//! The annotation model, pure (no I/O): what a reader's annotation is ([`model`]), its canonical
//! encoding, compression and content hash ([`codec`]), the category schemes labels are checked
//! against ([`schemes`]), what changed between two versions ([`diff`]) and the review state
//! machine ([`review`]). Storage lives in `store::annotations`; files in and out live in
//! `interchange`.

pub mod codec;
pub mod diff;
pub mod model;
pub mod readers;
pub mod review;
pub mod schemes;
