"""Reference PyTorch checkpoints -> Flax parameter trees."""
from vision_jax.convert.pvt import convert_state_dict, load_pretrained, load_pretrained_for_init
from vision_jax.convert.torch_files import load_state_dict

__all__ = ["convert_state_dict", "load_pretrained", "load_pretrained_for_init", "load_state_dict"]
