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
    PostgreSQL or Kafka may silently not run."""
    import os

    if os.environ.get("MART_FORBID_SKIPS") == "1" and _skipped:
        print(f"\nFAILED: {len(_skipped)} test(s) skipped, which CI forbids:")
        for nodeid in _skipped:
            print(f"  {nodeid}")
        session.exitstatus = 1
