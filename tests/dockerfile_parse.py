"""A small reader of the Dockerfile: stages and their instructions, with continuations joined and comments dropped."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Instruction", "Stage", "read_dockerfile"]


@dataclass(frozen=True)
class Instruction:
    """One instruction: its keyword (upper case) and its argument text."""

    keyword: str
    arguments: str


@dataclass
class Stage:
    """One build stage: its base image, its name (``AS``) and its instructions after ``FROM``."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def arguments(self, keyword: str) -> list[str]:
        """The arguments of every instruction ``keyword`` of this stage."""
        return [i.arguments for i in self.instructions if i.keyword == keyword]


def read_dockerfile(path: Path) -> list[Stage]:
    """The stages of the Dockerfile at ``path``, in order."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    stages: list[Stage] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, arguments = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            base, *rest = arguments.split()
            stages.append(Stage(base, rest[1] if len(rest) == 2 and rest[0].upper() == "AS" else None))
        else:
            stages[-1].instructions.append(Instruction(keyword, arguments.strip()))
    return stages
