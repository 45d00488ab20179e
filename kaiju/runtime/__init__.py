"""The runtime: the service base class, the class registry, start plans and the entrypoint.

    from kaiju.runtime import App, PositiveInt, Service, entrypoint

`Service` and `App` (`kaiju.runtime.service`); `Entrypoint`, `entrypoint`, `run`
(`kaiju.runtime.entrypoint`); `Registry` (which class a config's `cls:` names);
`build_plan` (a config's services in start layers, what `kaiju-run check` prints); the
constrained setting types (`Positive`, `PositiveInt`, ...). Names are imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _front_door

if TYPE_CHECKING:  # pragma: no cover -- the exports: `_front_door` imports each on first use
    from kaiju.runtime.entrypoint import Entrypoint, StartupError, entrypoint, run
    from kaiju.runtime.plan import Plan, build_plan
    from kaiju.runtime.registry import ClassNotFound, Registry
    from kaiju.runtime.service import App, Dependency, Namespace, Service, SettingError
    from kaiju.runtime.types import NonNegative, NonNegativeInt, Port, Positive, PositiveInt

__getattr__ = _front_door(__name__, __file__, globals())
