"""Compatibility package: ``celeriac.utils.log`` as Celery's ``celery.utils.log``."""
