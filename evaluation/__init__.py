"""Which model version is better: metrics against ground truth and review decisions.

``matching`` pairs detections with ground truth as COCO does, ``curves`` accumulates them per
label with bounded memory and reads off AP, PR curves, counts and calibration.
"""
