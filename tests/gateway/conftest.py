"""Gateway fixtures: tiny bases of two sizes with an adapter each, promoted variants of a
family built through the services, engines (real, and `--echo`), and a live gateway whose
policy directory a test may edit (routing.yaml, guardrails.yaml)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
import sqlmodel

from benchmarks.served import serve_version, tiny_adapter
from governance import runtime
from governance.app import create_app
from governance.db import get_db
from governance.families.models import ModelVersion
from governance.gateway.serving_engine import engine_process
from tests.factories import close_app, make_domain, principal_token

ROOT = Path(__file__).resolve().parents[2]
FAMILY = "tax-helper"
# Two bases of different widths: "small" and "large" variants of one family.
WIDTHS = {"tiny-small": 32, "tiny-large": 64}


def bases_cache() -> Path:
    """Where built tiny bases are kept between runs, named by what builds them: the builders'
    source and the versions of the libraries that write the files. Building them imports
    torch, transformers and peft (about 9 s of the quick loop's 70, measured); the same inputs
    give byte-identical files (trainers/tiny.py), so a kept copy is the copy a build makes."""
    from importlib.metadata import version

    key = hashlib.sha256()
    for source in ("trainers/tiny.py", "benchmarks/served.py"):
        key.update((ROOT / source).read_bytes())
    for package in ("torch", "transformers", "peft", "safetensors", "tokenizers"):
        key.update(f"{package}=={version(package)};".encode())
    key.update(repr(sorted(WIDTHS.items())).encode())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "governance-tests" / f"tiny-bases-{key.hexdigest()[:16]}"


@pytest.fixture(scope="session")
def bases() -> dict[str, tuple[Path, Path]]:
    """{name: (base directory, adapter directory)} for a small and a large tiny base, built
    once a machine (bases_cache) and only read by the tests."""
    root = bases_cache()
    if root.exists() and not intact(root):
        shutil.rmtree(root)  # something changed a kept file: build them again
    if not root.exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=root.parent))
        for index, (name, width) in enumerate(WIDTHS.items()):
            tiny_adapter(staging / name, staging / f"{name}-adapter", hidden_size=width, seed=index)
        (staging / "manifest.json").write_text(json.dumps(file_hashes(staging)))
        try:
            staging.rename(root)  # whole or not at all; another process may have won
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return {name: (root / name, root / f"{name}-adapter") for name in WIDTHS}


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != "manifest.json"
    }


def intact(root: Path) -> bool:
    """Whether the kept bases are byte for byte as built (a test that wrote into one would
    otherwise leave its change to every later run)."""
    try:
        return json.loads((root / "manifest.json").read_text()) == file_hashes(root)
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def echo_engine():
    """A `govern engine --echo` process: answers repeat the prompt the engine received."""
    with engine_process(echo=True) as started:
        yield started


@pytest.fixture
def policy_dir(tmp_path) -> Path:
    """A copy of the repository's policies for this test to edit."""
    target = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", target)
    return target


def write_policy(policy_dir: Path, name: str, text: str) -> None:
    (policy_dir / name).write_text(text)


def promote_variant(
    app, base_name: str, bases, *, metrics: dict | None = None, domain: str = "consumer-tax"
) -> ModelVersion:
    """A production version of FAMILY on base_name (the family made on its first base)."""
    base_path, adapter_path = bases[base_name]
    rt = runtime.of(app)
    return serve_version(
        rt.database,
        rt.store,
        FAMILY,
        domain,
        base_name,
        base_path,
        adapter_path,
        rt.sign_version,
        metrics,
    )


@pytest.fixture
def gateway(config, policy_dir, request):
    """make(engine=(url, key), **settings) -> a live gateway (URL) with a fresh app; the
    domains consumer-tax and smb-accounting exist and `tokens` has one per example person."""
    made = []

    def make(engine, **settings):
        from werkzeug.serving import make_server

        url, key = engine
        app = create_app(
            {
                **config,
                "TESTING": True,
                "GOVERNANCE_POLICY_DIR": str(policy_dir),
                "SERVING_URL": url,
                "SERVING_API_KEY": key,
                **settings,
            },
        )
        if not made:  # Gateways of one test share the database.
            make_domain(app, "consumer-tax")
            make_domain(app, "smb-accounting")
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        made.append((server, app))
        live = Gateway(f"http://127.0.0.1:{server.server_port}", app)
        return live

    yield make
    for server, app in made:
        server.shutdown()
        server.server_close()
        close_app(app)


class Gateway(str):
    """A live gateway's URL, with its app and a token per person."""

    def __new__(cls, url: str, app):
        live = super().__new__(cls, url)
        live.app = app
        live.tokens = {}
        return live

    def token(self, name: str, kind: str = "user") -> str:
        if name not in self.tokens:
            self.tokens[name] = principal_token(self.app, name, kind)
        return self.tokens[name]

    def client(self, name: str, **options):
        import openai

        return openai.OpenAI(
            base_url=self + "/v1", api_key=self.token(name), max_retries=0, **options
        )

    def queries(self, at_least: int = 0) -> list[dict]:
        """The audit log's model.query entries, oldest first (details parsed); waits a while
        for `at_least` of them (a stream's entry is written as the stream closes)."""
        import json
        import time

        from governance.audit.models import AuditEntry

        deadline = time.monotonic() + 10
        while True:
            with get_db(self.app).unit_of_work() as session:
                rows = session.exec(
                    sqlmodel.select(AuditEntry)
                    .where(AuditEntry.action == "model.query")
                    .order_by(AuditEntry.seq)
                ).all()
                found = [
                    {"principal": r.principal, "decision": r.decision, **json.loads(r.details)}
                    for r in rows
                ]
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


@pytest.fixture(autouse=True)
def _collect_garbage():
    """Collect after each test, so an unclosed socket is reported by the test that left it.
    What existed before the test is frozen first (gc.freeze), so the collection walks only
    what the test made, not the whole heap of loaded libraries and lexicons (0.6 s a test)."""
    import gc

    gc.freeze()
    yield
    gc.collect()
