"""The ``nestor`` command line: thin, prints diagnostics, sets exit codes."""
