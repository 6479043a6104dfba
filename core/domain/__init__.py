"""Operations on accounts, keys, groups, redemption codes and usage reports.

One implementation shared by the CLI, the admin API and the console: a key is created, a
top-up written or a code redeemed here and nowhere else. Every operation raises
:class:`~tokone.core.domain.errors.AccountError` (with the HTTP status to answer) when it
cannot be done. One module per family, each importing only those above it here:

* ``errors`` — ``AccountError``;
* ``money`` — exact amounts (decimal text <-> integer micro-units) and multipliers;
* ``keys`` — generating and hashing user keys, a key row as plain data;
* ``accounts`` — creating, finding and listing accounts, their override, their summary;
* ``ledger_entries`` — top-ups, refunds and adjustments, and reading the ledger;
* ``groups`` — pricing groups (config and database);
* ``key_ops`` — storing keys: create, list, change status, rotate;
* ``reconcile`` — cached balance and holds against the rows they summarise;
* ``codes`` — redemption codes; ``usage_report`` — usage per account, key and model;
* ``audit`` — the operators' audit log; ``settings_store`` — settings kept in the database.
"""
