"""A task that fails twice, then succeeds: retries with exponential backoff."""

from weir import exponential_backoff, flow, task

attempts = {"count": 0}


@task(retries=3, retry_delay_seconds=exponential_backoff(0.05))
def unreliable() -> str:
    attempts["count"] += 1
    if attempts["count"] < 3:
        raise ConnectionError(f"attempt {attempts['count']} failed")
    return f"succeeded on attempt {attempts['count']}"


@flow
def retrying() -> str:
    return unreliable()


if __name__ == "__main__":
    print(retrying())
