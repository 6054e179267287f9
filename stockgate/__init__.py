"""The top floor: the ``stockgate`` command line, the demo and the config reference.
Nothing imports this package (docs/architecture.md §2)."""
