"""Test helpers for sketchla and for code built on it: operator factories, input layouts and
hypothesis strategies (``sketchla.testing.strategies``, needs the ``test`` extra)."""

from .attention_instances import ATTENTION_INSTANCES, attention_instance
from .inputs import INPUT_LAYOUTS, OPERATOR_KINDS, as_layout, make_operator, sketch_tolerance

__all__ = [
    "ATTENTION_INSTANCES",
    "INPUT_LAYOUTS",
    "OPERATOR_KINDS",
    "as_layout",
    "attention_instance",
    "make_operator",
    "sketch_tolerance",
]
