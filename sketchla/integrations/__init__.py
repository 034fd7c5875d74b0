"""Integrations with other libraries, each imported on its own (never by ``import sketchla``).

* :mod:`sketchla.integrations.transformers`: sketchla's attention solvers as Hugging Face
  transformers attention implementations (``attn_implementation="sketchla_hyper"``).
"""
