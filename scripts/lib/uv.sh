# shellcheck shell=bash
# One way to find (or install) uv, sourced by ./mart and scripts/test.sh so that running one and then the
# other on a fresh machine works (see docs/adr/0030-one-way-to-find-uv.md).
#
#   source scripts/lib/uv.sh; mart_ensure_uv || exit 1
#
# After mart_ensure_uv, `uv` is a command of this shell: the directory of the uv binary is put first on
# PATH (pip --user installs it into ~/.local/bin, which is often not on PATH). Looked for, in order: uv on
# PATH, ~/.local/bin/uv, the uv module of a Python 3.11+ (`uv.find_uv_bin()`); otherwise uv
# $MART_UV_VERSION is installed with pip (user site first) and found the same way.

MART_UV_VERSION="0.13.8"  # the one pinned uv version of ./mart and CI

_mart_uv_say() { printf '[uv] %s\n' "$*" >&2; }

# The first Python 3.11+ on PATH.
mart_find_python() {
    local py
    for py in python3.13 python3.12 python3.11 python3; do
        if command -v "$py" >/dev/null 2>&1 \
            && "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            command -v "$py"
            return 0
        fi
    done
    return 1
}

# Prints the path of a working uv binary, or fails.
_mart_locate_uv() {
    local bin py
    if bin="$(command -v uv 2>/dev/null)" && "$bin" --version >/dev/null 2>&1; then
        printf '%s\n' "$bin"
        return 0
    fi
    if [[ -x "$HOME/.local/bin/uv" ]] && "$HOME/.local/bin/uv" --version >/dev/null 2>&1; then
        printf '%s\n' "$HOME/.local/bin/uv"
        return 0
    fi
    py="$(mart_find_python)" || return 1
    bin="$("$py" -c 'from uv import find_uv_bin; print(find_uv_bin())' 2>/dev/null)" || return 1
    [[ -x "$bin" ]] && "$bin" --version >/dev/null 2>&1 || return 1
    printf '%s\n' "$bin"
}

# Makes `uv` callable in this shell (installing it with pip when missing); exports MART_UV.
mart_ensure_uv() {
    local bin py
    if ! bin="$(_mart_locate_uv)"; then
        py="$(mart_find_python)" || { _mart_uv_say "Python 3.11+ is required"; return 1; }
        _mart_uv_say "uv not found: installing uv $MART_UV_VERSION with pip ($py)"
        # user install first; Debian/Ubuntu system Pythons need --break-system-packages for it (PEP 668);
        # inside a virtualenv only a plain install works
        "$py" -m pip install --quiet --disable-pip-version-check --user "uv==$MART_UV_VERSION" 2>/dev/null \
            || "$py" -m pip install --quiet --disable-pip-version-check --user --break-system-packages \
                "uv==$MART_UV_VERSION" 2>/dev/null \
            || "$py" -m pip install --quiet --disable-pip-version-check "uv==$MART_UV_VERSION" \
            || { _mart_uv_say "could not install uv; see https://docs.astral.sh/uv/getting-started/installation/"; return 1; }
        bin="$(_mart_locate_uv)" || { _mart_uv_say "uv was installed but its binary is not found"; return 1; }
    fi
    case ":$PATH:" in
        *":$(dirname "$bin"):"*) ;;
        *) PATH="$(dirname "$bin"):$PATH" ;;
    esac
    export PATH
    MART_UV="$bin"
    export MART_UV
}
