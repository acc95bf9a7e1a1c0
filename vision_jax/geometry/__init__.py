"""Manifold operations with hand-written backward passes."""
