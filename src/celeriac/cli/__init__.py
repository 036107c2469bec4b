"""The ``celeriac`` command (and ``python -m celeriac``)."""
