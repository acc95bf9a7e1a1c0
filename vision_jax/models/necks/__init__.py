"""Necks: multi-level features -> multi-level features (FPN, ...)."""
