"""Alembic migrations of acmeflow's schema (a package so that it ships in the wheel)."""
