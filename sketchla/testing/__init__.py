"""Test helpers for sketchla and for code built on it: operator factories, input layouts and
hypothesis strategies (``sketchla.testing.strategies``, needs the ``test`` extra)."""

from .inputs import INPUT_LAYOUTS, OPERATOR_KINDS, as_layout, make_operator, sketch_tolerance

__all__ = ["INPUT_LAYOUTS", "OPERATOR_KINDS", "as_layout", "make_operator", "sketch_tolerance"]
