"""The worker: consume deliveries, check them, run them in a pool, acknowledge per policy.

``job`` is what travels to a pool and back; ``pools`` and ``prefork`` run jobs; ``consumer``
takes deliveries from the transport and decides their fate; ``lifecycle`` starts and stops
it all in order, from the ``WorkerOptions`` of ``options``; ``remote`` answers remote control;
``timelimits`` is how each pool enforces time limits; ``banner`` prints the start-up summary.
"""
