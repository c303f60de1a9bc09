"""The `wsskit` command line: `cert` and argument handling (serving is tested in tests/app)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wsskit.certs import DevCertificates
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
    [
        ("1024", 1024),
        ("64KiB", 65536),
        ("1MiB", 2**20),
        ("16M", 16 * 2**20),
        ("none", None),
        ("2kb", 2000),
        ("1.5KiB", 1536),
    ],
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


def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    # argparse exits 2 and prints "argument --x: <the converter's message>".
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    assert info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["serve", "--max-size", "1XB"],
            "argument --max-size: not a size: '1XB' (e.g. 1048576, 64KiB, 1MiB)",
        ),
        (["serve", "--max-size", "0"], "argument --max-size: a size is a positive number of bytes"),
        (["serve", "--max-size", "0KiB"], "argument --max-size: a size is a positive number of bytes"),
        (["serve", "--max-size", "nanKiB"], "argument --max-size: not a size: 'nanKiB'"),
        (["serve", "--byte-rate", "fast"], "argument --byte-rate: not a size: 'fast'"),
        (["serve", "--byte-rate", "-1"], "argument --byte-rate: not a size: '-1'"),
        (["serve", "--message-rate", "lots"], "argument --message-rate: not a rate: 'lots'"),
        (["serve", "--ping-rate", "-2"], "argument --ping-rate: a rate is a finite number >= 0"),
        (["serve", "--max-connections", "0"], "argument --max-connections: a cap is at least 1"),
        (["serve", "--max-connections", "none"], "argument --max-connections: not a whole number: 'none'"),
        (["serve", "--drain-window", "soon"], "argument --drain-window: not a number: 'soon'"),
        (["connect", "ws://127.0.0.1:1/", "--max-size", "1XB"], "argument --max-size: not a size: '1XB'"),
        (["connect", "ws://127.0.0.1:1/", "--wait", "x"], "argument --wait: not a number of seconds: 'x'"),
        (["connect", "ws://127.0.0.1:1/", "-H", "x"], "argument --header/-H: expected 'Name: value'"),
    ],
)
def test_bad_option_values_say_what_is_expected(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    err = _usage_error(capsys, *argv)
    assert message in err
    assert "invalid" not in err  # argparse's "invalid _size value" names a function


@pytest.mark.parametrize("value", ["0", "none", "0KiB"])
def test_byte_rate_0_or_none_is_accepted(value: str) -> None:
    from wsskit.cli import _byte_rate

    assert _byte_rate(value) == 0


def _serve_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    # The files are checked before serving: exit 2, nothing listens.
    assert main(["serve", "--port", "0", *argv]) == 2
    return capsys.readouterr().err


def test_a_cert_without_its_key_is_a_usage_error_naming_the_file(
    capsys: pytest.CaptureFixture[str], certificates: DevCertificates
) -> None:
    err = _serve_error(capsys, "--cert", str(certificates.cert))
    assert f"cannot load the certificate {certificates.cert} without a key" in err
    assert "pass --key KEY.pem (or put the key in the --cert file)" in err
    assert "PEM lib" not in err


def test_a_key_that_does_not_match_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], certificates: DevCertificates
) -> None:
    err = _serve_error(capsys, "--cert", str(certificates.cert), "--key", str(certificates.ca_key))
    assert f"cannot load the certificate {certificates.cert} with the key {certificates.ca_key}" in err
    assert "check --cert and --key" in err


def test_missing_tls_files_are_named(
    capsys: pytest.CaptureFixture[str], certificates: DevCertificates, tmp_path: Path
) -> None:
    missing = tmp_path / "absent.pem"
    err = _serve_error(capsys, "--cert", str(missing))
    assert f"cannot read the --cert file {missing}: No such file or directory" in err
    err = _serve_error(capsys, "--cert", str(certificates.cert), "--key", str(missing))
    assert f"cannot read the --key file {missing}" in err
    err = _serve_error(
        capsys, "--cert", str(certificates.cert), "--key", str(certificates.key), "--client-ca", str(missing)
    )
    assert f"cannot read the --client-ca file {missing}" in err
    err = _serve_error(
        capsys,
        *("--cert", str(certificates.cert), "--key", str(certificates.key)),
        *("--client-ca", str(certificates.key)),
    )
    assert f"cannot load the client CA {certificates.key}: no PEM certificate in it" in err


def test_a_cert_file_holding_its_key_needs_no_key_option(
    certificates: DevCertificates, tmp_path: Path
) -> None:
    from wsskit.cli import _check_tls_files, _parser, _serve_config

    both = tmp_path / "both.pem"
    both.write_bytes(certificates.cert.read_bytes() + certificates.key.read_bytes())
    config = _serve_config(_parser().parse_args(["serve", "--cert", str(both)]), {})
    _check_tls_files(config)  # raises ValueError if the key were not found
    with pytest.raises(ValueError, match="without a key"):
        _check_tls_files(_serve_config(_parser().parse_args(["serve", "--cert", str(certificates.cert)]), {}))
