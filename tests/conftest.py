"""Hypothesis profiles: ``ci`` (the default here: 300 examples per property)
and ``thorough`` for a long local run (``pytest --hypothesis-profile=thorough``)."""

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile("ci")
