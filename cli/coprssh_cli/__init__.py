"""coprssh: the command-line client of a coprssh build service (REST API v1)."""

__version__ = "0.1.0"
