"""The store: engine and transactions, the schema, migrations, and jobs over the database."""
