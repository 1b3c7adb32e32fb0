#!/usr/bin/env python3
"""Reference timing for `fedanno bench ingest`: pydicom header reads of the same files.

Reads every file under DIR with dcmread(stop_before_pixels=True) and touches the attributes an
ingest needs (identifiers, geometry, encoding), twice; reports the faster (warm-cache) run.
Usage: python3 scripts/bench_pydicom_ingest.py DIR
"""
import os
import sys
import time

import pydicom

TAGS = [
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
    "FrameOfReferenceUID", "PatientID", "PatientName", "StudyDate", "Modality",
    "SeriesNumber", "InstanceNumber", "Rows", "Columns", "NumberOfFrames",
    "SamplesPerPixel", "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient",
]


def run(files):
    t = time.perf_counter()
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        _ = ds.file_meta.TransferSyntaxUID
        for tag in TAGS:
            _ = ds.get(tag)
    return time.perf_counter() - t


def main():
    root = sys.argv[1]
    files = sorted(os.path.join(d, n) for d, _, ns in os.walk(root) for n in ns)
    best = min(run(files) for _ in range(2))
    print(f"pydicom {pydicom.__version__}: {len(files)} files in {best:.3f} s = {len(files) / best:.0f} files/s")


if __name__ == "__main__":
    main()
