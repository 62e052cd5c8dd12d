"""hub's Bling ERP connector (API v3) and its sandbox."""

__version__ = "0.1.0"
