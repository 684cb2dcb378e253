"""The ML engineer's commands over the API: families, versions, queries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from governance.cli.approvals import show_request
from governance.cli.base import fail_cleanly, url_option

if TYPE_CHECKING:
    pass


def show_family(item: dict) -> None:
    production = item["production_version"] or "-"
    click.echo(
        f"{item['name']}  {item['domain']}  base {item['base_model']}  production v{production}"
        f"  refresh '{item['refresh_schedule']}'"
    )


def number_text(value: int | float) -> str:
    """A figure as a person reads it: integers whole, others to 4 significant digits."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


def show_version(item: dict) -> None:
    metrics = item.get("metrics") or {}
    summary = ", ".join(
        f"{k} {number_text(v)}"
        for k, v in sorted(metrics.items())
        if isinstance(v, int | float) and not isinstance(v, bool)
    )
    click.echo(
        f"{item['family']} v{item['version']}  {item['status']:<10} tax year {item['tax_year']}"
        f"  by {item['trained_by']}{'  ' + summary if summary else ''}"
    )
    if item.get("work"):
        from governance.client import WorkClock

        click.echo(f"  {WorkClock().line(item['work'])}")


@click.group()
def family() -> None:
    """Model families, over the API with your token (GOVERNANCE_URL, GOVERNANCE_TOKEN)."""


def parse_gain(text: str) -> tuple[str, float]:
    """`task/metric=value` of --min-gain."""
    key, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return key.strip(), float(value)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not TASK/METRIC=VALUE", param_hint="--min-gain"
        ) from None


def read_choices(path: Path) -> list[dict[str, Any]]:
    """The multiple-choice items of --choices, one JSON object per line."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(
                f"line {number} is not JSON: {exc.msg}", param_hint="--choices"
            ) from None
        if not isinstance(item, dict):
            raise click.BadParameter(f"line {number} is not an object", param_hint="--choices")
        items.append(item)
    return items


@family.command("create")
@click.argument("domain")
@click.argument("name")
@click.option("--base-model", required=True, help="A registered base model.")
@click.option("--schedule", default=None, help="Refresh schedule (cron), default yearly.")
@click.option(
    "--dp-epsilon",
    type=float,
    default=None,
    help="Train every version with differential privacy (DP-SGD) spending at most this "
    "epsilon per version, per customer (or record).",
)
@click.option("--dp-delta", type=float, default=1e-6, show_default=True)
@click.option("--dp-max-grad-norm", type=float, default=1.0, show_default=True)
@click.option("--epochs", type=click.IntRange(1, 1000), default=None, help="Default 2.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=None, help="Default 8.")
@click.option("--learning-rate", type=float, default=None, help="Default 0.002.")
@click.option("--lora-r", type=click.IntRange(1, 1024), default=None, help="LoRA rank (8).")
@click.option(
    "--holdout-fraction",
    type=click.FloatRange(0, 0.5, min_open=True),
    default=None,
    help="Share of the records held out for the gate (default 0.1).",
)
@click.option(
    "--few-shot", type=click.IntRange(0, 16), default=None, help="Shots of the baseline (3)."
)
@click.option(
    "--tolerance", type=float, default=None, help="How much worse than production (0.05)."
)
@click.option(
    "--min-gain",
    "min_gains",
    multiple=True,
    metavar="TASK/METRIC=VALUE",
    help="Least gain over the untuned base, e.g. governance_perplexity/bits_per_byte=0.",
)
@click.option(
    "--choices",
    "choices_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JSON lines of multiple-choice items ({question, choices, answer}) for the gate.",
)
@click.option(
    "--accept-no-signal",
    is_flag=True,
    help="Pass the gate even when a version shows no measurable skill on held-out data.",
)
@url_option
@fail_cleanly
def family_create(
    domain: str,
    name: str,
    base_model: str,
    schedule: str | None,
    dp_epsilon: float | None,
    dp_delta: float,
    dp_max_grad_norm: float,
    epochs: int | None,
    batch_size: int | None,
    learning_rate: float | None,
    lora_r: int | None,
    holdout_fraction: float | None,
    few_shot: int | None,
    tolerance: float | None,
    min_gains: tuple[str, ...],
    choices_file: Path | None,
    accept_no_signal: bool,
    url,
) -> None:
    """Create the model family NAME in DOMAIN: its base model, training recipe and gate.
    Options left out take the service's defaults."""
    from governance.client import api_call
    from governance.families.models import FamilyCreate

    def given(**options: Any) -> dict[str, Any]:
        return {k: v for k, v in options.items() if v is not None}

    body: dict[str, Any] = {"name": name, "base_model": base_model}
    hyper = given(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate)
    if hyper:
        # The options given replace the service's defaults one by one, not the whole recipe.
        defaults = FamilyCreate.model_fields["hyperparameters"].get_default(
            call_default_factory=True
        )
        body["hyperparameters"] = {**defaults, **hyper}
    if lora_r is not None:
        body["lora"] = {"r": lora_r, "alpha": 2 * lora_r, "dropout": 0.0}
    suite = given(holdout_fraction=holdout_fraction, few_shot=few_shot, tolerance=tolerance)
    if accept_no_signal:
        suite["accept_no_signal"] = True
    if min_gains:
        suite["min_gain"] = dict(parse_gain(g) for g in min_gains)
    if choices_file is not None:
        suite["multiple_choice"] = read_choices(choices_file)
    if suite:
        body["eval_suite"] = suite
    if schedule:
        body["refresh_schedule"] = schedule
    if dp_epsilon is not None:
        body["privacy"] = {
            "epsilon": dp_epsilon,
            "delta": dp_delta,
            "max_grad_norm": dp_max_grad_norm,
            "sampling": "poisson",
        }
    show_family(api_call("POST", f"/api/v1/domains/{domain}/models", body, url=url))


@family.command("list")
@click.option("--domain", default=None, help="Only this domain's families.")
@url_option
@fail_cleanly
def family_list(domain: str | None, url) -> None:
    """The model families you may read."""
    from governance.client import api_call

    path = f"/api/v1/domains/{domain}/models" if domain else "/api/v1/models"
    for item in api_call("GET", path, url=url)["items"]:
        show_family(item)


@family.command("show")
@click.argument("name")
@url_option
@fail_cleanly
def family_show(name: str, url) -> None:
    """A family, its recipe and its versions."""
    from governance.client import api_call

    click.echo(json.dumps(api_call("GET", f"/api/v1/models/{name}", url=url), indent=2))
    for item in api_call("GET", f"/api/v1/models/{name}/versions", url=url)["items"]:
        show_version(item)


@family.command("traffic")
@click.argument("name")
@click.option("--since", default=None, help="ISO date or time (default: 30 days ago).")
@click.option("--until", default=None, help="ISO date or time (default: now).")
@url_option
@fail_cleanly
def family_traffic(name: str, since: str | None, until: str | None, url) -> None:
    """Per variant: queries answered, refused and failed, latency, tokens and their cost."""
    from urllib.parse import urlencode

    from governance.client import api_call

    query = urlencode({k: v for k, v in (("since", since), ("until", until)) if v})
    report = api_call("GET", f"/api/v1/models/{name}/traffic?{query}", url=url)
    click.echo(f"{report['family']}: {report['since']} .. {report['until']}")
    click.echo(
        f"{'variant':<24} {'answered':>8} {'refused':>7} {'failed':>6} {'p50 ms':>8} "
        f"{'p95 ms':>8} {'tokens':>9} {'cost':>10}"
    )
    for row in report["variants"]:
        tokens = row["prompt_tokens"] + row["completion_tokens"]
        p50 = "-" if row["latency_ms_p50"] is None else f"{row['latency_ms_p50']:.1f}"
        p95 = "-" if row["latency_ms_p95"] is None else f"{row['latency_ms_p95']:.1f}"
        click.echo(
            f"{row['variant']:<24} {row['answered']:>8} {row['refused']:>7} {row['failed']:>6} "
            f"{p50:>8} {p95:>8} {tokens:>9} {row['cost']:>10.4f}"
        )


def dataset_refs(datasets: tuple[str, ...]) -> list[dict[str, int]]:
    """`--dataset ID:VERSION` options as the API's dataset references."""
    from governance.errors import InvalidInput

    refs = []
    for ref in datasets:
        dataset_id, _, number = ref.partition(":")
        if not (dataset_id.isdigit() and number.isdigit()):
            raise InvalidInput(f"--dataset {ref!r}: write DATASET_ID:VERSION, as 3:1")
        refs.append({"dataset_id": int(dataset_id), "version": int(number)})
    return refs


def sweep_table(document: dict, out: str | None) -> None:
    from governance.families.sweeps import render

    text = render(document)
    if out:
        with open(out, "w") as handle:
            handle.write(text)
        click.echo(f"wrote {out}")
    click.echo(text, nl=False)


@family.command("sweep")
@click.argument("name")
@click.option("--bases", required=True, help="Registered base models, comma-separated.")
@click.option("--tax-year", type=int, required=True)
@click.option("--dataset", "datasets", multiple=True, required=True, metavar="ID:VERSION",
              help="An approved, scanned dataset version (repeatable).")  # fmt: skip
@click.option("--metric", default="governance_perplexity/bits_per_byte", show_default=True,
              help="The harness task/metric the bases are compared on.")  # fmt: skip
@click.option("--tolerance", type=float, default=0.05, show_default=True,
              help="How far from the best (relative) a base may be and still be kept.")  # fmt: skip
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until every version has been through its gate.")  # fmt: skip
@click.option("--timeout", type=float, default=3600, show_default=True, help="Seconds.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Also write the table here (Markdown).")  # fmt: skip
@url_option
@fail_cleanly
def family_sweep(
    name: str,
    bases: str,
    tax_year: int,
    datasets: tuple[str, ...],
    metric: str,
    tolerance: float,
    wait: bool,
    timeout: float,
    out: str | None,
    url,
) -> None:
    """Train the same approved data on several bases of NAME (one version each) and write
    the table of score, latency per token and memory, marking the smallest base within the
    tolerance of the best."""
    import time

    from governance.client import api_call

    body = {
        "bases": [b.strip() for b in bases.split(",") if b.strip()],
        "tax_year": tax_year,
        "datasets": dataset_refs(datasets),
        "metric": metric,
        "tolerance": tolerance,
    }
    document = api_call("POST", f"/api/v1/models/{name}/sweeps", body, url=url)
    click.echo(f"sweep {document['uid']}: {len(document['rows'])} versions started", err=True)
    deadline = time.monotonic() + timeout
    while wait and not document["complete"]:
        if time.monotonic() > deadline:
            raise click.ClickException(f"sweep {document['uid']} is not complete after {timeout} s")
        time.sleep(2)
        document = api_call("GET", f"/api/v1/models/{name}/sweeps/{document['uid']}", url=url)
    sweep_table(document, out)


@family.command("sweep-table")
@click.argument("name")
@click.argument("uid")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Also write the table here (Markdown).")  # fmt: skip
@url_option
@fail_cleanly
def family_sweep_table(name: str, uid: str, out: str | None, url) -> None:
    """The table of NAME's sweep UID as it stands."""
    from governance.client import api_call

    sweep_table(api_call("GET", f"/api/v1/models/{name}/sweeps/{uid}", url=url), out)


@click.group()
def version() -> None:
    """Model versions: train, list, show, promote, roll back (over the API, your token)."""


@version.command("train")
@click.argument("family_name", metavar="FAMILY")
@click.option("--tax-year", type=int, required=True)
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    required=True,
    metavar="ID:VERSION",
    help="An approved, scanned dataset version (repeatable).",
)
@click.option(
    "--base-model",
    default=None,
    help="Train a variant on another registered base model (default: the family's).",
)
@url_option
@fail_cleanly
def version_train(
    family_name: str, tax_year: int, datasets: tuple[str, ...], base_model: str | None, url
) -> None:
    """Start a new version of FAMILY from its base model on approved data."""
    from governance.client import api_call

    body = {"tax_year": tax_year, "datasets": dataset_refs(datasets)}
    if base_model:
        body["base_model"] = base_model
    show_version(api_call("POST", f"/api/v1/models/{family_name}/versions", body, url=url))


@version.command("list")
@click.argument("family_name", metavar="FAMILY")
@url_option
@fail_cleanly
def version_list(family_name: str, url) -> None:
    """FAMILY's versions and their status."""
    from governance.client import api_call

    for item in api_call("GET", f"/api/v1/models/{family_name}/versions", url=url)["items"]:
        show_version(item)


@version.command("show")
@click.argument("family_name", metavar="FAMILY")
@click.argument("number", type=int, metavar="VERSION")
@click.option(
    "--follow",
    is_flag=True,
    help="While it trains or waits for its gate, print its progress (step x/y, time left) "
    "until it is done; then show it.",
)
@click.option("--interval", type=click.FloatRange(0.2, 600), default=2.0, show_default=True)
@url_option
@fail_cleanly
def version_show(family_name: str, number: int, follow: bool, interval: float, url) -> None:
    """One version: status, metrics, evaluation, the data it was trained on."""
    import time

    from governance.client import WorkClock, api_call

    path = f"/api/v1/models/{family_name}/versions/{number}"
    item = api_call("GET", path, url=url)
    clock, last = WorkClock(), None
    while follow and item.get("work"):
        work = item["work"]
        line = clock.line(work)  # always: the clock times the steps it sees
        seen = clock.key(work)
        if seen != last:
            click.echo(line, err=True)
            last = seen
        time.sleep(interval)
        item = api_call("GET", path, url=url)
    click.echo(json.dumps(item, indent=2))


@version.command("promote")
@click.argument("family_name", metavar="FAMILY")
@click.argument("number", type=int, metavar="VERSION")
@click.option("--request", "request_only", is_flag=True, help="Only ask for the approvals.")
@url_option
@fail_cleanly
def version_promote(family_name: str, number: int, request_only: bool, url) -> None:
    """Put VERSION in production once approved (--request asks for the approvals)."""
    from governance.client import api_call

    base = f"/api/v1/models/{family_name}/versions/{number}"
    if request_only:
        show_request(api_call("POST", f"{base}/promotion", {}, url=url))
    else:
        show_version(api_call("POST", f"{base}/promote", {}, url=url))


@version.command("rollback")
@click.argument("family_name", metavar="FAMILY")
@click.option("--base-model", default=None, help="The variant to roll back (its base model).")
@click.option("--reason", default=None, help="Why (kept with the version and in the audit log).")
@url_option
@fail_cleanly
def version_rollback(family_name: str, base_model: str | None, reason: str | None, url) -> None:
    """Put the previous untainted version of FAMILY back in production."""
    from urllib.parse import urlencode

    from governance.client import api_call

    given = {k: v for k, v in (("base_model", base_model), ("reason", reason)) if v}
    query = f"?{urlencode(given)}" if given else ""
    show_version(api_call("POST", f"/api/v1/models/{family_name}/rollback{query}", {}, url=url))


@click.command("query")
@click.argument("family_name", metavar="FAMILY")
@click.argument("prompt")
@click.option("--max-new-tokens", default=32, show_default=True, type=click.IntRange(1, 512))
@url_option
@fail_cleanly
def query(family_name: str, prompt: str, max_new_tokens: int, url) -> None:
    """Ask FAMILY's serving version (audited; the prompt only by its keyed hash)."""
    from governance.client import api_call

    body = {"prompt": prompt, "max_new_tokens": max_new_tokens}
    answer = api_call("POST", f"/api/v1/models/{family_name}/generate", body, url=url)
    click.echo(answer.get("text", ""))


@click.group()
def privacy() -> None:
    """Differential privacy: what each domain's models have spent of its budget."""


@privacy.command("ledger")
@click.argument("domain")
@click.option("--json", "as_json", is_flag=True, help="The ledger as JSON.")
@url_option
@fail_cleanly
def privacy_ledger(domain: str, as_json: bool, url) -> None:
    """Print DOMAIN's privacy ledger: each version trained with DP, its (epsilon, delta), the
    sum over the budget's period and what is left."""
    from governance.client import api_call

    book = api_call("GET", f"/api/v1/domains/{domain}/privacy-ledger", url=url)
    if as_json:
        click.echo(json.dumps(book, indent=2))
        return
    budget = book["budget"]
    click.echo(
        f"{book['domain']}: unit of privacy the {book['unit']}"
        + (f" (key {book['unit_key']})" if book["unit_key"] else "")
        + (
            f"; budget epsilon {budget['epsilon']:g}, delta {budget['delta']:.3g} over "
            f"{budget['years']} years (since {book['period_since']})"
            if budget
            else "; no budget set in domains.yaml"
        )
    )
    for e in book["entries"]:
        spent = (
            f"epsilon {e['epsilon']:.4g} delta {e['delta']:.3g}"
            if e["epsilon"] is not None
            else "no DP: unbounded"
        )
        click.echo(
            f"  {e['family']} v{e['version']} ({e['tax_year']}, {e['status']}): {spent}"
            f"{'' if e['counts'] else ' (not counted)'}: {e['why']}"
        )
    spent, left = book["spent"], book["remaining"]
    click.echo(
        f"spent: epsilon {spent['epsilon']:.4g}, delta {spent['delta']:.3g} ({book['composition']})"
    )
    if left is not None:
        click.echo(f"remaining: epsilon {left['epsilon']:.4g}, delta {left['delta']:.3g}")
