"""The runtime: the service base class, the class registry, start plans and the entrypoint.

    from kaiju.runtime import App, PositiveInt, Service, entrypoint

`Service` and `App` (`kaiju.runtime.service`); `Entrypoint`, `entrypoint`, `run`
(`kaiju.runtime.entrypoint`); `Registry` (which class a config's `cls:` names);
`build_plan` (a config's services in start layers, what `kaiju-run check` prints); the
constrained setting types (`Positive`, `PositiveInt`, ...). Names are imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _lazy_getattr

_EXPORTS = {
    "App": "kaiju.runtime.service",
    "Namespace": "kaiju.runtime.service",
    "Service": "kaiju.runtime.service",
    "Dependency": "kaiju.runtime.service",
    "Entrypoint": "kaiju.runtime.entrypoint",
    "entrypoint": "kaiju.runtime.entrypoint",
    "run": "kaiju.runtime.entrypoint",
    "StartupError": "kaiju.runtime.entrypoint",
    "Registry": "kaiju.runtime.registry",
    "ClassNotFound": "kaiju.runtime.registry",
    "Plan": "kaiju.runtime.plan",
    "build_plan": "kaiju.runtime.plan",
    "Positive": "kaiju.runtime.types",
    "PositiveInt": "kaiju.runtime.types",
    "NonNegative": "kaiju.runtime.types",
    "NonNegativeInt": "kaiju.runtime.types",
    "Port": "kaiju.runtime.types",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.runtime.entrypoint import Entrypoint, StartupError, entrypoint, run
    from kaiju.runtime.plan import Plan, build_plan
    from kaiju.runtime.registry import ClassNotFound, Registry
    from kaiju.runtime.service import App, Dependency, Namespace, Service
    from kaiju.runtime.types import NonNegative, NonNegativeInt, Port, Positive, PositiveInt


__getattr__ = _lazy_getattr("kaiju.runtime", _EXPORTS, globals())
