"""The evaluator protocol (`base.Evaluator`) and what evaluators of every task
share: running predictions over a split, pictures. The evaluators themselves
live with their task (`vision_jax.tasks.<task>`), named in `vision_jax.tasks.EVALUATORS`."""
