"""Tasks: what a model's outputs mean. One folder per task holds the task
(inputs, loss, predict functions, normalisers; `base.Task`), its evaluators
and its pp ops and ops. The name tables of this package:"""
from vision_jax.registry import Registry

_C, _D = "vision_jax.tasks.classification", "vision_jax.tasks.detection"
_S, _L, _SAL = ("vision_jax.tasks.segmentation", "vision_jax.tasks.lanes",
                 "vision_jax.tasks.saliency")

TASKS = Registry("task", {
    "classification": f"{_C}.task:ClassificationTask",
    "distillation": f"{_C}.distillation:DistillationTask",
    "detection": f"{_D}.task:DetectionTask",
    "segmentation": f"{_S}.task:SegmentationTask",
    "lanes": f"{_L}.task:LaneTask",
    "saliency": f"{_SAL}.task:ConnectivityTask",
})

EVALUATORS = Registry("evaluator", {
    "classification": f"{_C}.evaluator:ClassificationEvaluator",
    "linear_transfer": f"{_C}.linear_transfer:LinearTransferEvaluator",
    "dead_neurons": f"{_C}.dead_neurons:DeadNeuronEvaluator",
    "coco": f"{_D}.coco_evaluator:CocoEvaluator",
    "miou": f"{_S}.miou:MIoUEvaluator",
    "lane_f1": f"{_L}.evaluator:LaneF1Evaluator",
    "saliency": f"{_SAL}.evaluator:SaliencyEvaluator",
})

# Task-specific pp ops; the generic ones are `vision_jax.data.PP_OPS`.
PP_OPS = Registry("preprocessing op", {
    **{name: f"{_D}.transforms:{name}"
       for name in ("coco_objects", "resize_keep_ratio", "flip_lr_boxes", "pad_to", "pad_to_canvas",
                    "pad_boxes")},
    **{name: f"{_S}.transforms:{name}"
       for name in ("seg_label", "seg_resize", "seg_random_crop", "seg_flip",
                    "photometric_distortion", "seg_pad")},
    "saliency_mask": f"{_SAL}.transforms:saliency_mask",
    "lane_targets": f"{_L}.transforms:lane_targets"})
