"""TokOne core: the hooks, the pipeline, the adapter contract and what every gateway needs.

Architecture (read in this order):

- ``hookspecs`` — the table of contents: every hook a plugin may implement, in request order.
- ``pipeline`` — the way of one inference call: authenticate, route, admit, send with failover,
  price, meter. ``types`` holds the values it passes along (``Call``, ``Usage``, …).
- ``upstream`` — the adapter contract providers implement, and the HTTP plumbing they share.
- ``gateway`` — the per-process object: config, plugin manager, database, adapters.
- ``http/`` — the doors: the inference ingress, the Litestar app and the per-family routes.
- ``domain/`` — operations on accounts, keys, groups, codes and usage, shared by the CLI, the
  admin API and the console.
- ``store/`` — the database engine, migrations and the tables.
- ``cli/`` — the ``tokone`` command.

The core imports nothing from ``tokone.providers`` or ``tokone.plugins``; it finds them
through the hooks (an import-linter contract in ``pyproject.toml`` holds it).
"""
