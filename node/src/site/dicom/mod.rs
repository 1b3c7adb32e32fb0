//! Everything DICOM, and the only module that names the dicom crates: bounded header reading
//! ([`prescan`], [`header`]), pseudonymisation ([`deid`]), series geometry ([`geometry`]) and
//! writing DICOM files ([`write`]). Original identifiers and PHI-bearing values never leave this
//! module except as pseudonyms, or as local-only fields of [`header::InstanceHeader`] whose
//! `Debug` prints none of them; error texts here never contain element values.

pub mod deid;
pub mod geometry;
pub mod header;
pub mod prescan;
pub mod seg;
pub mod write;
