"""Session-wide clean-up shared by every test tree."""

import os

CGROUP_ROOT = "/sys/fs/cgroup"
# parents under which tests put their containers' cgroups
TEST_CGROUP_PARENTS = ("dockyard-test",)


def pytest_sessionfinish(session, exitstatus):
    """Remove the tests' cgroup parents once empty (the runtime, like runc, leaves parents)."""
    if os.geteuid() != 0 or not os.path.isdir(CGROUP_ROOT):
        return
    hierarchies = [""] + os.listdir(CGROUP_ROOT)  # "" for a v2-only host
    for hierarchy in hierarchies:
        for parent in TEST_CGROUP_PARENTS:
            try:
                os.rmdir(os.path.join(CGROUP_ROOT, hierarchy, parent))
            except OSError:
                pass  # absent, or still in use: nothing of ours to remove
