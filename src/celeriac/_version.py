"""The package's version, in a module of its own so the worker and the CLI read it without
importing ``celeriac`` (the top of the import graph)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
