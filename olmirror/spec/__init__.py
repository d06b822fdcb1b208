"""The spec: its models, its cross-field checks and its loader."""

from olmirror.spec.loader import LoadedSpec, load_spec
from olmirror.spec.models import LOCAL, Host, Spec, Target, Worker, host_config

__all__ = ["LOCAL", "Host", "LoadedSpec", "Spec", "Target", "Worker", "host_config", "load_spec"]
