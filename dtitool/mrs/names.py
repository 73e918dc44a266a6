"""Names in MRS results: metabolites, quantification scales, BIDS entities.

Each quantification tool names its metabolites its own way (Gannet ``GABA``,
Osprey ``GABAplus`` and ``tNAA``, LCModel ``Glu+Gln`` and ``NAA+NAAG``); dtitool
gives each one measure name, the name of its table (``roi_<measure>.tsv``) and
of the value column there. The mapping (:data:`MEASURES`):

==========  =====================================================================
measure     what the tools call it
==========  =====================================================================
``gaba``    GABA, GABA+ (Gannet's ``GABA`` is GABA+ unless the macromolecules
            were suppressed; Osprey's ``GABAplus``)
``glx``     Glx, Glu+Gln
``glu``     Glu
``gln``     Gln
``naa``     NAA alone (LCModel, Osprey)
``tnaa``    total NAA, NAA+NAAG (LCModel ``NAA+NAAG``, Osprey ``tNAA``); Gannet's
            ``NAA``, a single fitted peak at 2.0 ppm that holds NAAG's signal too
``naag``    NAAG
``tcr``     total creatine, Cr+PCr (Osprey ``tCr``); Gannet's ``Cr`` (the 3.0
            ppm peak)
``cr``      Cr alone; ``pcr``: PCr
``tcho``    total choline, GPC+PCh (Osprey ``tCho``); Gannet's ``Cho``
``gpc``     GPC; ``pch``: PCh
``gsh``     GSH (LCModel basis sets also say ``Glth``)
``mi``      myo-inositol, mI or Ins
``lac``     lactate
==========  =====================================================================

Any other name is kept under a sanitised one (lower case, ``+`` and other
punctuation as ``_``: ``MM14+Lip13a`` is ``mm14_lip13a``), with a warning.

NAA and NAA+NAAG are kept apart (``naa``, ``tnaa``) because LCModel and Osprey
report both and they differ by 10-20 %; a study should analyse one of them.
Osprey's ``GABA`` beside ``GABAplus`` (its fit with the co-edited macromolecules
modelled apart) is ``gaba_nomm``: ``gaba`` is GABA+ there, as in Gannet.
"""

from __future__ import annotations

import os
import re

__all__ = [
    "EDITED",
    "MEASURES",
    "QUALITY",
    "SCALES",
    "bids_entity",
    "measure_name",
]

MEASURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "gaba": ("GABA (GABA+ where the tool reports GABA with its co-edited "
             "macromolecules: Gannet's GABA, Osprey's GABAplus)",
             ("GABA", "GABA+", "GABAplus", "GABA_plus")),
    "glx": ("Glx: glutamate plus glutamine", ("Glx", "Glu+Gln", "Gln+Glu",
                                             "Glu_Gln", "Gln_Glu")),
    "glu": ("glutamate", ("Glu",)),
    "gln": ("glutamine", ("Gln",)),
    "naa": ("N-acetylaspartate alone (without NAAG)", ("NAA",)),
    "tnaa": ("total NAA: N-acetylaspartate plus N-acetylaspartylglutamate",
             ("tNAA", "NAA+NAAG", "NAAG+NAA", "NAA_NAAG", "NAAG_NAA")),
    "naag": ("N-acetylaspartylglutamate", ("NAAG",)),
    "tcr": ("total creatine: creatine plus phosphocreatine",
            ("tCr", "Cr+PCr", "PCr+Cr", "Cr_PCr", "PCr_Cr")),
    "cr": ("creatine alone", ("Cr",)),
    "pcr": ("phosphocreatine", ("PCr",)),
    "tcho": ("total choline: glycerophosphocholine plus phosphocholine",
             ("tCho", "GPC+PCh", "PCh+GPC", "GPC_PCh", "PCh_GPC")),
    "gpc": ("glycerophosphocholine", ("GPC",)),
    "pch": ("phosphocholine", ("PCh",)),
    "gsh": ("glutathione", ("GSH", "Glth")),
    "mi": ("myo-inositol", ("mI", "Ins", "mIns")),
    "lac": ("lactate", ("Lac",)),
    "gaba_nomm": ("GABA without its co-edited macromolecules (Osprey's GABA "
                  "beside its GABAplus)", ()),
}
"""dtitool measure -> (description, the names the tools give it)."""

_BY_NAME = {alias: m for m, (_, aliases) in MEASURES.items() for alias in aliases}
_BY_LOWER = {alias.lower(): m for alias, m in _BY_NAME.items()}

# Names that mean something else in one tool (see the module docstring).
_FORMAT_NAMES = {
    "gannet": {"NAA": "tnaa", "Cr": "tcr", "Cho": "tcho"},
}

EDITED: dict[str, frozenset[str]] = {
    "diff1": frozenset({"gaba", "gaba_nomm", "glx", "glu", "gln"}),
    "diff2": frozenset({"gsh"}),
}
"""Measures an Osprey difference spectrum is edited for (MEGA and HERMES: the
first is GABA-edited, the second GSH-edited). When a run gives a metabolite
from several sub-spectra, it is taken from the difference spectrum edited for
it, else from the unedited ones (``A``, ``sum``, ...)."""

SCALES: dict[str, str] = {
    "water": "water-scaled, no tissue correction",
    "water-csf": "water-scaled, corrected for the voxel's CSF fraction",
    "water-tissue": "water-scaled, corrected for the voxel's tissue fractions "
                    "(Gasparovic et al. 2006)",
    "water-alpha": "water-scaled, tissue- and alpha-corrected (GM/WM "
                   "concentration ratio; Harris et al. 2015)",
    "water-alpha-norm": "water-scaled, alpha-corrected and normalised to the "
                        "group's mean tissue fractions",
    "tcr": "ratio to total creatine (Cr+PCr)",
    "ratio": "ratio to another reference metabolite (the unit names it)",
    "raw": "unscaled: the fitted amplitude or LCModel concentration without "
           "water referencing (arbitrary units)",
}
"""Quantification scales a value can be on; ``--unit`` picks one."""

QUALITY: dict[str, str] = {
    "crlb": "Cramer-Rao lower bound of the fit: the estimate's standard "
            "deviation as a percentage of it (LCModel %SD; Osprey's CRLB table)",
    "fit_error": "Gannet fit error: the fit residual's standard deviation "
                 "relative to the peak amplitude, combined with the reference "
                 "peak's (water for water-scaled values, Cr for ratios), in %",
}
"""Kinds of fit quality, by the column they are written to."""

RESERVED = frozenset({"participant_id", "session", "roi", "unit", *QUALITY})
"""Column names of the long tables that a measure may not take."""


def measure_name(name: str, *, fmt: str | None = None) -> tuple[str, bool]:
    """Return the dtitool measure of a metabolite as a tool names it.

    Parameters
    ----------
    name : str
        The tool's name (``"Glu+Gln"``, ``"GABAplus"``, ``"MM14"``).
    fmt : {"gannet", "osprey", "lcmodel"}, optional
        The tool, for names that mean something else in it (Gannet's ``NAA``
        is total NAA).

    Returns
    -------
    (measure, known) : tuple of str and bool
        ``known`` is False for a name outside :data:`MEASURES`, kept under its
        sanitised form.

    Examples
    --------
    >>> measure_name("Glu+Gln")
    ('glx', True)
    >>> measure_name("NAA", fmt="gannet")
    ('tnaa', True)
    >>> measure_name("MM14+Lip13a+Lip13b+MM12")
    ('mm14_lip13a_lip13b_mm12', False)
    >>> measure_name("-CrCH2")
    ('neg_crch2', False)
    """
    special = _FORMAT_NAMES.get(fmt or "", {})
    if name in special:
        return special[name], True
    if name in _BY_NAME:
        return _BY_NAME[name], True
    if name.lower() in _BY_LOWER:
        return _BY_LOWER[name.lower()], True
    return _sanitise(name), False


def _sanitise(name: str) -> str:
    text = name.strip()
    neg = text.startswith("-")  # LCModel: a basis spectrum fitted inverted
    text = re.sub(r"[^A-Za-z0-9]+", "_", text.lstrip("-")).strip("_").lower()
    if not text:
        raise ValueError(f"metabolite name {name!r} has no letters or digits; "
                         "expected a name such as GABA or Glu+Gln")
    if neg:
        text = f"neg_{text}"
    if text[0].isdigit():
        text = f"m_{text}"  # a column name starts with a letter
    if text in RESERVED or text in MEASURES:
        text = f"{text}_metabolite"
    return text


_ENTITY = {key: re.compile(rf"(?:^|[_/\\]){key}-([A-Za-z0-9]+)")
           for key in ("sub", "ses", "voxel", "acq")}


def bids_entity(path: str | os.PathLike, key: str) -> str | None:
    """Return the label of a BIDS entity in a path (the last one wins).

    Examples
    --------
    >>> bids_entity("sub-01/ses-2/mrs/sub-01_ses-2_voxel-acc_svs.table", "voxel")
    'acc'
    >>> bids_entity("S01_GABA_68.7", "sub") is None
    True
    """
    text = os.fspath(path).replace("\\", "/")
    found = _ENTITY[key].findall(text)
    return found[-1] if found else None
