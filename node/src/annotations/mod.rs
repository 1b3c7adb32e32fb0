//! Layer 2, annotations: what readers draw and decide, and the files it comes in and goes out
//! as. The model is pure (no I/O): what an annotation is ([`model`]), its canonical encoding,
//! compression and content hash ([`codec`]), the category schemes labels are checked against
//! ([`schemes`]), what changed between two versions ([`diff`]), the review state machine
//! ([`review`]) and reader kinds and pseudonyms ([`readers`]), their vocabularies declared with
//! the crate's `vocabulary!`. Files: NIfTI ([`nifti`]), and
//! every import and export of masks, boxes and labels ([`interchange`]; DICOM SEG itself is in
//! `site::dicom::seg`, where the DICOM crates live). [`curation`]: history with diffs, the
//! adjudication queue and decisions. Storage lives in `site::store::annotations`.

pub mod codec;
pub mod curation;
pub mod diff;
pub mod interchange;
pub mod model;
pub mod nifti;
pub mod overlap;
pub mod readers;
pub mod review;
pub mod schemes;
