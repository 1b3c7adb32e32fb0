//! Explicit size limits, in one place (rustls style): every decoder in fedanno checks a declared
//! length against one of these before allocating. Nothing here is hidden elsewhere.

/// Longest site identifier, in bytes.
pub const MAX_SITE_ID_LEN: usize = 32;

/// Longest DICOM UID (PS3.5 §9.1), in bytes.
pub const MAX_UID_LEN: usize = 64;

/// Longest patient pseudonym, in bytes (fits DICOM VR LO).
pub const MAX_PATIENT_PSEUDONYM_LEN: usize = 64;
