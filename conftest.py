"""Root pytest configuration.

Import the real packages first: pytest's importlib mode would otherwise turn a workspace folder such as
``mart_common/`` (which holds ``tests/``) into a namespace stand-in hiding the installed package.
"""

import mart_common  # noqa: F401

pytest_plugins = ["mart_common.testing"]
