"""`DOCKER_BUILDKIT=0 docker build`: the same 10 RUN steps, all cached (issue 7 §8; docker here: about 0.07 s)."""

from bench.scenarios._build_common import BuildScenario


class BuildRunCached(BuildScenario):
    name = "build_run_cached"
    description = ("the same 10 RUN steps, all cached, with the official docker CLI's legacy builder, against "
                   "`dockyard daemon` and a private dockerd 20.10.")
    target = "<= 1.0"
    target_ratio = 1.0
    kind = "run"
    no_cache = False


SCENARIO = BuildRunCached()
