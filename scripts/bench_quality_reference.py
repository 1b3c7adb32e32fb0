#!/usr/bin/env python3
"""Times the reference libraries on the inputs of `cargo bench --bench quality`.

Usage:
    FEDANNO_BENCH_INPUTS=/tmp/qbench cargo bench -p fedanno-node --bench quality
    python3 scripts/bench_quality_reference.py /tmp/qbench [--skip-medpy] [--json]

Needs: numpy, SimpleITK, surface-distance (DeepMind), MedPy, scikit-learn, statsmodels,
krippendorff; crowd-kit (optional, for its Dawid-Skene). Times cover the computation only (inputs are loaded first), like the Rust
benchmarks. Slow references run once; fast ones report the best of three runs. The script also
prints the main results so they can be compared with `fedanno metrics` / `fedanno consensus`
on the same files.
"""

import argparse
import csv
import json
import os
import sys
import time

import numpy as np


def timed(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def read_mask(path):
    import SimpleITK as sitk

    img = sitk.ReadImage(path)
    return img, sitk.GetArrayFromImage(img)  # (z, y, x)


def dawid_skene_numpy(n, tol=1e-10, max_iter=100000):
    """Dawid–Skene EM on counts n[unit, rater, given] (one-hot, missing = all zero), with a soft
    majority-vote start, log-space E-step and a stop when every parameter changes < tol."""
    units, raters, k = n.shape
    t = n.sum(axis=1)
    t = t / t.sum(axis=1, keepdims=True)

    def m_step(t):
        pi = t.sum(axis=0) / t.sum()
        theta = np.einsum("uk,ujl->jkl", t, n)
        s = theta.sum(axis=2, keepdims=True)
        theta = np.where(s > 0, theta / np.where(s > 0, s, 1), 1.0 / k)
        return pi, theta

    def e_step(pi, theta):
        with np.errstate(divide="ignore"):
            lt = np.log(theta)
            lp = np.log(pi)
        lt = np.where(np.isneginf(lt), -1e300, lt)
        logp = lp[None, :] + np.einsum("ujl,jkl->uk", n, lt)
        m = logp.max(axis=1, keepdims=True)
        p = np.exp(logp - m)
        s = p.sum(axis=1, keepdims=True)
        return p / s, float((m[:, 0] + np.log(s[:, 0])).sum())

    pi, theta = m_step(t)
    it = 0
    while it < max_iter:
        t, _ = e_step(pi, theta)
        pi2, theta2 = m_step(t)
        it += 1
        change = max(np.abs(pi2 - pi).max(), np.abs(theta2 - theta).max())
        pi, theta = pi2, theta2
        if change < tol:
            break
    _, ll = e_step(pi, theta)
    return pi, theta, it, ll


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--skip-medpy", action="store_true", help="MedPy HD95 takes about a minute")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", default="staple,multilabel,seg,ratings",
                    help="comma-separated parts to time: staple, multilabel, seg, ratings")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    d = args.dir
    res = {}

    import SimpleITK as sitk


    if "staple" in parts:
        time_staple(d, res, sitk)
    if "multilabel" in parts:
        time_multilabel(d, res, sitk)
    if "seg" in parts:
        time_seg(d, res, args.skip_medpy)
    if "ratings" in parts:
        time_ratings(d, res)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:<45} {v['seconds']:>9.3f} s  {v['library']}")


def time_staple(d, res, sitk):
    """Binary STAPLE, 5 readers x 256x256x128."""
    imgs = [read_mask(os.path.join(d, f"staple_{i}.nii"))[0] for i in range(5)]
    sec, out = timed(lambda: sitk.STAPLE(imgs, 1.0), 1)
    res["staple_5x256x256x128"] = {"seconds": sec, "library": f"SimpleITK {sitk.Version.VersionString()}"}
    arr = sitk.GetArrayFromImage(out)
    print(f"SimpleITK STAPLE: {sec:.3f} s, voxels >= 0.5: {(arr >= 0.5).sum()}, sum W {arr.sum():.3f}",
          file=sys.stderr)



def time_multilabel(d, res, sitk):
    """Multi-label STAPLE, 4 labels."""
    imgs = [read_mask(os.path.join(d, f"multilabel_{i}.nii"))[0] for i in range(5)]
    sec, out = timed(lambda: sitk.MultiLabelSTAPLE(imgs), 1)
    res["multilabel_staple_4_labels_5x256x256x128"] = {"seconds": sec, "library": "SimpleITK MultiLabelSTAPLE"}
    arr = sitk.GetArrayFromImage(out)
    print(f"SimpleITK MultiLabelSTAPLE: {sec:.3f} s, label counts {np.bincount(arr.ravel()).tolist()}",
          file=sys.stderr)



def time_seg(d, res, skip_medpy):
    """Dice (numpy) and surface metrics (surface-distance, MedPy) on 512x512x300."""
    a_img, a = read_mask(os.path.join(d, "seg_a.nii"))
    _, b = read_mask(os.path.join(d, "seg_b.nii"))
    spacing = tuple(reversed(a_img.GetSpacing()))  # (z, y, x)

    def dice():
        x, y = a != 0, b != 0
        return 2.0 * np.logical_and(x, y).sum() / (x.sum() + y.sum())

    sec, dsc = timed(dice, 3)
    res["dice_512x512x300"] = {"seconds": sec, "library": f"numpy {np.__version__}"}
    print(f"numpy Dice: {sec:.3f} s, dice {dsc:.12f}", file=sys.stderr)

    import surface_distance as sd

    ga, gb = a != 0, b != 0

    def surface():
        dist = sd.compute_surface_distances(ga, gb, spacing)
        return (sd.compute_robust_hausdorff(dist, 100), sd.compute_robust_hausdorff(dist, 95),
                sd.compute_average_surface_distance(dist),
                sd.compute_surface_dice_at_tolerance(dist, 1.0))

    sec, (hd, hd95, asd, sdice) = timed(surface, 1)
    res["hd95_assd_surface_dice_512x512x300"] = {"seconds": sec, "library": "surface-distance 0.1"}
    print(f"surface-distance: {sec:.3f} s, hd {hd:.6f} hd95 {hd95:.6f} assd {np.mean(asd):.6f} "
          f"surface dice {sdice:.9f}", file=sys.stderr)

    if not skip_medpy:
        from medpy.metric import binary

        sec, h = timed(lambda: binary.hd95(gb, ga, voxelspacing=spacing), 1)
        res["medpy_hd95_512x512x300"] = {"seconds": sec, "library": "MedPy 0.5.2"}
        print(f"MedPy hd95: {sec:.3f} s, hd95 {h:.6f}", file=sys.stderr)



def time_ratings(d, res):
    """Agreement and Dawid-Skene on 10,000 units x 10 readers, 5 categories, missing cells."""
    units, raters = {}, {}
    rows = []
    with open(os.path.join(d, "ratings.csv"), newline="") as f:
        for r in csv.DictReader(f):
            u = units.setdefault(r["unit"], len(units))
            j = raters.setdefault(r["rater"], len(raters))
            rows.append((u, j, int(r["value"])))
    table = np.full((len(units), len(raters)), np.nan)
    for u, j, v in rows:
        table[u, j] = v
    cats = [1, 2, 3, 4, 5]

    from sklearn.metrics import cohen_kappa_score

    def cohen():
        out = []
        for i in range(len(raters)):
            for j in range(i + 1, len(raters)):
                m = ~np.isnan(table[:, i]) & ~np.isnan(table[:, j])
                x, y = table[m, i].astype(int), table[m, j].astype(int)
                out.append([cohen_kappa_score(x, y, labels=cats, weights=w)
                            for w in (None, "linear", "quadratic")])
        return out

    sec_c, kappas = timed(cohen, 3)

    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    def fleiss():
        complete = table[~np.isnan(table).any(axis=1)].astype(int)
        counts, _ = aggregate_raters(complete, n_cat=None)
        return fleiss_kappa(counts)

    sec_f, fk = timed(fleiss, 3)

    import krippendorff

    def kripp():
        return [krippendorff.alpha(reliability_data=table.T, level_of_measurement=lv, value_domain=cats)
                for lv in ("nominal", "ordinal", "interval", "ratio")]

    sec_k, alphas = timed(kripp, 3)
    res["cohen45_fleiss_krippendorff_10000x10"] = {
        "seconds": sec_c + sec_f + sec_k,
        "parts": {"sklearn_cohen_45_pairs_3_weightings": sec_c, "statsmodels_fleiss": sec_f,
                  "krippendorff_4_levels": sec_k},
        "library": "scikit-learn + statsmodels + krippendorff",
    }
    print(f"sklearn Cohen x45 (3 weightings): {sec_c:.3f} s, first pair {kappas[0]}; "
          f"statsmodels Fleiss {sec_f:.4f} s ({fk:.12f}); krippendorff {sec_k:.3f} s {alphas}",
          file=sys.stderr)

    n = np.zeros((len(units), len(raters), len(cats)))
    for u, j, v in rows:
        n[u, j, v - 1] = 1.0
    sec, (pi, _, it, ll) = timed(lambda: dawid_skene_numpy(n), 1)
    res["dawid_skene_10000x10"] = {"seconds": sec, "library": "numpy Dawid-Skene (this script)",
                                   "iterations": it}
    print(f"numpy Dawid-Skene: {sec:.3f} s, {it} iterations, priors {pi.tolist()}, loglik {ll:.6f}",
          file=sys.stderr)

    # The Python library people use for Dawid-Skene today (crowd-kit), when installed.
    try:
        import pandas as pd
        from crowdkit.aggregation import DawidSkene
    except ImportError:
        print("crowd-kit not installed: skipping its Dawid-Skene", file=sys.stderr)
    else:
        df = pd.DataFrame([(f"u{u}", f"r{j}", v) for u, j, v in rows],
                          columns=["task", "worker", "label"])
        sec_ck, _ = timed(lambda: DawidSkene(n_iter=100000, tol=1e-10).fit(df), 1)
        res["dawid_skene_10000x10_crowdkit"] = {"seconds": sec_ck, "library": "crowd-kit DawidSkene"}
        print(f"crowd-kit Dawid-Skene: {sec_ck:.3f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
