"""The study-file schema: typed dataclasses, the strict converter of YAML data to them, and
references to user code (``package.module:function``). A leaf: it imports nothing from
the package but :mod:`pipeline.exceptions`, nor torch or optuna.
"""

from __future__ import annotations

from pipeline.config._control import (
    PlateauConfig,
    StopConfig,
    WarmStartConfig,
    duration_text,
    seconds_of,
)
from pipeline.config._objectives import MEASURED_DIRECTIONS, LimitConfig, ObjectiveConfig
from pipeline.config._packing import CPU_PACKING, PackingConfig
from pipeline.config._plugins import (
    LightningConfig,
    TransformersConfig,
    check_arity,
    import_function,
    required_arguments,
    user_code,
)
from pipeline.config._schema import (
    DEFAULT_STORAGE,
    KNOWN_DIRECTIONS,
    ParamSpec,
    PrunerConfig,
    SamplerConfig,
    StudyConfig,
    TaskConfig,
    convert,
    study_name_problem,
)
from pipeline.config._search import PbtOptions, SchedulerConfig
from pipeline.config._tracking import TrackingConfig, WandbConfig

__all__ = [
    "CPU_PACKING",
    "DEFAULT_STORAGE",
    "KNOWN_DIRECTIONS",
    "MEASURED_DIRECTIONS",
    "LightningConfig",
    "LimitConfig",
    "ObjectiveConfig",
    "PackingConfig",
    "ParamSpec",
    "PbtOptions",
    "PlateauConfig",
    "PrunerConfig",
    "SamplerConfig",
    "SchedulerConfig",
    "StopConfig",
    "StudyConfig",
    "TaskConfig",
    "TrackingConfig",
    "TransformersConfig",
    "WandbConfig",
    "WarmStartConfig",
    "check_arity",
    "convert",
    "duration_text",
    "import_function",
    "required_arguments",
    "seconds_of",
    "study_name_problem",
    "user_code",
]
