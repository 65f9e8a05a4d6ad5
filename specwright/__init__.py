"""Specwright: run AI coding agents from a spec, verify and review every attempt, and know
exactly what it cost."""

__version__ = "0.1.0"
