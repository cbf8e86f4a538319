"""The fault cases use the integration tests' real PostgreSQL fixtures."""

from tests.integration.conftest import conn, postgres

__all__ = ["conn", "postgres"]
