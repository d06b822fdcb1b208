"""The spec: its models, its cross-field checks and its loader."""

from olmirror.spec.loader import LoadedSpec, load_spec
from olmirror.spec.models import LOCAL, Host, Spec, TargetSetting, Worker, host_config

__all__ = [
    "LOCAL",
    "Host",
    "LoadedSpec",
    "Spec",
    "TargetSetting",
    "Worker",
    "host_config",
    "load_spec",
]
