"""Checks of the built documentation site (run by .ci/run's docs stage)."""
