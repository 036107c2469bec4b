"""The worker's end of remote control, all in one place.

``control`` answers the pidbox (the broadcast channel ``app.control`` publishes on) in a
thread of its own and runs the control commands that change the worker; ``commands`` holds
the command table and the read-only (``inspect``) commands; ``mingle`` is the start-up sync
with the running workers, done with the same broadcast channel (Celery's ``hello``).
The client side, ``app.control`` and its mailbox, is ``celeriac.app.control`` and
``celeriac.app._pidbox``. ``celeriac.worker.control`` re-exports ``control_command`` and
``inspect_command`` under Celery's module name.
"""
