"""Hypothesis profiles of the fuzz suites.

* ``ci`` (default): bounded so that ``pytest fuzz`` stays well under two minutes on a small box.
* ``ci-quick``: a quarter of that, for the runs of the suite on the other Pythons in ``.ci/run``.
* ``long``: thousands of examples per test, for ``make fuzz`` (``HYPOTHESIS_PROFILE=long``).

Tests that need a different budget scale from the loaded profile's ``max_examples``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "ci",
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=_SLOW_OK,
    print_blob=True,
)
settings.register_profile(
    "ci-quick",
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=_SLOW_OK,
    print_blob=True,
)
settings.register_profile(
    "long",
    max_examples=2000,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=_SLOW_OK,
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
