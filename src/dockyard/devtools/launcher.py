"""Rewrites the console scripts `dockyard` and `dockyard-runtime` as fast launchers.

pip's scripts start Python with `site`, which runs every .pth file on the
machine (some import packages such as certifi) before our first line: more
time than `dockyard-runtime run` itself needs. The launchers start Python
isolated without `site` (-IS) and set sys.path to what site would have made,
computed once here at install time, and end with os._exit once output is
flushed. Run by scripts/setup.sh after pip.
"""

import os
import sys

SCRIPTS = {
    "dockyard": ("dockyard.cli.main", "main", ""),
    # create/run start the cgroup grace period before anything else (see cgroup_join)
    "dockyard-runtime": ("dockyard.runtime.cli", "main",
                         ('if "create" in sys.argv or "run" in sys.argv:\n'
                          "    from dockyard.runtime.cgroup_join import prime\n"
                          "    prime()\n")),
}

TEMPLATE = """#!{python} -IS
# Written by dockyard.devtools.launcher: a console script that skips site's .pth files,
# and the interpreter's clean-up at exit (nothing of ours needs it; it costs milliseconds).
import os
import sys
sys.path[:] = {paths!r}
{preamble}from {module} import {func}
code = {func}()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code if isinstance(code, int) else 0)
"""


def write_launchers(bindir: str) -> None:
    paths = [p for p in sys.path if p and os.path.isdir(p) and p != os.getcwd()]
    python = os.path.join(bindir, "python")
    for name, (module, func, preamble) in SCRIPTS.items():
        target = os.path.join(bindir, name)
        tmp = target + ".tmp"
        with open(tmp, "w") as f:
            f.write(TEMPLATE.format(python=python, paths=paths, module=module, func=func,
                                    preamble=preamble))
        os.chmod(tmp, 0o755)
        os.rename(tmp, target)


if __name__ == "__main__":
    write_launchers(os.path.dirname(sys.executable))
