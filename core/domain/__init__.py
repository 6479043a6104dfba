"""Operations on accounts, keys, groups, redemption codes and usage reports.

One implementation shared by the CLI, the admin API and the console: a key is created, a
top-up written or a code redeemed here and nowhere else."""
