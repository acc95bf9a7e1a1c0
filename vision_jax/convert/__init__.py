"""Reference PyTorch checkpoints -> Flax parameter trees."""
from vision_jax.convert.pvt import convert_state_dict, load_pretrained
from vision_jax.convert.torch_files import load_state_dict

__all__ = ["convert_state_dict", "load_pretrained", "load_state_dict"]
