"""Periodic tasks as values: schedules (``schedule``, ``crontab``, ``solar``, ``clocked``) and
the entries of ``beat_schedule`` (``entries``).

The app uses them (``app.add_periodic_task``, the result cleanup entry), so they sit below
it; ``celeriac.beat`` is the service that runs them, and re-exports them under the names
it always had (``celeriac.beat.schedules``, ``celeriac.beat.entries``, ``celeriac.beat.clocked``).
"""
