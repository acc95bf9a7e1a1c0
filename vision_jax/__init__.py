"""vision_jax: JAX/Flax computer-vision research library."""
