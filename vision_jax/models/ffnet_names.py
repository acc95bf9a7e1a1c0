"""The names of FFNet's backbones and released segmentation models (Mehta et
al., CVPR-W 2022; official models/ffnet_*.py), without imports so the model
table lists them without loading the models."""

RESNET_DEPTHS = {
    "18": ("basic", (2, 2, 2, 2)), "34": ("basic", (3, 4, 6, 3)),
    "50": ("bottleneck", (3, 4, 6, 3)), "56": ("basic", (4, 8, 12, 3)),
    "86": ("basic", (8, 12, 16, 6)), "101": ("bottleneck", (3, 4, 23, 3)),
    "134": ("basic", (8, 18, 28, 12)), "150": ("basic", (16, 18, 28, 12)),
}
RESNET_S_DEPTHS = {
    "22S": (2, 3, 3, 2), "30S": (3, 4, 4, 3), "40S": (4, 5, 6, 4), "54S": (5, 8, 8, 5),
    "78S": (6, 12, 12, 8), "86S": (8, 12, 16, 6), "150S": (16, 18, 28, 12),
}
NARROW_DEPTHS = {"122": (16, 24, 20), "74": (8, 12, 16), "46": (6, 8, 8)}
NARROW_WIDTHS = {"N": (64, 96, 160, 320), "NS": (64, 64, 128, 256)}

BACKBONES = tuple(
    [f"ffnet_resnet{d}{s}" for d in RESNET_DEPTHS for s in ("", "_D")] +
    [f"ffnet_resnet{d}{s}" for d in RESNET_S_DEPTHS for s in ("", "_D")] +
    [f"ffnet_resnet{d}{n}" for n in NARROW_WIDTHS for d in NARROW_DEPTHS])


def _names(depths, pattern: str) -> list[str]:
  return [pattern.format(d) for d in depths]


# The released segmentation models [official models/ffnet_*.py]; without the
# "_train" entry points (the same networks, loading only ImageNet backbone weights).
_MOBILE_S = [f"ffnet{d}S_{h}_mobile{p}" for d in (150, 86, 78, 54, 40) for h in ("BBB", "BCC")
             for p in ("", "_pre_down")]
_MOBILE_NS = [f"ffnet{d}NS_{h}_mobile{p}" for d in (122, 74, 46) for h in ("CBB", "CCC")
              for p in ("", "_pre_down")]
VARIANTS = tuple(
    # GPU-large (output 1/4).
    _names((150, 134, 101, 86, 56, 50, 34), "ffnet{}_AAA") +
    _names((150, 86, 56, 34), "ffnet{}_ABB") + _names((150, 86), "ffnet{}S_BBB") +
    _names((122, 74, 46), "ffnet{}N_CBB") +
    # GPU-small (output 1/8).
    _names((150, 134, 101, 86, 56, 50, 34, 18), "ffnet{}_dAAA") +
    _names((150, 86, 34, 18), "ffnet{}_dAAC") + _names((150, 86), "ffnet{}S_dBBB") +
    # Mobile (nearest upsampling).
    _names((86, 78, 54, 40), "ffnet{}S_dBBB_mobile") + _MOBILE_S + _MOBILE_NS)
