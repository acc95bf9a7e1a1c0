"""Optimizer recipes that several experiment configs share."""


def imagenet_sgd(c, batch: int, epochs: float = 90.0) -> None:
  """The standard ImageNet SGD recipe (Goyal et al., arXiv:1706.02677: lr 0.1 x
  batch / 256, 5 warmup epochs, momentum 0.9, weight decay 1e-4) with Nesterov
  momentum and cosine decay (He et al., "Bag of Tricks", arXiv:1812.01187),
  set on config `c` for global batch `batch`."""
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.1 * batch / 256
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = True
  c.optimizer.weight_decay = 1e-4
  c.schedule.name = "cosine"
  c.schedule.warmup_epochs = 5.0
  c.total_epochs = epochs
