"""Semantic segmentation: the task (per-pixel cross-entropy, whole-image and
sliding-window inference at the original size), the mIoU evaluator, pp ops
and pictures."""
