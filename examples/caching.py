"""A cached task runs once per input: the second call is answered from the cache."""

from datetime import timedelta

from weir import INPUTS, flow, task

executions = []


@task(cache_policy=INPUTS, cache_expiration=timedelta(hours=1))
def expensive(x: int) -> int:
    executions.append(x)
    return x * x


@flow
def cached_twice(x: int) -> tuple[int, int]:
    return expensive(x), expensive(x)


if __name__ == "__main__":
    first = cached_twice(7)
    second = cached_twice(7)
    print(f"results {first} {second}; the body ran {len(executions)} time(s)")
