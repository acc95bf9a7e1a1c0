"""Evaluators: given a predict_fn, run a dataset split and yield named scalars."""
