"""Logs and metrics shared by every layer. Imports nothing of ours: tickets, memory and the agent all record
into it, so it sits below them (see the layer contract in pyproject.toml)."""
