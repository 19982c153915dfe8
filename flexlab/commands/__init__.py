"""The subcommands of the ``flexlab`` command line."""
