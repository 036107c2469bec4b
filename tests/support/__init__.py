"""What the tests share: one copy of each helper, for every tier.

- ``workers``: ``WorkerProject``, real worker (and beat, dashboard, Flower) subprocesses.
- ``sqlite_project``, ``redis_project``: the integration tier's ready-made projects.
- ``polling``: ``eventually`` (wait for a condition, fail showing the last value), ``poll``.
- ``apps``: ``AppFactory``, behind the ``make_app`` fixture of tests/conftest.py.
- ``control_support``: an in-process worker and gated tasks for the remote-control tests.
- ``redis_support``, ``amqp_support``, ``sql_support``, ``pki_support``: the machine's
  services (skip locally, fail in CI when one is missing), private servers, certificates.
"""
