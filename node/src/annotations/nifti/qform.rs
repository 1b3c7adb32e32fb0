//! Conversions between a NIfTI qform (quaternion, offsets, voxel sizes, qfac) and a 4×4
//! voxel-to-RAS+ affine, in both directions, as nifti1_io does them (`quatern_to_mat44`,
//! `mat44_to_quatern` with the polar decomposition of `mat33_polar`). Pure arithmetic.

/// nifti1_io `quatern_to_mat44`: quaternion (b, c, d), offsets, voxel sizes and qfac to a 4×4.
pub(super) fn quatern_to_mat44(
    [b, c, d]: [f64; 3],
    [qx, qy, qz]: [f64; 3],
    [dx, dy, dz]: [f64; 3],
    qfac: f64,
) -> [[f64; 4]; 4] {
    let (mut a, mut b, mut c, mut d) = (1.0 - (b * b + c * c + d * d), b, c, d);
    if a < 1.0e-7 {
        // Special case: a 180° rotation; renormalise (b, c, d).
        a = 1.0 / (b * b + c * c + d * d).sqrt();
        b *= a;
        c *= a;
        d *= a;
        a = 0.0;
    } else {
        a = a.sqrt();
    }
    let xd = if dx > 0.0 { dx } else { 1.0 };
    let yd = if dy > 0.0 { dy } else { 1.0 };
    let mut zd = if dz > 0.0 { dz } else { 1.0 };
    if qfac < 0.0 {
        zd = -zd;
    }
    [
        [
            (a * a + b * b - c * c - d * d) * xd,
            2.0 * (b * c - a * d) * yd,
            2.0 * (b * d + a * c) * zd,
            qx,
        ],
        [
            2.0 * (b * c + a * d) * xd,
            (a * a + c * c - b * b - d * d) * yd,
            2.0 * (c * d - a * b) * zd,
            qy,
        ],
        [
            2.0 * (b * d - a * c) * xd,
            2.0 * (c * d + a * b) * yd,
            (a * a + d * d - c * c - b * b) * zd,
            qz,
        ],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

/// The rotation part of a qform.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Quatern {
    pub(super) b: f64,
    pub(super) c: f64,
    pub(super) d: f64,
    pub(super) qfac: f32,
}

pub(super) type Mat3 = [[f64; 3]; 3];

/// nifti1_io `mat44_to_quatern`: the rotation closest to the affine's 3×3 part (columns
/// normalised, then polar decomposition, so shears and unequal scalings fall back to the nearest
/// rigid rotation), with qfac = -1 for a left-handed frame. `None` when the 3×3 part is singular,
/// in which case no qform is written (the sform still holds the exact affine).
pub(super) fn mat44_to_quatern(affine: &[[f64; 4]; 4]) -> Option<Quatern> {
    let [r0, r1, r2, _] = *affine;
    let mut cols: Mat3 = [
        [r0[0], r1[0], r2[0]],
        [r0[1], r1[1], r2[1]],
        [r0[2], r1[2], r2[2]],
    ];
    // Normalise columns; a zero column becomes the matching unit vector (as nifti1_io does).
    for (i, col) in cols.iter_mut().enumerate() {
        let norm = col.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > 0.0 && norm.is_finite() {
            col.iter_mut().for_each(|v| *v /= norm);
        } else {
            for (r, v) in col.iter_mut().enumerate() {
                *v = if r == i { 1.0 } else { 0.0 };
            }
        }
    }
    let m = transpose(&cols);
    let mut p = polar(m)?;
    let det = det3(&p);
    let qfac = if det > 0.0 {
        1.0
    } else {
        for row in p.iter_mut() {
            row[2] = -row[2];
        }
        -1.0
    };
    let [[r11, r12, r13], [r21, r22, r23], [r31, r32, r33]] = p;
    let trace = r11 + r22 + r33 + 1.0;
    let (b, c, d) = if trace > 0.5 {
        let a = 0.5 * trace.sqrt();
        (
            0.25 * (r32 - r23) / a,
            0.25 * (r13 - r31) / a,
            0.25 * (r21 - r12) / a,
        )
    } else {
        let xd = 1.0 + r11 - (r22 + r33);
        let yd = 1.0 + r22 - (r11 + r33);
        let zd = 1.0 + r33 - (r11 + r22);
        let (a, b, c, d) = if xd > 1.0 {
            let b = 0.5 * xd.sqrt();
            (
                0.25 * (r32 - r23) / b,
                b,
                0.25 * (r12 + r21) / b,
                0.25 * (r13 + r31) / b,
            )
        } else if yd > 1.0 {
            let c = 0.5 * yd.sqrt();
            (
                0.25 * (r13 - r31) / c,
                0.25 * (r12 + r21) / c,
                c,
                0.25 * (r23 + r32) / c,
            )
        } else {
            let d = 0.5 * zd.sqrt();
            (
                0.25 * (r21 - r12) / d,
                0.25 * (r13 + r31) / d,
                0.25 * (r23 + r32) / d,
                d,
            )
        };
        // Keep a >= 0: the file stores only (b, c, d) and recomputes a as a positive root.
        if a < 0.0 { (-b, -c, -d) } else { (b, c, d) }
    };
    [b, c, d]
        .iter()
        .all(|v| v.is_finite())
        .then_some(Quatern { b, c, d, qfac })
}

fn det3(m: &Mat3) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

fn transpose(m: &Mat3) -> Mat3 {
    [
        [m[0][0], m[1][0], m[2][0]],
        [m[0][1], m[1][1], m[2][1]],
        [m[0][2], m[1][2], m[2][2]],
    ]
}

/// Transposed inverse of a 3×3 (the cofactor matrix over the determinant).
fn inverse_transpose(m: &Mat3) -> Option<Mat3> {
    let det = det3(m);
    if !(det.is_finite() && det.abs() > 1.0e-12) {
        return None;
    }
    let [[a, b, c], [d, e, f], [g, h, i]] = *m;
    Some([
        [
            (e * i - f * h) / det,
            (f * g - d * i) / det,
            (d * h - e * g) / det,
        ],
        [
            (c * h - b * i) / det,
            (a * i - c * g) / det,
            (b * g - a * h) / det,
        ],
        [
            (b * f - c * e) / det,
            (c * d - a * f) / det,
            (a * e - b * d) / det,
        ],
    ])
}

fn frobenius(m: &Mat3) -> f64 {
    m.iter().flatten().map(|v| v * v).sum::<f64>().sqrt()
}

/// Orthogonal polar factor of a non-singular 3×3 (scaled Newton iteration, as nifti1_io's
/// `mat33_polar`).
fn polar(m: Mat3) -> Option<Mat3> {
    let mut x = m;
    for _ in 0..100 {
        let y = inverse_transpose(&x)?;
        let gamma = (frobenius(&y) / frobenius(&x)).sqrt();
        let mut next = x;
        let mut change = 0.0f64;
        for ((next_row, x_row), y_row) in next.iter_mut().zip(x.iter()).zip(y.iter()) {
            for ((n, &xv), &yv) in next_row.iter_mut().zip(x_row.iter()).zip(y_row.iter()) {
                *n = 0.5 * (gamma * xv + yv / gamma);
                change += (*n - xv).abs();
            }
        }
        x = next;
        if !change.is_finite() {
            return None;
        }
        if change < 1.0e-14 {
            break;
        }
    }
    Some(x)
}
