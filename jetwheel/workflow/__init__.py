"""The use cases behind the tasks, one module per family of tasks, each composed from the modules
that do the work. They take parsed values and return values (or yield what long work has to say);
only the door (jetwheel.cli) prints."""

from .build import BuildRequest, build, plan_build
from .demo import run_demo
from .doctor import examine
from .index import add_user, check_profiles, export_index, index_status, issue_token, mirror_requirements
from .profiles import profile_for, profile_views
from .serve import ServeOptions, running_index, serve_index, wait_ready
from .sources import fetch_sources, upload_source
from .verify import runtime_target, verify_paths

__all__ = [
    "BuildRequest",
    "ServeOptions",
    "add_user",
    "build",
    "check_profiles",
    "examine",
    "export_index",
    "fetch_sources",
    "index_status",
    "issue_token",
    "mirror_requirements",
    "plan_build",
    "profile_for",
    "profile_views",
    "run_demo",
    "running_index",
    "runtime_target",
    "serve_index",
    "upload_source",
    "verify_paths",
    "wait_ready",
]
