#!/usr/bin/env python3
"""Writes generated/CT_small_seg_overlap_highdicom.dcm: a BINARY Segmentation of
pydicom/CT_small.dcm with three overlapping segments, as highdicom writes them — a liver-like
disc of radius 30 px (1), a lesion disc of radius 10 px inside it (2) and a 20 x 60 px vessel
band crossing both (3) — each with its own property codes, a recommended display colour and,
for the lesion, an AUTOMATIC algorithm with its name, version and family; and
generated/CT_small_seg_overlap_masks.npy, the three masks it encodes (3 x 128 x 128, uint8).

Usage (from this directory): python generate_overlap.py   (needs highdicom 0.28, pydicom, numpy)
"""
import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

src = pydicom.dcmread("pydicom/CT_small.dcm")
rows, cols = src.Rows, src.Columns
yy, xx = np.mgrid[0:rows, 0:cols]
masks = np.zeros((3, rows, cols), dtype=np.uint8)
masks[0][(yy - 64) ** 2 + (xx - 60) ** 2 <= 30 ** 2] = 1
masks[1][(yy - 70) ** 2 + (xx - 66) ** 2 <= 10 ** 2] = 1
masks[2][60:80, 30:90] = 1

model = hd.AlgorithmIdentificationSequence(
    name="lesion-net", version="2.1.0", family=codes.cid7162.ArtificialIntelligence
)
segments = [
    hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="liver",
        segmented_property_category=codes.SCT.Organ,
        segmented_property_type=codes.SCT.Liver,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        display_color=hd.color.CIELabColor(55.0, 40.0, 30.0),
    ),
    hd.seg.SegmentDescription(
        segment_number=2,
        segment_label="lesion",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=model,
        display_color=hd.color.CIELabColor(70.0, -20.0, 60.0),
    ),
    hd.seg.SegmentDescription(
        segment_number=3,
        segment_label="vessel",
        segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=codes.SCT.BloodVessel,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    ),
]
seg = hd.seg.Segmentation(
    source_images=[src],
    pixel_array=np.moveaxis(masks, 0, -1)[None],
    segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
    segment_descriptions=segments,
    series_instance_uid="2.25.300100200300400500600700800900201",
    series_number=78,
    sop_instance_uid="2.25.300100200300400500600700800900202",
    instance_number=1,
    manufacturer="fedanno tests",
    manufacturer_model_name="generate_overlap.py",
    software_versions="0",
    device_serial_number="0",
)
seg.save_as("generated/CT_small_seg_overlap_highdicom.dcm")
np.save("generated/CT_small_seg_overlap_masks.npy", masks)
print(seg.SegmentsOverlap, seg.NumberOfFrames, [s.RecommendedDisplayCIELabValue
      for s in seg.SegmentSequence if "RecommendedDisplayCIELabValue" in s])
