"""Lane detection (SCNN, Pan et al., AAAI 2018): the task, prob2lines
decoding and the CULane metric."""
