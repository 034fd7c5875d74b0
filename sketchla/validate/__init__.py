"""``sketchla validate``: experiments that check the theorems behind sketchla, with verdicts.

Each experiment states claims (the statement, its reference, the bound, the measured value)
with a verdict: PASS or FAIL for guaranteed claims (theorems, identities, probabilistic bounds
at a stated failure probability), REPORTED for heuristics that carry no guarantee. Families:

========================  ===============================================================
``jl``                    subspace-embedding distortion vs sketch size against theory
``leverage``              sketched vs exact leverage scores; online / streaming identities
``universal``             LevAttention universal sets: size, recall, planted model, streaming
                          memory, Lewis weights
``softmax_scope``         where softmax has no universal set; captured softmax mass
``hyper``                 HyperAttention: spectral ratio, ApproxD, Gray order, assumptions, time
``real``                  experiments 3-5 on real all-MiniLM-L6-v2 attention heads
``llm``                   SmolLM2-135M perplexity and passkey with patched layers, against
                          baselines at the same key budget (SKIPPED without the model)
========================  ===============================================================

Run ``sketchla validate --quick --out DIR`` (or :func:`run_suite`) for the verdict table, and a
Markdown report with PNG plots in DIR.
"""

from ._core import PROFILES, Claim, Context, Experiment, ExperimentResult, experiment
from .runner import SuiteResult, experiments, run_suite, write_report

__all__ = [
    "PROFILES",
    "Claim",
    "Context",
    "Experiment",
    "ExperimentResult",
    "SuiteResult",
    "experiment",
    "experiments",
    "run_suite",
    "write_report",
]
