"""The shape of the code: packages in layers that import only downward, no two packages that
import each other, no import circle in governance/, views imported only by the app factory
and the blueprint registry, and a web process that never loads the heavy stacks."""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "governance"
# Modules allowed to import view modules: the app factory and the console's registry.
REGISTRIES = {"governance.app", "governance.console.registry"}
HEAVY = ("torch", "transformers", "spacy", "presidio_analyzer", "presidio_anonymizer", "peft")


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


@functools.cache
def nodes(path: Path) -> tuple[ast.AST, ...]:
    """Every node of a module's syntax tree (parsed once a test process: several tests walk
    every module, and the files do not change under them)."""
    return tuple(ast.walk(ast.parse(path.read_text())))


def import_graph() -> dict[str, set[str]]:
    """Every import statement of every module (top level, in functions, under TYPE_CHECKING)."""
    return {name: set(targets) for name, targets in _import_graph().items()}


@functools.cache
def _import_graph() -> dict[str, set[str]]:
    modules = module_names()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in nodes(path):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            for target in targets:
                found = resolve(target) if target.startswith("governance") else None
                if found and found != name:
                    graph[name].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in list(graph):
        if node not in index:
            visit(node)
    return found


# Modules of the web layer that are not views: the request guard, the hooks, what views share
# and the authorized lookups views and console pages use.
WEB_HELPERS = {"governance.web.guard", "governance.web.hooks", "governance.web.common"}


def is_view(module: str) -> bool:
    web_view = (
        module.startswith("governance.web.")
        and module not in WEB_HELPERS
        and not module.endswith("_lookup")
    )
    return (
        web_view
        or module.startswith("governance.console.pages.")
        or module == "governance.console.session"
    )


# The layers of governance/, lowest first (README, "Architecture"). A package may import from
# packages of its own layer or of layers below it, never from above; the modules that are not
# in a package (config.py, db.py, ...) are named by their module name.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "core",
        {"governance", "config", "db", "errors", "storage", "strict_json", "crypto", "client"},
    ),
    ("policy engine", {"authz"}),
    ("audit recording", {"audit"}),
    ("identity, domains, the job lease", {"accounts", "domains", "jobs"}),
    ("data", {"datasets", "pii", "approvals", "webhooks"}),
    ("models", {"families", "training", "gateway"}),
    ("flows across nouns", {"flows", "policy_review"}),
    ("the builder", {"runtime"}),
    (
        "entry points",
        {
            "web",
            "workers",
            "scheduler",
            "console",
            "demo",
            "app",
            "models_registry",
            "cli",
            "gunicorn_conf",
            "instance",
        },
    ),
]
# Pairs of packages that import each other, each with the reason it is allowed (at most 5).
TWO_WAY_ALLOWED: dict[frozenset[str], str] = {}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_edges() -> dict[tuple[str, str], list[tuple[str, str]]]:
    edges: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for name, targets in import_graph().items():
        for target in targets:
            if package_of(name) != package_of(target):
                edges[(package_of(name), package_of(target))].append((name, target))
    return edges


def test_every_package_has_a_layer_and_imports_only_downward():
    layer = {package: index for index, (_, members) in enumerate(LAYERS) for package in members}
    packages = {package_of(m) for m in module_names()}
    assert sorted(packages - set(layer)) == [], "a package without a layer: add it to LAYERS"
    upward = [
        f"{importer} ({LAYERS[layer[a]][0]}) imports {imported} ({LAYERS[layer[b]][0]})"
        for (a, b), found in package_edges().items()
        if layer[a] < layer[b]
        for importer, imported in found
    ]
    assert upward == []


def test_at_most_five_pairs_of_packages_import_each_other_each_explained():
    edges = package_edges()
    pairs = {frozenset(pair) for pair in edges if (pair[1], pair[0]) in edges}
    assert len(TWO_WAY_ALLOWED) <= 5
    unexplained = sorted(sorted(pair) for pair in pairs - set(TWO_WAY_ALLOWED))
    assert unexplained == []


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    assert len(graph) > 50  # the walk saw the package
    assert cycles(graph) == []


def test_a_circle_would_be_found():
    # The check itself can fail: a made-up circle is reported.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_views_are_imported_only_by_the_app_factory_and_the_registry():
    importers = [
        (name, target)
        for name, targets in import_graph().items()
        for target in targets
        if is_view(target) and name not in REGISTRIES
    ]
    assert importers == []


def test_services_do_not_use_the_request_context():
    # Services, access modules aside, are usable from the CLI, the runner and the scheduler.
    graph = import_graph()
    offenders = []
    for name, path in module_names().items():
        if name.startswith("governance.console") or not name.endswith(
            (".service", ".models", ".records", ".evaluation", ".taint")
        ):
            continue
        flask = any(
            isinstance(node, ast.ImportFrom | ast.Import)
            and any(
                (getattr(node, "module", None) or alias.name).split(".")[0] == "flask"
                for alias in node.names
            )
            for node in nodes(path)
        )
        if flask or "governance.web.guard" in graph.get(name, ()):
            offenders.append(name)
    assert offenders == []


def test_the_web_process_never_loads_the_scanner_or_torch(tmp_path):
    """Serve every kind of request a reviewer or an application makes, then look at what the
    process imported: the scan and the query went elsewhere (a job, the serving engine). On
    the embedded database only: which database serves it does not change what it imports."""
    from governance.config import load_config
    from governance.instance import init_instance

    config = load_config({"GOVERNANCE_HOME": str(tmp_path / "home")})
    init_instance(config)
    script = f"""
import sys, json
sys.path.insert(0, {str(ROOT)!r})
from governance.app import create_app
from tests.factories import auth, create_dataset, make_domain, principal_token
config = json.loads({__import__("json").dumps(__import__("json").dumps(config))})
app = create_app({{**config, "SERVING_URL": "http://127.0.0.1:9", "SERVING_TIMEOUT_SECONDS": 2}})
client = app.test_client()
make_domain(app, "consumer-tax")
casey = auth(principal_token(app, "casey"))
dataset = create_dataset(client, casey["Authorization"].split()[1], "consumer-tax", "returns")
up = client.post(f"/api/v1/datasets/{{dataset}}/versions?tax_year=2025",
    data=b'{{"text": "My SSN is 536-22-8741"}}\\n', content_type="application/x-ndjson",
    headers=casey)
assert up.status_code == 201, up.get_json()
scan = client.post(f"/api/v1/datasets/{{dataset}}/versions/1/scans", headers=casey)
assert scan.status_code == 202, scan.get_json()
assert client.get(scan.headers["Location"], headers=casey).status_code == 200
admin = auth(principal_token(app, "admin"))
for path in ("/openapi.json", "/api/v1/audit/entries", "/api/v1/approvals/inbox",
             "/api/v1/models", "/console/sign-in"):
    assert client.get(path, headers=admin).status_code == 200, path
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print(json.dumps(heavy))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


# The runtime's long-lived objects, and the one module that may construct each.
BUILT_BY_THE_BUILDER = {
    "Database": "governance.runtime",
    "AuditLog": "governance.runtime",
    "Authorizer": "governance.runtime",
    "KeyRing": "governance.runtime",
    "ModelSigner": "governance.runtime",
    "RateLimiter": "governance.runtime",
    "LocalBlobStore": "governance.runtime",
    "executor_from_config": "governance.runtime",
}


def test_only_the_builder_constructs_the_runtimes_objects():
    """Processes (the web app, runners, the scheduler, the worker, the CLI, the demo) get them
    from `governance.runtime`: `build`, or a narrow builder it offers (`database_for`,
    `audit_log_for`, `keyring_for`, `signer_for`, `default_store`, `executor_for`)."""
    offenders = []
    for name, path in module_names().items():
        for node in nodes(path):
            if not isinstance(node, ast.Call):
                continue
            called = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            builder = BUILT_BY_THE_BUILDER.get(called or "")
            if builder is not None and name != builder:
                offenders.append(f"{name}:{node.lineno} calls {called}")
    assert offenders == []


# The modules that may commit: the entry points, whose unit of work it is (a request, a job, a
# command, a step of the scheduler), and the engines whose work is a transaction of its own by
# nature. Every other module adds to its caller's transaction and leaves the commit to it.
TRANSACTION_OWNERS = {
    "governance.db": "Database.unit_of_work: the unit of work of a command or a scheduler step",
    "governance.web.transaction": "a request: committed when its view returns",
    "governance.web.hooks": "a token's use, kept whether or not the request succeeds",
    "governance.console.session": "a console sign-in, sign-out or touch, kept likewise",
    "governance.workers.execution": "a job: committed at each progress report and at its end",
    "governance.jobs.service": "the lease: a claim or a requeue holds only once committed",
    "governance.audit.service": "the log's writer and its checkpoints, before witnesses see them",
    "governance.audit.witnessing": "cosignatures, kept as they arrive",
    "governance.audit.pruning": "retention's batches, each with its signed audit.prune record",
    "governance.audit.openlineage": "the OpenLineage outbox: a sent batch moves its cursor",
    "governance.webhooks.service": "the webhook outbox: claims and delivery attempts",
    "governance.pii.cache": "scan-cache rows, facts about a text, kept as a scan reads",
    "governance.domains.keys": "a domain key first needed by a read, made once and kept",
    "governance.scheduler.pipeline": "the yearly refresh's state machine: each step is durable",
    "governance.cli.datasets": "a command (the master-key rotation)",
}


def test_only_entry_points_and_transaction_owning_engines_commit():
    offenders = []
    for name, path in module_names().items():
        if name in TRANSACTION_OWNERS:
            continue
        for node in nodes(path):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "commit"
            ):
                offenders.append(f"{name}:{node.lineno}")
    assert offenders == []


def test_every_transaction_owner_commits():
    # A module that no longer commits leaves the list, so the list stays the truth.
    modules = module_names()
    idle = [
        name
        for name in TRANSACTION_OWNERS
        if not any(
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "commit"
            for node in nodes(modules[name])
        )
    ]
    assert idle == []
