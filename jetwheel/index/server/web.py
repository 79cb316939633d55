"""The index's pages for people: the home page (what is here, what passed verify, where it came
from) and each profile's compatibility matrix. Server-rendered with Jinja2, no JavaScript."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from packaging.utils import NormalizedName, parse_wheel_filename

from jetwheel.index.server.profiles import Compat, ProfileView
from jetwheel.index.store.catalog import Catalog
from jetwheel.index.store.owners import TRUSTED as BY_TRUSTED
from jetwheel.index.store.owners import Owner
from jetwheel.index.store.records import StoredFile, VerifyJson
from jetwheel.wire import TRUSTED, Status

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("jetwheel.index.server", "templates"), autoescape=jinja2.select_autoescape(["html"])
)
_env.filters["isotime"] = lambda ts: time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _tags(filename: str) -> str:
    if not filename.endswith(".whl"):
        return "sdist"
    tags = parse_wheel_filename(filename)[3]
    return (
        ", ".join(sorted({f"{t.interpreter}-{t.abi}" for t in tags}))
        + " · "
        + ", ".join(sorted({t.platform for t in tags}))
    )


def _first_error(report: VerifyJson) -> str:
    for f in report.get("findings", []):
        if f.get("severity") == "error":
            return f"{f.get('check')}: {f.get('detail', '')}"[:300]
    return ""


def _source(src: Mapping[str, Any]) -> str:
    kind = src.get("kind")
    if kind == "git":
        text = f"git {src.get('url', '')} @ {src.get('ref', '')}"
        text += f" (commit {str(src['commit'])[:12]})" if src.get("commit") else ""
    elif kind == "url":
        text = str(src.get("url", ""))
    else:
        text = f"local tree {str(src.get('digest', ''))[:12]}…"
    if kind in ("git", "url"):
        text += f", sha256 {str(src['sha256'])[:12]}…" if src.get("sha256") else ""
        # where the builder took the bytes from: a local source directory, the index, or upstream
        text += f", taken from {src['from']}" if src.get("from") and src.get("from") != src.get("url") else ""
    for sub in src.get("subs", []):  # the further pinned trees (vLLM's CUTLASS, flash-attention, FlashMLA)
        text += (
            f"; with {sub.get('name')} {sub.get('repo')} (commit {str(sub.get('commit', ''))[:12]}), "
            f"sha256 {str(sub.get('sha256', ''))[:12]}…"
            + (f" patched ({', '.join(sub['patches'])})" if sub.get("patches") else "")
            + (f", taken from {sub['from']}" if sub.get("from") else "")
        )
    return text


def summary(store: Catalog) -> Status:
    """What `inv status` shows: counts, bytes, failing verify reports, disk free."""
    files = store.files()
    failing = sorted(f.filename for f in files.values() if f.verify and not f.verify.get("passed", True))
    disk = shutil.disk_usage(store.root)
    return {
        "projects": len(store.projects()),
        "files": len(files),
        "bytes": sum(f.size for f in files.values()),
        "failing_verify": failing,
        "unverified": sum(1 for f in files.values() if f.project and not f.verify),
        "yanked": sum(1 for f in files.values() if f.yanked is not None),
        "disk_free": disk.free,
        "disk_total": disk.total,
    }


def render_home(store: Catalog, base: str, profiles: Mapping[str, ProfileView], top: str) -> bytes:
    projects = store.projects()
    files = store.files()
    versions = {p: sorted({f.version for f in fs}, key=_version_key, reverse=True) for p, fs in projects.items()}
    artifacts = sorted(n for n, f in files.items() if not f.project)
    owners = store.owners()
    return (
        _env.get_template("home.html")
        .render(
            projects=list(projects.items()),
            versions=versions,
            nfiles=len(files),
            base=base,
            top=top,
            failing=len(summary(store)["failing_verify"]),
            tags={n: _tags(n) for n in files},
            artifacts=artifacts,
            origin={p: _origin(owners.get(p)) for p in projects},
            trusted=TRUSTED,
            first_error=_first_error,
            source=_source,
            profiles=sorted(profiles),
        )
        .encode()
    )


def _origin(owner: Owner | None) -> str:
    """Where a project comes from, as its owner record says."""
    if owner is None:
        return "held by the builders and admins (from before owners were recorded)"
    if owner.user != BY_TRUSTED:
        return f"uploaded by the user {owner.user} ({owner.role or 'upload'}), who owns it"
    return {
        "mirror": "mirrored from the upstream index (builders and admins own it)",
        "build": "built by jetwheel's recipes (builders and admins own it)",
    }.get(owner.source, f"published by a {owner.role or 'builder'} (builders and admins own it)")


def _version_key(v: str) -> Any:
    from packaging.version import InvalidVersion, Version

    try:
        return (0, Version(v))
    except InvalidVersion:
        return (-1, v)


@dataclass(frozen=True)
class Row:
    name: str
    pin: str
    filename: str
    verify: str
    verify_class: str
    pins: str
    pins_class: str


def matrix(store: Catalog, profile: ProfileView) -> list[Row]:
    """Per pinned package: the best wheel this index serves for the profile's target and its checks."""
    priority = {t: i for i, t in enumerate(profile.target.tags())}
    by_project = store.projects()
    rows = []
    for name, pin in profile.versions.items():
        best: tuple[int, StoredFile] | None = None
        for f in by_project.get(NormalizedName(name), []):
            if not f.filename.endswith(".whl") or f.yanked is not None:
                continue
            _n, version, _b, tags = parse_wheel_filename(f.filename)
            rank = min((priority[t] for t in tags if t in priority), default=None)
            if version.public != pin or rank is None:
                continue
            if best is None or rank < best[0]:
                best = (rank, f)
        if best is None:
            rows.append(Row(name, pin, "", "no wheel for the target", "fail", "—", "none"))
            continue
        f = best[1]
        report = f.verify if f.published_by in TRUSTED else {}  # anyone else's report is their word only
        pin_errors = [
            x["detail"] for x in report.get("findings", []) if x.get("check") == "pins" and x.get("severity") == "error"
        ]
        if not report:
            verify = (
                "not verified" if f.published_by in TRUSTED else f"published by {f.published_by or 'hand'}: unverified"
            )
            vclass = "none"
        elif report.get("passed"):
            verify, vclass = "pass", "pass"
        else:
            verify, vclass = "fail: " + ", ".join(report.get("failing", [])), "fail"
        pins, pclass = (pin_errors[0], "fail") if pin_errors else (("agree", "pass") if report else ("—", "none"))
        rows.append(Row(name, pin, f.filename, verify, vclass, pins, pclass))
    return rows


def render_profile(
    store: Catalog, profile: ProfileView, resolved: Compat | None, profiles: Mapping[str, ProfileView]
) -> bytes:
    """`resolved` is None while the index has not yet checked this generation of the store."""
    return (
        _env.get_template("profile.html")
        .render(profile=profile, rows=matrix(store, profile), resolve=resolved, profiles=sorted(profiles))
        .encode()
    )
