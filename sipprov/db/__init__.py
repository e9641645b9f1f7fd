"""PostgreSQL: the pool, the embedded server, migrations and all SQL."""
