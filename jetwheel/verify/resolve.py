"""The profile's top requirement resolves from the index for the target, as pip will resolve it:
CPython 3.12, linux_aarch64 with the target's glibc, binary wheels only.

Catches `No matching distribution found for triton==3.2.0` before an image build does."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from .report import ERROR, Finding

_MISSING = re.compile(r"No matching distribution found for (\S+)")
_CONFLICT = re.compile(r"(Cannot install .*|ResolutionImpossible.*|.* depends on .*)")


def platform_tags(platform_tag: str, glibc: str) -> list[str]:
    """pip's --platform takes exact tags: spell out every manylinux level the target's glibc accepts."""
    arch = platform_tag.split("_", 1)[1]
    major, minor = (int(x) for x in glibc.split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 16, -1)]
    return [*tags, f"manylinux2014_{arch}", platform_tag]


def clean_pip_env() -> dict[str, str]:
    """The environment for a pip that must see only the index it is given: no pip.conf, no
    constraints, no extra index or find-links from the host."""
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull)
    for k in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONSTRAINT"):
        env.pop(k, None)
    return env


def target_args(python: str, platform_tag: str, glibc: str) -> list[str]:
    """pip's options that make it choose wheels for the target instead of this machine: binary only,
    CPython `python`, its ABI, abi3 and pure wheels, and every platform tag the target accepts."""
    py = "cp" + python.replace(".", "")
    args = [
        "--only-binary=:all:",
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
        py,
        "--abi",
        "abi3",
        "--abi",
        "none",
    ]
    for t in platform_tags(platform_tag, glibc):
        args += ["--platform", t]
    return args


def pip_command(
    requirements: list[str], index_url: str, python: str, platform_tag: str, glibc: str, report: Path
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--disable-pip-version-check",
        "--report",
        str(report),
        "--index-url",
        index_url,
        *target_args(python, platform_tag, glibc),
        *requirements,
    ]


def resolve(
    requirements: list[str], index_url: str, python: str, platform_tag: str, glibc: str
) -> tuple[list[Finding], list[str]]:
    """(findings, what would be installed as name==version)."""
    findings, got = resolve_with_hashes(requirements, index_url, python, platform_tag, glibc)
    return findings, [f"{name}=={version}" for name, version, _sha in got]


def resolve_with_hashes(
    requirements: list[str], index_url: str, python: str, platform_tag: str, glibc: str
) -> tuple[list[Finding], list[tuple[str, str, str]]]:
    """(findings, what would be installed as (name, version, sha256 of the file pip chose))."""
    with tempfile.TemporaryDirectory(prefix="jetwheel-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        env = clean_pip_env()
        proc = subprocess.run(
            pip_command(requirements, index_url, python, platform_tag, glibc, report),
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode == 0 and report.exists():
            doc = json.loads(report.read_text())
            got = [
                (
                    i["metadata"]["name"],
                    i["metadata"]["version"],
                    i["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256", ""),
                )
                for i in doc.get("install", [])
            ]
            return [], got
    text = proc.stderr + proc.stdout
    target = f"cp{python.replace('.', '')} {platform_tag}"
    missing = _MISSING.findall(text)
    if missing:
        return [
            Finding(
                "resolve",
                ERROR,
                ", ".join(requirements),
                f"{m}: no {target} wheel on {index_url}",
                f"build and publish {m.split('=')[0].split('<')[0].split('>')[0]} "
                "(inv build-wheel), or mirror it (inv index.mirror)",
            )
            for m in missing
        ], []
    lines = [ln.strip() for ln in text.splitlines() if _CONFLICT.search(ln)] or text.strip().splitlines()[-1:]
    return [
        Finding(
            "resolve",
            ERROR,
            ", ".join(requirements),
            f"pip cannot resolve for {target}: {' / '.join(lines[:4])}",
            "make the pins agree (inv verify reports which)",
        )
    ], []
