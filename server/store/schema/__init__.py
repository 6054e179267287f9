"""The server's tables (SQLAlchemy Core) on one metadata, the same on SQLite and PostgreSQL.

``core`` holds the metadata and the ledger's own tables; each other module adds the tables of
one feature to that metadata. Importing any of them imports this package first, so whoever
uses ``metadata`` sees every table.
"""

from server.store.schema import (  # noqa: F401 (each import adds its tables to the metadata)
    alerts,
    core,
    costs,
    counts,
    history,
    master,
    orders,
    pallets,
    passes,
    shelves,
    supply,
)
