#!/usr/bin/env python3
"""Masks as nibabel and dcm2niix-style pipelines write them import as the same voxels.

Runs the real `fedanno` binary: synthesises a CT series, ingests it, and takes a simulated
reader's NIfTI mask. nibabel then writes the mask again in other axis orders and directions:
`as_closest_canonical` (the RAS reorder nnU-Net and TotalSegmentator pipelines apply), a row
flip (as dcm2niix writes), and an x/y transpose. Each is imported as a reader of its own and
exported back on the series grid: the voxels must equal the original mask exactly. A mask
shifted by half a voxel (which would need resampling) must be refused, naming both grids.
Ends with 'N passed, M failed'.

Usage: nifti_orientations.py PATH/TO/fedanno
"""
import os
import subprocess
import sys
import tempfile

import nibabel as nib
import numpy as np

FEDANNO = os.path.abspath(sys.argv[1])
passed = failed = 0


def run(*args, cwd, check=True):
    return subprocess.run([FEDANNO, *args], cwd=cwd, check=check, capture_output=True, text=True)


def report(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


tmp = tempfile.mkdtemp(prefix="fedanno-nifti-")
run("init", "--dir", "site", "--site-name", "NIfTI Check", cwd=tmp)
run("synth", "--out", "syn", "--cases", "1", "--size", "24x20x6", "--seed", "9", cwd=tmp)
run("--dir", "site", "ingest", "syn/dicom", cwd=tmp)
case, _study, series = open(os.path.join(tmp, "syn/cases.csv")).read().splitlines()[1].split(",")
original = nib.load(os.path.join(tmp, "syn/readers/panel-expert", f"{case}.nii.gz"))
data = np.asarray(original.dataobj).astype(np.uint8)

transposed = nib.Nifti1Image(np.transpose(data, (1, 0, 2)).copy(), original.affine[:, [1, 0, 2, 3]])
# The rows written bottom-up, the affine following them (what dcm2niix does to a DICOM
# series' rows).
flipped = original.affine.copy()
flipped[:3, 3] += flipped[:3, 1] * (data.shape[1] - 1)
flipped[:3, 1] *= -1
variants = {
    "canonical": nib.as_closest_canonical(original),
    "row-flip": nib.Nifti1Image(data[:, ::-1, :].copy(), flipped),
    "transposed": transposed,
}
for name, img in variants.items():
    reader = f"r-{name}"
    run("--dir", "site", "readers", "add", reader, "--kind", "local", cwd=tmp)
    path = os.path.join(tmp, f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj).astype(np.uint8), img.affine), path)
    r = run("--dir", "site", "annotate", "import", "--reader", reader, "--series", series, path,
            cwd=tmp, check=False)
    if r.returncode != 0:
        report(f"{name} imports", False, r.stderr.strip())
        continue
    out = os.path.join(tmp, f"{name}-back.nii.gz")
    run("--dir", "site", "annotate", "export", "--reader", reader, "--case", series,
        "--format", "nifti", "--out", out, cwd=tmp)
    back = nib.load(out)
    same = np.array_equal(np.asarray(back.dataobj).astype(np.uint8), data)
    report(f"{name} imports as the same voxels", same and np.allclose(back.affine, original.affine))

# Half a voxel off: a resampling, refused with both geometries named.
shifted = original.affine.copy()
shifted[:3, 3] += shifted[:3, 0] / 2
path = os.path.join(tmp, "shifted.nii.gz")
nib.save(nib.Nifti1Image(data, shifted), path)
run("--dir", "site", "readers", "add", "r-shifted", "--kind", "local", cwd=tmp)
r = run("--dir", "site", "annotate", "import", "--reader", "r-shifted", "--series", series, path,
        cwd=tmp, check=False)
report("a shifted grid is refused naming both grids",
       r.returncode != 0 and "mask" in r.stderr and "series" in r.stderr, r.stderr.strip())

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
