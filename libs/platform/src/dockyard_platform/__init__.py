"""Dockyard's embedded platform: NATS, Redis, the four services and webhook delivery on one
machine, under a supervisor (``make run``, ``dockyard up``, ``dockyard-platform``).

It starts the services as processes (``python -m dockyard_api`` …) and imports none of
them; the ``dockyard`` command line imports nothing of it.

=================  ==========================================================================
module             what it holds
=================  ==========================================================================
``embedded``       the platform: its settings, processes, start, banner and stop
``servers``        locating and starting nats-server and redis-server (also the tests')
``ports``          claiming the API and router ports; who holds one that is taken
``admin_token``    the admin token kept in the data directory
``readiness``      waiting until this platform (not another) answers ready
``supervision``    when to restart a process that ended, and when to give up (pure)
``supervisor``     spawning, watching and stopping the processes
``restart_events`` announcing restarts as ``platform.service.restarted`` events
=================  ==========================================================================
"""
