"""Salient object segmentation as pixel connectivity (ConnNet, Kampffmeyer et
al., IEEE TIP 2019): the 8-neighbour connectivity cube and its aggregation
(`connectivity`), the task (`task`) and the MAE / max-F evaluator (`evaluator`)."""
