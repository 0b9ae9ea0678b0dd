"""The dashboard's pages: one module each (see ``mcpexec.dashboard.page``)."""
