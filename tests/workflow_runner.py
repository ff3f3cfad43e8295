"""Run a GitHub Actions workflow's steps here, on real git, DVC and MLflow.

GitHub itself cannot be reached from the tests, so it is stood in at the process boundary:

- the repository on github.com is a local bare repository (``origin``); ``actions/checkout``
  becomes a fetch from it, of the ref GitHub would check out (for a pull request, the merge
  commit ``refs/pull/<n>/merge``, which the runner creates in ``origin`` as GitHub does);
- ``actions/setup-python`` puts the test interpreter's directory on PATH (its venv already
  has ``retrain`` installed, so steps with an id in ``skip_steps``, the install steps, are
  skipped);
- ``actions/upload-artifact`` copies the files into the run's directory and records them;
  any other action is recorded and does nothing;
- ``gh`` is an executable placed first on PATH that records its argv, its GitHub token and
  the ``--body-file`` text to a JSON-lines file, and answers ``pr create`` and ``issue create``
  with a fake URL.

Everything else is what a GitHub-hosted runner does: each ``run:`` step is a script run by
``bash -e`` (or the step's ``shell``) with the step's ``env:``, after ``${{ }}`` expressions
are evaluated against the ``github``, ``inputs``, ``secrets``, ``vars``, ``env``, ``steps``,
``runner``, ``job`` and ``needs`` contexts; ``GITHUB_OUTPUT``, ``GITHUB_ENV``, ``GITHUB_PATH``
and ``GITHUB_STEP_SUMMARY`` work as documented; ``if:`` conditions get the implicit
``success() &&``; a failed step skips the rest unless they ask for ``always()``/``failure()``.
The event's ``branches``/``paths`` filters are applied, so a push that does not touch the
filtered paths starts nothing.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FAKE_TOKEN = "ghs_fake_github_token_for_tests"
REPOSITORY = "example/retrain"

# --------------------------------------------------------------------------- expressions


class ExpressionError(ValueError):
    """An expression the evaluator cannot parse or does not support."""


_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<num>0x[0-9a-fA-F]+|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<str>'(?:[^']|'')*')
      | (?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\].,*])
      | (?P<ident>[A-Za-z_][A-Za-z0-9_-]*)
    )""",
    re.VERBOSE,
)


def _tokenize(src: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    src = src.strip()
    while pos < len(src):
        m = _TOKEN_RE.match(src, pos)
        if not m or m.end() == pos:
            raise ExpressionError(f"cannot parse expression at {src[pos:]!r}")
        pos = m.end()
        if m.group("num") is not None:
            text = m.group("num")
            tokens.append(("lit", int(text, 16) if text.startswith("0x") else float(text)))
        elif m.group("str") is not None:
            tokens.append(("lit", m.group("str")[1:-1].replace("''", "'")))
        elif m.group("op") is not None:
            tokens.append(("op", m.group("op")))
        else:
            word = m.group("ident")
            low = word.lower()
            if low in ("true", "false"):
                tokens.append(("lit", low == "true"))
            elif low == "null":
                tokens.append(("lit", None))
            else:
                tokens.append(("ident", word))
        while pos < len(src) and src[pos].isspace():
            pos += 1
    return tokens


def truthy(value: Any) -> bool:
    """GitHub's truthiness: false, 0, -0, '', null and NaN are falsy."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return not (value == 0 or math.isnan(value))
    if isinstance(value, str):
        return value != ""
    return True


def to_str(value: Any) -> str:
    """How GitHub turns a value into text when it interpolates ``${{ }}``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2)
    return str(value)


def _to_num(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0.0
        try:
            return float(int(text, 16)) if text.lower().startswith("0x") else float(text)
        except ValueError:
            return math.nan
    return math.nan


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()  # GitHub compares strings ignoring case
    same_kind = type(a) is type(b) or (
        isinstance(a, int | float)
        and isinstance(b, int | float)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    )
    if same_kind:
        return bool(a == b) if not isinstance(a, dict | list) else a is b
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    return _to_num(a) == _to_num(b)


def _compare(op: str, a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        x: Any = a.lower()
        y: Any = b.lower()
    else:
        x, y = _to_num(a), _to_num(b)
        if math.isnan(x) or math.isnan(y):
            return False
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def _index(obj: Any, key: Any) -> Any:
    if isinstance(obj, dict):
        if not isinstance(key, str):
            key = to_str(key)
        if key in obj:
            return obj[key]
        low = key.lower()  # contexts are case-insensitive
        for k, v in obj.items():
            if isinstance(k, str) and k.lower() == low:
                return v
        return None
    if isinstance(obj, list):
        n = _to_num(key)
        if math.isnan(n) or not n.is_integer() or not 0 <= int(n) < len(obj):
            return None
        return obj[int(n)]
    return None


def _fn_format(fmt: Any, *args: Any) -> str:
    text = to_str(fmt)

    def sub(m: re.Match[str]) -> str:
        if m.group(0) in ("{{", "}}"):
            return m.group(0)[0]
        i = int(m.group(1))
        if i >= len(args):
            raise ExpressionError(f"format: no argument {{{i}}}")
        return to_str(args[i])

    return re.sub(r"\{\{|\}\}|\{(\d+)\}", sub, text)


def _fn_contains(search: Any, item: Any) -> bool:
    if isinstance(search, list):
        return any(_equal(x, item) for x in search)
    return to_str(item).lower() in to_str(search).lower()


def _fn_join(arr: Any, sep: Any = ",") -> str:
    if isinstance(arr, list):
        return to_str(sep).join(to_str(x) for x in arr)
    return to_str(arr)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "contains": _fn_contains,
    "startswith": lambda s, p: to_str(s).lower().startswith(to_str(p).lower()),
    "endswith": lambda s, p: to_str(s).lower().endswith(to_str(p).lower()),
    "format": _fn_format,
    "join": _fn_join,
    "tojson": lambda v: json.dumps(v, indent=2),
    "fromjson": lambda v: json.loads(to_str(v)),
}
STATUS_FUNCTIONS = ("success", "failure", "always", "cancelled")


class _Parser:
    """Recursive descent over GitHub's expression grammar (no object filters, no hashFiles)."""

    def __init__(self, tokens: list[tuple[str, Any]], contexts: dict[str, Any]) -> None:
        self.tokens = tokens
        self.i = 0
        self.ctx = contexts

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, op: str | None = None) -> tuple[str, Any]:
        tok = self.peek()
        if tok is None or (op is not None and tok != ("op", op)):
            raise ExpressionError(f"expected {op or 'a token'}, got {tok}")
        self.i += 1
        return tok

    def at(self, op: str) -> bool:
        return self.peek() == ("op", op)

    def parse(self) -> Any:
        value = self.or_()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()}")
        return value

    def or_(self) -> Any:
        value = self.and_()
        while self.at("||"):
            self.take()
            right = self.and_()
            value = value if truthy(value) else right
        return value

    def and_(self) -> Any:
        value = self.eq()
        while self.at("&&"):
            self.take()
            right = self.eq()
            value = right if truthy(value) else value
        return value

    def eq(self) -> Any:
        value = self.cmp()
        while self.at("==") or self.at("!="):
            op = self.take()[1]
            right = self.cmp()
            value = _equal(value, right) if op == "==" else not _equal(value, right)
        return value

    def cmp(self) -> Any:
        value = self.unary()
        while any(self.at(op) for op in ("<", "<=", ">", ">=")):
            op = self.take()[1]
            value = _compare(op, value, self.unary())
        return value

    def unary(self) -> Any:
        if self.at("!"):
            self.take()
            return not truthy(self.unary())
        return self.postfix()

    def postfix(self) -> Any:
        value = self.primary()
        while True:
            if self.at("."):
                self.take()
                kind, name = self.take()
                if kind == "op" and name == "*":
                    raise ExpressionError("object filters (.*) are not supported")
                if kind != "ident":
                    raise ExpressionError(f"expected a property name after '.', got {name!r}")
                value = _index(value, name)
            elif self.at("["):
                self.take()
                key = self.or_()
                self.take("]")
                value = _index(value, key)
            else:
                return value

    def primary(self) -> Any:
        kind, val = self.take()
        if kind == "lit":
            return val
        if kind == "op" and val == "(":
            value = self.or_()
            self.take(")")
            return value
        if kind == "ident":
            if self.at("("):
                self.take()
                args = []
                if not self.at(")"):
                    args.append(self.or_())
                    while self.at(","):
                        self.take()
                        args.append(self.or_())
                self.take(")")
                return self._call(val, args)
            name = val.lower()
            if name not in self.ctx:
                raise ExpressionError(f"unknown context {val!r}")
            return self.ctx[name]
        raise ExpressionError(f"unexpected {val!r}")

    def _call(self, name: str, args: list[Any]) -> Any:
        low = name.lower()
        if low in STATUS_FUNCTIONS:
            status = self.ctx.get("__status__", "success")
            return {
                "success": status == "success",
                "failure": status == "failure",
                "always": True,
                "cancelled": status == "cancelled",
            }[low]
        if low not in _FUNCTIONS:
            raise ExpressionError(f"function {name}() is not supported by the local runner")
        return _FUNCTIONS[low](*args)


def evaluate(expression: str, contexts: dict[str, Any]) -> Any:
    """Evaluate one expression (the text inside ``${{ }}``) against ``contexts``."""
    ctx = {k.lower(): v for k, v in contexts.items()}
    return _Parser(_tokenize(expression), ctx).parse()


_INTERP_RE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


def interpolate(value: Any, contexts: dict[str, Any]) -> Any:
    """Evaluate the ``${{ }}`` in a YAML value: a lone expression keeps its type, text around
    expressions makes a string; lists and mappings are walked."""
    if isinstance(value, dict):
        return {k: interpolate(v, contexts) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, contexts) for v in value]
    if not isinstance(value, str) or "${{" not in value:
        return value
    whole = _INTERP_RE.fullmatch(value.strip())
    if whole and value.strip().count("${{") == 1:
        return evaluate(whole.group(1), contexts)
    return _INTERP_RE.sub(lambda m: to_str(evaluate(m.group(1), contexts)), value)


def evaluate_if(condition: Any, contexts: dict[str, Any]) -> bool:
    """An ``if:``: bare or wrapped in ``${{ }}``; without a status function, GitHub adds
    ``success() &&`` in front."""
    if condition is None:
        condition = "success()"
    if isinstance(condition, bool):
        return condition and contexts.get("__status__", "success") == "success"
    text = str(condition).strip()
    m = _INTERP_RE.fullmatch(text)
    if m:
        text = m.group(1).strip()
    if not re.search(r"\b(success|failure|always|cancelled)\s*\(", text, re.IGNORECASE):
        text = f"success() && ({text})"
    return truthy(evaluate(text, contexts))


# --------------------------------------------------------------------------- gh stand-in

FAKE_GH = '''#!{python}
"""Stand-in for the GitHub CLI (tests/workflow_runner.py): records, answers like gh."""
import json, os, subprocess, sys

args = sys.argv[1:]
token = os.environ.get("GH_TOKEN") or os.environ.get("GITHUB_TOKEN") or ""
record = {{"argv": args, "cwd": os.getcwd(), "token": token}}
if "--body-file" in args:
    with open(args[args.index("--body-file") + 1], encoding="utf-8") as fh:
        record["body"] = fh.read()
elif "--body" in args:
    record["body"] = args[args.index("--body") + 1]
log = os.environ["FAKE_GH_LOG"]
with open(log, "a", encoding="utf-8") as fh:
    fh.write(json.dumps(record) + "\\n")
if not token:
    print("gh: To use GitHub CLI in a GitHub Actions workflow, set the GH_TOKEN "
          "environment variable.", file=sys.stderr)
    sys.exit(4)
if args[:2] == ["pr", "create"]:
    head = args[args.index("--head") + 1] if "--head" in args else ""
    origin = os.environ.get("FAKE_GH_ORIGIN")
    if origin and subprocess.run(
        ["git", "--git-dir", origin, "rev-parse", "--verify", "--quiet", "refs/heads/" + head],
        capture_output=True,
    ).returncode != 0:
        print("pull request create failed: GraphQL: Head sha can't be blank, "
              "Head ref must be a branch (createPullRequest)", file=sys.stderr)
        sys.exit(1)
    with open(log, encoding="utf-8") as fh:
        number = sum(1 for line in fh if '"create"' in line)
    repo = os.environ.get("GITHUB_REPOSITORY", "{repository}")
    print(f"https://github.com/{{repo}}/pull/{{number}}")
if args[:2] == ["issue", "create"]:
    with open(log, encoding="utf-8") as fh:
        number = sum(1 for line in fh if '"argv": ["issue", "create"' in line)
    repo = os.environ.get("GITHUB_REPOSITORY", "{repository}")
    print(f"https://github.com/{{repo}}/issues/{{number}}")
'''


def install_fake_gh(bindir: Path) -> Path:
    """Write the ``gh`` stand-in into ``bindir``; it logs to ``$FAKE_GH_LOG``."""
    bindir.mkdir(parents=True, exist_ok=True)
    gh = bindir / "gh"
    gh.write_text(FAKE_GH.format(python=sys.executable, repository=REPOSITORY))
    gh.chmod(0o755)
    return gh


def read_gh_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- results


@dataclass
class StepResult:
    number: int
    name: str
    id: str | None
    uses: str | None
    outcome: str  # "success" | "failure" | "skipped"
    conclusion: str
    outputs: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    with_: dict[str, Any] = field(default_factory=dict)
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    note: str = ""


@dataclass
class JobResult:
    id: str
    name: str
    result: str  # "success" | "failure" | "skipped"
    permissions: Any
    steps: list[StepResult] = field(default_factory=list)
    summary: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    workspace: Path | None = None
    uploads: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[tuple[str, str]] = field(default_factory=list)

    def step(self, key: str) -> StepResult:
        """A step by its id, or by (the start of) its name."""
        for s in self.steps:
            if s.id == key or s.name == key:
                return s
        matches = [s for s in self.steps if s.name.startswith(key)]
        if len(matches) == 1:
            return matches[0]
        raise KeyError(f"no single step {key!r} in job {self.id}: {[s.name for s in self.steps]}")

    @property
    def log(self) -> str:
        parts = []
        for s in self.steps:
            parts.append(f"--- step {s.number} {s.name}: {s.outcome} {s.note}".rstrip())
            parts.extend(x for x in (s.stdout, s.stderr) if x)
        return "\n".join(parts)


@dataclass
class WorkflowRun:
    workflow: str
    event: str
    triggered: bool
    why_not: str = ""
    jobs: dict[str, JobResult] = field(default_factory=dict)
    gh_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def conclusion(self) -> str:
        if not self.triggered:
            return "not triggered"
        return "failure" if any(j.result == "failure" for j in self.jobs.values()) else "success"

    @property
    def job(self) -> JobResult:
        """The only job (every workflow of this project has one)."""
        if len(self.jobs) != 1:
            raise ValueError(f"{self.workflow} ran {len(self.jobs)} jobs; pick one from .jobs")
        return next(iter(self.jobs.values()))

    @property
    def summary(self) -> str:
        return "\n".join(j.summary for j in self.jobs.values())

    def describe(self) -> str:
        """Everything a failing assertion should show."""
        lines = [f"{self.workflow} on {self.event}: {self.conclusion} {self.why_not}".rstrip()]
        for j in self.jobs.values():
            lines += [f"== job {j.id}: {j.result}", j.log, "== summary", j.summary]
        return "\n".join(lines)


# --------------------------------------------------------------------------- the runner


def load_workflow(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text())
    if True in data and "on" not in data:  # YAML 1.1 reads the key `on` as true
        data["on"] = data.pop(True)
    return data


def triggers_of(workflow: dict[str, Any]) -> dict[str, Any]:
    on = workflow.get("on")
    if isinstance(on, str):
        return {on: {}}
    if isinstance(on, list):
        return {e: {} for e in on}
    return {k: (v or {}) for k, v in (on or {}).items()}


def _glob_match(pattern: str, text: str) -> bool:
    """GitHub's filter globs: ``*`` stays within a path segment, ``**`` crosses them."""
    regex = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            regex += ".*"
            i += 2
        elif c == "*":
            regex += "[^/]*"
            i += 1
        elif c == "?":
            regex += "[^/]"
            i += 1
        else:
            regex += re.escape(c)
            i += 1
    return re.fullmatch(regex, text) is not None


def _filter(values: Iterable[str], include: list[str] | None, exclude: list[str] | None) -> bool:
    """GitHub's include/ignore filters (``!pattern`` negates in include lists)."""
    values = list(values)
    if include is not None:

        def kept(v: str) -> bool:
            keep = False
            for pat in include:
                if pat.startswith("!"):
                    if _glob_match(pat[1:], v):
                        keep = False
                elif _glob_match(pat, v):
                    keep = True
            return keep

        return any(kept(v) for v in values)
    if exclude is not None:
        return any(not any(_glob_match(p, v) for p in exclude) for v in values)
    return True


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if res.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {res.stderr.strip()}")
    return res.stdout.strip()


def _parse_file_command(path: Path) -> dict[str, str]:
    """``name=value`` lines and ``name<<DELIM`` … ``DELIM`` blocks (GITHUB_OUTPUT/GITHUB_ENV)."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    lines = path.read_text().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            body = []
            while i < len(lines) and lines[i] != delim:
                body.append(lines[i])
                i += 1
            if i >= len(lines):
                raise ValueError(f"{path.name}: no closing {delim!r} for {name!r}")
            i += 1
            out[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
        else:
            raise ValueError(f"{path.name}: cannot parse line {line!r}")
    return out


_COMMAND_RE = re.compile(r"^::(error|warning|notice|debug)(?: [^:]*)?::(.*)$", re.MULTILINE)


class WorkflowRunner:
    """Runs the workflows of one repository whose GitHub copy is the bare repo ``origin``.

    Parameters
    ----------
    origin : the bare repository standing in for the GitHub repository.
    workdir : where runs keep their workspaces, temp dirs, artifacts and the gh log.
    env : extra environment of the runner machine (e.g. the sandbox's).
    secrets, vars : the repository's secrets and configuration variables.
    python_bin : the directory ``actions/setup-python`` puts on PATH (default: the test
        interpreter's).
    skip_steps : step ids not run, because the test interpreter already provides them.
    """

    def __init__(
        self,
        origin: Path,
        workdir: Path,
        *,
        env: dict[str, str] | None = None,
        secrets: dict[str, str] | None = None,
        vars: dict[str, str] | None = None,
        python_bin: Path | None = None,
        skip_steps: Iterable[str] = ("install",),
        repository: str = REPOSITORY,
        default_branch: str = "main",
        step_timeout: float = 900,
    ) -> None:
        self.origin = Path(origin).resolve()
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env or {})
        self.secrets = dict(secrets or {})
        self.vars = dict(vars or {})
        self.python_bin = Path(python_bin or Path(sys.executable).parent)
        self.skip_steps = set(skip_steps)
        self.repository = repository
        self.default_branch = default_branch
        self.step_timeout = step_timeout
        self.fake_bin = self.workdir / "fake-bin"
        install_fake_gh(self.fake_bin)
        self.gh_log = self.workdir / "gh-calls.jsonl"
        self.runs = 0

    # ------------------------------------------------------------------ public
    def run(
        self,
        workflow_path: Path | str,
        event: str,
        *,
        inputs: dict[str, Any] | None = None,
        ref: str | None = None,
        before: str | None = None,
        pr_head: str | None = None,
        pr_base: str | None = None,
        pr_number: int = 1,
    ) -> WorkflowRun:
        """Run ``workflow_path`` for ``event`` as GitHub would start it.

        ``ref``: the branch pushed to / dispatched on / scheduled (default: main).
        ``before``: for ``push``, the previous tip (default: the pushed commit's first parent).
        ``pr_head``/``pr_base``: for ``pull_request``, the branches (base default: main).
        """
        path = Path(workflow_path)
        wf = load_workflow(path)
        self.runs += 1
        n = self.runs
        while (self.workdir / f"run-{n}-{path.stem}-{event}").exists():
            n += 1
        run_dir = self.workdir / f"run-{n}-{path.stem}-{event}"
        run_dir.mkdir()
        triggers = triggers_of(wf)
        result = WorkflowRun(workflow=wf.get("name", path.stem), event=event, triggered=False)
        if event not in triggers:
            result.why_not = f"{path.name} has no {event} trigger ({sorted(triggers)})"
            return result
        spec = triggers[event]
        ref = ref or self.default_branch
        github, inputs_ctx, why_not = self._event(
            event, spec, wf, path, run_dir, ref, inputs, before, pr_head, pr_base, pr_number
        )
        if why_not:
            result.why_not = why_not
            return result
        result.triggered = True
        gh_before = len(read_gh_log(self.gh_log))
        jobs = wf.get("jobs") or {}
        done: dict[str, JobResult] = {}
        for job_id in self._job_order(jobs):
            done[job_id] = self._run_job(
                wf, job_id, jobs[job_id], github, inputs_ctx, run_dir, done
            )
        result.jobs = done
        result.gh_calls = read_gh_log(self.gh_log)[gh_before:]
        return result

    @property
    def gh_calls(self) -> list[dict[str, Any]]:
        """Every call of ``gh`` made by any run of this runner."""
        return read_gh_log(self.gh_log)

    # ------------------------------------------------------------------ events
    def _event(
        self,
        event: str,
        spec: dict[str, Any],
        wf: dict[str, Any],
        path: Path,
        run_dir: Path,
        ref: str,
        inputs: dict[str, Any] | None,
        before: str | None,
        pr_head: str | None,
        pr_base: str | None,
        pr_number: int,
    ) -> tuple[dict[str, Any], dict[str, Any], str]:
        repo = {
            "full_name": self.repository,
            "name": self.repository.split("/")[-1],
            "owner": {"login": self.repository.split("/")[0]},
            "default_branch": self.default_branch,
        }
        payload: dict[str, Any] = {"repository": repo, "sender": {"login": "octocat"}}
        inputs_ctx: dict[str, Any] = {}
        base_ref = head_ref = ""
        if event == "pull_request":
            if not pr_head:
                raise ValueError("pull_request needs pr_head")
            pr_base = pr_base or self.default_branch
            base_sha = _git(self.origin, "rev-parse", f"refs/heads/{pr_base}")
            head_sha = _git(self.origin, "rev-parse", f"refs/heads/{pr_head}")
            if not _filter([pr_base], spec.get("branches"), spec.get("branches-ignore")):
                return {}, {}, f"base branch {pr_base} is filtered out"
            merge_base = _git(self.origin, "merge-base", base_sha, head_sha)
            changed = _git(self.origin, "diff", "--name-only", merge_base, head_sha).splitlines()
            if not _filter(changed, spec.get("paths"), spec.get("paths-ignore")):
                return {}, {}, f"no changed file matches the paths filter ({changed})"
            sha = self._make_pr_merge_ref(run_dir, pr_number, pr_base, pr_head)
            full_ref = f"refs/pull/{pr_number}/merge"
            ref_name = f"{pr_number}/merge"
            base_ref, head_ref = pr_base, pr_head
            payload.update(
                number=pr_number,
                action="opened",
                pull_request={
                    "number": pr_number,
                    "head": {"ref": pr_head, "sha": head_sha},
                    "base": {"ref": pr_base, "sha": base_sha},
                },
            )
        else:
            sha = _git(self.origin, "rev-parse", f"refs/heads/{ref}")
            full_ref, ref_name = f"refs/heads/{ref}", ref
            if event == "push":
                if not _filter([ref], spec.get("branches"), spec.get("branches-ignore")):
                    return {}, {}, f"branch {ref} is filtered out"
                if before is None:
                    parents = _git(self.origin, "rev-list", "--parents", "-n1", sha).split()[1:]
                    before = parents[0] if parents else "0" * 40
                if before == "0" * 40:
                    changed = _git(self.origin, "ls-tree", "-r", "--name-only", sha).splitlines()
                else:
                    changed = _git(self.origin, "diff", "--name-only", before, sha).splitlines()
                if not _filter(changed, spec.get("paths"), spec.get("paths-ignore")):
                    return {}, {}, f"no changed file matches the paths filter ({changed})"
                payload.update(ref=full_ref, before=before, after=sha)
            elif event == "workflow_dispatch":
                inputs_ctx = self._dispatch_inputs(spec.get("inputs") or {}, inputs or {})
                payload.update(ref=full_ref, inputs={k: to_str(v) for k, v in inputs_ctx.items()})
            elif event == "schedule":
                payload["schedule"] = (spec if isinstance(spec, list) else [{}])[0].get("cron")
        if inputs and event != "workflow_dispatch":
            raise ValueError(f"{event} runs have no inputs")
        event_path = run_dir / "event.json"
        event_path.write_text(json.dumps(payload, indent=2))
        github = {
            "event_name": event,
            "event": payload,
            "event_path": str(event_path),
            "ref": full_ref,
            "ref_name": ref_name,
            "ref_type": "branch",
            "base_ref": base_ref,
            "head_ref": head_ref,
            "sha": sha,
            "repository": self.repository,
            "repository_owner": self.repository.split("/")[0],
            "actor": "octocat",
            "triggering_actor": "octocat",
            "workflow": wf.get("name", path.stem),
            "run_id": str(1000 + self.runs),
            "run_number": str(self.runs),
            "run_attempt": "1",
            "server_url": "https://github.com",
            "api_url": "https://api.github.com",
            "token": FAKE_TOKEN,
        }
        return github, inputs_ctx, ""

    @staticmethod
    def _dispatch_inputs(spec: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
        unknown = set(given) - set(spec)
        if unknown:
            raise ValueError(f"unexpected inputs {sorted(unknown)}; the workflow has {list(spec)}")
        out: dict[str, Any] = {}
        for name, decl in spec.items():
            decl = decl or {}
            kind = decl.get("type", "string")
            value = given.get(name, decl.get("default"))
            if value is None and decl.get("required"):
                raise ValueError(f"input {name} is required")
            if kind == "boolean":
                value = value if isinstance(value, bool) else str(value).lower() == "true"
            elif kind == "choice":
                value = "" if value is None else str(value)
                if value not in [str(o) for o in decl.get("options", [])]:
                    raise ValueError(f"input {name}: {value!r} is not one of {decl['options']}")
            elif kind == "number":
                value = _to_num(value)
            else:
                value = "" if value is None else str(value)
            out[name] = value
        return out

    def _make_pr_merge_ref(self, run_dir: Path, number: int, base: str, head: str) -> str:
        """What GitHub does for a PR: a test merge of head into base at refs/pull/N/merge."""
        tmp = run_dir / "pr-merge"
        _git(run_dir, "clone", "-q", "--no-checkout", str(self.origin), str(tmp))
        ident = {
            "GIT_AUTHOR_NAME": "GitHub",
            "GIT_AUTHOR_EMAIL": "noreply@github.com",
            "GIT_COMMITTER_NAME": "GitHub",
            "GIT_COMMITTER_EMAIL": "noreply@github.com",
        }
        _git(tmp, "checkout", "-q", "--detach", f"origin/{base}")
        res = subprocess.run(
            ["git", "merge", "-q", "--no-ff", "-m", f"Merge {head} into {base}", f"origin/{head}"],
            cwd=tmp,
            capture_output=True,
            text=True,
            env={**os.environ, **ident},
        )
        if res.returncode != 0:
            raise RuntimeError(f"the PR {head} -> {base} does not merge cleanly: {res.stdout}")
        sha = _git(tmp, "rev-parse", "HEAD")
        _git(tmp, "push", "-q", "--force", "origin", f"HEAD:refs/pull/{number}/merge")
        shutil.rmtree(tmp)
        return sha

    # ------------------------------------------------------------------ jobs
    @staticmethod
    def _job_order(jobs: dict[str, Any]) -> list[str]:
        order: list[str] = []
        seen: set[str] = set()

        def visit(j: str, stack: tuple[str, ...]) -> None:
            if j in seen:
                return
            if j in stack:
                raise ValueError(f"jobs depend on each other in a cycle: {stack}")
            needs = jobs[j].get("needs") or []
            for n in [needs] if isinstance(needs, str) else needs:
                visit(n, (*stack, j))
            seen.add(j)
            order.append(j)

        for j in jobs:
            visit(j, ())
        return order

    def _base_env(self) -> dict[str, str]:
        drop = ("GITHUB_", "RUNNER_", "MLFLOW_", "GH_", "AWS_", "FAKE_GH_", "PYTEST_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        env.update(self.env)
        return env

    def _run_job(
        self,
        wf: dict[str, Any],
        job_id: str,
        job: dict[str, Any],
        github: dict[str, Any],
        inputs: dict[str, Any],
        run_dir: Path,
        done: dict[str, JobResult],
    ) -> JobResult:
        if "strategy" in job or "uses" in job or "container" in job or "services" in job:
            raise NotImplementedError(f"job {job_id}: matrix/reusable/container jobs")
        needs_list = job.get("needs") or []
        needs_list = [needs_list] if isinstance(needs_list, str) else needs_list
        needs = {n: {"result": done[n].result, "outputs": done[n].outputs} for n in needs_list}
        res = JobResult(
            id=job_id, name=str(job.get("name", job_id)), result="success", permissions=None
        )
        res.permissions = job.get("permissions", wf.get("permissions"))
        job_dir = run_dir / job_id
        workspace = job_dir / "work"
        temp = job_dir / "temp"
        files = job_dir / "file-commands"
        for d in (workspace, temp, files):
            d.mkdir(parents=True)
        res.workspace = workspace
        github = {**github, "job": job_id, "workspace": str(workspace)}
        runner_ctx = {"os": "Linux", "arch": "X64", "temp": str(temp), "name": "local"}
        contexts: dict[str, Any] = {
            "github": github,
            "inputs": inputs,
            "secrets": {**self.secrets, "GITHUB_TOKEN": FAKE_TOKEN},
            "vars": self.vars,
            "runner": runner_ctx,
            "needs": needs,
            "steps": {},
            "job": {"status": "success"},
            "env": {},
            "__status__": "success",
        }
        if any(done[n].result != "success" for n in needs_list) and "if" not in job:
            res.result = "skipped"
            return res
        wf_env = {k: to_str(interpolate(v, contexts)) for k, v in (wf.get("env") or {}).items()}
        contexts["env"] = dict(wf_env)
        if "if" in job:
            status = "failure" if any(done[n].result == "failure" for n in needs_list) else None
            if not evaluate_if(job["if"], {**contexts, "__status__": status or "success"}):
                res.result = "skipped"
                return res
        job_env = {k: to_str(interpolate(v, contexts)) for k, v in (job.get("env") or {}).items()}
        contexts["env"] = {**wf_env, **job_env}
        defaults = {**((wf.get("defaults") or {}).get("run") or {})}
        defaults.update((job.get("defaults") or {}).get("run") or {})
        state = _JobState(
            env={**wf_env, **job_env},
            path_prefix=[str(self.fake_bin)],
            workspace=workspace,
            temp=temp,
            files=files,
            run_dir=run_dir,
            defaults=defaults,
        )
        github_env = {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKFLOW": str(github["workflow"]),
            "GITHUB_RUN_ID": github["run_id"],
            "GITHUB_RUN_NUMBER": github["run_number"],
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_JOB": job_id,
            "GITHUB_ACTOR": github["actor"],
            "GITHUB_REPOSITORY": self.repository,
            "GITHUB_REPOSITORY_OWNER": github["repository_owner"],
            "GITHUB_EVENT_NAME": github["event_name"],
            "GITHUB_EVENT_PATH": github["event_path"],
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_SHA": github["sha"],
            "GITHUB_REF": github["ref"],
            "GITHUB_REF_NAME": github["ref_name"],
            "GITHUB_REF_TYPE": "branch",
            "GITHUB_BASE_REF": github["base_ref"],
            "GITHUB_HEAD_REF": github["head_ref"],
            "GITHUB_SERVER_URL": github["server_url"],
            "GITHUB_API_URL": github["api_url"],
            "RUNNER_OS": "Linux",
            "RUNNER_ARCH": "X64",
            "RUNNER_TEMP": str(temp),
            "FAKE_GH_LOG": str(self.gh_log),
            "FAKE_GH_ORIGIN": str(self.origin),
        }
        for number, step in enumerate(job.get("steps") or [], start=1):
            sres = self._run_step(number, step, contexts, state, github_env, res)
            res.steps.append(sres)
            if sres.id:
                contexts["steps"][sres.id] = {
                    "outputs": sres.outputs,
                    "outcome": sres.outcome,
                    "conclusion": sres.conclusion,
                }
            if sres.conclusion == "failure":
                contexts["__status__"] = "failure"
                contexts["job"] = {"status": "failure"}
                res.result = "failure"
        res.summary = state.summary
        res.uploads = state.uploads
        res.outputs = {
            k: to_str(interpolate(v, contexts)) for k, v in (job.get("outputs") or {}).items()
        }
        return res

    # ------------------------------------------------------------------ steps
    def _run_step(
        self,
        number: int,
        step: dict[str, Any],
        contexts: dict[str, Any],
        state: _JobState,
        github_env: dict[str, str],
        job: JobResult,
    ) -> StepResult:
        uses = step.get("uses")
        name = step.get("name") or (f"Run {uses}" if uses else f"Run {step.get('run', '')}")
        name = to_str(interpolate(name, contexts)).strip().splitlines()[0]
        sres = StepResult(
            number=number,
            name=name,
            id=step.get("id"),
            uses=uses,
            outcome="skipped",
            conclusion="skipped",
        )
        contexts = {**contexts, "env": dict(state.env)}
        if not evaluate_if(step.get("if"), contexts):
            sres.note = "(if: false)"
            return sres
        step_env = {}
        for k, v in (step.get("env") or {}).items():
            step_env[k] = to_str(interpolate(v, {**contexts, "env": {**state.env, **step_env}}))
        sres.env = step_env
        contexts["env"] = {**state.env, **step_env}
        sres.with_ = interpolate(step.get("with") or {}, contexts)
        if sres.id in self.skip_steps:
            sres.outcome = sres.conclusion = "success"
            sres.note = "(skipped by the local runner: the test interpreter provides it)"
            return sres
        env = {**self._base_env(), **github_env, **state.env, **step_env}
        env["PATH"] = os.pathsep.join([*state.path_prefix, env.get("PATH", "")])
        for kind in ("OUTPUT", "ENV", "PATH", "STEP_SUMMARY", "STATE"):
            f = state.files / f"{kind.lower()}-{number}"
            f.write_text("")
            env[f"GITHUB_{kind}"] = str(f)
        env["GITHUB_ACTION"] = sres.id or f"__run_{number}"
        try:
            if uses:
                ok = self._uses(uses, sres, state, env)
            elif "run" in step:
                ok = self._script(step, sres, state, env, contexts)
            else:
                raise ValueError(f"step {number} has neither run nor uses")
        except subprocess.TimeoutExpired:
            ok = False
            sres.note = "(timed out)"
        sres.outputs.update(_parse_file_command(state.files / f"output-{number}"))
        state.env.update(_parse_file_command(state.files / f"env-{number}"))
        for line in (state.files / f"path-{number}").read_text().splitlines():
            if line.strip():
                state.path_prefix.insert(1, line.strip())
        state.summary += (state.files / f"step_summary-{number}").read_text()
        for kind, msg in _COMMAND_RE.findall(sres.stdout + "\n" + sres.stderr):
            job.annotations.append((kind, msg))
        sres.outcome = "success" if ok else "failure"
        cont = truthy(interpolate(step.get("continue-on-error", False), contexts))
        sres.conclusion = "success" if ok or cont else "failure"
        return sres

    def _script(
        self,
        step: dict[str, Any],
        sres: StepResult,
        state: _JobState,
        env: dict[str, str],
        contexts: dict[str, Any],
    ) -> bool:
        script = to_str(interpolate(step["run"], contexts))
        shell = step.get("shell") or state.defaults.get("shell")
        path = state.temp / f"step-{sres.number}.sh"
        path.write_text(script + "\n")
        if shell is None:
            cmd = ["bash", "-e", str(path)]
        elif shell == "bash":
            cmd = ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)]
        elif shell == "sh":
            cmd = ["sh", "-e", str(path)]
        elif shell == "python":
            cmd = ["python", str(path)]
        elif "{0}" in shell:
            cmd = [part.replace("{0}", str(path)) for part in shell.split()]
        else:
            raise NotImplementedError(f"shell {shell!r}")
        wd = step.get("working-directory") or state.defaults.get("working-directory")
        cwd = state.workspace / to_str(interpolate(wd, contexts)) if wd else state.workspace
        exe = shutil.which(cmd[0], path=env["PATH"]) or cmd[0]
        minutes = step.get("timeout-minutes")
        res = subprocess.run(
            [exe, *cmd[1:]],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=float(minutes) * 60 if minutes else self.step_timeout,
        )
        sres.returncode = res.returncode
        sres.stdout, sres.stderr = res.stdout, res.stderr
        return res.returncode == 0

    def _uses(self, uses: str, sres: StepResult, state: _JobState, env: dict[str, str]) -> bool:
        action = uses.split("@", 1)[0].lower()
        w = sres.with_
        if action == "actions/checkout":
            self._checkout(w, state, env)
            sres.note = "(local fetch from origin)"
            return True
        if action == "actions/setup-python":
            state.path_prefix.insert(1, str(self.python_bin))
            version = f"{sys.version_info.major}.{sys.version_info.minor}"
            sres.outputs["python-version"] = version
            sres.note = f"(the test interpreter, {version}, from {self.python_bin})"
            return True
        if action == "actions/upload-artifact":
            return self._upload(w, sres, state)
        sres.note = "(recorded; not run locally)"
        return True

    def _checkout(self, w: dict[str, Any], state: _JobState, env: dict[str, str]) -> None:
        dest = state.workspace / to_str(w.get("path") or "")
        dest.mkdir(parents=True, exist_ok=True)
        depth = int(_to_num(w.get("fetch-depth", 1)))
        given = to_str(w.get("ref") or "")
        ref = given or env["GITHUB_REF"]
        # Without `ref:`, checkout takes the event's exact commit, not the branch's tip now.
        sha = "" if given else env["GITHUB_SHA"]
        url = f"file://{self.origin}"
        g = {"GIT_TERMINAL_PROMPT": "0"}
        _git(dest, "init", "-q", env=g)
        _git(dest, "remote", "add", "origin", url, env=g)
        if depth == 0:
            specs = ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]
            if ref.startswith("refs/pull/"):
                specs.append(f"+{ref}:refs/remotes/pull/{ref[len('refs/pull/') :]}")
            _git(dest, "fetch", "-q", "--prune", "--tags", "origin", *specs, env=g)
            target = sha
        else:
            want = sha or (f"+{ref}" if ref.startswith("refs/") else ref)
            _git(dest, "fetch", "-q", "--no-tags", f"--depth={depth}", "origin", want, env=g)
            target = "FETCH_HEAD"
        if ref.startswith("refs/heads/"):
            branch = ref[len("refs/heads/") :]
            if depth != 0:
                _git(dest, "update-ref", f"refs/remotes/origin/{branch}", "FETCH_HEAD", env=g)
            start = target or f"refs/remotes/origin/{branch}"
            _git(dest, "checkout", "-q", "--force", "-B", branch, start, env=g)
        elif ref.startswith("refs/pull/"):
            local = target or f"refs/remotes/pull/{ref[len('refs/pull/') :]}"
            _git(dest, "checkout", "-q", "--force", "--detach", local, env=g)
        else:  # a sha or a tag
            _git(dest, "checkout", "-q", "--force", "--detach", target or ref, env=g)

    def _upload(self, w: dict[str, Any], sres: StepResult, state: _JobState) -> bool:
        name = to_str(w.get("name") or "artifact")
        dest = state.run_dir / "artifacts" / name
        found: list[str] = []
        for pattern in to_str(w.get("path") or "").splitlines():
            pattern = pattern.strip()
            if not pattern or pattern.startswith("!"):
                continue
            src = state.workspace / pattern
            if src.is_dir():
                for f in sorted(p for p in src.rglob("*") if p.is_file()):
                    rel = f.relative_to(src)
                    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, dest / rel)
                    found.append(str(rel))
            elif src.is_file():
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / src.name)
                found.append(src.name)
            else:
                for f in sorted(state.workspace.glob(pattern)):
                    if f.is_file():
                        rel = f.relative_to(state.workspace)
                        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(f, dest / rel)
                        found.append(str(rel))
        state.uploads.append({"name": name, "path": dest, "files": found})
        if not found:
            mode = to_str(w.get("if-no-files-found") or "warn")
            sres.note = f"(no files; if-no-files-found: {mode})"
            return mode != "error"
        sres.note = f"(copied {len(found)} file(s) to {dest})"
        return True


@dataclass
class _JobState:
    env: dict[str, str]
    path_prefix: list[str]
    workspace: Path
    temp: Path
    files: Path
    run_dir: Path
    defaults: dict[str, Any]
    summary: str = ""
    uploads: list[dict[str, Any]] = field(default_factory=list)


def workflow_files(root: Path) -> list[Path]:
    folder = Path(root) / ".github" / "workflows"
    return sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])


def run_steps(workflow: dict[str, Any]) -> Iterable[tuple[str, str, dict[str, Any]]]:
    """(job id, step name, step) for every step of a loaded workflow."""
    for job_id, job in (workflow.get("jobs") or {}).items():
        for i, step in enumerate(job.get("steps") or [], start=1):
            yield job_id, str(step.get("name") or step.get("id") or f"step {i}"), step


__all__ = [
    "FAKE_TOKEN",
    "ExpressionError",
    "JobResult",
    "StepResult",
    "WorkflowRun",
    "WorkflowRunner",
    "evaluate",
    "evaluate_if",
    "install_fake_gh",
    "interpolate",
    "load_workflow",
    "read_gh_log",
    "run_steps",
    "triggers_of",
    "workflow_files",
]
