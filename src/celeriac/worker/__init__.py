"""The worker: consume deliveries, check them, run them in a pool, acknowledge per policy.

``job`` is what travels to a pool and back; ``pools`` and ``prefork`` run jobs; ``consumer``
takes deliveries from the transport and decides their fate; ``controller`` starts and stops
it all in order; ``banner`` prints the start-up summary.
"""
