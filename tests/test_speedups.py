"""The optional C accelerator, wsskit._speedups: chosen by default, optional, leak-free.

The twins' behaviour is tested in tests/protocol (every masking and framing
test runs through both); here: which one wsskit uses, the opt-out, the build
without a compiler, and reference counting in the C code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from types import ModuleType

import pytest

import wsskit.protocol.connection
import wsskit.protocol.frames
import wsskit.protocol.mask

ROOT = Path(__file__).resolve().parent.parent


def _built() -> ModuleType | None:
    try:
        from wsskit import _speedups
    except ImportError:
        if os.environ.get("CI") == "true":
            raise  # the CI machine has a compiler: a missing accelerator is a bug there
        return None
    return _speedups


speedups = _built()
needs_c = pytest.mark.skipif(speedups is None, reason="wsskit._speedups is not built")


def _run(code: str, **env: str) -> str:
    environment = {key: value for key, value in os.environ.items() if key != "WSSKIT_NO_SPEEDUPS"}
    environment.update(env)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True, timeout=60
    )
    return result.stdout.strip()


_REPORT = (
    "import wsskit.protocol.mask as m, wsskit.protocol.frames as f, wsskit.protocol.connection as c;"
    "print(m.SPEEDUPS, m.apply_mask is m.apply_mask_py, f.parse_frames is f.parse_frames_py,"
    " c.parse_frames is f.parse_frames)"
)


@needs_c
def test_the_accelerator_is_used_when_built() -> None:
    assert _run(_REPORT) == "True False False True"
    assert _run(_REPORT, WSSKIT_NO_SPEEDUPS="0") == "True False False True"
    assert _run(_REPORT, WSSKIT_NO_SPEEDUPS="") == "True False False True"


def test_no_speedups_forces_pure_python() -> None:
    assert _run(_REPORT, WSSKIT_NO_SPEEDUPS="1") == "False True True True"
    assert _run(_REPORT, WSSKIT_NO_SPEEDUPS="yes") == "False True True True"


def test_pure_python_connection_works_end_to_end() -> None:
    code = (
        "from tests.helpers import ConnectionPair;"
        "from wsskit.protocol.events import BytesMessage;"
        "import wsskit.protocol.mask as m; assert not m.SPEEDUPS;"
        "p = ConnectionPair(); p.client.send(BytesMessage(b'x' * 70000));"
        "print(p.to_server() == [BytesMessage(b'x' * 70000)])"
    )
    assert _run(code, WSSKIT_NO_SPEEDUPS="1", PYTHONPATH=str(ROOT)) == "True"


def test_speedups_flag_matches_the_module_in_use() -> None:
    mask = wsskit.protocol.mask
    assert mask.SPEEDUPS is (mask.speedups is not None)
    if mask.speedups is not None:
        assert mask.apply_mask is mask.speedups.apply_mask
        assert wsskit.protocol.frames.parse_frames is mask.speedups.parse_frames
    else:
        assert mask.apply_mask is mask.apply_mask_py


@needs_c
def test_no_leaks_in_the_c_twins() -> None:
    assert speedups is not None
    key = b"\x01\x02\x03\x04"
    limit = 2**100  # a big int, so a leaked reference would show in its count
    good = b"\x82\x85abcd" + b"hello" + b"\x88\x80abcd"
    bad = b"\x82\x7e\x03\xe9"
    data = bytes(70000)

    def work() -> None:
        for _ in range(300):
            speedups.apply_mask(data, key)
            speedups.parse_frames(good, 0, True, False, limit)
            speedups.parse_frames(bad, 0, False, False, 1000)
            speedups.parse_frames(b"\x83\x00", 0, False, False, None)
            with pytest.raises(ValueError):
                speedups.apply_mask(data, b"")
            with pytest.raises(ValueError):
                speedups.parse_frames(good, 99, True, False, None)

    counts = (sys.getrefcount(good), sys.getrefcount(limit), sys.getrefcount(data), sys.getrefcount(key))
    work()  # warm up caches and free lists
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        work()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 64 * 1024  # 1,800 payloads of up to 70 kB went through
    assert (
        sys.getrefcount(good),
        sys.getrefcount(limit),
        sys.getrefcount(data),
        sys.getrefcount(key),
    ) == counts


@needs_c
def test_the_c_twin_holds_no_view_of_its_input() -> None:
    assert speedups is not None
    buf = bytearray(b"\x82\x01a" * 3)
    speedups.parse_frames(buf, 0, False, False, None)
    speedups.apply_mask(buf, b"abcd")
    buf += b"more"  # resizing raises BufferError while a view is held
    del buf[:3]
    assert len(buf) == 10


def test_the_build_goes_on_without_a_compiler(tmp_path: Path) -> None:
    # A compiler that fails (CC=false): the build warns and installs no
    # accelerator instead of failing (setup.py's OptionalBuildExt).
    environment = {**os.environ, "CC": "false", "LDSHARED": "false"}
    result = subprocess.run(
        [
            sys.executable,
            "setup.py",
            "build_ext",
            "--build-lib",
            str(tmp_path / "lib"),
            "--build-temp",
            str(tmp_path / "temp"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING: wsskit: wsskit._speedups failed to build" in result.stderr
    assert not list((tmp_path / "lib").rglob("_speedups*"))


def test_the_switch_and_a_missing_module_give_pure_python(monkeypatch: pytest.MonkeyPatch) -> None:
    import wsskit

    load = wsskit.protocol.mask._load_speedups
    monkeypatch.setenv("WSSKIT_NO_SPEEDUPS", "1")
    assert load() is None
    monkeypatch.setenv("WSSKIT_NO_SPEEDUPS", "0")
    assert load() is speedups
    # Not built: the import fails and wsskit runs on the Python twins.
    monkeypatch.delenv("WSSKIT_NO_SPEEDUPS")
    monkeypatch.delattr(wsskit, "_speedups", raising=False)
    monkeypatch.setitem(sys.modules, "wsskit._speedups", None)
    assert load() is None
