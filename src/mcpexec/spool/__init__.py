"""The spool directory adapter (seed 002): drop a job file into ``pending/``, get its result in
``completed/`` or ``failed/``. See ``docs/spool.md``.

Nothing is imported here: ``mcpexec.cli`` registers ``mcpexec.spool.cli`` on every start, and
that must not load the App (the daemon lives in :mod:`mcpexec.spool.daemon`)."""
