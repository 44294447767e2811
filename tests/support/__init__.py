"""Helpers shared by the tests: paths, CLI runners, seeding, stand-ins, server costs and the
tiers' guard. Fixtures stay in conftest.py files; no test module imports another."""
