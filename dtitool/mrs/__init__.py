"""MRS quantification results (Gannet, Osprey, LCModel) as dtitool's long tables.

A trial's spectroscopy enters dtitool here: the tables the quantification tools
write are read into one tidy frame each (:func:`read_gannet`,
:func:`read_osprey`, :func:`read_lcmodel`), then assembled into one long table
per metabolite (:func:`mrs_tables`: ``participant_id, session, roi, <measure>,
unit`` and the fit quality, ``crlb`` or ``fit_error`` in %), the layout of
``roi_md.tsv``. ``dtitool mrs-import`` does both and writes
``roi_<measure>.tsv`` files with their sidecars. The writers
(:func:`write_gannet`, :func:`write_osprey`, :func:`write_lcmodel_table`)
write the same formats, for simulate-write-read round trips.
:func:`apply_quality` turns the spectra fitted too poorly (CRLB or fit error
above a limit) into missing data before an analysis, saying what it removed.

``docs/mrs.md`` describes the formats, the metabolite names
(:mod:`dtitool.mrs.names`) and the choices made on the way.
"""

from dtitool.mrs.assemble import (
    AUTO_SCALES,
    MRSTables,
    mrs_tables,
    read_mapping,
    write_mrs_tables,
)
from dtitool.mrs.names import MEASURES, SCALES, measure_name
from dtitool.mrs.quality import (
    DEFAULT_LIMITS,
    QualityReport,
    QualityRule,
    apply_quality,
)
from dtitool.mrs.readers import (
    FORMATS,
    TIDY_COLUMNS,
    read_gannet,
    read_lcmodel,
    read_mrs,
    read_osprey,
    sniff_format,
)
from dtitool.mrs.writers import write_gannet, write_lcmodel_table, write_osprey

__all__ = [
    "AUTO_SCALES",
    "DEFAULT_LIMITS",
    "FORMATS",
    "MEASURES",
    "SCALES",
    "TIDY_COLUMNS",
    "MRSTables",
    "QualityReport",
    "QualityRule",
    "apply_quality",
    "measure_name",
    "mrs_tables",
    "read_gannet",
    "read_lcmodel",
    "read_mapping",
    "read_mrs",
    "read_osprey",
    "sniff_format",
    "write_gannet",
    "write_lcmodel_table",
    "write_mrs_tables",
    "write_osprey",
]
