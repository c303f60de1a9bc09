"""Resource limits of one connection, in one frozen dataclass.

Every default is safe for a public server; ``None`` disables a limit and must be
asked for by name.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits enforced by the protocol core.

    - ``max_message_size``: largest message (after decompression) in bytes; a
      frame header that announces more is refused at once with close 1009.
    - ``max_frame_size``: largest single frame payload; defaults to the message limit.
    - ``max_fragments``: most frames one message may span (close 1009 beyond).
    - ``max_request_line``: longest HTTP request or status line (414 beyond).
    - ``max_header_line``: longest header line (431 beyond).
    - ``max_headers``: most header fields (431 beyond).
    - ``max_head_size``: largest whole head, start line and fields together
      (431 beyond): the head stays in memory with the connection, and line
      and field limits alone would let it reach a megabyte.
    - ``max_handshake_body``: largest body read with a non-101 response.
    - ``max_request_body``: largest body a server reads with a plain HTTP
      ``POST`` (413 beyond, answered before the body is read); upgrade
      requests never have one.
    """

    max_message_size: int | None = 2**20
    max_frame_size: int | None = None
    max_fragments: int | None = 4096
    max_request_line: int = 8192
    max_header_line: int = 8192
    max_headers: int = 128
    max_head_size: int = 2**16
    max_handshake_body: int = 2**16
    max_request_body: int = 2**16

    @property
    def frame_limit(self) -> int | None:
        """The effective frame payload limit."""
        if self.max_frame_size is None:
            return self.max_message_size
        if self.max_message_size is None:
            return self.max_frame_size
        return min(self.max_frame_size, self.max_message_size)
