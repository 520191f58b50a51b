"""`DOCKER_BUILDKIT=0 docker build`: the same COPY, cached (issue 7 §8; docker here: about 3.8 s)."""

from bench.scenarios._build_common import BuildScenario


class BuildCopyCached(BuildScenario):
    name = "build_copy_cached"
    description = ("the same COPY, cached, with the official docker CLI's legacy builder, against "
                   "`dockyard daemon` and a private dockerd 20.10.")
    target = "<= 0.5"
    target_ratio = 0.5
    kind = "copy"
    no_cache = False


SCENARIO = BuildCopyCached()
