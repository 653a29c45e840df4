"""Scheduled work on exactly one process: the runner (runner.py) holds the Redis lease
(receiver.store.lease) and runs the jobs (jobs.py) APScheduler calls."""

from receiver.scheduler.runner import Job, SchedulerRunner

__all__ = ["Job", "SchedulerRunner"]
