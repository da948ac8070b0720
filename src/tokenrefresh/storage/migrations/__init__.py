"""Alembic migrations, shipped inside the package so `tokenrefresh db upgrade` needs no files."""
