"""`DOCKER_BUILDKIT=0 docker build`: 10 trivial RUN steps with --no-cache (issue 7 §8; docker here: about 4 s)."""

from bench.scenarios._build_common import BuildScenario


class BuildRunNocache(BuildScenario):
    name = "build_run_nocache"
    description = ("10 trivial RUN steps with --no-cache, with the official docker CLI's legacy builder, against "
                   "`dockyard daemon` and a private dockerd 20.10.")
    target = "<= 0.5"
    target_ratio = 0.5
    kind = "run"
    no_cache = True


SCENARIO = BuildRunNocache()
