"""Optional integrations with RL libraries; each submodule needs its own extra (e.g. ``[sb3]``)."""
