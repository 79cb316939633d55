"""The scan's findings as one line per broken item, each with its fix, and the exit code.

Exit codes (the README's contract, jetwheel.errors.ExitCode): 0 nothing broken and everything
checked; 1 something is broken; 5 nothing found broken, but part could not be checked (fatbins
without a GPU or --arch, libraries that need the NVIDIA driver where none is installed) or the
environment could not be examined at all. A NOTE (an optional part a package probes and skips, its
dependency absent) changes no exit code."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from jetwheel.doctor.scan import DRIVER
from jetwheel.errors import ExitCode
from jetwheel.verify.abi import demangle

OK, BROKEN, UNCHECKED = ExitCode.OK, ExitCode.CHECK_FAILED, ExitCode.NOT_CHECKED


@dataclass(frozen=True)
class Line:
    status: Literal["broken", "unchecked", "note"]
    subject: str
    problem: str
    fix: str

    def render(self) -> str:
        return f"{self.status.upper()} {self.subject}: {self.problem}" + (f" -> {self.fix}" if self.fix else "")


def _short(path: str, doc: dict[str, Any]) -> str:
    """A path below site-packages as the package path, others as they are."""
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def failure_text(f: dict[str, Any], doc: dict[str, Any]) -> str:
    where = _short(f["object"], doc)
    if f["kind"] == "missing-library":
        text = f"{f['name']} (needed by {where}) is nowhere ld.so looks"
        if f.get("candidates"):
            text += f"; the environment has it at {_short(f['candidates'][0], doc)}, outside that search"
        return text
    if f["kind"] == "sibling-import":
        return f"{where} imports {f['name']} when it initialises"
    if f["kind"] == "missing-version":
        return f"version {f['name']} of {', '.join(f['candidates'])} not found (required by {where})"
    text = f"undefined symbol {demangle(f['name'])} [{f['name']}] in {where}"
    if f.get("expected"):
        text += f", which {os.path.basename(f['expected'])} ({_short(f['expected'], doc)}) should define"
    return text


def _pins_of(dist: str, doc: dict[str, Any]) -> list[str]:
    return [i["requirement"] for i in doc["items"] if i["kind"] == "pins" and i["dist"] == dist and i["installed"]]


def _fix(dist: str, f: dict[str, Any], doc: dict[str, Any]) -> str:
    if f["kind"] == "missing-library":
        if DRIVER.match(f["name"]):
            return "this needs the NVIDIA driver: run where it is installed (a container: with the GPU passed in)"
        if f.get("candidates"):
            return (
                f"reinstall the package owning {f['name']} where its users' RPATH points, "
                "or add its directory to LD_LIBRARY_PATH"
            )
        return (
            f"install the package that ships {f['name']} (e.g. the nvidia-*-cu12 wheel {dist} requires), "
            "or the system library"
        )
    pins = _pins_of(dist, doc)
    if pins:
        return (
            f"install what {dist} was built for ({', '.join(pins)}), "
            f"or a {dist} built against the versions installed here"
        )
    return f"reinstall {dist} built against the libraries installed here"


def _special(path: str, doc: dict[str, Any]) -> bool:
    """A failing object said elsewhere: needing the driver, optional, or one of several variants."""
    v = doc.get("objects", {}).get(path, {})
    return bool(v.get("driver") or v.get("optional") or v.get("variants") or v.get("late"))


def _notes(doc: dict[str, Any]) -> list[Line]:
    """Optional parts whose dependency is absent, and run-time variants none of which loads."""
    out, groups = [], {}
    for path, v in sorted(doc.get("objects", {}).items()):
        f = v["failure"]
        if f is None:
            continue
        if v.get("optional") and not v.get("driver"):
            out.append(Line("note", _short(path, doc), f"not loadable: {_cause_text(v, doc)}", v["optional"]))
        if v.get("late"):
            problem = f"not checked: {v['late']}; on its own {failure_text(v['failure'], doc)}"
            out.append(Line("unchecked", _short(path, doc), problem, ""))
        if v.get("variants") and not v["variants"]["loads"]:
            groups[v["variants"]["base"]] = v
    for base, v in sorted(groups.items()):
        files = v["variants"]["files"]
        why = "; ".join(failure_text(doc["objects"][f]["failure"], doc) for f in files)
        names = ", ".join(os.path.basename(f) for f in files)
        out.append(
            Line(
                "broken",
                f"{_short(base, doc)} ({v['dist']})",
                f"none of its builds loads ({names}): {why}",
                "install what one of them needs",
            )
        )
    return out


def _root(v: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """The failure behind v's: its failing sibling's, when it has one."""
    cause = v.get("cause")
    failure: dict[str, Any] = doc["objects"][cause]["failure"] if cause else v["failure"]
    return failure


def _cause_text(v: dict[str, Any], doc: dict[str, Any]) -> str:
    if v.get("cause"):
        return f"its sibling {_short(v['cause'], doc)} cannot load: {failure_text(_root(v, doc), doc)}"
    return failure_text(v["failure"], doc)


def lines(doc: dict[str, Any]) -> list[Line]:
    """One line per broken or unchecked thing: modules first, then the scan's items in its order,
    then one line for every library left unchecked for want of the driver, then the notes."""
    out = _module_lines(doc)
    out += [
        _ITEM_LINES[i["kind"]](i, doc)
        for i in doc["items"]
        if i["kind"] in _ITEM_LINES and not (i["kind"] == "library" and _special(i["subject"], doc))
    ]
    driver = [_short(p, doc) for p, v in sorted(doc.get("objects", {}).items()) if v.get("driver")]
    driver += [_short(i["subject"], doc) for i in doc["items"] if i["kind"] == "driver"]
    if driver:
        out.append(
            Line(
                "unchecked",
                f"{len(driver)} libraries",
                f"need the NVIDIA driver (libcuda.so.1), not installed here (e.g. {driver[0]})",
                "run the doctor where the driver is (e.g. --image with --gpu on the target)",
            )
        )
    return out + _notes(doc)


def _module_lines(doc: dict[str, Any]) -> list[Line]:
    """A module that fails to load, one line each; a package whose modules fail only because another
    package's import fails first, one line for all of them."""
    out: list[Line] = []
    via: dict[str, list[str]] = {}
    for module, v in sorted(doc["modules"].items()):
        if v["failure"] is not None and not _special(v["path"], doc):
            f = _root(doc.get("objects", {}).get(v["path"], v), doc) if v.get("cause") else v["failure"]
            v = doc.get("objects", {}).get(v["path"], v)
            out.append(
                Line(
                    "broken", f"{module} ({v['dist']})", f"cannot load: {_cause_text(v, doc)}", _fix(v["dist"], f, doc)
                )
            )
        elif v["via"] is not None:
            via.setdefault(v["dist"], []).append(module)
    for dist, mods in sorted(via.items()):
        first = doc["modules"][mods[0]]["via"]
        out.append(
            Line(
                "broken",
                f"{dist} ({len(mods)} extension modules)",
                f"cannot load: import of {first['dist']} fails first ({first['module']}: "
                f"{failure_text(first['failure'], doc)})",
                f"fix {first['dist']} (its line above)",
            )
        )
    return out


def _library_line(i: dict[str, Any], doc: dict[str, Any]) -> Line:
    v = doc.get("objects", {}).get(i["subject"], i)
    return Line(
        "broken",
        _short(i["subject"], doc),
        f"cannot load: {_cause_text(v, doc) if 'path' in v else failure_text(i['failure'], doc)}",
        _fix(i["dist"], _root(v, doc) if v.get("cause") else i["failure"], doc),
    )


def _ops_line(i: dict[str, Any], doc: dict[str, Any]) -> Line:
    ops = sorted(i["ops"], key=lambda op: (op.split("::")[1].startswith("_"), op))  # public ones first
    shown = ", ".join(ops[:4]) + (f" and {len(ops) - 4} more" if len(ops) > 4 else "")
    return Line(
        "broken",
        f"{i['subject']} operators",
        f"{shown} will not be registered; using one fails with `operator {ops[0]} does not exist`",
        f"make {i['subject']} load (its line above)",
    )


def _pins_line(i: dict[str, Any], doc: dict[str, Any]) -> Line:
    have = f"{i['installed']} is installed" if i["installed"] else "not installed"
    return Line(
        "broken", i["dist"], f"requires {i['requirement']}, {have}", f"pip install '{i['requirement'].split(';')[0]}'"
    )


def _fatbin_line(i: dict[str, Any], doc: dict[str, Any]) -> Line:
    cc = doc["cc"]
    return Line(
        "broken",
        _short(i["subject"], doc),
        f"no kernel image for sm_{cc} (has {', '.join(i['has'])}){': ' + i['why'] if i['why'] else ''}",
        f"install a build with sm_{cc} SASS or PTX the driver (CUDA {doc['driver'] or '?'}) can JIT",
    )


def _fatbin_unused_line(i: dict[str, Any], doc: dict[str, Any]) -> Line:
    return Line(
        "unchecked",
        _short(i["subject"], doc),
        f"no kernel image for sm_{doc['cc']} (has {', '.join(i['has'])}), beside libraries of {i['dist']} that have "
        "one: it fails only if it launches those kernels, which its file does not say",
        "",
    )


def _unchecked_line(i: dict[str, Any], doc: dict[str, Any]) -> Line:
    if i["subject"] == "fatbins":
        return Line("unchecked", "fatbins", f"{i['detail']} not checked: no GPU found", "give --arch X.Y or --profile")
    return Line("unchecked", i["subject"], i["detail"], "")


# the scan's item kinds that are a line of their own ("driver" items are summed into one line)
_ITEM_LINES: dict[str, Callable[[dict[str, Any], dict[str, Any]], Line]] = {
    "library": _library_line,
    "ops": _ops_line,
    "pins": _pins_line,
    "fatbin": _fatbin_line,
    "fatbin-unused": _fatbin_unused_line,
    "unchecked": _unchecked_line,
}


def exit_code(found: list[Line]) -> int:
    if any(x.status == "broken" for x in found):
        return BROKEN
    return UNCHECKED if any(x.status == "unchecked" for x in found) else OK  # a note changes nothing
