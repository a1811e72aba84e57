"""Prints the fault suite's figures at the end of the run (also without ``-s``), for CI logs."""

from __future__ import annotations

from typing import Any

import pytest

_REPORTS: list[str] = []


@pytest.fixture
def fault_report() -> list[str]:
    """Append text here; it is printed in the terminal summary."""
    return _REPORTS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for text in _REPORTS:
        terminalreporter.write_sep("=", "fault suite figures")
        for line in text.splitlines():
            terminalreporter.write_line(line)
