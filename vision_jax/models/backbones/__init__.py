"""Backbone families, one file each (and `<family>_weights.py` for its
reference-weight converters). Every family takes `features_only` and then
follows the contract of `vision_jax.models.features`."""
