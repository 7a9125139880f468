"""Type stubs of the native module; the documented surface is ``pitwall``."""
from os import PathLike
from typing import Any, Optional, Union

import pyarrow as pa

DEFAULT_MODEL_TOML: str
__version__: str

class Model:
    """A pitwall model: the embedded default, or one read from TOML."""

    @staticmethod
    def default() -> Model:
        """The model shipped with pitwall (what the binary uses without --model)."""
    @staticmethod
    def load(path: Union[str, PathLike[str]]) -> Model:
        """A model from a TOML file; ``ValueError`` with the binary's message when it is not one."""
    @staticmethod
    def from_toml(text: str, source: str = "model") -> Model:
        """A model from TOML text; ``source`` names it in errors."""
    @property
    def id(self) -> str:
        """``name@version``, as run.json and every result row name it."""
    def to_toml(self) -> str: ...
    def __eq__(self, other: object) -> bool: ...

def score(rentals: Any, telemetry: Any, as_of_ms: int, model: Model,
          grace_ms: Optional[int] = None, members: bool = True) -> dict[str, Any]: ...
def member_scores(results: Any, as_of_ms: int, model: Model) -> pa.Table: ...
def check_rentals(rentals: Any) -> tuple[pa.Table, pa.Table]: ...
def check_telemetry(telemetry: Any) -> tuple[pa.Table, pa.Table]: ...
def parse_time(text: str) -> int: ...
def _panic() -> None: ...
