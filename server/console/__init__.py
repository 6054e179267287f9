"""The operations console served at ``/`` (see ``server.console.pages``)."""
