"""Diagram storage: ports, their adapters (SQLite, Postgres, folder, S3) and migrations."""
