"""Attempts of tasks with `isolation="process"` run in child processes the worker keeps warm
(pool.py, the worker's side; child.py, the child's), so they can be killed (max_duration,
cancel), held to a memory limit, and crash without taking the worker with them.

The child imports the worker's app and opens its own storage: it runs the attempt with the same
engine code (RunScope, the contexts, waits), writing its steps fenced by the attempt's lease
token. The worker keeps the lease: it renews it, and the child asks it (over the pipe they
share) once the lease's time by the worker's clock has passed, before any durable call.
"""
