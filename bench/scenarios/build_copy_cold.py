"""`DOCKER_BUILDKIT=0 docker build`: COPY of a 10,000-file 40 MB context, --no-cache (issue 7 §8; docker here: about 8.5 s)."""

from bench.scenarios._build_common import BuildScenario


class BuildCopyCold(BuildScenario):
    name = "build_copy_cold"
    description = ("COPY of a 10,000-file 40 MB context, --no-cache, with the official docker CLI's legacy builder, against "
                   "`dockyard daemon` and a private dockerd 20.10.")
    target = "<= 0.5"
    target_ratio = 0.5
    kind = "copy"
    no_cache = True


SCENARIO = BuildCopyCold()
