#!/usr/bin/env python3
"""Independent check of the DICOM SEG files fedanno writes, with pydicom and highdicom.

Runs the real `fedanno` binary: synthesises CT series (an even and an odd, non-byte-aligned
frame size), ingests them, imports the simulated readers' NIfTI masks, exports each as a SEG
(local and --deidentified), and checks that pydicom reads every file, that
highdicom.seg.Segmentation.from_dataset accepts it, and that the per-source-instance masks
highdicom decodes equal the NIfTI masks voxel for voxel. Ends with 'N passed, M failed'.

Usage: validate_seg.py PATH/TO/fedanno
"""
import gzip
import os
import subprocess
import sys
import tempfile

import highdicom as hd
import numpy as np
import pydicom

FEDANNO = os.path.abspath(sys.argv[1])
passed = failed = 0


def run(*args, cwd):
    subprocess.run([FEDANNO, *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def read_nifti_u8(path):
    raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
    dim = np.frombuffer(raw[40:56], dtype="<i2")
    nx, ny, nz = int(dim[1]), int(dim[2]), int(dim[3])
    offset = int(np.frombuffer(raw[108:112], dtype="<f4")[0])
    return np.frombuffer(raw[offset:offset + nx * ny * nz], dtype=np.uint8).reshape(nz, ny, nx)


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def case_dir(size, cases):
    tmp = tempfile.mkdtemp(prefix="fedanno-seg-")
    run("init", "--dir", "site", "--site-name", "SEG Check", cwd=tmp)
    run("synth", "--out", "syn", "--cases", str(cases), "--size", size, "--seed", "21", cwd=tmp)
    run("--dir", "site", "ingest", "syn/dicom", cwd=tmp)
    run("--dir", "site", "readers", "add", "panel-expert", "--kind", "panel", cwd=tmp)
    return tmp


for size in ["48x40x12", "21x22x7"]:
    tmp = case_dir(size, 2)
    cases = [l.split(",") for l in open(os.path.join(tmp, "syn/cases.csv")).read().splitlines()[1:]]
    for case, _study, series in cases:
        mask_path = os.path.join(tmp, "syn/readers/panel-expert", case + ".nii.gz")
        run("--dir", "site", "annotate", "import", "--reader", "panel-expert", mask_path, cwd=tmp)
        mask = read_nifti_u8(mask_path)
        for fmt, deid in [("seg", False), ("seg", True), ("seg-labelmap", False), ("seg-labelmap", True)]:
            out = os.path.join(tmp, f"{case}-{fmt}-{'deid' if deid else 'local'}.dcm")
            args = ["--dir", "site", "annotate", "export", "--case", series, "--reader", "panel-expert",
                    "--format", fmt, "--out", out]
            if deid:
                args.append("--deidentified")
            run(*args, cwd=tmp)
            name = f"{size} {case} {fmt} {'deidentified' if deid else 'local'}"
            try:
                ds = pydicom.dcmread(out)
                seg = hd.seg.Segmentation.from_dataset(ds)
            except Exception as e:  # noqa: BLE001 - report any rejection
                check(name + " accepted by highdicom", False, repr(e))
                continue
            check(name + " accepted by highdicom", True)
            if deid:
                text = str(ds)
                check(name + " carries no original identifiers and is marked de-identified",
                      "SYNTHETIC" not in text and series not in text
                      and ds.get("PatientIdentityRemoved") == "YES")
            # Source instances in slice order, as referenced by the SEG.
            refs = [fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                    for fg in ds.PerFrameFunctionalGroupsSequence]
            positions = {fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID:
                         float(fg.PlanePositionSequence[0].ImagePositionPatient[2])
                         for fg in ds.PerFrameFunctionalGroupsSequence}
            z0 = -0.5 * mask.shape[0] * 2.0
            good = True
            for uid in sorted(set(refs)):
                k = int(round((positions[uid] - z0) / 2.0))
                px = seg.get_pixels_by_source_instance(
                    source_sop_instance_uids=[uid], combine_segments=True, skip_overlap_checks=True)
                good &= np.array_equal(px[0].astype(np.uint8), mask[k])
            fg_slices = {int(k) for k in np.nonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0]}
            # A BINARY SEG has frames where a segment is; a LABELMAP one a frame per slice.
            frames = mask.shape[0] if fmt == "seg-labelmap" else max(1, len(fg_slices))
            check(name + " frames equal the NIfTI mask", good and len(set(refs)) == frames,
                  f"frames {len(set(refs))} vs {frames}")


def check_overlapping_segments():
    """A SEG with overlapping segments (highdicom's, tests/data) exported by fedanno: highdicom
    reads every segment's mask back as it was, and each segment's description."""
    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../data/dicom")
    tmp = tempfile.mkdtemp(prefix="fedanno-overlap-")
    run("init", "--dir", "site", "--site-name", "Overlap Check", cwd=tmp)
    run("--dir", "site", "ingest", os.path.join(data, "pydicom/CT_small.dcm"), cwd=tmp)
    run("--dir", "site", "readers", "add", "r1", "--kind", "local", cwd=tmp)
    source = os.path.join(data, "generated/CT_small_seg_overlap_highdicom.dcm")
    run("--dir", "site", "annotate", "import", "--reader", "r1", source, cwd=tmp)
    series = pydicom.dcmread(source).ReferencedSeriesSequence[0].SeriesInstanceUID
    out = os.path.join(tmp, "overlap.dcm")
    run("--dir", "site", "annotate", "export", "--case", series, "--reader", "r1",
        "--format", "seg", "--out", out, cwd=tmp)
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(out))
    uid = pydicom.dcmread(os.path.join(data, "pydicom/CT_small.dcm")).SOPInstanceUID
    px = seg.get_pixels_by_source_instance(source_sop_instance_uids=[uid], skip_overlap_checks=True)
    masks = np.load(os.path.join(data, "generated/CT_small_seg_overlap_masks.npy"))
    check("overlapping segments: SegmentsOverlap YES", seg.SegmentsOverlap == "YES")
    check("overlapping segments: every mask as it came",
          all(np.array_equal(px[0, :, :, k].astype(np.uint8), masks[k]) for k in range(3)))
    original = hd.seg.Segmentation.from_dataset(pydicom.dcmread(source))
    for n in (1, 2, 3):
        a, b = seg.get_segment_description(n), original.get_segment_description(n)
        same = (a.segmented_property_type == b.segmented_property_type
                and a.segmented_property_category == b.segmented_property_category
                and a.algorithm_type == b.algorithm_type
                and a.get("RecommendedDisplayCIELabValue") == b.get("RecommendedDisplayCIELabValue"))
        check(f"overlapping segments: segment {n} described as its author did", same)


check_overlapping_segments()

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
