//! Criterion benchmarks of the quality engine on the sizes of README.md, "Performance › Quality
//! engine": binary STAPLE 5 readers × 256×256×128, multi-label STAPLE (4 labels, same size), Dice
//! and the surface metrics on 512×512×300 (spacing 1.5×0.8×0.8 mm), the agreement statistics and
//! Dawid–Skene on 10,000 units × 10 readers.
//!
//! Inputs come from a deterministic generator. With `FEDANNO_BENCH_INPUTS=DIR` the benchmark
//! first writes them to DIR (uncompressed NIfTI masks and `ratings.csv`) so that
//! `scripts/bench_quality_reference.py DIR` times the reference libraries on the same data.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fedanno_node::annotations::nifti::{self, NiftiImage};
use fedanno_stats::agreement::agreement;
use fedanno_stats::dawid_skene::{DsOptions, dawid_skene};
use fedanno_stats::multilabel::{
    LabelPatternHistogram, MultiLabelOptions, label_map, multilabel_staple,
};
use fedanno_stats::overlap::OverlapCounts;
use fedanno_stats::ratings::LabeledRatings;
use fedanno_stats::staple::{PatternHistogram, StapleOptions, probability_map_f32, staple};
use fedanno_stats::surface::{Definition, Grid, surface_metrics};

/// xorshift64*: the same stream on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An ellipsoid with a wobbly surface on a `z, y, x` grid, with `label` inside.
fn ball(dims: [usize; 3], c: [f64; 3], r: [f64; 3], wobble: f64, label: u8) -> Vec<u8> {
    let [nz, ny, nx] = dims;
    let wx: Vec<f64> = (0..nx).map(|x| (x as f64 * 0.21).sin()).collect();
    let wy: Vec<f64> = (0..ny).map(|y| (y as f64 * 0.17).cos()).collect();
    let mut v = vec![0u8; nz * ny * nx];
    for z in 0..nz {
        let dz = (z as f64 - c[0]) / r[0];
        let wz = (z as f64 * 0.3).sin();
        for y in 0..ny {
            let dy = (y as f64 - c[1]) / r[1];
            let row = &mut v[(z * ny + y) * nx..(z * ny + y + 1) * nx];
            for (x, out) in row.iter_mut().enumerate() {
                let dx = (x as f64 - c[2]) / r[2];
                let w = 1.0 + wobble * (wx[x] * wy[y] + wz);
                if dz * dz + dy * dy + dx * dx <= w {
                    *out = label;
                }
            }
        }
    }
    v
}

/// Flips a fraction of the voxels to a random label in `0..labels`.
fn noise(v: &mut [u8], rng: &mut Rng, fraction: f64, labels: u64) {
    for x in v.iter_mut() {
        if rng.unit() < fraction {
            *x = rng.below(labels) as u8;
        }
    }
}

const STAPLE_DIMS: [usize; 3] = [128, 256, 256];
const SEG_DIMS: [usize; 3] = [300, 512, 512];
const SEG_SPACING: [f64; 3] = [1.5, 0.8, 0.8];

/// Five binary readers around one lesion: different sizes, offsets and noise.
fn staple_raters() -> Vec<Vec<u8>> {
    let mut rng = Rng(0x5747_1e00);
    (0..5)
        .map(|r| {
            let s = 1.0 + 0.04 * (r as f64 - 2.0);
            let c = [
                64.0 + r as f64 * 0.5,
                128.0 - r as f64,
                128.0 + r as f64 * 0.7,
            ];
            let mut v = ball(STAPLE_DIMS, c, [40.0 * s, 80.0 * s, 70.0 * s], 0.05, 1);
            noise(&mut v, &mut rng, 0.002 * (r + 1) as f64, 2);
            v
        })
        .collect()
}

/// Five readers labelling three sectors (labels 1–3) of one lesion, background 0.
fn multilabel_raters() -> Vec<Vec<u8>> {
    let [nz, ny, nx] = STAPLE_DIMS;
    let mut rng = Rng(0x3a11_4ab3);
    (0..5)
        .map(|r| {
            let s = 1.0 + 0.03 * (r as f64 - 2.0);
            let mut v = ball(
                STAPLE_DIMS,
                [64.0, 128.0, 128.0],
                [40.0 * s, 80.0 * s, 70.0 * s],
                0.05,
                1,
            );
            let (cy, cx) = (128 + r, 126 + 2 * r);
            for z in 0..nz {
                for y in 0..ny {
                    for x in 0..nx {
                        let i = (z * ny + y) * nx + x;
                        if v[i] != 0 {
                            v[i] = if x < cx {
                                1
                            } else if y < cy {
                                2
                            } else {
                                3
                            };
                        }
                    }
                }
            }
            noise(&mut v, &mut rng, 0.01, 4);
            v
        })
        .collect()
}

/// Reference and test masks of 512×512×300.
fn seg_pair() -> (Vec<u8>, Vec<u8>) {
    let a = ball(
        SEG_DIMS,
        [150.0, 256.0, 256.0],
        [90.0, 160.0, 150.0],
        0.0,
        1,
    );
    let b = ball(
        SEG_DIMS,
        [152.0, 258.0, 255.0],
        [88.0, 158.0, 153.0],
        0.03,
        1,
    );
    (a, b)
}

/// 10,000 units × 10 readers, 5 ordinal categories, accuracies 0.55–0.9, 10 % missing.
fn ratings_triples() -> Vec<(String, String, String)> {
    let mut rng = Rng(0xd5d5_0010);
    let mut out = Vec::new();
    for u in 0..10_000 {
        let truth = rng.below(5);
        for r in 0..10u64 {
            if rng.unit() < 0.1 {
                continue;
            }
            let accuracy = 0.55 + 0.035 * r as f64;
            let v = if rng.unit() < accuracy {
                truth
            } else {
                rng.below(5)
            };
            out.push((format!("u{u}"), format!("r{r}"), (v + 1).to_string()));
        }
    }
    out
}

fn categories() -> Vec<String> {
    (1..=5).map(|c| c.to_string()).collect()
}

/// Writes a `z, y, x` mask as an uncompressed NIfTI with the given spacing.
fn write_mask(path: &Path, dims: [usize; 3], spacing: [f64; 3], data: &[u8]) {
    let [sz, sy, sx] = spacing;
    let affine = [
        [sx, 0.0, 0.0, 0.0],
        [0.0, sy, 0.0, 0.0],
        [0.0, 0.0, sz, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let img = NiftiImage::from_u8(
        [dims[2], dims[1], dims[0]],
        [sx, sy, sz],
        affine,
        data.to_vec(),
    )
    .expect("valid image");
    nifti::write_file(path, &img).expect("bench input written");
}

/// Writes every input for the reference script.
fn write_inputs(dir: &Path) {
    std::fs::create_dir_all(dir).expect("input dir");
    for (i, v) in staple_raters().iter().enumerate() {
        write_mask(
            &dir.join(format!("staple_{i}.nii")),
            STAPLE_DIMS,
            [1.0; 3],
            v,
        );
    }
    for (i, v) in multilabel_raters().iter().enumerate() {
        write_mask(
            &dir.join(format!("multilabel_{i}.nii")),
            STAPLE_DIMS,
            [1.0; 3],
            v,
        );
    }
    let (a, b) = seg_pair();
    write_mask(&dir.join("seg_a.nii"), SEG_DIMS, SEG_SPACING, &a);
    write_mask(&dir.join("seg_b.nii"), SEG_DIMS, SEG_SPACING, &b);
    let mut csv = String::from("unit,rater,value\n");
    for (u, r, v) in ratings_triples() {
        csv.push_str(&format!("{u},{r},{v}\n"));
    }
    std::fs::write(dir.join("ratings.csv"), csv).expect("ratings written");
}

fn consensus(c: &mut Criterion) {
    if let Some(dir) = std::env::var_os("FEDANNO_BENCH_INPUTS") {
        write_inputs(Path::new(&dir));
    }
    let mut g = c.benchmark_group("consensus");
    g.sample_size(10).warm_up_time(Duration::from_secs(1));
    let raters = staple_raters();
    let refs: Vec<&[u8]> = raters.iter().map(Vec::as_slice).collect();
    g.bench_function("staple_5x256x256x128", |b| {
        b.iter(|| {
            let h = PatternHistogram::from_raters(black_box(&refs), 1, None).expect("histogram");
            let r = staple(&h, &StapleOptions::default()).expect("staple");
            probability_map_f32(&refs, 1, None, &r.params).expect("map")
        });
    });
    let labels = multilabel_raters();
    let lrefs: Vec<&[u8]> = labels.iter().map(Vec::as_slice).collect();
    g.bench_function("multilabel_staple_4_labels_5x256x256x128", |b| {
        b.iter(|| {
            let h = LabelPatternHistogram::from_raters(black_box(&lrefs), None).expect("histogram");
            let r = multilabel_staple(&h, &MultiLabelOptions::default()).expect("staple");
            label_map(&lrefs, &h, &r).expect("map")
        });
    });
    g.finish();
}

fn segmentation(c: &mut Criterion) {
    let mut g = c.benchmark_group("segmentation");
    g.sample_size(10).warm_up_time(Duration::from_secs(1));
    let (a, b) = seg_pair();
    g.bench_function("dice_512x512x300", |bench| {
        bench.iter(|| OverlapCounts::from_masks(black_box(&a), black_box(&b), |v| v != 0));
    });
    let grid = Grid {
        dims: SEG_DIMS,
        spacing: SEG_SPACING,
    };
    g.bench_function("hd95_assd_surface_dice_512x512x300", |bench| {
        bench.iter(|| {
            surface_metrics(
                black_box(&a),
                black_box(&b),
                &grid,
                |v| v != 0,
                Definition::SurfaceDistance,
                1.0,
            )
            .expect("same grid")
        });
    });
    g.finish();
}

fn categorical(c: &mut Criterion) {
    let mut g = c.benchmark_group("categorical");
    g.sample_size(10).warm_up_time(Duration::from_secs(1));
    let lr = LabeledRatings::from_triples(&ratings_triples(), &categories()).expect("ratings");
    let values = lr.numeric_categories();
    g.bench_function("cohen45_fleiss_krippendorff_10000x10", |b| {
        b.iter(|| agreement(black_box(&lr.ratings), values.as_deref()));
    });
    g.bench_function("dawid_skene_10000x10", |b| {
        b.iter(|| dawid_skene(black_box(&lr.ratings), &DsOptions::default()).expect("converges"));
    });
    g.finish();
}

criterion_group!(benches, consensus, segmentation, categorical);
criterion_main!(benches);
