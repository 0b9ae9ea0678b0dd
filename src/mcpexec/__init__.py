"""mcpexec: a durable, isolated execution service for AI agents."""

__version__ = "0.1.0"
