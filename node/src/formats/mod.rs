//! File formats other than DICOM that masks and labels arrive in or leave as. `nifti` reads and
//! writes NIfTI-1/2 images (`.nii`, `.nii.gz`) with every declared size checked before
//! allocation.

pub mod nifti;
