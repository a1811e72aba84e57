#!/usr/bin/env bash
# Fail when the event contracts (protos/) break compatibility with the released contracts or with the
# previous contracts.
#
#   scripts/buf-breaking.sh            compare protos/ (working tree) with both
#   BUF_AGAINST_REF=<git ref> scripts/buf-breaking.sh
#
# The released contracts: the buf image protos/baseline/v1.binpb (`buf build protos -o ...`), committed,
# fixed. Consumers built from it run in production; every later contract must stay compatible with it,
# whatever the git history looks like (a shallow clone, squashed or rebased commits). A missing image is
# an error. Only a new major version (v2 packages) starts a new baseline (docs/adr/0042-released-contracts-baseline-image.md).
#
# Rules: protos/buf.yaml (`breaking: FILE`: no field renumbered, retyped or removed, no message, enum or
# enum value removed, no package or file moved...).
#
# The previous contracts are the protos/ directory at a git ref, exported with `git archive`:
#   - $BUF_AGAINST_REF when set (it must name a commit; a typo is an error);
#   - else origin/main, when it exists and is not HEAD itself (a branch is compared with main);
#   - else HEAD~, when it exists (on main: the commit before this one);
#   - else (no git history, a shallow clone without the parent, or a ref that has no protos/ yet)
#     the working tree itself, which trivially passes: the script says so on stderr.
#
# buf: $BUF, else <repo>/node_modules/.bin/buf (npm `@bufbuild/buf`), else `buf` on PATH.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
cd "$REPO_ROOT"

if [[ -n "${BUF:-}" ]]; then
    buf="$BUF"
elif [[ -x node_modules/.bin/buf ]]; then
    buf="node_modules/.bin/buf"
elif command -v buf >/dev/null 2>&1; then
    buf="buf"
else
    echo "buf-breaking: buf not found (run npm install at the repo root, or set BUF)" >&2
    exit 1
fi

in_git() {
    git rev-parse --is-inside-work-tree >/dev/null 2>&1
}

commit_of() {
    git rev-parse --verify --quiet "$1^{commit}" 2>/dev/null
}

ref=""
if [[ -n "${BUF_AGAINST_REF:-}" ]]; then
    if ! in_git || ! commit_of "$BUF_AGAINST_REF" >/dev/null; then
        echo "buf-breaking: BUF_AGAINST_REF=$BUF_AGAINST_REF does not name a commit" >&2
        exit 2
    fi
    ref="$BUF_AGAINST_REF"
elif in_git; then
    head="$(commit_of HEAD || true)"
    main="$(commit_of origin/main || true)"
    if [[ -n "$main" && "$main" != "$head" ]]; then
        ref="origin/main"
    elif commit_of HEAD~ >/dev/null; then
        ref="HEAD~"
    fi
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if [[ -n "$ref" ]] && git cat-file -e "$ref:protos/buf.yaml" 2>/dev/null; then
    git archive --format=tar "$ref" protos | tar -x -C "$tmp"
    against="$tmp/protos"
    echo "buf-breaking: comparing protos/ with the contracts at $ref ($(git rev-parse --short "$ref"))" >&2
else
    if [[ -n "$ref" ]]; then
        why="$ref has no protos/buf.yaml yet"
    else
        why="no previous commit to compare with"
    fi
    against="protos"
    echo "buf-breaking: $why; comparing protos/ with the working tree itself (nothing can break)" >&2
fi

BASELINE="protos/baseline/v1.binpb"
if [[ ! -f "$BASELINE" ]]; then
    echo "buf-breaking: the released contracts ($BASELINE) are missing" >&2
    exit 2
fi
echo "buf-breaking: comparing protos/ with the released contracts ($BASELINE)" >&2
"$buf" breaking protos --against "$BASELINE"

"$buf" breaking protos --against "$against"
echo "buf-breaking: no breaking change (released contracts and previous contracts)" >&2
