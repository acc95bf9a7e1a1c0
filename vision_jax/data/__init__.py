"""Input: dataset sources, preprocessing ops and Grain pipelines."""
