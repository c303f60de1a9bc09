"""``make failover``: a real HAProxy, three ``wsskit serve`` nodes, a real Redis, and things killed.

:mod:`.run` orchestrates; :mod:`.traffic` is the child process that runs the
channel clients (subscribers or the publisher); :mod:`.tally` turns what the
subscribers received into lost, duplicated and out-of-order counts;
:mod:`.report` prints the table.
"""

__all__: list[str] = []
