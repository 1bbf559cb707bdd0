"""Durable job engine: Job rows in the database, handlers registered by name, one asyncio worker.

It imports no domain app: domain code registers handlers (`studio.jobs.registry.register`) in an
app module named `jobs` (discovered at worker start) or in a module listed in
`settings.STUDIO_JOB_MODULES`, and enqueues through `studio.jobs.services.job_enqueue`.
"""
