"""The `wsskit` command line: `cert` and argument handling (serving is tested in tests/app)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wsskit.cli import _size, main


def test_cert_makes_and_then_reuses_the_dev_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "--dir", str(tmp_path)]) == 0
    first = capsys.readouterr().out
    assert "created development CA" in first
    assert f"--cacert {tmp_path / 'ca.pem'}" in first
    assert (tmp_path / "cert.pem").is_file() and (tmp_path / "key.pem").is_file()
    assert main(["cert", "--dir", str(tmp_path)]) == 0
    assert "existing development CA" in capsys.readouterr().out


def test_cert_trust_prints_instructions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "--dir", str(tmp_path), "trust"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "ca.pem") in out


def test_cert_client_issues_a_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "--dir", str(tmp_path), "client", "alice"]) == 0
    out = capsys.readouterr().out
    cert_line = next(line for line in out.splitlines() if line.startswith("client certificate:"))
    assert Path(cert_line.split(":", 1)[1].strip()).is_file()


@pytest.mark.parametrize(
    ("text", "value"),
    [("1024", 1024), ("64KiB", 65536), ("1MiB", 2**20), ("16M", 16 * 2**20), ("none", None), ("2kb", 2000)],
)
def test_sizes(text: str, value: int | None) -> None:
    assert _size(text) == value


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--key", "k.pem"]) == 2
    assert "--key needs --cert" in capsys.readouterr().err
    assert main(["serve", "--no-tls", "--cert", "c.pem"]) == 2
    with pytest.raises(SystemExit) as info:
        main(["serve", "--max-size", "-5"])
    assert info.value.code == 2


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "wsskit", "serve", "--no-tls", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert "cannot serve on ws://127.0.0.1:" in result.stderr


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wsskit", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stdout.startswith("wsskit ")
