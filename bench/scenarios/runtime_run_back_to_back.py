"""`runtime_run` with no pause between runs: containers started in a burst."""

from bench.scenarios.runtime_run import RuntimeRun


class RuntimeRunBackToBack(RuntimeRun):
    name = "runtime_run_back_to_back"
    description = (
        "The same as runtime_run with no pause between runs: each run finds the kernel's "
        "cgroup lock still on its slow path from the previous run (the other side's), so "
        "the cgroup join's RCU grace period is mostly skipped, as when containers are "
        "started in a burst. Here the runtimes' own start-up costs dominate."
    )
    settle = 0.0


SCENARIO = RuntimeRunBackToBack()
