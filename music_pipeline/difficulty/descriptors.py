"""The one descriptor type of the audio and the note descriptors (light: no librosa)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Descriptor:
    name: str
    family: str
    unit: str
    formula: str
