"""Weir quickstart: a flow with a few tasks.

    python examples/quickstart.py

With no server configured (no WEIR_API_ADDRESS) Weir starts its embedded
stack for the run and keeps the history under ~/.weir; `weir server start`
later shows the same runs.
"""

from weir import flow, task
from weir.logging import get_run_logger


@task
def fetch(city: str) -> dict:
    # Stand-in for an API call.
    return {"city": city, "temperature": len(city) * 3.1}


@task
def summarise(readings: list[dict]) -> str:
    warmest = max(readings, key=lambda r: r["temperature"])
    return f"{len(readings)} cities; warmest is {warmest['city']} at {warmest['temperature']:.1f}"


@flow(log_prints=True)
def weather_report(cities: list[str]) -> str:
    get_run_logger().info("fetching %d cities", len(cities))
    readings = [fetch(city) for city in cities]
    summary = summarise(readings)
    print(summary)
    return summary


if __name__ == "__main__":
    result = weather_report(["Lisbon", "Oslo", "Nairobi"])
    print(f"result: {result}")
