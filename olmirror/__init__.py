"""olmirror: declarative provisioning of private pip mirrors for OpenLambda workers."""

__version__ = "0.1.0"
