"""The fuzz targets of fuzz/ keep working: every seed, then a few mutated inputs each.

This is no fuzzing (``python fuzz/run.py --seconds N`` is); it keeps the
targets, their seed corpus and the Hypothesis engine in step with the code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzz.seeds import seeds
from fuzz.strategies import fuzz_inputs
from fuzz.targets import TARGETS
from hypothesis import HealthCheck, given, settings

CORPUS = Path(__file__).resolve().parent.parent / "fuzz" / "corpus"


def _corpus(target: str) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((CORPUS / target).iterdir())}


def test_corpus_is_written_from_seeds() -> None:
    expected = seeds()
    assert sorted(expected) == sorted(TARGETS)
    for target, files in expected.items():
        assert _corpus(target) == files, f"run: python fuzz/run.py --write-seeds ({target})"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_seeds_pass(target: str) -> None:
    for data in _corpus(target).values():
        TARGETS[target](data)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_mutated_seeds_pass(target: str) -> None:
    function = TARGETS[target]

    @settings(
        max_examples=40,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(fuzz_inputs(list(_corpus(target).values())))
    def run(data: bytes) -> None:
        function(data)

    run()


REGRESSIONS = CORPUS.parent / "regressions"


@pytest.mark.parametrize("path", sorted(REGRESSIONS.iterdir()), ids=lambda p: p.name)
def test_fixed_crashes_stay_fixed(path: Path) -> None:
    # Inputs the fuzzer once crashed wsskit with; the file name starts with its target.
    target = next(name for name in sorted(TARGETS, key=len, reverse=True) if path.name.startswith(name))
    TARGETS[target](path.read_bytes())
