"""The sweeper: crashed, stuck-cancelling and late flow runs, through the policy."""

from __future__ import annotations

from datetime import timedelta

from weir.v1 import common_pb2
from weir.v1 import orchestration_pb2 as pb

from .helpers import new_flow_run, new_task_run, set_flow_state, set_task_state, state


async def get(orch, run_id):
    return (await orch.stub.GetFlowRun(pb.GetFlowRunRequest(id=run_id))).flow_run


async def test_stale_heartbeat_crashes_and_retries_when_allowed(orch):
    plain = await new_flow_run(orch.stub)
    retried = await new_flow_run(orch.stub, policy=pb.RunPolicy(retries=1, retry_delay_seconds=[10]))
    fresh = await new_flow_run(orch.stub)
    for run in (plain, retried, fresh):
        await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
    orch.clock.advance(orch.orchestration_settings.heartbeat_timeout_seconds + 5)
    await orch.stub.HeartbeatFlowRun(pb.HeartbeatFlowRunRequest(flow_run_id=fresh.id))  # still alive
    moved = await orch.runtime.sweeper.sweep_once()
    assert moved == 2
    crashed = await get(orch, plain.id)
    assert crashed.state.type == common_pb2.CRASHED and crashed.end_time.seconds > 0
    again = await get(orch, retried.id)
    assert again.state.type == common_pb2.SCHEDULED and again.state.name == "AwaitingRetry"
    assert (await get(orch, fresh.id)).state.type == common_pb2.RUNNING
    assert await orch.runtime.sweeper.sweep_once() == 0  # nothing left to do


async def test_cancelling_times_out_to_cancelled(orch):
    run = await new_flow_run(orch.stub)
    await set_flow_state(orch.stub, run.id, common_pb2.CANCELLING)
    assert await orch.runtime.sweeper.sweep_once() == 0
    orch.clock.advance(orch.orchestration_settings.cancelling_timeout_seconds + 1)
    assert await orch.runtime.sweeper.sweep_once() == 1
    assert (await get(orch, run.id)).state.type == common_pb2.CANCELLED


async def test_past_due_scheduled_runs_become_late(orch):
    due = orch.clock() + timedelta(seconds=5)
    run = await new_flow_run(orch.stub, state=state(common_pb2.SCHEDULED, scheduled_time=due))
    assert await orch.runtime.sweeper.sweep_once() == 0
    orch.clock.advance(5 + orch.orchestration_settings.late_after_seconds + 1)
    assert await orch.runtime.sweeper.sweep_once() == 1
    late = await get(orch, run.id)
    assert late.state.type == common_pb2.SCHEDULED and late.state.name == "Late"
    assert late.state.details.scheduled_time.seconds == int(due.timestamp())
    assert await orch.runtime.sweeper.sweep_once() == 0  # Late stays Late
    assert (await set_flow_state(orch.stub, run.id, common_pb2.PENDING)).decision == pb.ACCEPT


async def test_no_run_crashes_for_silence_right_after_the_service_starts(orch):
    run = await new_flow_run(orch.stub)
    await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
    timeout = orch.orchestration_settings.heartbeat_timeout_seconds
    orch.clock.advance(timeout + 5)  # its last heartbeat is old: the server was down all that time
    sweeper = orch.runtime.sweeper
    sweeper.start()  # ... and starts again now; the run gets one heartbeat timeout to be heard
    try:
        assert await sweeper.sweep_once() == 0
        assert (await get(orch, run.id)).state.type == common_pb2.RUNNING
        orch.clock.advance(timeout + 1)
        assert await sweeper.sweep_once() == 1
        assert (await get(orch, run.id)).state.type == common_pb2.CRASHED
    finally:
        await sweeper.stop()


async def get_task(orch, run_id):
    return (await orch.stub.GetTaskRun(pb.GetTaskRunRequest(id=run_id))).task_run


async def test_task_runs_left_by_a_crashed_or_cancelled_flow_run_are_ended(orch):
    crashed, cancelled = await new_flow_run(orch.stub), await new_flow_run(orch.stub)
    retried = await new_flow_run(orch.stub, policy=pb.RunPolicy(retries=1, retry_delay_seconds=[600]))
    tasks = {}
    for run in (crashed, cancelled, retried):
        await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
        running, done = await new_task_run(orch.stub, run.id), await new_task_run(orch.stub, run.id)
        for t in (running, done):
            await set_task_state(orch.stub, t.id, common_pb2.RUNNING)
        await set_task_state(orch.stub, done.id, common_pb2.COMPLETED)
        tasks[run.id] = (running, done)
    await set_flow_state(orch.stub, crashed.id, common_pb2.CRASHED)
    await set_flow_state(orch.stub, cancelled.id, common_pb2.CANCELLED, force=True)
    await set_flow_state(orch.stub, retried.id, common_pb2.CRASHED)  # -> AwaitingRetry: its retry takes them over
    assert await orch.runtime.sweeper.sweep_once() == 0  # the run's own process may still be ending them
    orch.clock.advance(orch.orchestration_settings.heartbeat_timeout_seconds + 1)
    assert await orch.runtime.sweeper.sweep_once() == 2
    ended = await get_task(orch, tasks[crashed.id][0].id)
    assert ended.state.type == common_pb2.CRASHED
    assert ended.state.message == "its flow run ended Crashed while it was Running"
    assert (await get_task(orch, tasks[cancelled.id][0].id)).state.type == common_pb2.CANCELLED
    assert (await get_task(orch, tasks[retried.id][0].id)).state.type == common_pb2.RUNNING
    for run_id, (_, done) in tasks.items():
        assert (await get_task(orch, done.id)).state.type == common_pb2.COMPLETED, run_id
    assert await orch.runtime.sweeper.sweep_once() == 0
