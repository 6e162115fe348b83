"""What every ``cloud-ops`` command group shares: the ``--config`` option and loading the cloud config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from pydantic import ValidationError

from cloud.config import CloudConfig
from edgesight.config import ConfigError, format_validation_error
from edgesight.term import cli_console, esc

if TYPE_CHECKING:
    from cloud.warehouse.config import WarehouseConfig

err = cli_console(stderr=True)

ConfigOpt = typer.Option(
    None,
    "--config",
    "-c",
    help="Cloud config YAML (see examples/cloud.yaml). Defaults apply when omitted.",
    envvar="EDGESIGHT_CLOUD_CONFIG",
)


def load_cloud(config: Path | None, **stack_overrides) -> CloudConfig:
    """The validated cloud config (file + EDGESIGHT_CLOUD__* overrides); exits 2 naming what is wrong."""
    try:
        cfg = CloudConfig.load(config)
    except ConfigError as e:
        err.print(f"[red]{esc(e)}[/red]")
        raise typer.Exit(2) from None
    upd = {k: v for k, v in stack_overrides.items() if v is not None}
    if upd:
        try:
            cfg = cfg.model_copy(update={"stack": cfg.stack.model_validate({**cfg.stack.model_dump(), **upd})})
        except ValidationError as e:
            err.print(f"[red]{esc(ConfigError('the stack options', format_validation_error(e)))}[/red]")
            raise typer.Exit(2) from None
    return cfg


def load_warehouse(path: Path | None, prefix: str | None = None) -> WarehouseConfig:
    """The validated warehouse config, ``prefix`` (``--collection-prefix``) overriding its collection prefix;
    exits 2 naming what is wrong."""
    from cloud.warehouse.config import WarehouseConfig

    try:
        wh = WarehouseConfig.load(path)
        if prefix is not None:
            wh = WarehouseConfig.model_validate({**wh.model_dump(), "collection_prefix": prefix})
    except ConfigError as e:
        err.print(f"[red]{esc(e)}[/red]")
        raise typer.Exit(2) from None
    except ValidationError as e:
        err.print(f"[red]{esc(ConfigError('--collection-prefix', format_validation_error(e)))}[/red]")
        raise typer.Exit(2) from None
    return wh


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def refuse(message: str) -> NoReturn:
    """Print what is wrong with the command line (red, on stderr) and exit 2."""
    err.print(f"[red]{esc(message)}[/red]")
    raise typer.Exit(2)


def check_file_option(path: Path | None, option: str) -> None:
    """A file the command will write: not a folder, in a folder that exists (exits 2 naming ``option``)."""
    if path is not None and (path.is_dir() or not path.parent.is_dir()):
        refuse(f"{option} {path}: not a file in an existing directory")


def check_dir_option(path: Path | None, option: str) -> None:
    """A folder the command will use or create: if it exists, it is a folder (exits 2 naming ``option``)."""
    if path is not None and path.exists() and not path.is_dir():
        refuse(f"{option} {path}: exists and is not a directory")


def check_log_level(level: str, option: str = "--log-level") -> str:
    """The log level, upper-cased; exits 2 naming ``option`` if it is not one of :data:`LOG_LEVELS`."""
    if level.upper() not in LOG_LEVELS:
        refuse(f"{option} {level!r}: expected {', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]}")
    return level.upper()
