"""Ways to run an attempt's command: locally (default) or, later, through a cluster scheduler.

Every executor offers the same small interface: launch, wait, terminate, is_alive.
"""
