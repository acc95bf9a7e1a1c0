r"""FLOPs of a COCO epoch of RetinaNet-PVT training: one 1344x1344 canvas
against the aspect-ratio groups' 800x1344 / 1344x800 canvases.

  . .venv/bin/activate
  python bench/coco_canvas_flops.py --backbone pvt_small

XLA's cost analysis of the lowered train step (forward, backward, AdamW; the
trainer's `steps.make_train_step` on configs/retinanet/coco.py's model and task,
nothing compiled or run) gives FLOPs per step at --batch images per canvas. An
epoch of the recipe is the 117,266 annotated train2017 images (mmdet's
filter_empty_gt) in global batches of 16: 7,329 steps on one canvas; grouped,
ceil(L / 16) + ceil(P / 16) steps for L landscape (and square) and P portrait
images, between 7,329 and 7,331 whatever the split, and a landscape step costs
what a portrait one does (printed). So the ratio is the per-step one, to 3e-4.
"""
import argparse
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/.
from vision_jax import config as config_lib, steps, train
from configs.retinanet import coco

ANNOTATED_TRAIN_IMAGES = 117_266  # COCO train2017 images with an annotation (mmdet's count).
BATCH = 16


def step_flops(config, canvas: tuple[int, int], batch: int) -> float:
  """XLA's FLOPs of one lowered train step on `batch` images of `canvas`."""
  model = train.build_model(config)
  task = train.build_task(config, model)
  h, w = canvas
  inputs = (jax.ShapeDtypeStruct((h, w, 3), jnp.float32),)
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, h, w, 3)),
                                             train=False)["params"])
  schedule = lambda step: config.optimizer.learning_rate  # noqa: E731  # FLOPs only.
  from vision_jax.optim import builder  # pylint: disable=import-outside-toplevel
  tx = builder.make_optimizer(config.optimizer, schedule, params, {
      "total_steps": 1, "steps_per_epoch": 1, "seed": 0})
  state = jax.eval_shape(steps.make_init(model, tx, inputs, 0))
  slots = 100
  batch_shapes = {
      "image": jax.ShapeDtypeStruct((batch, h, w, 3), jnp.float32),
      "boxes": jax.ShapeDtypeStruct((batch, slots, 4), jnp.float32),
      "classes": jax.ShapeDtypeStruct((batch, slots), jnp.int32),
      "image/size": jax.ShapeDtypeStruct((batch, 2), jnp.int32),
      "image/id": jax.ShapeDtypeStruct((batch,), jnp.int32),
      "image/scale": jax.ShapeDtypeStruct((batch, 2), jnp.float32),
      "count/dropped_boxes": jax.ShapeDtypeStruct((batch,), jnp.int32),
      "count/truncated_boxes": jax.ShapeDtypeStruct((batch,), jnp.int32),
      "mask": jax.ShapeDtypeStruct((batch,), jnp.float32),
      "skipped": jax.ShapeDtypeStruct((batch,), jnp.int32)}
  step = steps.make_train_step(model, task, tx, schedule, config.optimizer.accum_steps)
  cost = jax.jit(step).lower(state, batch_shapes, {}).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--variant", default="small", help="configs/retinanet/coco.py variant")
  p.add_argument("--batch", type=int, default=1, help="images per lowered step (FLOPs scale with it)")
  args = p.parse_args(argv)
  config = coco.get_config(f"variant={args.variant}")
  config_lib.validate(config)
  per_image = {canvas: step_flops(config, canvas, args.batch) / args.batch
               for canvas in (coco.COCO_SINGLE_CANVAS, *coco.COCO_CANVASES)}
  single_steps = ANNOTATED_TRAIN_IMAGES // BATCH
  single = single_steps * BATCH * per_image[coco.COCO_SINGLE_CANVAS]
  landscape, portrait = (per_image[c] for c in coco.COCO_CANVASES)
  worst = (single_steps + 2) * BATCH * max(landscape, portrait)
  best = single_steps * BATCH * min(landscape, portrait)
  print(f"RetinaNet-{config.model.backbone}, XLA FLOPs per image of one train step:")
  for canvas, flops in per_image.items():
    print(f"  {canvas[0]}x{canvas[1]}: {flops / 1e9:8.1f} GFLOP")
  print(f"COCO epoch ({ANNOTATED_TRAIN_IMAGES:,} images, batch {BATCH}): single canvas "
        f"{single / 1e15:.2f} PFLOP ({single_steps:,} steps); grouped {best / 1e15:.2f}-"
        f"{worst / 1e15:.2f} PFLOP ({single_steps:,}-{single_steps + 2:,} steps): "
        f"{best / single:.3f}-{worst / single:.3f}x")
  return {"per_image": {f"{h}x{w}": f for (h, w), f in per_image.items()},
          "ratio": (best / single, worst / single)}


if __name__ == "__main__":
  main(sys.argv[1:])
