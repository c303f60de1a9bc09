"""Type stub of the optional C accelerator (src/wsskit/_speedups.c)."""

def apply_mask(data: bytes | bytearray | memoryview, key: bytes | bytearray | memoryview, /) -> bytes: ...
def parse_frames(
    data: bytes | bytearray | memoryview,
    start: int,
    expect_masked: bool,
    allow_rsv1: bool,
    max_payload: int | None,
    /,
) -> tuple[list[tuple[int, bytes]], int, tuple[int, str] | None]: ...
