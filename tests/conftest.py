"""Settings every test shares, loaded before any test module."""

from hypothesis import HealthCheck, settings

# Hypothesis' per-example deadline (200 ms) times a test on a machine shared with other
# work: a busy CI runner failed tests/unit/test_merkle.py on the clock, not on an example.
# A test's examples come from the run's fixed seed; whether it passes must not depend on
# the load.
settings.register_profile("fluxchain", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fluxchain")
