"""attnapps: one attention core, four task modules.

The core (this package) never imports a task; tasks import the core and register
themselves with :func:`attnapps.task.register_task`.
"""

from attnapps.errors import AttnappsError

__version__ = "0.1.0"
__all__ = ["AttnappsError", "__version__"]
