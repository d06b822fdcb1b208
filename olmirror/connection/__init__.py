"""Connections to hosts: one interface, a local and an SSH implementation."""

from olmirror.connection.base import CommandResult, Connection, FactRequest, Facts, PathFact
from olmirror.connection.local import LocalConnection

__all__ = ["CommandResult", "Connection", "FactRequest", "Facts", "LocalConnection", "PathFact"]
