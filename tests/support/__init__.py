"""Helpers shared by the tests: paths, CLI runners, seeding and stand-ins. Fixtures stay in conftest."""
