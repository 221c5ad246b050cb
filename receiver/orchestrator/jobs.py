"""Starting a job again through the documented API (``StartJobs``; reference/orchestrator-api.md §5.1)."""

from __future__ import annotations

from dataclasses import dataclass

from receiver.orchestrator.client import OrchestratorClient
from receiver.orchestrator.errors import OrchestratorError

__all__ = ["START_JOBS", "StartedJob", "start_job"]

START_JOBS = "odata/Jobs/UiPath.Server.Configuration.OData.StartJobs"


@dataclass(frozen=True, slots=True)
class StartedJob:
    """The job Orchestrator created: its Id and Key (None when the answer did not say)."""

    id: int | None
    key: str | None


async def start_job(
    client: OrchestratorClient, *, release_key: str, robot_id: int | None, folder_id: int | None
) -> StartedJob:
    """Start one job of the release: on that robot (``Specific``), or on any (``ModernJobsCount``) without one.

    Not retried on a 5xx (a POST): a job started twice is worse than a retry by hand.

    Raises:
        OrchestratorError: Orchestrator refused it, or answered without a job.
    """
    if robot_id is not None:
        info: dict[str, object] = {"ReleaseKey": release_key, "Strategy": "Specific", "RobotIds": [robot_id]}
    else:
        info = {"ReleaseKey": release_key, "Strategy": "ModernJobsCount", "JobsCount": 1, "RobotIds": []}
    info["Source"] = "Manual"
    answer = await client.request("POST", START_JOBS, json={"startInfo": info}, folder_id=folder_id, idempotent=False)
    jobs = answer.get("value") if isinstance(answer, dict) else None
    if not isinstance(jobs, list) or not jobs or not isinstance(jobs[0], dict):
        raise OrchestratorError(client.source, f"POST {START_JOBS}: the answer names no job", status=201)
    job = jobs[0]
    job_id, key = job.get("Id"), job.get("Key")
    return StartedJob(job_id if isinstance(job_id, int) else None, key if isinstance(key, str) else None)
