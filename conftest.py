"""Root pytest configuration.

Import the real packages first: pytest's importlib mode would otherwise turn a workspace folder such as
``mart_common/`` (which holds ``tests/``) into a namespace stand-in hiding the installed package.
"""

import inventory_service  # noqa: F401
import mart_common  # noqa: F401
import notification_service  # noqa: F401
import order_service  # noqa: F401
import payment_service  # noqa: F401
import product_service  # noqa: F401
import user_service  # noqa: F401
import web_service  # noqa: F401

pytest_plugins = ["mart_testkit.fixtures"]


_skipped: list[str] = []
_ran_on: dict[str, int] = {
    "postgres": 0,
    "kafka": 0,
    "distributed": 0,
    "e2e": 0,
    "containers": 0,
    "browser": 0,
}
# Under MART_FORBID_SKIPS=1 (CI) each of these must count at least one passed test: every one of them when
# the whole suite runs, else those that some selected test is marked with.
REQUIRED_INFRASTRUCTURE = ("postgres", "kafka", "distributed", "containers", "browser")
_selected_marks: set[str] = set()


def pytest_collection_finish(session):
    for item in session.items:  # what runs, after -k / -m deselection
        _selected_marks.update(m.name for m in item.iter_markers())


def _whole_suite(config) -> bool:
    """No paths, ``-k`` or ``-m`` given: the run is the configured testpaths, all of them."""
    import pytest

    return (
        config.args_source == pytest.Config.ArgsSource.TESTPATHS
        and not config.option.keyword
        and not config.option.markexpr
    )


def _infrastructure_unused(config) -> list[str]:
    if config.option.collectonly:
        return []
    wanted = set(REQUIRED_INFRASTRUCTURE) if _whole_suite(config) else _selected_marks
    return [mark for mark in REQUIRED_INFRASTRUCTURE if mark in wanted and _ran_on[mark] == 0]


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)
    elif report.when == "call" and report.passed:
        for mark in _ran_on:
            if mark in report.keywords:
                _ran_on[mark] += 1


def pytest_terminal_summary(terminalreporter):
    """Say how many tests ran against the real servers (CI's proof that they were used)."""
    terminalreporter.write_line(
        "real infrastructure: "
        f"{_ran_on['postgres']} passed on PostgreSQL (127.0.0.1:5432), "
        f"{_ran_on['kafka']} passed on the Kafka broker (127.0.0.1:9092), "
        f"{_ran_on['e2e']} end-to-end ({_ran_on['distributed']} on the local distributed mode), "
        f"{_ran_on['containers']} on the compose stack in containers, "
        f"{_ran_on['browser']} in a real browser"
    )


def pytest_sessionfinish(session, exitstatus):
    """With MART_FORBID_SKIPS=1 (CI), a skipped test fails the run: nothing that needs
    PostgreSQL or Kafka may silently not run. Nor may the run pass without a single test passing on
    PostgreSQL, Kafka, the distributed mode, the containers or a real browser (REQUIRED_INFRASTRUCTURE)."""
    import os

    if os.environ.get("MART_FORBID_SKIPS") != "1":
        return
    if _skipped:
        print(f"\nFAILED: {len(_skipped)} test(s) skipped, which CI forbids:")
        for nodeid in _skipped:
            print(f"  {nodeid}")
        session.exitstatus = 1
    unused = _infrastructure_unused(session.config)
    if unused:
        print(
            "\nFAILED: no test passed on "
            + ", ".join(unused)
            + " (see 'real infrastructure' above): the run did not prove what it claims to."
        )
        session.exitstatus = 1
