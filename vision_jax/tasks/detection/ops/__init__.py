"""Jit-friendly, fixed-shape detection ops (boxes, coder, anchors, assignment,
NMS, losses) following mmdetection 2.x semantics."""
