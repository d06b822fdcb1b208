"""Resources: one module per kind of thing olmirror manages on a host."""

from olmirror.resources.base import Change, Resource, ResourceError
from olmirror.resources.command import Command
from olmirror.resources.directory import Directory
from olmirror.resources.file import File
from olmirror.resources.json_keys import JsonKeys

__all__ = ["Change", "Command", "Directory", "File", "JsonKeys", "Resource", "ResourceError"]
