"""Findings and reports: what every check returns, and what the index keeps beside each wheel."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

# error: the wheel fails its check; warning: shown, the check passes; info: a fact worth showing
Severity = Literal["error", "warning", "info"]
ERROR: Final = "error"
WARNING: Final = "warning"
INFO: Final = "info"


# verify's checks of a wheel (fatbin .. resolve), then triton.check's of a Triton release
Check = Literal[
    "fatbin",
    "extensions",
    "abi",
    "pins",
    "resolve",
    "requirements",
    "pytorch_triton_url",
    "nvpl_slim_url",
    "runtime",
]


@dataclass(frozen=True)
class Finding:
    check: Check
    severity: Severity
    file: str  # the wheel, or the wheel member, the finding is about
    detail: str
    fix: str = ""


@dataclass
class Report:
    wheel: str
    checks: list[Check] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # e.g. {"fatbin": {"lib/x.so": ["sm_87"]}}

    def errors(self) -> list[Finding]:
        """The findings that fail the wheel, in the order found."""
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def passed(self) -> bool:
        return not self.errors()

    def failing_checks(self) -> list[Check]:
        return sorted({f.check for f in self.errors()})

    def to_json(self) -> dict[str, Any]:
        return {
            "wheel": self.wheel,
            "passed": self.passed,
            "checks": self.checks,
            "failing": self.failing_checks(),
            "findings": [asdict(f) for f in self.findings],
            "facts": self.facts,
        }


def render(reports: list[Report]) -> str:
    """The human report: per wheel, grouped by check, each finding with its fix."""
    out = []
    for r in reports:
        out.append(f"{'PASS' if r.passed else 'FAIL'}  {r.wheel}")
        for check in r.checks:
            found = [f for f in r.findings if f.check == check]
            errors = [f for f in found if f.severity == ERROR]
            out.append(
                f"  {check:<10} {'fail' if errors else 'ok'}"
                + (f"  ({_fact_summary(r.facts.get(check))})" if r.facts.get(check) else "")
            )
            for f in found:
                out.append(f"    {f.severity}: {f.file}: {f.detail}")
                if f.fix:
                    out.append(f"      fix: {f.fix}")
    return "\n".join(out)


def _fact_summary(facts: Any) -> str:
    if isinstance(facts, dict):
        return "; ".join(f"{k}: {', '.join(v) if isinstance(v, list) else v}" for k, v in facts.items())
    return str(facts)
