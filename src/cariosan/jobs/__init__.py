"""Background jobs every server process runs: numbering the event log, trimming it."""
