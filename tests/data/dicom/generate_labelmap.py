#!/usr/bin/env python3
"""Writes generated/CT_small_seg_labelmap_highdicom.dcm: a LABELMAP Segmentation (SOP class
1.2.840.10008.5.1.4.1.1.66.7, as highdicom >= 0.28 writes it) of pydicom/CT_small.dcm with two
segments — a disc of radius 20 px (label 1) and a 20 x 30 px rectangle (label 2) — and
generated/CT_small_seg_labelmap.npy, the label map it encodes (1 x 128 x 128, uint8).

Usage (from this directory): python generate_labelmap.py   (needs highdicom 0.28, pydicom, numpy)
"""
import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

src = pydicom.dcmread("pydicom/CT_small.dcm")
rows, cols = src.Rows, src.Columns
yy, xx = np.mgrid[0:rows, 0:cols]
labels = np.zeros((1, rows, cols), dtype=np.uint8)
labels[0][(yy - 64) ** 2 + (xx - 50) ** 2 <= 20 ** 2] = 1
labels[0][90:110, 80:110] = 2

algorithm = hd.AlgorithmIdentificationSequence(
    name="fedanno-test", version="1.0", family=codes.cid7162.ArtificialIntelligence
)
segments = [
    hd.seg.SegmentDescription(
        segment_number=n,
        segment_label=label,
        segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Organ,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    for n, label in [(1, "disc"), (2, "rectangle")]
]
seg = hd.seg.Segmentation(
    source_images=[src],
    pixel_array=labels,
    segmentation_type=hd.seg.SegmentationTypeValues.LABELMAP,
    segment_descriptions=segments,
    series_instance_uid="2.25.300100200300400500600700800900101",
    series_number=77,
    sop_instance_uid="2.25.300100200300400500600700800900102",
    instance_number=1,
    manufacturer="fedanno tests",
    manufacturer_model_name="generate_labelmap.py",
    software_versions="0",
    device_serial_number="0",
)
seg.save_as("generated/CT_small_seg_labelmap_highdicom.dcm")
np.save("generated/CT_small_seg_labelmap.npy", labels)
print(seg.SOPClassUID, seg.SegmentationType, seg.BitsAllocated, seg.NumberOfFrames)
