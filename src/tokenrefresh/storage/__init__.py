"""Persistence: models, the engine factory, the repository, and the Alembic migrations."""
