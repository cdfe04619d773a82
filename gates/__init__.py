"""gates: OS documents (ordem de serviço) in the vault as executable, validated specs.

The box an executor ticks is only a claim; gates decide. This package never imports the
project it governs.
"""

from gates.catalog import DEFAULT_TIMEZONE, GATE_NAMES
from gates.exceptions import (
    ClosureImportError,
    GatesError,
    InputNotFound,
    OutputExistsError,
    OutputWriteError,
    RepositoryRootNotFound,
)
from gates.orders.closure_import import ImportedSpec, import_closure
from gates.orders.documents import MAX_FILE_BYTES, parse_work_order, parse_work_order_bytes
from gates.orders.model import (
    Body,
    Criterion,
    Deliverable,
    DocumentError,
    ParsedDocument,
    Section,
    SectionKind,
    WorkOrder,
    WorkOrderStatus,
)
from gates.orders.vault import Vault, discover, find_root, load_documents, load_vault

__all__ = [
    "DEFAULT_TIMEZONE",
    "GATE_NAMES",
    "MAX_FILE_BYTES",
    "Body",
    "ClosureImportError",
    "Criterion",
    "Deliverable",
    "DocumentError",
    "GatesError",
    "ImportedSpec",
    "InputNotFound",
    "OutputExistsError",
    "OutputWriteError",
    "ParsedDocument",
    "RepositoryRootNotFound",
    "Section",
    "SectionKind",
    "Vault",
    "WorkOrder",
    "WorkOrderStatus",
    "discover",
    "find_root",
    "import_closure",
    "load_documents",
    "load_vault",
    "parse_work_order",
    "parse_work_order_bytes",
]
