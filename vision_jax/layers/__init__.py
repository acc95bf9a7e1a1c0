"""Layers that are not one family's own: the Transformer MLP and stochastic
depth (PVT and the Transformer backbones to come), the Poincaré FC, conv and
midpoint batch norm (the Poincaré ResNet, usable in any model). A family's
private blocks stay in its file under models/backbones/."""
