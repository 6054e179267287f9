"""Command line, demo and the glue shared by the edge agent and the server."""
