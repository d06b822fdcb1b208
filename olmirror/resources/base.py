"""What every resource shares: a desired state that can read the current one and converge to it.

A resource is a frozen dataclass of plain values, so a plan can be saved as JSON
and applied later exactly as it was shown.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import TypeAdapter, ValidationError

from olmirror.connection.base import Connection, FactRequest, Facts
from olmirror.errors import OlmirrorError

Action = Literal["create", "update", "run", "none"]


class ResourceError(OlmirrorError):
    """A resource cannot be planned or applied as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Change:
    """One resource's difference between what is and what should be."""

    resource: Resource
    action: Action
    summary: str
    diff: tuple[str, ...] = ()

    @property
    def changes(self) -> bool:
        return self.action != "none"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.resource.id,
            "action": self.action,
            "summary": self.summary,
            "diff": list(self.diff),
            "resource": self.resource.to_json(),
        }


class Resource(ABC):
    """Base of every kind of managed thing; subclasses are frozen dataclasses."""

    kind: ClassVar[str]
    # Applied only once every host of a complete plan has converged: a removal that a
    # host not yet converged may still need (a worker still pinning an old release).
    after_all_hosts: ClassVar[bool] = False
    # Applied only once the mirror is served where workers read it: after its bucket's
    # upload, for a worker on the mirror host itself.
    needs_served_mirror: ClassVar[bool] = False
    _kinds: ClassVar[dict[str, type[Resource]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Resource._kinds[cls.kind] = cls

    @property
    @abstractmethod
    def id(self) -> str:
        """A short, unique name such as 'file /opt/ol/w/registry/requirements.in'."""

    @abstractmethod
    def request(self) -> FactRequest:
        """The facts this resource needs to plan."""

    @abstractmethod
    def observe(self, facts: Facts) -> str:
        """A fingerprint of the current state, to tell whether a host changed since a plan."""

    @abstractmethod
    def plan(self, facts: Facts, pending: frozenset[str]) -> Change:
        """Compare current and desired state. `pending`: paths earlier changes will create."""

    @abstractmethod
    def apply(self, conn: Connection) -> None:
        """Perform the change that `plan` described."""

    def provides(self) -> frozenset[str]:
        """Paths that exist once this resource has been applied."""
        return frozenset()

    def unchanged(self, summary: str) -> Change:
        return Change(self, "none", summary)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}  # type: ignore[call-overload]

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Resource:
        """A resource saved by `to_json`, validated as its kind's dataclass (lists back to
        tuples); pydantic's ValidationError says which field is wrong."""
        fields = dict(raw)
        kind = Resource._kinds.get(fields.pop("kind", None))  # type: ignore[arg-type]
        if kind is None:
            raise ValidationError.from_exception_data(
                "Resource",
                [
                    {
                        "type": "literal_error",
                        "loc": ("kind",),
                        "input": raw.get("kind"),
                        "ctx": {"expected": ", ".join(sorted(Resource._kinds))},
                    }
                ],
            )
        return TypeAdapter(kind).validate_python(fields)
