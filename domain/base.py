"""The base of every message model: one kind of model, money as Decimal."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


# Computed amounts (outputs, activity payloads). What a caller sends uses domain/types.py.
Money = Annotated[Decimal, Field(max_digits=14, decimal_places=2)]
