"""Bad command-line values are refused before anything runs, with a message naming the option.

Each of these once got through: a negative rate started the demo's traffic thread (which died on
``sleep(-x)``) and exited 0, chaos ran a scenario "at -1 events/s" against the stack,
``bench producer --count 0`` and ``slo-report --since yesterday`` ended in tracebacks, and
``stack logs`` of an unknown node printed a KeyError traceback, ``bench capacity --rates 0,-5``
produced as fast as it could (rate 0 = unpaced: 1.5 M records in a minute), ``dlq-replay
--reason typo`` replayed nothing and said so as a success, ``--since yesterday`` failed inside the
Dagster run, and nan passed every range (``--rate nan``: a ValueError in each producer worker).
The values are only parsed here (``make_context``: types and callbacks, never the
command's body), so a value that got through again fails this test instead of starting a stack.
"""

import os
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from pydantic import ValidationError

from clickguard.settings import Settings, get_settings
from clickguard_cli.cli import main

CASES = [
    (["produce", "--rate", "-5"], "--rate"),
    (["produce", "--rate", "0"], "--rate"),
    (["produce", "--rate", "nan"], "'nan' is not a finite number"),
    (["produce", "--duration", "inf"], "'inf' is not a finite number"),
    (["slo-report", "--minutes", "1e309"], "'1e309' is not a finite number"),
    (["bench", "cpu", "--warmup-s", "nan"], "'nan' is not a finite number"),
    (["produce", "--count", "0"], "--count"),
    (["produce", "--duration", "-1"], "--duration"),
    (["produce", "--faults", "1.5"], "--faults"),
    (["produce", "--late", "-0.1"], "--late"),
    (["produce", "--speed", "-2"], "--speed"),
    (["demo", "--rate", "-3"], "--rate"),
    (["demo", "--duration", "0"], "--duration"),
    (["chaos", "broker-kill", "--rate", "-1"], "--rate"),
    (["bench", "producer", "--count", "0"], "--count"),
    (["bench", "latency", "--minutes", "0"], "--minutes"),
    (["bench", "latency", "--rate", "0"], "--rate"),
    (["bench", "cpu", "--step-s", "0"], "--step-s"),
    (["bench", "cpu", "--steps", "0,-1000"], "every rate must be >= 0"),
    (["bench", "capacity", "--rates", "0,-5"], "every rate must be >= 1"),
    (["bench", "capacity", "--rates", "5k"], "give whole events/s separated by commas"),
    (["bench", "capacity", "--rates", ","], "every rate must be >= 1"),
    (["slo-report", "--minutes", "-5"], "--minutes"),
    (["slo-report", "--since", "yesterday"], "not an ISO 8601 time"),
    (["slo-report", "--until", "3pm"], "not an ISO 8601 time"),
    (["fuzz-stream", "--records", "0"], "--records"),
    (["fuzz-stream", "--poison-rate", "2"], "--poison-rate"),
    (["dlq-replay", "--limit", "0"], "--limit"),
    (["dlq-replay", "--reason", "not_wire"], "'not_wire' is not one of 'not_wire_format'"),
    (["dlq-replay", "--since", "yesterday"], "not an ISO 8601 time"),
    (["stack", "logs", "api", "--lines", "0"], "--lines"),
]


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("CLICKGUARD_HOME", str(tmp_path / "home"))
    return CliRunner()


def parse(args: list[str]) -> None:
    """Parse ``clickguard ARGS`` for its leaf command (groups take no options here), running
    no command body."""
    ctx = click.Context(main, info_name="clickguard")
    cmd: click.Command = main
    name, rest = "clickguard", list(args)
    while isinstance(cmd, click.Group):
        sub = cmd.get_command(ctx, rest[0])
        assert sub is not None, rest[0]
        cmd, name, rest = sub, rest[0], rest[1:]
        ctx = click.Context(cmd, info_name=name, parent=ctx)
    cmd.make_context(name, rest, parent=ctx.parent)


@pytest.mark.parametrize(("args", "says"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_a_bad_value_is_a_usage_error_naming_it(args: list[str], says: str) -> None:
    with pytest.raises(click.UsageError) as err:
        parse(args)
    assert says in err.value.format_message()


def test_good_values_parse() -> None:  # the check above is not passing because nothing parses
    parse(["produce", "--rate", "500", "--count", "10", "--faults", "0.1"])
    parse(["slo-report", "--since", "2026-12-03T13:00:00", "--until", "2026-12-03T14:00:00+01:00"])
    parse(["chaos", "broker-kill", "--rate", "1000"])
    parse(["bench", "capacity", "--rates", "2500, 5000"])
    parse(["bench", "cpu", "--steps", "0,1000"])
    parse(["dlq-replay", "--reason", "out_of_range", "--since", "2026-12-06T05:00:00"])


@pytest.mark.parametrize("args", [["stack", "logs", "nosuch"], ["stack", "up", "api", "nosuch"],
                                  ["stack", "restart", "nosuch"]])
def test_an_unknown_node_is_one_error_line_naming_the_nodes(
    runner: CliRunner, args: list[str]
) -> None:
    """Not a KeyError traceback, not a quoted message; `stack up` printed the whole status table
    before it (nothing is started: names are resolved first)."""
    result = runner.invoke(main, args)
    assert result.exit_code == 1
    assert result.output.startswith("Error: unknown node 'nosuch'; nodes: postgres, kafka-1")
    assert result.output.count("\n") == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a ClickException, not a KeyError


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("CLICKGUARD_PG_PORT", "abc", "CLICKGUARD_PG_PORT='abc': Input should be a valid integer"),
    ("CLICKGUARD_API_PORT", "70000", "a port must be between 1 and 65535"),
    ("CLICKGUARD_STREAM_MAX_OFFSETS_PER_TRIGGER", "-5", "must not be negative"),
    ("CLICKGUARD_DEMO_RATE", "-1.5", "CLICKGUARD_DEMO_RATE='-1.5'"),
    ("CLICKGUARD_DEMO_RATE", "nan", "CLICKGUARD_DEMO_RATE='nan': Value error, must be a finite"),
    ("CLICKGUARD_CAPACITY_MAX_P95_MS", "inf", "must be a finite number"),
])
def test_a_bad_setting_is_one_error_line_naming_its_variable(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    """It was pydantic's traceback, from whichever command read the settings first."""
    get_settings.cache_clear()
    monkeypatch.setenv(variable, value)
    try:
        for args in (["config"], ["stack", "status"]):
            result = runner.invoke(main, args)
            assert result.exit_code == 1, (args, result.output)
            assert isinstance(result.exception, SystemExit)  # a ClickException: no traceback
            assert "invalid configuration" in result.output and says in result.output
    finally:
        get_settings.cache_clear()


def test_settings_in_range_are_accepted() -> None:
    s = Settings(_env_file=None, api_port=65535, stream_restart_backoff_s=0,
                 stream_max_offsets_per_trigger=1)
    assert (s.api_port, s.stream_restart_backoff_s) == (65535, 0)
    with pytest.raises(ValidationError, match="kafka_broker_port_base"):
        Settings(_env_file=None, kafka_broker_port_base=0)


def test_config_prints_what_an_env_file_reads_back(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`clickguard config` lines pasted into .env mean what they show: an unset value is a
    commented line (it printed `CLICKGUARD_KAFKA_BOOTSTRAP=None`: pasted, an external Kafka at
    host "None"), lists are JSON."""
    get_settings.cache_clear()
    try:
        result = runner.invoke(main, ["config"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "# CLICKGUARD_KAFKA_BOOTSTRAP=  (not set)" in result.output
    assert "=None" not in result.output
    env_file = tmp_path / "pasted.env"
    env_file.write_text(result.output)
    for name in [k for k in os.environ if k.startswith("CLICKGUARD_")]:
        monkeypatch.delenv(name)
    shown, read_back = Settings(), Settings(_env_file=env_file)
    secret = [n for n in Settings.model_fields if "password" in n or n.endswith(("token", "key"))]
    assert read_back.model_dump(exclude=set(secret)) == shown.model_dump(exclude=set(secret)) | {
        "home": read_back.home}  # `runner` points CLICKGUARD_HOME at a temp folder


def test_a_node_that_cannot_start_is_a_one_line_error(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`stack start` (and every bench or chaos command that restarts a node) ended in a
    traceback when the node failed: `bench producer` printed one when the broker it had killed
    exited on restart. The failure here is real: no registry assembly in an empty cache."""
    get_settings.cache_clear()
    monkeypatch.setenv("CLICKGUARD_CACHE_DIR", str(tmp_path / "empty-cache"))
    try:
        result = runner.invoke(main, ["stack", "start", "registry"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a ClickException: no traceback
    assert "Error: registry assembly missing in" in result.output
    assert "run `make setup` first" in result.output


@pytest.mark.parametrize(("content", "says"), [
    (b"\x80\xd5binary\n", "odd.dat:1: not UTF-8 text"),
    (b"1,2014-04-07T10:51:09.277Z,214536502,0\nfoo,bar\n", "odd.dat:2: bad YOOCHOOSE line"),
    (b"", "no YOOCHOOSE lines in"),
])
def test_a_bad_replay_file_is_one_error_line_before_anything_is_sent(
    runner: CliRunner, tmp_path: Path, content: bytes, says: str
) -> None:
    """The file is read before the registry or Kafka is contacted (none runs here); it was a
    UnicodeDecodeError or ParseError traceback, and an empty file a successful run of nothing."""
    odd = tmp_path / "odd.dat"
    odd.write_bytes(content)
    result = runner.invoke(main, ["produce", "--replay", str(odd)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and says in result.output, result.output
    assert result.output.count("\n") == 1, result.output


@pytest.mark.parametrize("args", [["migrate"], ["init"], ["slo-report"], ["dlq-replay"],
                                  ["fuzz-stream", "--records", "10"]])
@pytest.mark.usefixtures("runner")  # its CLICKGUARD_HOME: a temp folder
def test_a_database_that_is_not_there_is_one_error_line_saying_what_to_do(
    cli: Callable[..., Result], args: list[str]
) -> None:
    """Run before `stack up` or after `make stop` (here: a port nobody listens on), these were a
    psycopg traceback, `dlq-replay` one from Dagster's storage after 20 s of retries."""
    import socket

    with socket.socket() as s:  # a free port, closed again: connections to it are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = cli(args, CLICKGUARD_PG_PORT=str(port))
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a ClickException: no traceback
    assert result.output == (
        f'Error: PostgreSQL: connection to server at "127.0.0.1", port {port} failed: Connection'
        " refused; is it running? `clickguard stack up` (or `make run`) starts the local stack;"
        " CLICKGUARD_PG_HOST and CLICKGUARD_PG_PORT point at another server\n"
    )


def test_an_error_on_an_open_connection_keeps_its_traceback() -> None:
    import psycopg

    from clickguard.db import connect_failure

    assert connect_failure(psycopg.OperationalError(
        "terminating connection due to administrator command")) is None
    assert connect_failure(ValueError("connection failed")) is None
    login = psycopg.OperationalError(
        'connection failed: connection to server at "10.0.0.5", port 5432 failed: FATAL:  '
        'password authentication failed for user "clickguard"')
    assert connect_failure(login) == (
        'PostgreSQL: connection to server at "10.0.0.5", port 5432 failed: FATAL: password'
        ' authentication failed for user "clickguard"; check the CLICKGUARD_PG_* settings'
        " (`clickguard config` shows them)")
