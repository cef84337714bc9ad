"""The import workflow's messages."""

from __future__ import annotations

from domain.base import Model


class ImportInput(Model):
    import_id: int
    batch_size: int = 200
    # A pause between batches bounds how fast an import starts order workflows.
    pause_seconds: float = 0.05
    # Orders of a batch created at once (each its own transaction and workflow start).
    parallel: int = 8


class ImportProgress(Model):
    remaining: int
