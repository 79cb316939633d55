"""The build: plan, preflight, engine, schedule, progress and repair."""
