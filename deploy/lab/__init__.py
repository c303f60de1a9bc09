"""Real processes on loopback for the recipes' tests and the failover and storm tools.

:mod:`.recipes` renders the configuration templates of ``deploy/haproxy`` and
``deploy/nginx``; :mod:`.processes` starts ``wsskit serve`` nodes, a private
Redis, HAProxy and nginx as the current user, on free ports, with private
pid, log and temporary folders.
"""

__all__: list[str] = []
