"""The study design: its specification, validation, TOML files and presets.

- :mod:`dtitool.design.spec`: :class:`StudyDesign` and its parts, frozen
  dataclasses validated on construction.
- :mod:`dtitool.design.layout`: the names of a trial (arms, control arm,
  visits) as :class:`TrialNames`, and :class:`PerArm` values by arm name.
- :mod:`dtitool.design.ratings`: rating scales ready to use as outcomes.
- :mod:`dtitool.design.io`: designs as TOML (read with tomllib, written with
  tomli-w), and the presets shipped in ``dtitool/design/presets/``.

Examples
--------
>>> from dtitool.design import load_preset
>>> design = load_preset("ketamine-rct")
>>> design.n, design.arm_sizes()
(98, (65, 33))
>>> design.roi_names[0]
'L_BA10'
"""

from dtitool.design.io import (
    available_presets,
    design_from_dict,
    design_to_dict,
    design_to_toml,
    load_preset,
    read_design,
    write_design,
)
from dtitool.design.layout import TrialNames, VisitSpec
from dtitool.design.spec import (
    CorrelationSpec,
    CovariateSpec,
    MissingSpec,
    OutcomeSpec,
    PerArm,
    RangeSpec,
    ROISpec,
    StudyDesign,
)

__all__ = [
    "CorrelationSpec",
    "CovariateSpec",
    "MissingSpec",
    "OutcomeSpec",
    "PerArm",
    "ROISpec",
    "RangeSpec",
    "StudyDesign",
    "TrialNames",
    "VisitSpec",
    "available_presets",
    "design_from_dict",
    "design_to_dict",
    "design_to_toml",
    "load_preset",
    "read_design",
    "write_design",
]
