"""Templates with planted faults, for testing that the tuner survives them. Not built-ins:
load them by path (``--template``), as a user's template would be."""
