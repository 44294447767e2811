"""Scheduling: the scheduler loop, cron expressions and cron entries."""
