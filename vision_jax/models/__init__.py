"""Flax (linen) models; one file per paper family."""
