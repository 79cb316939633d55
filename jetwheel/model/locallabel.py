"""The PEP 440 local label a recipe's wheel carries, as the package's own build writes it.

Some builds derive the label from the toolkit they compile with, and write none for the one CUDA
they treat as main: vLLM 0.8.1's setup.py (get_vllm_version) appends +cu<XYZ> only when nvcc is not
its MAIN_CUDA_VERSION 12.4. The recipe says so as data (package.local_version = "cu{cuda_nodot}",
package.local_version_unless_cuda = "12.4"), so the plan expects the very name the build makes.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path

from jetwheel.errors import PlanError, RecipeError

# the words package.local_version may be instead of a label
KEYWORDS = ("profile", "none")


def cuda_fields(cuda: str) -> dict[str, str]:
    """The placeholders that name a profile's CUDA, for labels and build environments alike."""
    return {"cuda": cuda, "cuda_nodot": cuda.replace(".", "")}


@dataclass(frozen=True)
class LocalLabel:
    template: str  # "profile" (the profile's label), "none", or a label that may name {cuda} / {cuda_nodot}
    unless_cuda: str = ""  # a CUDA version for which the build writes no label at all

    @property
    def names_cuda(self) -> bool:
        return any(field for _, field, _, _ in string.Formatter().parse(self.template))

    def render(self, recipe: Path, profile_label: str, cuda: str) -> str:
        """The label for a profile whose own label is `profile_label` and whose CUDA is `cuda`; ""
        for none."""
        if self.template in KEYWORDS:
            return profile_label if self.template == "profile" else ""
        if self.names_cuda and not cuda:
            raise PlanError(f"{recipe}: package.local_version names the CUDA, but the profile sets no cuda")
        if cuda == self.unless_cuda:
            return ""
        return self.template.format(**cuda_fields(cuda))


def parse_label(path: Path, template: str, unless_cuda: str) -> LocalLabel:
    """package.local_version and package.local_version_unless_cuda, checked; RecipeError names the key."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise RecipeError(f"{path}: package.local_version {template!r} is malformed ({e})") from None
    unknown = sorted(fields - cuda_fields("").keys())
    if unknown:
        raise RecipeError(
            f"{path}: package.local_version uses unknown placeholder {{{unknown[0]}}}; known: {{cuda}}, {{cuda_nodot}}"
        )
    if unless_cuda and not re.fullmatch(r"\d+\.\d+", unless_cuda):
        raise RecipeError(f'{path}: package.local_version_unless_cuda must be a CUDA version such as "12.4"')
    if unless_cuda and not fields:
        raise RecipeError(
            f"{path}: package.local_version_unless_cuda needs a local_version that names the CUDA, "
            'e.g. "cu{cuda_nodot}"'
        )
    return LocalLabel(template, unless_cuda)
