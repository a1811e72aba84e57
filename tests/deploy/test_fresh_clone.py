"""The README's two commands in order on a fresh machine: ``./mart`` first (it installs uv with
``pip --user`` into ``~/.local/bin``, off PATH), then ``scripts/test.sh`` must find that uv too.

A copy of the repository's tracked files (a fresh clone of the working tree) runs with a fake HOME and a
PATH without any uv, on the system's Python (Debian's /usr/bin/python3 has no uv module). Both scripts
source ``scripts/lib/uv.sh``; ``scripts/test.sh --check-setup`` runs only its setup (uv and the locked
environment), not the suite. uv's download cache is shared, so nothing but uv itself is fetched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSED_ON = ("SSL_", "PIP_", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


def _fresh_copy(dest: Path) -> None:
    listed = subprocess.run(  # noqa: S603
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        rel = raw.decode()
        src = REPO_ROOT / rel
        if not src.is_file():
            continue  # deleted in the working tree
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def _uv_cache_dir() -> str:
    found = subprocess.run(  # noqa: S603
        ["uv", "cache", "dir"],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.strip()


def test_mart_first_then_test_script_find_the_same_uv(tmp_path: Path) -> None:
    clone = tmp_path / "online-mart"
    home = tmp_path / "home"
    home.mkdir()
    _fresh_copy(clone)
    assert shutil.which("uv", path=SYSTEM_PATH) is None, "the system PATH must not have uv for this test"
    # the machine's network settings (CA bundle, proxy, pip options) stay; everything about uv goes
    env = {k: v for k, v in os.environ.items() if k.upper().startswith(PASSED_ON) and not k.startswith("UV_")}
    env |= {
        "HOME": str(home),
        "PATH": SYSTEM_PATH,
        "LANG": "C.UTF-8",
        "UV_CACHE_DIR": _uv_cache_dir(),  # packages come from the shared cache, not the network
        "UV_LINK_MODE": "symlink",  # a throwaway venv: link into the cache instead of copying (fast)
        "PIP_CACHE_DIR": str(Path.home() / ".cache" / "pip"),
        "UV_PYTHON_PREFERENCE": "only-system",
        "UV_PYTHON": "/usr/bin/python3",
    }

    first = subprocess.run(  # noqa: S603
        [str(clone / "mart"), "--help"], cwd=clone, env=env, capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Online Mart" in first.stdout
    installed = home / ".local" / "bin" / "uv"
    assert installed.exists(), f"./mart should have installed uv with pip --user:\n{first.stderr}"

    second = subprocess.run(  # noqa: S603
        ["scripts/test.sh", "--check-setup"], cwd=clone, env=env, capture_output=True, text=True, timeout=600
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"at {installed}" in second.stdout, second.stdout
