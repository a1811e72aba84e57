"""No secret or private key is committed, was ever committed, or is about to be: the files git tracks plus
the untracked files it does not ignore, and every version of every file in the history of HEAD (a secret
deleted later is still in every clone), are scanned for PEM private keys, Stripe secret keys and webhook
secrets, AWS access keys and high-entropy password literals.

Allowed: test code and examples may carry obviously fake credentials (``tests/``, ``*/tests/``,
``*.example``); a line may opt out with ``# secret-scan: allow`` when it is a documented placeholder.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

ALLOW_MARK = "secret-scan: allow"
MAX_FILE_BYTES = 2_000_000
BINARY_SUFFIXES = {
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".ico",
    ".pdf",
    ".woff",
    ".woff2",
    ".zip",
    ".gz",
    ".sqlite",
}

ALWAYS = [
    # A private key in any PEM flavour (PKCS#1, PKCS#8, EC, OpenSSH, encrypted).
    ("pem-private-key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
    # Stripe live/test secret and restricted keys, webhook signing secrets.
    ("stripe-secret-key", re.compile(r"\b[sr]k_(?:live|test)_[0-9A-Za-z]{16,}")),
    ("stripe-webhook-secret", re.compile(r"\bwhsec_[0-9A-Za-z]{20,}")),
    # AWS access key ids and secret access keys assigned in code/config.
    ("aws-access-key-id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    (
        "aws-secret-access-key",
        re.compile(r"(?i)aws_?secret_?access_?key\s*[:=]\s*['\"]?[A-Za-z0-9/+=]{40}['\"]?"),
    ),
]
# `password = "..."` / `secret: '...'` with a value that looks like a real secret (outside tests/examples).
ASSIGNMENT = re.compile(
    r"""(?ix)\b([a-z0-9_]*(?:password|passwd|secret|api_?key|token)[a-z0-9_]*)\s*[:=]\s*
        (?:[a-z]+\()?["']([^"'\s]{12,})["']"""
)
PLACEHOLDER_WORDS = ("example", "changeme", "change-me", "placeholder", "your", "xxx", "dummy", "redacted")


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _is_test_or_example(rel: str) -> bool:
    parts = rel.split("/")
    return (
        "tests" in parts
        or rel.endswith((".example", ".sample"))
        or "example" in parts[-1].lower()
        or parts[-1].startswith("test_")
    )


def repository_files() -> list[str]:
    """``git ls-files`` + untracked, non-ignored files (read-only git); a plain walk without git."""
    try:
        tracked = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
        ).stdout
        untracked = subprocess.run(
            ["git", "ls-files", "-z", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        names = {n for n in (tracked + untracked).decode().split("\0") if n}
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", ".data", "node_modules", "__pycache__", ".hypothesis", ".pytest_cache"}
        names = set()
        for root, dirs, files in os.walk(REPO):
            dirs[:] = [d for d in dirs if d not in skip]
            for f in files:
                names.add(os.path.relpath(os.path.join(root, f), REPO))
    return sorted(names)


def scan_text(rel: str, text: str) -> list[str]:
    findings = []
    relaxed = _is_test_or_example(rel)
    for lineno, line in enumerate(text.splitlines(), 1):
        if ALLOW_MARK in line:
            continue
        for name, pattern in ALWAYS:
            if pattern.search(line):
                findings.append(f"{rel}:{lineno}: {name}")
        if relaxed:
            continue
        for match in ASSIGNMENT.finditer(line):
            value = match.group(2)
            if any(w in value.lower() for w in PLACEHOLDER_WORDS) or value.startswith(("$", "{", "<", "%")):
                continue
            if _entropy(value) >= 3.5 and any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
                findings.append(f"{rel}:{lineno}: high-entropy literal assigned to {match.group(1)!r}")
    return findings


def test_scanner_detects_what_it_should() -> None:
    # Assembled at run time so this file itself stays clean.
    pem = "-----BEGIN " + "RSA PRIVATE KEY-----"
    stripe = "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc"
    whsec = "whsec_" + "a1B2c3D4e5F6g7H8i9J0k1L2"
    aws = "AKIA" + "IOSFODNN7EXAMPLE"
    assignment = 'db_password = "' + "Xk9#mQ2vL8pZr4Tw" + '"'
    for sample in (pem, stripe, whsec, aws, assignment):
        assert scan_text("svc/src/settings.py", sample), sample
    assert not scan_text("svc/src/settings.py", 'password = "changeme-please-1"')
    assert not scan_text("svc/tests/test_x.py", assignment)  # tests may hold fake credentials
    assert scan_text("svc/tests/test_x.py", pem)  # ...but never a private key


def history_files(repo: Path) -> list[tuple[str, bytes]]:
    """Every version of every file reachable from HEAD, each blob once: ``(path, content)``. Binary and
    oversized blobs are left out, as in the working-tree scan."""
    listing = subprocess.run(
        "git rev-list --objects HEAD"
        " | git cat-file --batch-check='%(objecttype) %(objectname) %(objectsize) %(rest)'",
        shell=True,  # noqa: S602 - a fixed pipeline, no input
        cwd=repo,
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout.decode()
    wanted: dict[str, str] = {}  # blob -> the first path it was seen under
    for line in listing.splitlines():
        kind, sha, size, *rest = line.split(" ", 3)
        path = rest[0] if rest else ""
        if kind != "blob" or not path or sha in wanted or int(size) > MAX_FILE_BYTES:
            continue
        if Path(path).suffix.lower() not in BINARY_SUFFIXES:
            wanted[sha] = path
    data = subprocess.run(
        ["git", "cat-file", "--batch"],
        input="".join(f"{sha}\n" for sha in wanted).encode(),
        cwd=repo,
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    out, at = [], 0
    while at < len(data):
        header_end = data.index(b"\n", at)
        sha, _kind, size = data[at:header_end].decode().split(" ")
        start = header_end + 1
        out.append((wanted[sha], data[start : start + int(size)]))
        at = start + int(size) + 1  # the content, then a newline
    return out


def scan_history(repo: Path) -> list[str]:
    findings = []
    for rel, content in history_files(repo):
        if b"\0" not in content[:4096]:
            findings += scan_text(rel, content.decode("utf-8", "replace"))
    return findings


def test_the_history_scan_finds_a_key_committed_then_deleted(tmp_path: Path) -> None:
    """A private key committed and removed in the next commit is not in the working tree, but in the
    history every clone carries: the history scan reports it."""

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, timeout=30)

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (tmp_path / "deploy.txt").write_text("-----BEGIN " + "PRIVATE KEY-----\nMIIE\n")
    git("add", "deploy.txt")
    git("commit", "-q", "-m", "add")
    (tmp_path / "deploy.txt").unlink()
    (tmp_path / "README").write_text("nothing here\n")
    git("add", "-A")
    git("commit", "-q", "-m", "remove")
    assert not (tmp_path / "deploy.txt").exists()
    assert scan_history(tmp_path) == ["deploy.txt:1: pem-private-key"]


def test_no_secret_or_private_key_in_the_history() -> None:
    files = history_files(REPO)
    assert len(files) > len(repository_files()), "the history holds fewer file versions than the tree"
    findings = scan_history(REPO)
    assert not findings, "possible secrets in the git history:\n" + "\n".join(sorted(set(findings)))


def test_no_secret_or_private_key_in_the_repository() -> None:
    files = repository_files()
    assert len(files) > 50, "the scan found suspiciously few files"
    findings: list[str] = []
    for rel in files:
        path = REPO / rel
        if path.suffix.lower() in BINARY_SUFFIXES or not path.is_file() or path.is_symlink():
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            continue
        data = path.read_bytes()
        if b"\0" in data[:4096]:
            continue
        findings += scan_text(rel, data.decode("utf-8", "replace"))
    assert not findings, "possible secrets:\n" + "\n".join(findings)
