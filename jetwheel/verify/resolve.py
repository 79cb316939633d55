"""The profile's top requirement resolves from the index for the target, as pip will resolve it:
CPython 3.12, linux_aarch64 with the target's glibc, binary wheels only.

Catches `No matching distribution found for triton==3.2.0` before an image build does."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

from jetwheel.pipcmd import clean_pip, dry_run_command
from jetwheel.target import Target
from jetwheel.verify.report import ERROR, Finding

_MISSING = re.compile(r"No matching distribution found for (\S+)")
_CONFLICT = re.compile(r"(Cannot install .*|ResolutionImpossible.*|.* depends on .*)")


def resolve(requirements: list[str], index_url: str, target: Target) -> tuple[list[Finding], list[str]]:
    """(findings, what would be installed as name==version)."""
    findings, got = resolve_with_hashes(requirements, index_url, target)
    return findings, [f"{name}=={version}" for name, version, _sha in got]


def resolve_with_hashes(
    requirements: list[str], index_url: str, target: Target
) -> tuple[list[Finding], list[tuple[str, str, str]]]:
    """(findings, what would be installed as (name, version, sha256 of the file pip chose))."""
    with tempfile.TemporaryDirectory(prefix="jetwheel-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        proc = subprocess.run(
            clean_pip(dry_run_command(requirements, index_url, target, report)), capture_output=True, text=True
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
    where = f"cp{target.python.replace('.', '')} {target.platform}"
    missing = _MISSING.findall(text)
    if missing:
        return [
            Finding(
                "resolve",
                ERROR,
                ", ".join(requirements),
                f"{m}: no {where} wheel on {index_url}",
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
            f"pip cannot resolve for {where}: {' / '.join(lines[:4])}",
            "make the pins agree (inv verify reports which)",
        )
    ], []
