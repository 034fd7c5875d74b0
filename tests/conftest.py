"""Shared test configuration.

hypothesis profiles: "ci" (default; 40 examples per property, fixed derandomised seed so a CI
run is reproducible) and "thorough" (HYPOTHESIS_PROFILE=thorough: 1000 examples, random).
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

