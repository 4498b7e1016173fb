"""A flow that calls flows: each call is a child flow run linked to the parent."""

from weir import flow, task


@task
def load(part: str) -> list[int]:
    return [len(part)] * 3


@flow
def process_part(part: str) -> int:
    return sum(load(part))


@flow
def process_all(parts: list[str]) -> dict[str, int]:
    return {part: process_part(part) for part in parts}


if __name__ == "__main__":
    print(process_all(["alpha", "beta", "gamma"]))
