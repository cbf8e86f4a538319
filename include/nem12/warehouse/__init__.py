"""The warehouse in PostgreSQL: schema, file ledger, staging, merge, status, review queries."""
