//! Geometry: qform ⇄ affine against nifti1_io, the qform written from arbitrary rotations and
//! flips, non-rigid and singular affines, and the sform > qform > pixdim priority on read.

use super::*;

#[test]
fn qform_conversion_matches_nifti1_io() {
    // (b, c, d) = (0, 0, 1): 180° about z, i.e. ITK's LPS identity written as RAS.
    let m = quatern_to_mat44([0.0, 0.0, 1.0], [1.0, 2.0, 3.0], [0.5, 0.6, 0.7], 1.0);
    assert_affine_close(
        &m,
        &[
            [-0.5, 0.0, 0.0, 1.0],
            [0.0, -0.6, 0.0, 2.0],
            [0.0, 0.0, 0.7, 3.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
        1e-12,
    );
    // qfac = -1 flips the third column.
    let m = quatern_to_mat44([0.0, 0.0, 0.0], [0.0; 3], [1.0, 2.0, 3.0], -1.0);
    assert_affine_close(&m, &diag_affine([1.0, 2.0, -3.0]), 1e-12);
    // 90° about x: b = sin(45°).
    let s = std::f64::consts::FRAC_1_SQRT_2;
    let m = quatern_to_mat44([s, 0.0, 0.0], [0.0; 3], [1.0, 1.0, 1.0], 1.0);
    assert_affine_close(
        &m,
        &[
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, -1.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
        1e-12,
    );
}

fn rotation(rng: &mut Rng) -> Mat3 {
    // Random unit quaternion -> rotation matrix.
    let q: Vec<f64> = (0..4).map(|_| rng.unit() * 2.0 - 1.0).collect();
    let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    let (a, b, c, d) = (q[0] / n, q[1] / n, q[2] / n, q[3] / n);
    [
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - c * c - b * b,
        ],
    ]
}

#[test]
fn qform_written_from_affine_reproduces_it() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut cases: Vec<Mat3> = (0..200).map(|_| rotation(&mut rng)).collect();
    // Axis permutations and flips, including 180° rotations (trace -1).
    cases.push([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]]);
    cases.push([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]);
    cases.push([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]]);
    cases.push([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);
    for (i, r) in cases.into_iter().enumerate() {
        let flip = if i % 2 == 0 { 1.0 } else { -1.0 };
        let pix = [0.5 + rng.unit(), 0.5 + rng.unit(), 1.0 + 3.0 * rng.unit()];
        let mut affine = [[0.0; 4]; 4];
        for row in 0..3 {
            for col in 0..3 {
                let s = if col == 2 { flip } else { 1.0 };
                affine[row][col] = r[row][col] * pix[col] * s;
            }
            affine[row][3] = rng.unit() * 200.0 - 100.0;
        }
        affine[3][3] = 1.0;
        let img = NiftiImage::from_u8([2, 2, 2], pix, affine, vec![0; 8]).unwrap();
        let mut bytes = write_bytes(&img, false).unwrap();
        put_i16(&mut bytes, 254, 0); // hide the sform: the qform alone must give the affine
        let back = read_bytes(&bytes, &NiftiLimits::default()).unwrap();
        assert_affine_close(&back.affine, &affine, 2e-5 * 4.0);
    }
}

#[test]
fn non_rigid_affine_keeps_exact_sform_and_a_sensible_qform() {
    let sheared = [
        [1.0, 0.3, 0.0, 5.0],
        [0.0, 1.0, 0.0, 6.0],
        [0.0, 0.0, 2.0, 7.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let img = NiftiImage::from_u8([2, 2, 2], [1.0, 1.0, 2.0], sheared, vec![1; 8]).unwrap();
    let bytes = write_bytes(&img, false).unwrap();
    let back = read_bytes(&bytes, &NiftiLimits::default()).unwrap();
    assert_affine_close(&back.affine, &sheared, 1e-6);
    let mut q_only = bytes.clone();
    put_i16(&mut q_only, 254, 0);
    let qback = read_bytes(&q_only, &NiftiLimits::default()).unwrap();
    // Rotation part orthogonal (up to spacing), translation kept.
    assert_eq!(
        [qback.affine[0][3], qback.affine[1][3], qback.affine[2][3]],
        [5.0, 6.0, 7.0]
    );
    assert!(qback.affine.iter().flatten().all(|v| v.is_finite()));
    // Singular 3×3: no qform, sform still exact.
    let singular = [
        [1.0, 1.0, 0.0, 0.0],
        [1.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let img = NiftiImage::from_u8([2, 2, 2], [1.0, 1.0, 1.0], singular, vec![1; 8]).unwrap();
    let bytes = write_bytes(&img, false).unwrap();
    assert_eq!(i16::from_le_bytes(bytes[252..254].try_into().unwrap()), 0);
    assert_affine_close(
        &read_bytes(&bytes, &NiftiLimits::default()).unwrap().affine,
        &singular,
        1e-6,
    );
}

#[test]
fn affine_source_priority() {
    let mut bytes = valid_bytes();
    // Make sform differ from qform.
    put_f32(&mut bytes, 280 + 12, 42.0);
    let a = read_bytes(&bytes, &NiftiLimits::default()).unwrap().affine;
    assert_eq!(a[0][3], 42.0);
    put_i16(&mut bytes, 254, 0);
    let a = read_bytes(&bytes, &NiftiLimits::default()).unwrap().affine;
    assert_affine_close(&a, &ITK_AFFINE, 1e-6);
    put_i16(&mut bytes, 252, 0);
    let a = read_bytes(&bytes, &NiftiLimits::default()).unwrap().affine;
    assert_affine_close(&a, &diag_affine([0.75, 0.5, 2.0]), 1e-6);
    // Non-finite sform is refused.
    put_i16(&mut bytes, 254, 1);
    put_f32(&mut bytes, 284, f32::NAN);
    assert!(matches!(
        read_bytes(&bytes, &NiftiLimits::default()),
        Err(NiftiError::BadAffine { which: "sform" })
    ));
}
