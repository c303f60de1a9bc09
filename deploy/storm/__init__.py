"""``make storm``: thousands of wss:// connections to one node, dropped at once, all coming back.

:mod:`.run` holds the clients and orchestrates; :mod:`.probe` is the child
process that asks ``/healthz`` every 100 ms and times the answers.
"""

__all__: list[str] = []
