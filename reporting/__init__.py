"""Metrics, flagged cases, improvement tickets, weekly digests and their delivery."""
