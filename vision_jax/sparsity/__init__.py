"""Sparse training: layer-wise densities of random pruning (densities.py) and
the pruning schedules (schedules.py) of GMP, RigL/SET and GraNet."""
