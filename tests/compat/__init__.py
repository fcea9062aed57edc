"""Compatibility tests from Ray's documentation (a package, so its conftest does not shadow tests/conftest.py)."""
