"""`clickguard` command line: setup, the local stack, produce, bench, chaos, reports."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
from typing import TYPE_CHECKING

import click
from pydantic import ValidationError

from clickguard.cli_types import COUNT, POSITIVE
from clickguard.settings import Settings, env_name, env_value, get_settings, invalid_settings

if TYPE_CHECKING:  # annotations only: the stack manager is imported when a command runs
    from clickguard_stack.manager import Stack

# Commands that live beside their code in the core package: name -> "module:attribute".
# They are imported only when called, so `clickguard --help` stays fast.
LAZY_COMMANDS = {
    "produce": "clickguard_producer.cli:produce",
    "bench": "clickguard_proof.bench:bench",
    "chaos": "clickguard_proof.chaos:chaos",
    "slo-report": "clickguard_proof.slo:slo_report",
    "demo": "clickguard_proof.demo:demo",
    "fuzz-stream": "clickguard_proof.fuzz:fuzz_stream_cmd",
    "proof": "clickguard_proof.proof_table:proof",
    "dlq-replay": "clickguard_dagster.cli:dlq_replay",  # runs the Dagster job in the instance
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        present = [n for n, t in LAZY_COMMANDS.items() if _module_exists(t.split(":")[0])]
        return sorted([*super().list_commands(ctx), *present])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS:
            module, attr = LAZY_COMMANDS[name].split(":")
            if _module_exists(module):
                # None (= not listed, "no such command") while the module lacks the attribute,
                # so one unfinished command cannot break `clickguard --help`
                return getattr(importlib.import_module(module), attr, None)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> object:
        """A bad ``CLICKGUARD_*`` value, a node that would not start or stay up, or a
        PostgreSQL that cannot be reached is a one-line error naming the variable, the node and
        its log, or the server, whichever command hit it (a bench that restarts a broker,
        ``stack start``, ``migrate`` before ``stack up``): they were tracebacks."""
        from clickguard_stack.errors import StackError

        try:
            return super().invoke(ctx)
        except ValidationError as exc:
            if exc.title != Settings.__name__:
                raise
            raise click.ClickException(invalid_settings(exc)) from exc
        except StackError as exc:
            raise click.ClickException(str(exc)) from exc
        except Exception as exc:
            from clickguard.db import connect_failure  # psycopg, only once something failed

            said = connect_failure(exc)
            if said is None:
                raise
            raise click.ClickException(said) from exc


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@click.group(cls=LazyGroup)
@click.version_option(package_name="clickguard")
def main() -> None:
    """Clickstream Guardian: real-time clickstream platform on Kafka, Spark, PostgreSQL, Dagster."""
    from clickguard_proof.provenance import mark_start

    mark_start()  # the load average before the command runs, for the result files


@main.command()
def setup() -> None:
    """Fetch jars with Maven and install PostgreSQL if missing (idempotent)."""
    from clickguard_stack.setup import run_setup

    run_setup(get_settings())


@main.group()
def stack() -> None:
    """Run the local stack: 3 KRaft Kafka nodes, PostgreSQL, schema registry, app processes."""


def _stack() -> Stack:
    from clickguard_stack.manager import Stack

    return Stack(get_settings(), echo=click.echo)


@stack.command()
@click.argument("nodes", nargs=-1)
@click.option("--timeout", type=POSITIVE,
              default=120.0, show_default=True, help="Seconds to wait per step.")
def up(nodes: tuple[str, ...], timeout: float) -> None:
    """Start NODES (default: all) with the nodes they need, and wait until they are ready."""
    from clickguard_stack.manager import format_status

    s = _stack()
    try:
        took = s.up(list(nodes) or None, timeout=timeout)
    except KeyError as exc:  # an unknown node name: nothing was started
        raise click.ClickException(str(exc)) from exc
    except RuntimeError as exc:
        click.echo(format_status(s.status(memory=True)), err=True)
        raise click.ClickException(str(exc)) from exc
    click.echo(format_status(s.status(memory=True)))
    click.echo(f"stack up in {took:.1f}s")


@stack.command()
@click.option("--reset", is_flag=True, help="Also delete all data (Kafka logs, database).")
def down(reset: bool) -> None:
    """Stop every node; data persists unless --reset."""
    t0 = time.monotonic()
    _stack().down(reset=reset)
    click.echo(f"stack down in {time.monotonic() - t0:.1f}s")


@stack.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Each node's state (healthy/starting/paused/down/crash-looping), pid, port, memory."""
    import dataclasses
    import json

    from clickguard_stack.manager import format_status

    rows = _stack().status(memory=True)
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    else:
        click.echo(format_status(rows))


@stack.command()
@click.argument("node")
@click.option("-n", "--lines", type=COUNT, default=50, show_default=True)
@click.option("-f", "--follow", is_flag=True)
def logs(node: str, lines: int, follow: bool) -> None:
    """Print the last lines of NODE's log."""
    try:
        path = _stack().node(node).log_file
    except KeyError as exc:
        raise click.ClickException(str(exc)) from exc
    if not path.exists():
        raise click.ClickException(f"no log yet at {path}")
    with path.open("rb") as f:
        click.echo(b"".join(f.readlines()[-lines:]).decode(errors="replace"), nl=False)
        while follow:
            chunk = f.read()
            if chunk:
                click.echo(chunk.decode(errors="replace"), nl=False)
            time.sleep(0.5)


def _node_command(action: str, help_text: str) -> None:
    @stack.command(name=action, help=help_text)
    @click.argument("node")
    def _cmd(node: str) -> None:
        try:
            click.echo(_stack().control(action, node))
        except KeyError as exc:
            raise click.ClickException(str(exc)) from exc


for _action, _help in (
    ("start", "Start one NODE and wait until healthy."),
    ("stop", "Stop one NODE cleanly."),
    ("restart", "Stop one NODE cleanly, then start it (after a code or settings change)."),
    ("kill", "SIGKILL one NODE (a crash)."),
    ("pause", "SIGSTOP one NODE (a hang)."),
    ("resume", "SIGCONT a paused NODE."),
):
    _node_command(_action, _help)


@main.command()
@click.option("--env-example", is_flag=True, help="Print the documented .env.example text.")
def config(env_example: bool) -> None:
    """Show the effective configuration (or the .env.example template)."""
    from clickguard.settings import env_example as template

    if env_example:
        click.echo(template(), nl=False)
        return
    # in .env syntax: a line pasted into .env means what it shows (an unset value printed as
    # `None` would have set the text "None", e.g. an external Kafka at host None)
    for name, value in get_settings().model_dump(mode="json").items():
        secret = "password" in name or name.endswith(("token", "key"))
        if value is None:
            click.echo(f"# {env_name(name)}=  (not set)")
        else:
            click.echo(f"{env_name(name)}={'***' if secret and value else env_value(value)}")


@main.command()
def init() -> None:
    """Prepare external services: roles, databases, migrations, topics, registered contract."""
    from clickguard import db
    from clickguard import kafka as kafka_helpers
    from clickguard.contract import RegistryClient, register_contract

    s = get_settings()
    db.bootstrap(s)
    click.echo(f"migrations applied: {db.migrate(s) or 'nothing pending'}")
    click.echo(f"topics created: {kafka_helpers.ensure_topics(s) or 'none (all exist)'}")
    schema_id = register_contract(RegistryClient(s.schema_registry_url), s.topic_raw)
    click.echo(f"contract registered under {s.topic_raw}-value with id {schema_id}")


@main.command()
def migrate() -> None:
    """Apply pending database migrations."""
    from clickguard import db

    s = get_settings()
    db.bootstrap(s)
    click.echo(f"applied: {db.migrate(s) or 'nothing pending'}")


if __name__ == "__main__":
    sys.exit(main())
