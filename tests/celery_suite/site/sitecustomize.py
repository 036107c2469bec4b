"""Installs the ``celery`` -> ``celeriac`` hook in every interpreter of a Celeriac suite run.

The runner puts this directory on ``PYTHONPATH`` with ``CELERY_SUITE_TARGET=celeriac``, so the
pytest process, its prefork children and the ``python -m celery worker`` subprocesses some
tests start all see the same mapping. With any other target it does nothing.
"""

import os

if os.environ.get("CELERY_SUITE_TARGET") == "celeriac":
    from tests.celery_suite._hook import install

    install()
