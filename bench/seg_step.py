r"""Train-step throughput of Semantic FPN on PVT-Small at 512x512 in vision_jax,
against a PyTorch reference built from the same layers.

  . .venv/bin/activate
  python bench/seg_step.py --batch 2 --steps 1 --reps 3 --json /tmp/seg_step.json

One train step = forward + backward + AdamW (lr 2e-4, wd 1e-4 on every
parameter, as the ADE20K recipe) on one fixed random batch of --batch images
with random labels of 150 classes (10% ignored), in
  (a) vision_jax: `models.semantic_fpn.SemanticFPN(backbone="pvt_small")`,
      `tasks.segmentation.SegmentationTask` (logits resized to 512, cross-entropy
      with ignore 255) and `steps.make_train_step`, jitted with donation and
      compiled ahead of time (bench/pvt_step.py's `JaxStep`);
  (b) PyTorch, eager: `transformers.PvtModel` (PVT-Small, drop path 0.1, position
      embeddings built for --size, so 1.6M more parameters at 512) whose stage outputs (the last block of each
      stage, before the final norm, without stage 4's cls token) feed an FPN and
      an FPN head written here with mmseg's layout (1x1 laterals, nearest
      top-down, 3x3 outputs; 3x3 conv-BN-ReLU stages with x2 bilinear
      upsampling, Dropout2d 0.1, 1x1 classifier), `F.interpolate` + cross-entropy
      with ignore_index 255, `torch.optim.AdamW` (fused).
Repetitions alternate the two sides (pvt_step.py's `interleaved`); reported:
median img/s, CPU share, and the median paired ratio vision_jax / PyTorch.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# pylint: disable=wrong-import-position
from pvt_step import CORES, JaxStep, interleaved, paired_ratio, summary

from vision_jax.models.semantic_fpn import SemanticFPN
from vision_jax.tasks.segmentation.task import SegmentationTask

NUM_CLASSES = 150
LR, WD = 2e-4, 1e-4
SMALL = {"depths": [3, 4, 6, 3], "hidden_sizes": [64, 128, 320, 512],
         "num_attention_heads": [1, 2, 5, 8], "mlp_ratios": [8, 8, 4, 4],
         "sequence_reduction_ratios": [8, 4, 2, 1], "patch_sizes": [4, 2, 2, 2],
         "strides": [4, 2, 2, 2]}


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--size", type=int, default=512)
  p.add_argument("--steps", type=int, default=1, help="train steps per timed repetition")
  p.add_argument("--reps", type=int, default=3)
  p.add_argument("--warmup", type=int, default=1)
  p.add_argument("--threads", type=int, default=CORES, help="PyTorch intra-op threads")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--json", help="write the results here")
  return p.parse_args(argv)


def segmentation_batch(rng: np.random.Generator, batch: int, size: int) -> dict:
  labels = rng.integers(0, NUM_CLASSES, (batch, size, size)).astype(np.uint8)
  labels[rng.random(labels.shape) < 0.1] = 255
  return {"image": rng.standard_normal((batch, size, size, 3), np.float32),
          "segmentation": labels, "mask": np.ones(batch, np.float32),
          "skipped": np.zeros(batch, np.int32)}


class TorchSemanticFPN:
  """transformers' PVT-Small + an mmseg-layout FPN and FPN head, AdamW."""

  def __init__(self, batch: dict, threads: int, seed: int):
    import torch  # pylint: disable=import-outside-toplevel
    from torch import nn  # pylint: disable=import-outside-toplevel
    from transformers import PvtConfig, PvtModel  # pylint: disable=import-outside-toplevel
    self.torch, f = torch, torch.nn.functional
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    size = batch["image"].shape[1]
    self.backbone = PvtModel(PvtConfig(image_size=size, drop_path_rate=0.1, **SMALL))
    ends = np.cumsum(SMALL["depths"]) - 1  # Hidden-state index of each stage's last block.
    strides = (4, 8, 16, 32)

    def conv_bn_relu(cin, cout):
      return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                           nn.ReLU())

    class Decoder(nn.Module):
      def __init__(self):
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(c, 256, 1) for c in SMALL["hidden_sizes"])
        self.outputs = nn.ModuleList(nn.Conv2d(256, 256, 3, padding=1) for _ in strides)
        self.scales = nn.ModuleList(
            nn.ModuleList(conv_bn_relu(256 if k == 0 else 128, 128)
                          for k in range(max(1, int(np.log2(s) - 2)))) for s in strides)
        self.dropout, self.classifier = nn.Dropout2d(0.1), nn.Conv2d(128, NUM_CLASSES, 1)

      def forward(self, features):
        lat = [l(x) for l, x in zip(self.laterals, features)]
        for i in range(len(lat) - 1, 0, -1):
          lat[i - 1] = lat[i - 1] + f.interpolate(lat[i], size=lat[i - 1].shape[2:], mode="nearest")
        out = None
        for i, (stages, x) in enumerate(zip(self.scales, (o(l) for o, l in zip(self.outputs, lat)))):
          for stage in stages:
            x = stage(x)
            if i:
              x = f.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
          out = x if out is None else out + f.interpolate(x, size=out.shape[2:], mode="bilinear",
                                                          align_corners=False)
        return self.classifier(self.dropout(out))

    self.decoder = Decoder()
    self.model = nn.ModuleList([self.backbone, self.decoder]).train()
    params = list(self.model.parameters())
    self.params = sum(p.numel() for p in params)
    self.opt = torch.optim.AdamW(params, lr=LR, weight_decay=WD, fused=True)
    self.x = torch.from_numpy(np.ascontiguousarray(batch["image"].transpose(0, 3, 1, 2)))
    self.y = torch.from_numpy(batch["segmentation"].astype(np.int64))
    self.images, self.size, self.ends = len(self.x), size, ends

  def features(self):
    hidden = self.backbone(pixel_values=self.x, output_hidden_states=True).hidden_states
    out = []
    for stage, end in enumerate(self.ends):
      tokens = hidden[end][:, 1:] if stage == 3 else hidden[end]  # Stage 4 has a cls token.
      side = self.size // (4 * 2**stage)
      out.append(tokens.reshape(len(tokens), side, side, -1).permute(0, 3, 1, 2))
    return out

  def run(self, n: int) -> float:
    import time  # pylint: disable=import-outside-toplevel
    f = self.torch.nn.functional
    start = time.perf_counter()
    for _ in range(n):
      logits = f.interpolate(self.decoder(self.features()), size=self.y.shape[1:], mode="bilinear",
                             align_corners=False)
      loss = f.cross_entropy(logits, self.y, ignore_index=255)
      self.opt.zero_grad(set_to_none=True)
      loss.backward()
      self.opt.step()
    return time.perf_counter() - start


def main(argv=None) -> dict:
  args = parse_args(argv)
  batch = segmentation_batch(np.random.default_rng(args.seed), args.batch, args.size)
  model = SemanticFPN(backbone="pvt_small", backbone_args={"drop_path_rate": 0.1},
                      num_classes=NUM_CLASSES)
  runners = {"vision_jax": JaxStep(model, SegmentationTask(NUM_CLASSES), batch, LR, WD,
                                   args.seed),
             "pytorch": TorchSemanticFPN(batch, args.threads, args.seed)}
  counts = {name: r.params for name, r in runners.items()}
  print(f"Semantic FPN PVT-Small @{args.size}, batch {args.batch}: parameters {counts} "
        f"(compile {runners['vision_jax'].compile_s:.1f} s)")
  for runner in runners.values():
    runner.run(args.warmup)
  samples = interleaved(runners, "run", args.steps, args.reps)
  results = {"args": vars(args), "params": counts,
             **{name: summary(s) for name, s in samples.items()},
             "ratio": paired_ratio(samples["vision_jax"], samples["pytorch"])}
  for name in runners:
    r = results[name]
    print(f"  {name:10s} {r['img_s']:.2f} img/s (min {r['min']:.2f}, max {r['max']:.2f}), "
          f"CPU {100 * r['cpu_share']:.0f}%")
  print(f"  ratio vision_jax / pytorch: {results['ratio']:.2f}x")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1)
  return results


if __name__ == "__main__":
  main()
