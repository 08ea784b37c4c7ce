"""The ``eedge`` command: a thin click layer over the library.

Errors the user can act on (:class:`EedgeError`) become one line on stderr
and the error class's exit code; anything else is a bug and says so. With
``--debug`` (anywhere on the command line) the traceback is shown instead.
"""

from __future__ import annotations

import signal
import sys
import traceback
from typing import Any, NoReturn

import click

from eedge import __version__
from eedge.cli.console import err_console, print_error
from eedge.errors import EedgeError
from eedge.optional import optional_dependency_error

EXIT_USAGE = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eedge")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True,
              help="Show tracebacks for errors.")
def cli() -> None:
    """Deploy early-exit neural networks to edge devices.

    \b
    Typical flow:
      eedge demo --out demo-out
      eedge export model.onnx --out bundle
      eedge inspect bundle
      eedge run bundle --input x.npy
    """


def _register() -> None:
    from eedge.cli import (calibrate_cmd, compile_cmd, demo_cmd, export_cmd, firmware_cmds,
                           inspect_cmd, monitor_cmd, profile_cmd, run_cmd, split_cmd,
                           thresholds_cmd)

    for module in (export_cmd, inspect_cmd, run_cmd, profile_cmd, demo_cmd):
        cli.add_command(module.command)
    from eedge.cli.cascade_cmd import cascade
    cli.add_command(cascade)
    for command in (firmware_cmds.codegen, firmware_cmds.build_cmd, firmware_cmds.flash,
                    firmware_cmds.targets, calibrate_cmd.calibrate, calibrate_cmd.evaluate,
                    monitor_cmd.monitor, compile_cmd.compile_command, split_cmd.split,
                    split_cmd.serve, thresholds_cmd.thresholds):
        cli.add_command(command)


_register()


def _raise_interrupt(_signum: int, _frame: Any) -> NoReturn:
    """SIGTERM unwinds like Ctrl-C, so staging directories get cleaned up."""
    raise KeyboardInterrupt


def _show_click_error(exc: click.ClickException) -> None:
    """A bad option is one line too (``error: Invalid value for '--threads': ...``), with
    the command's --help named, like every other error; a bare group still shows help."""
    if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):
        exc.show()
        return
    message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        message += f" (see `{ctx.command_path} --help`)"
    print_error("error", message)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        code = cli.main(args=args, prog_name="eedge", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except EedgeError as exc:
        if debug:
            traceback.print_exc()
        print_error("error", str(exc))
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err_console.print("interrupted", highlight=False)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        _show_click_error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        sys.exit(EXIT_INTERRUPTED)
    except ModuleNotFoundError as exc:
        missing = optional_dependency_error(exc)
        if missing is None:
            _exit_internal(exc, debug)
        if debug:
            traceback.print_exc()
        print_error("error", str(missing))
        sys.exit(missing.exit_code)
    except Exception as exc:  # a bug in eedge, not the user's fault
        _exit_internal(exc, debug)


def _exit_internal(exc: Exception, debug: bool) -> NoReturn:
    """Anything not an EedgeError is a bug in eedge: say so, exit 1."""
    if debug:
        traceback.print_exc()
    print_error("internal error", f"{type(exc).__name__}: {exc} (rerun with --debug for "
                "the traceback and report it)")
    sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    main()
