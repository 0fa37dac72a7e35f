"""Fixtures of the fault suite (the shared ones come from tests/conftest.py)."""
