"""Heads: features -> task outputs (dense detection towers, class subspaces, ...)."""
