//! The methods of [`NiftiImage`]: constructors that validate, intensity scaling, and the
//! conversion of voxel values to labels 0..=255 (an error names the first voxel that is not
//! one). No I/O here.

use super::{NiftiError, NiftiImage, VoxelData};

impl NiftiImage {
    /// An image from its parts, with no intensity scaling (`scl_slope = 1`, `scl_inter = 0`).
    /// Checks that `data` holds `nx·ny·nz` values and that spacing and affine are valid.
    pub fn new(
        dim: [usize; 3],
        pixdim: [f64; 3],
        affine: [[f64; 4]; 4],
        data: VoxelData,
    ) -> Result<Self, NiftiError> {
        let img = NiftiImage {
            dim,
            pixdim,
            affine,
            scl_slope: 1.0,
            scl_inter: 0.0,
            data,
        };
        img.validate()?;
        Ok(img)
    }

    /// A uint8 label image (see [`NiftiImage::new`]).
    pub fn from_u8(
        dim: [usize; 3],
        pixdim: [f64; 3],
        affine: [[f64; 4]; 4],
        data: Vec<u8>,
    ) -> Result<Self, NiftiError> {
        NiftiImage::new(dim, pixdim, affine, VoxelData::U8(data))
    }

    /// nx·ny·nz (saturating).
    pub fn voxel_count(&self) -> usize {
        self.dim
            .iter()
            .fold(1usize, |acc, &d| acc.saturating_mul(d))
    }

    /// `Some((slope, inter))` when the stored values must be scaled: `slope != 0` and not the
    /// identity `(1, 0)`.
    pub fn scaling(&self) -> Option<(f64, f64)> {
        let identity = self.scl_slope == 1.0 && self.scl_inter == 0.0;
        (self.scl_slope != 0.0 && !identity).then_some((self.scl_slope, self.scl_inter))
    }

    /// The voxel values as labels 0..=255 (after `scl_slope`/`scl_inter` when they apply).
    /// Any value that is not a whole number in 0..=255 is an error naming it and its voxel.
    pub fn to_labels_u8(&self) -> Result<Vec<u8>, NiftiError> {
        self.check_length()?;
        let scale = self.scaling();
        let dim = self.dim;
        match &self.data {
            VoxelData::U8(v) if scale.is_none() => Ok(v.clone()),
            VoxelData::U8(v) => labels(v.iter().map(|&x| f64::from(x)), v.len(), scale, dim),
            VoxelData::I8(v) => labels(v.iter().map(|&x| f64::from(x)), v.len(), scale, dim),
            VoxelData::U16(v) => labels(v.iter().map(|&x| f64::from(x)), v.len(), scale, dim),
            VoxelData::I16(v) => labels(v.iter().map(|&x| f64::from(x)), v.len(), scale, dim),
            VoxelData::U32(v) => labels(v.iter().map(|&x| f64::from(x)), v.len(), scale, dim),
            VoxelData::I32(v) => labels(v.iter().map(|&x| f64::from(x)), v.len(), scale, dim),
            VoxelData::F32(v) => labels(v.iter().map(|&x| f64::from(x)), v.len(), scale, dim),
            VoxelData::F64(v) => labels(v.iter().copied(), v.len(), scale, dim),
        }
    }

    fn check_length(&self) -> Result<(), NiftiError> {
        let expected = self
            .dim
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let actual = self.data.len();
        match expected {
            Some(expected) if expected == actual => Ok(()),
            _ => Err(NiftiError::DataLength {
                dim: self.dim,
                expected: expected.unwrap_or(usize::MAX),
                actual,
            }),
        }
    }

    /// Checks grid, data length, spacing, affine and scaling.
    pub(super) fn validate(&self) -> Result<(), NiftiError> {
        for (i, &d) in self.dim.iter().enumerate() {
            if d == 0 {
                return Err(NiftiError::BadDim {
                    axis: i + 1,
                    value: 0,
                });
            }
        }
        self.check_length()?;
        for (i, &p) in self.pixdim.iter().enumerate() {
            if !(p.is_finite() && p > 0.0) {
                return Err(NiftiError::BadPixdim {
                    axis: i + 1,
                    value: p,
                });
            }
        }
        if !self.affine.iter().flatten().all(|v| v.is_finite()) {
            return Err(NiftiError::BadAffine { which: "affine" });
        }
        if !self.scl_slope.is_finite() {
            return Err(NiftiError::Unrepresentable {
                field: "scl_slope",
                value: self.scl_slope,
            });
        }
        if !self.scl_inter.is_finite() {
            return Err(NiftiError::Unrepresentable {
                field: "scl_inter",
                value: self.scl_inter,
            });
        }
        Ok(())
    }
}

fn labels(
    values: impl Iterator<Item = f64>,
    len: usize,
    scale: Option<(f64, f64)>,
    dim: [usize; 3],
) -> Result<Vec<u8>, NiftiError> {
    let mut out = Vec::with_capacity(len);
    for (i, raw) in values.enumerate() {
        let v = match scale {
            Some((slope, inter)) => raw * slope + inter,
            None => raw,
        };
        if v.is_finite() && v.fract() == 0.0 && (0.0..=255.0).contains(&v) {
            // Exact: a whole number in 0..=255.
            out.push(v as u8);
        } else {
            return Err(NiftiError::NotALabel {
                voxel: voxel_coords(i, dim),
                value: v,
                scaled: scale.is_some(),
            });
        }
    }
    Ok(out)
}

fn voxel_coords(index: usize, dim: [usize; 3]) -> [usize; 3] {
    let [nx, ny, _] = dim;
    let x = index.checked_rem(nx).unwrap_or(0);
    let rest = index.checked_div(nx).unwrap_or(0);
    let y = rest.checked_rem(ny).unwrap_or(0);
    let z = rest.checked_div(ny).unwrap_or(0);
    [x, y, z]
}
