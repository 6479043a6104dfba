"""Storage: the database engine and migrations (``db``) and the tables (``tables``)."""
