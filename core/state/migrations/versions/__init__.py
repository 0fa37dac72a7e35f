"""Alembic revisions, one file each (``NNNN_slug.py``); revision ids are the file stems."""
