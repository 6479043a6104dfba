"""The ``tokone`` command: ``main`` (serve, migrate, accounts, keys, plugins), ``billing``
(groups, codes, usage, money sub-commands) and ``providers`` (channel status and switches)."""
