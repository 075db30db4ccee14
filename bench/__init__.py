"""Benchmarks that print figures (not tests): `python -m bench.onboard_fleet`, `python -m bench.idle_fleet`."""
