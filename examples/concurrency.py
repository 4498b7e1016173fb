"""Fan out with map and submit, fan in with futures."""

from weir import flow, task, unmapped, wait


@task
def scale(x: int, factor: int) -> int:
    return x * factor


@task
def total(values: list[int]) -> int:
    return sum(values)


@flow
def fan_out(n: int) -> int:
    scaled = scale.map(range(n), factor=unmapped(10))
    extra = [scale.submit(i, 1) for i in range(n)]
    wait(extra)
    return total(scaled.result()) + sum(f.result() for f in extra)


if __name__ == "__main__":
    print(fan_out(100))
