"""The `stockgate` command line (typer). Commands parse arguments and hand over at once."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from plumbing import software_version
from plumbing.logs import LogFormat
from plumbing.logs import setup as setup_logging
from plumbing.settings import ConfigError

if TYPE_CHECKING:  # only for annotations: edge commands never import the server
    from server.config.settings import ServerSettings

app = typer.Typer(
    help="stockgate: RFID and barcode edge gateway with a central stock ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
server_app = typer.Typer(help="The central server (ingest, ledger, API).", no_args_is_help=False)
sim_app = typer.Typer(help="Simulated readers, scanners and scenarios.", no_args_is_help=True)
app.add_typer(server_app, name="server")
app.add_typer(sim_app, name="sim")

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="TOML config file.", exists=False, dir_okay=False),
]
LogLevel = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]


_log_format = LogFormat.TEXT
"""Set by the root ``--log-format`` option, before any command runs."""


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"stockgate {software_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format",
            case_sensitive=False,
            help="text, or json: one JSON object per line (for log shippers).",
        ),
    ] = LogFormat.TEXT,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the software version and exit.",
        ),
    ] = False,
) -> None:
    global _log_format
    _log_format = log_format


def _setup_logging(level: str) -> None:
    setup_logging(level, _log_format)


async def _until_terminated(main: Coroutine[Any, Any, int | None]) -> int | None:
    """Run ``main``; SIGTERM (systemd's stop) cancels it, so it shuts down as on Ctrl-C."""
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    terminated = False

    def terminate() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        return await task
    except asyncio.CancelledError:
        if terminated:
            return 0
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _run(main: Coroutine[Any, Any, int | None], errors: tuple[type[Exception], ...] = ()) -> None:
    """Run a coroutine until it ends, Ctrl-C or SIGTERM; exit with its status.

    ``errors`` are the caller's own refusals (e.g. ``ServerError``), reported in one line
    with status 2 like a config error. Each command passes its own, so an edge command
    never imports the server's modules (a gateway installs only ``stockgate[edge]``).
    """
    refusals: tuple[type[Exception], ...] = (ConfigError, *errors)
    try:
        code = asyncio.run(_until_terminated(main))
    except refusals as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    except OSError as err:
        typer.echo(f"error: {err.strerror or err}", err=True)
        raise typer.Exit(2) from err
    except KeyboardInterrupt:
        code = 130
    raise typer.Exit(code or 0)


def _run_server(main: Coroutine[Any, Any, int | None]) -> None:
    """``_run`` for a server command: the server's own refusals are one line, status 2."""
    from server.errors import ServerError

    _run(main, (ServerError,))


def _server_settings(config: Path, log_level: str) -> ServerSettings:
    """The server's settings from ``config``; a bad file is one line and status 2."""
    from plumbing.settings import load
    from server.config.settings import ServerSettings

    _setup_logging(log_level)
    try:
        return load(ServerSettings, config)
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err


@app.command()
def demo(
    duration: Annotated[
        float | None,
        typer.Option(help="Stop after this many seconds and print the stock table."),
    ] = None,
    port: Annotated[int, typer.Option(help="API port (0 = any free port).")] = 8000,
    log_level: LogLevel = "warning",
) -> None:
    """Run broker, server, a simulated dock door and an edge agent on this machine."""
    from server.errors import ServerError
    from stockgate.demo import run_demo

    _setup_logging(log_level)
    _run(run_demo(duration=duration, api_port=port), (ServerError,))


@server_app.callback(invoke_without_command=True)
def server(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="server.toml")] = None,
    log_level: LogLevel = "info",
) -> None:
    """Run the server: `stockgate server --config server.toml`."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        typer.echo("error: --config FILE is required", err=True)
        raise typer.Exit(2)
    from server.app import run_server
    from server.collector import tune_gc

    settings = _server_settings(config, log_level)
    tune_gc()
    _run_server(run_server(settings))


@server_app.command("check-ledger")
def check_ledger(config: ConfigOption, log_level: LogLevel = "warning") -> None:
    """Rebuild balances from the ledger and report any difference (exit 1 if any)."""
    from server.app import check_ledger_command

    settings = _server_settings(config, log_level)
    _run_server(check_ledger_command(settings))


@server_app.command("rebuild-history")
def rebuild_history(config: ConfigOption, log_level: LogLevel = "warning") -> None:
    """Rebuild the history rollups from the ledger (safe while servers run)."""
    from server.app import rebuild_history_command

    _run_server(rebuild_history_command(_server_settings(config, log_level)))


@server_app.command("check-history")
def check_history(config: ConfigOption, log_level: LogLevel = "warning") -> None:
    """Compare the history rollups with the ledger and report any difference (exit 1 if any)."""
    from server.app import check_history_command

    _run_server(check_history_command(_server_settings(config, log_level)))


@server_app.command("backup")
def server_backup(
    config: ConfigOption,
    to: Annotated[Path, typer.Option("--to", help="File to write the backup to.")],
    force: Annotated[bool, typer.Option("--force", help="Replace --to if it exists.")] = False,
    log_level: LogLevel = "warning",
) -> None:
    """Copy the SQLite database as of one moment, while the server runs (PostgreSQL: pg_dump)."""
    from server.store.backup import backup_command

    settings = _server_settings(config, log_level)
    _run_server(backup_command(settings.database, to, force=force))


@server_app.command("restore")
def server_restore(
    config: ConfigOption,
    source: Annotated[
        Path, typer.Option("--from", help="Backup file written by `stockgate server backup`.")
    ],
    log_level: LogLevel = "warning",
) -> None:
    """Replace the SQLite database with a backup; the server must be stopped."""
    from server.store.backup import restore_command

    settings = _server_settings(config, log_level)
    _run_server(restore_command(settings.database, source))


@server_app.command("replay-dead-letters")
def replay_dead_letters(
    config: ConfigOption,
    kind: Annotated[
        list[str] | None,
        typer.Option(help="Replay letters of this kind (repeatable; default clock_skew)."),
    ] = None,
    letter: Annotated[
        list[int] | None, typer.Option("--id", help="Replay this dead letter (repeatable).")
    ] = None,
    log_level: LogLevel = "warning",
) -> None:
    """Put waiting dead letters through ingest again; apply the ones that now pass."""
    from server.ingest.dead_letter_replay import replay_command

    settings = _server_settings(config, log_level)
    _run_server(replay_command(settings, kind or [], letter or []))


@server_app.command("prune")
def server_prune(config: ConfigOption, log_level: LogLevel = "warning") -> None:
    """Delete dead letters, batch records (and seen ids) past [retention] now."""
    from server.store.retention import prune_command

    settings = _server_settings(config, log_level)
    _run_server(prune_command(settings))


@server_app.command("broker-config")
def broker_config(
    config: ConfigOption,
    out: Annotated[Path, typer.Option(help="Folder for the ACL, passwd and credentials.")],
    server_user: Annotated[
        list[str] | None,
        typer.Option(help="A server instance's broker user (repeatable; one per instance)."),
    ] = None,
) -> None:
    """Write Mosquitto's ACL and password file for the [[gateways]] registry."""
    from plumbing.settings import load
    from server.config.broker import DEFAULT_SERVER_USER, write_broker_files
    from server.config.settings import ServerSettings
    from server.errors import ServerError

    try:
        settings = load(ServerSettings, config)
        files = write_broker_files(settings, out, server_user or [DEFAULT_SERVER_USER])
    except (ConfigError, ServerError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    typer.echo(f"wrote {files.acl} and {files.passwd}")
    for user, env in files.credentials.items():
        typer.echo(f"{user}: password in {env} (EnvironmentFile for its stockgate unit)")


@server_app.command("mint-key")
def mint_key(
    role: Annotated[str, typer.Option(help="viewer, operator or admin.")] = "viewer",
    name: Annotated[str | None, typer.Option(help="Actor name the ledger records.")] = None,
    site: Annotated[
        list[str] | None, typer.Option(help="Restrict the key to this site (repeatable).")
    ] = None,
) -> None:
    """Make a random API key; print it once and the [[api.keys]] entry holding its hash."""
    from pydantic import ValidationError

    from server.commands.api_keys import mint
    from server.config.settings import ROLE_RANK

    if role not in ROLE_RANK:
        typer.echo(f"error: --role must be one of {', '.join(ROLE_RANK)}", err=True)
        raise typer.Exit(2)
    try:
        minted = mint(role, name, site or [])
    except ValidationError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    typer.echo(f"# API key (shown once; give it to its user): {minted.key}")
    typer.echo("# Add to server.toml:")
    typer.echo(minted.entry, nl=False)


@app.command()
def edge(
    config: ConfigOption,
    check: Annotated[
        bool, typer.Option("--check", help="Validate the config, try each reader, exit.")
    ] = False,
    log_level: LogLevel = "info",
) -> None:
    """Run an edge agent: `stockgate edge --config edge.toml`."""
    from edge.agent import run_edge
    from edge.check import check_edge
    from edge.config import EdgeSettings
    from plumbing.settings import load

    _setup_logging(log_level)
    try:
        settings = load(EdgeSettings, config)
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    if check:
        _run(check_edge(settings))
    _run(run_edge(settings))


FaultOption = Annotated[
    list[str] | None,
    typer.Option(
        "--fault",
        help="KIND[,NAME=VALUE...][@SECONDS]: a simulated fault (repeatable); "
        "`stockgate sim faults` lists the kinds.",
    ),
]


@sim_app.command("reader")
def sim_reader(
    port: Annotated[int, typer.Option(help="TCP port to listen on (127.0.0.1).")] = 5084,
    antennas: Annotated[int, typer.Option(min=1, max=8)] = 4,
    population: Annotated[int, typer.Option(min=0, max=100_000)] = 100,
    rate: Annotated[float, typer.Option(help="Tag reads per second.", min=1)] = 500.0,
    fault: FaultOption = None,
    replay: Annotated[
        Path | None,
        typer.Option(
            help="Captures JSON whose RO_ACCESS_REPORTs are replayed after each handshake."
        ),
    ] = None,
    log_level: LogLevel = "info",
) -> None:
    """Serve one simulated LLRP reader reading a static population (shelf mode)."""
    from firmware_sim.cli import serve_shelf_reader

    _setup_logging(log_level)
    _run(
        serve_shelf_reader(
            port=port,
            antennas=antennas,
            population=population,
            rate=rate,
            faults=fault or [],
            replay=replay,
        )
    )


@sim_app.command("scenario")
def sim_scenario(
    file: Annotated[Path, typer.Argument(help="Scenario TOML file.")],
    port: Annotated[
        int, typer.Option(help="TCP port of the first door's reader; other doors use the next.")
    ] = 5084,
    fault: FaultOption = None,
    speed: Annotated[
        float, typer.Option(help="1 plays in real time; 2 twice as fast.", min=0.01, max=100)
    ] = 1.0,
    scanner_dir: Annotated[Path, typer.Option(help="Folder for the scanners' pty links.")] = Path(
        "tmp"
    ),
    log_level: LogLevel = "info",
) -> None:
    """Run a scenario file against simulated dock-door readers; prints its ground truth."""
    from firmware_sim.cli import run_scenario_file

    _setup_logging(log_level)
    _run(
        run_scenario_file(file, port=port, faults=fault or [], speed=speed, scanner_dir=scanner_dir)
    )


@sim_app.command("scanner")
def sim_scanner(
    link: Annotated[
        Path, typer.Option(help="Stable path (a symlink to the pty) for the edge to open.")
    ] = Path("tmp/scanner-1"),
    scans: Annotated[
        Path | None, typer.Option(help="File of barcodes, one per line, to scan.")
    ] = None,
    demo: Annotated[bool, typer.Option(help="Scan a built-in receive-and-count session.")] = False,
    loops: Annotated[int, typer.Option(help="Times to scan the sequence (0: forever).", min=0)] = 1,
    prefix: Annotated[str, typer.Option(help="Characters before each scan.")] = "",
    suffix: Annotated[str, typer.Option(help="Characters after each scan.")] = "",
    terminator: Annotated[str, typer.Option(help="cr, lf, crlf or tab.")] = "cr",
    aim_ids: Annotated[bool, typer.Option(help="Send AIM symbology identifiers.")] = True,
    gap: Annotated[
        tuple[float, float], typer.Option(help="Shortest and longest pause between scans (s).")
    ] = (0.5, 3.0),
    wait: Annotated[
        float, typer.Option(help="Seconds to wait before the first scan.", min=0)
    ] = 2.0,
    fault: FaultOption = None,
    log_level: LogLevel = "info",
) -> None:
    """Open a simulated barcode scanner on a pseudo-terminal and print its path."""
    from firmware_sim.cli import run_scanner

    _setup_logging(log_level)
    _run(
        run_scanner(
            link=link,
            scans=scans,
            demo=demo,
            loops=loops,
            prefix=prefix,
            suffix=suffix,
            terminator=terminator,
            aim_ids=aim_ids,
            gap_s=gap,
            faults=fault or [],
            start_delay_s=wait,
        )
    )


@sim_app.command("faults")
def sim_faults() -> None:
    """List the faults simulated readers and scanners can show."""
    from firmware_sim.cli import describe_faults

    typer.echo(describe_faults())


def main() -> None:  # pragma: no cover - console entry
    with contextlib.suppress(KeyboardInterrupt):
        app()
