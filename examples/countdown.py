"""A flow that takes a while: something to watch run, and to cancel.

    weir deployment run countdown/demo            # after `weir deploy` (examples/weir.yaml)
    weir flow-run cancel <run id>
"""

import time

from weir import flow, task


@task
def tick(n: int) -> int:
    time.sleep(1)
    return n


@flow(log_prints=True)
def countdown(seconds: int = 30) -> str:
    for n in range(seconds, 0, -1):
        print(tick(n))
    return "lift-off"


if __name__ == "__main__":
    countdown(3)
