"""``./mart keys rotate | retire | show`` (docs/api.md, "Signing keys"): what the user service publishes
after each step, read back the way it loads its keys at start."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner
from user_service.keys import load_or_create_keys
from user_service.settings import UserSettings

from mart_cli.main import app

runner = CliRunner()


def _mart(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _published_kids(data_dir: Path) -> list[str]:
    """The kids of the JWKS a user service started on ``data_dir`` would publish."""
    return [k["kid"] for k in load_or_create_keys(UserSettings(data_dir=data_dir)).jwks()["keys"]]


def test_before_the_first_start_there_is_no_key_to_show_or_rotate(tmp_path: Path) -> None:
    for command in ("show", "rotate"):
        code, out = _mart("keys", command, "--data-dir", str(tmp_path))
        assert code == 1 and "no signing key" in out and "first start" in out, out
    assert not (tmp_path / "keys").exists(), "looking must not create a key"
    assert _mart("keys", "retire", "--data-dir", str(tmp_path)) == (0, "no previous key\n")


def test_rotate_publishes_both_keys_and_retire_drops_the_old_one(tmp_path: Path) -> None:
    first = _published_kids(tmp_path)  # the user service's first start makes the key
    code, out = _mart("keys", "show", "--data-dir", str(tmp_path))
    assert code == 0 and [k["kid"] for k in json.loads(out)["keys"]] == first

    code, out = _mart("keys", "rotate", "--data-dir", str(tmp_path))
    assert code == 0 and "restart every user-service replica" in out
    rotated = _published_kids(tmp_path)
    assert len(rotated) == 2 and rotated[1] == first[0] and rotated[0] != first[0], rotated
    assert rotated[0] in out
    code, out = _mart("keys", "show", "--data-dir", str(tmp_path))
    assert [k["kid"] for k in json.loads(out)["keys"]] == rotated

    code, out = _mart("keys", "retire", "--data-dir", str(tmp_path))
    assert code == 0 and out.startswith("previous key removed")
    assert _published_kids(tmp_path) == rotated[:1]
