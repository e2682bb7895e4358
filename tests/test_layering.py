"""The layering of docs ARCHITECTURE.md ("Never: ..."), enforced by parsing every module's imports.

Every `import` and `from ... import` counts, including the lazy ones inside functions: a lazy upward
import is still a cycle in the design. A new upward import fails here with the module and line.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "scorepolicy"


@dataclass(frozen=True)
class Rule:
    """Modules under `importer` may not import anything under one of `forbidden`."""

    importer: str
    """Dotted prefix of the importing modules ("" = every module)."""
    forbidden: tuple[str, ...]
    """Dotted prefixes they may not import."""


API = ("scorepolicy.api", "scorepolicy.commands")  # the API package and the CLI's command dataclasses
RULES = (
    # ARCHITECTURE.md, "Never:" -- one rule per clause.
    Rule("scorepolicy.diffusion", ("scorepolicy.envs", "scorepolicy.training", "scorepolicy.evaluation")),
    Rule("scorepolicy.models", ("scorepolicy.envs", "scorepolicy.training", "scorepolicy.evaluation")),
    Rule("scorepolicy.data", ("scorepolicy.envs", "scorepolicy.evaluation", *API)),
    Rule("scorepolicy.envs", ("scorepolicy.evaluation",)),
    Rule("", ("scorepolicy.cli",)),
    # ARCHITECTURE.md, the table: serving/ builds on policies/ and guard/ only.
    Rule(
        "scorepolicy.serving",
        (
            "scorepolicy.core",
            "scorepolicy.diffusion",
            "scorepolicy.models",
            "scorepolicy.data",
            "scorepolicy.envs",
            "scorepolicy.evaluation",
            "scorepolicy.training",
            "scorepolicy.rl",
            "scorepolicy.export",
            *API,
        ),
    ),
    # ARCHITECTURE.md, the table: guard/ reads policies/ and evaluation/ (tasks come from its caller).
    Rule("scorepolicy.guard", ("scorepolicy.envs", "scorepolicy.training", "scorepolicy.rl", *API)),
    # ARCHITECTURE.md, the table: export/ builds on policies/ (and the noise streams of diffusion/) only.
    Rule(
        "scorepolicy.export",
        (
            "scorepolicy.data",
            "scorepolicy.envs",
            "scorepolicy.evaluation",
            "scorepolicy.training",
            "scorepolicy.rl",
            "scorepolicy.serving",
            *API,
        ),
    ),
    # ARCHITECTURE.md, the table: the core values sit below data/, envs/ and evaluation/.
    Rule(
        "scorepolicy.core",
        ("scorepolicy.data", "scorepolicy.envs", "scorepolicy.evaluation", "scorepolicy.policies", *API),
    ),
)

ENTRY_POINTS = ("scorepolicy.cli", "scorepolicy.__main__")
"""The command itself and `python -m scorepolicy` (which only calls cli.main, as the console script does)."""
KNOWN_EXCEPTIONS: frozenset[str] = frozenset()
"""Modules allowed to break a rule for now (none: the CLI commands and offline_eval moved to commands/ and api/)."""


def module_name(path: Path) -> str:
    """The dotted module name of a file under src/scorepolicy."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, source: str | None = None) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file (or `source` as if it sat at `path`)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from scorepolicy import api` imports scorepolicy.api: count each name as a submodule too
            found.append((base, node.lineno))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def under(module: str, prefix: str) -> bool:
    """True when `module` is `prefix` or inside it (`scorepolicy.api` also covers `scorepolicy.api_runs`)."""
    if not prefix:
        return True
    if prefix in API:
        return module == prefix or module.startswith((prefix + ".", prefix + "_"))
    return module == prefix or module.startswith(prefix + ".")


def violations(path: Path, source: str | None = None) -> list[str]:
    """Every import in `path` that a rule forbids, as 'module:line imports target (rule)'."""
    name = module_name(path)
    out: dict[int, str] = {}
    for target, line in imports(path, source):
        for rule in RULES:
            if not under(name, rule.importer) or name in ENTRY_POINTS:
                continue
            hit = next((f for f in rule.forbidden if under(target, f)), None)
            if hit is not None and not under(name, hit) and line not in out:
                out[line] = f"{name}:{line} imports {target} ({rule.importer or 'any module'} -/-> {hit})"
    return list(out.values())


def test_no_module_imports_upward() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 30, f"found only {len(modules)} modules under {PACKAGE}"
    found = [v for path in modules if module_name(path) not in KNOWN_EXCEPTIONS for v in violations(path)]
    assert not found, "imports against ARCHITECTURE.md's layering:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("module", "source", "bad"),
    [
        ("data/x.py", "from scorepolicy.envs.registry import get_task\n", True),
        ("data/x.py", "def f():\n    from scorepolicy.api import load_policy\n", True),
        ("data/x.py", "from scorepolicy import api\n", True),
        ("data/x.py", "from scorepolicy.commands.data import Info\n", True),
        ("data/x.py", "from ..evaluation import evaluate\n", True),
        ("envs/x.py", "import scorepolicy.evaluation.diversity\n", True),
        ("models/x.py", "from scorepolicy.training.loop import train\n", True),
        ("policies/x.py", "from scorepolicy.cli import main\n", True),
        ("core/x.py", "from scorepolicy.data.windows import split_episodes\n", True),
        ("serving/x.py", "from scorepolicy.api import load_policy\n", True),
        ("serving/x.py", "from scorepolicy.evaluation.rollout import rollouts\n", True),
        ("serving/x.py", "from scorepolicy.policies import ChunkPolicy\n", False),
        ("data/x.py", "from scorepolicy.core.episodes import Episodes\nfrom . import windows\n", False),
        ("envs/x.py", "from scorepolicy.core.behaviour import behaviour_entropy\n", False),
        ("evaluation/x.py", "from scorepolicy.envs.registry import get_task\n", False),
        ("export/x.py", "from scorepolicy.evaluation import evaluate\n", True),
        ("export/x.py", "def f():\n    from scorepolicy.api import load_policy\n", True),
        ("export/x.py", "from scorepolicy.policies import ScorePolicy\n", False),
    ],
)
def test_rules_catch_upward_imports(module: str, source: str, bad: bool) -> None:
    found = violations(PACKAGE / module, source)
    assert bool(found) == bad, found
