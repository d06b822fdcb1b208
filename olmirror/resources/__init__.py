"""Resources: the generic primitives every domain builds on (a file, a directory, keys of a
JSON file, a command), and the base every managed thing shares."""

from olmirror.resources.base import Change, Resource, ResourceError
from olmirror.resources.command import Command
from olmirror.resources.directory import Directory
from olmirror.resources.file import File
from olmirror.resources.json_keys import JsonKeys

__all__ = ["Change", "Command", "Directory", "File", "JsonKeys", "Resource", "ResourceError"]
