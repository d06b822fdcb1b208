"""From requirements to the lock: the requirement sets, each resolved for each target with
uv, each target's file chosen from the upstream's index (or a wheel built from an sdist),
the lock file written beside the spec, and what a plan keeps from earlier runs."""
