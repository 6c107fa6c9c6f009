"""The ``stacwatchd`` command line: thin wrappers that turn errors into one clear line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from stacwatchd import __version__
from stacwatchd.config import Settings, display_settings, load_settings, missing_watch_folders, require_watches
from stacwatchd.errors import StacwatchdError
from stacwatchd.log import configure, get_logger

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PIPE_CLOSED", "EXIT_REJECTED", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_PIPE_CLOSED = 141

EXIT_STATUS_HELP = """exit status:
  0    success
  1    some files were refused (scan, item), some folders could not be read (scan), or
       the catalog has problems (validate)
  2    usage, configuration or environment error: one line on stderr saying what and where
  130  interrupted (Ctrl-C)
  141  the output was closed early (e.g. piped into head)"""

LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LOG_FORMAT = "auto"
DEFAULT_LOG_LEVEL = "warning"

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    configure(_log_format(args), _log_level(args))
    try:
        status = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status
    except StacwatchdError as error:
        return _fail(str(error))
    except BrokenPipeError:
        return _pipe_closed()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        return _fail(f"{where}{error.strerror or error}")


def _fail(message: str) -> int:
    print(f"stacwatchd: {message}", file=sys.stderr)
    return EXIT_USAGE


def _pipe_closed() -> int:
    """The reader went away (``| head``): stop quietly, without a traceback at exit either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_PIPE_CLOSED


def _log_format(args: argparse.Namespace) -> str:
    return getattr(args, "log_format", None) or DEFAULT_LOG_FORMAT


def _log_level(args: argparse.Namespace) -> str:
    return getattr(args, "log_level", None) or DEFAULT_LOG_LEVEL


# --------------------------------------------------------------------------- the parser


def _log_options(parser: argparse.ArgumentParser) -> None:
    """Accepted before and after the subcommand; SUPPRESS keeps a later default from hiding an earlier value."""
    parser.add_argument(
        "--log-format", choices=LOG_FORMATS, default=argparse.SUPPRESS,
        help=f"log lines as JSON or for a person (default {DEFAULT_LOG_FORMAT}: console on a terminal)",
    )  # fmt: skip
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS,
        help=f"least severe log events shown (default {DEFAULT_LOG_LEVEL}; `run` uses [log] in the configuration)",
    )  # fmt: skip


def _command(
    sub: argparse._SubParsersAction, name: str, summary: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name,
        help=summary,
        description=f"{summary[0].upper()}{summary[1:]}.\n\n{description}",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _log_options(parser)
    return parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stacwatchd",
        description="Keep a static STAC catalog in sync with folders of rasters.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stacwatchd {__version__}")
    _log_options(parser)
    sub = parser.add_subparsers(metavar="COMMAND")

    item = _command(
        sub, "item", "print the STAC Item for one file, or why it cannot be cataloged",
        "Builds the Item exactly as the daemon would (rules from the watch holding the file, or\n"
        "defaults for its folder) and prints its JSON with links placed in the catalog. Nothing\n"
        "is written.",
        "exit status: 0 the Item is printed; 1 the file cannot be cataloged (one line on stderr);\n"
        "2 usage or configuration error",
    )  # fmt: skip
    item.add_argument("path", type=Path)
    _config_option(item)
    item.add_argument("--collection", help="collection id (default: from the watch or the folder name)")
    item.add_argument("--catalog", type=Path, help="catalog root the Item is placed in (default: from the configuration)")
    item.set_defaults(func=_cmd_item)

    run = _command(
        sub, "run", "the long-running service: watch folders and keep the catalog in sync",
        "Watches every [[watch]] folder, catalogs files once they are completely written, removes\n"
        "Items of deleted files, reconciles at start and every reconcile_interval seconds, and\n"
        "publishes to PgSTAC when configured. SIGTERM/SIGINT stop cleanly; SIGHUP re-reads the\n"
        "configuration. Under systemd it speaks the sd_notify protocol (Type=notify).",
        "exit status: 0 stopped cleanly; 1 the writer failed; 2 configuration error",
    )  # fmt: skip
    _config_option(run)
    run.set_defaults(func=_cmd_run)

    scan = _command(
        sub, "scan", "catalog (or catch up on) folders once, in parallel",
        "Compares the folders with the state index and applies the differences: new and changed\n"
        "files are cataloged, Items of vanished files removed. Files that cannot be cataloged are\n"
        "listed with their reason, those refused earlier too (they are not retried until they\n"
        "change).",
        "exit status: 0 every file in the folders is cataloged; 1 some files are refused or some\n"
        "folders could not be read (listed on stdout); 2 usage or configuration error",
    )  # fmt: skip
    scan.add_argument("dirs", type=Path, nargs="*", metavar="DIR", help="folders to scan (default: the configured watches)")
    _config_option(scan)
    _catalog_option(scan)
    scan.add_argument("--collection", help="collection id for the folders given (default: the folder name)")
    scan.add_argument("--workers", type=int, help="parallel Item builders (default: the CPU count)")
    scan.add_argument("--batch-size", type=int, default=256, help="Items per writer batch (default 256)")
    scan.set_defaults(func=_cmd_scan)

    rebuild = _command(
        sub, "rebuild", "regenerate every catalog file from the state index",
        "Rewrites the whole catalog from the state (byte-identical to incremental operation) and\n"
        "removes stale files; use it after changing titles or partitioning.",
    )  # fmt: skip
    _config_option(rebuild)
    _catalog_option(rebuild)
    rebuild.set_defaults(func=_cmd_rebuild)

    scrub = _command(
        sub, "scrub", "check every catalog file against the state index; --repair puts them right",
        "Stats every file the state says the writer wrote (present, same size) and hashes it\n"
        "(every file, or with --quick those whose mtime moved since last found right). Missing\n"
        "or damaged files, and stray files of ours the state does not list (Item JSON and\n"
        "catalogs in our layout, our temp files), are listed; --repair rewrites the first from\n"
        "the state and removes the others. Any other file is listed and left alone. A running\n"
        "daemon does the same at every reconcile pass; --repair then leaves it to the daemon.",
        "exit status: 0 the catalog matches the state (or was repaired); 1 damage found and not\n"
        "repaired; 2 no state file, usage or configuration error",
    )  # fmt: skip
    _config_option(scrub)
    _catalog_option(scrub)
    scrub.add_argument(
        "--repair", action="store_true", help="rewrite missing or damaged files from the state, remove stray files of ours"
    )
    scrub.add_argument("--quick", action="store_true", help="hash only files whose mtime moved since they were last found right")
    scrub.set_defaults(func=_cmd_scrub)

    status = _command(
        sub, "status", "counts, daemon state, outbox and recent failures from the state file",
        "Reads the state file (safe while the daemon runs): Items and sources, the daemon's last\n"
        "heartbeat in words, the PgSTAC outbox and the most recent refusals. --json prints the\n"
        "same facts as a JSON object for scripts.",
    )  # fmt: skip
    _config_option(status)
    _catalog_option(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_cmd_status)

    publish = _command(
        sub, "publish", "deliver to the sinks once (PgSTAC, object store), or everything with --all",
        "Needs a [pgstac] or [object_store] section. Without --all, delivers the changes queued for\n"
        "each sink (what the daemon does continuously); with --all, pushes every collection and Item\n"
        "to PgSTAC and makes the bucket equal to the local catalog. --sink picks one sink.",
    )  # fmt: skip
    _config_option(publish)
    _catalog_option(publish)
    publish.add_argument(
        "--all", action="store_true", help="push every collection and Item (first load, after a restore); idempotent"
    )
    publish.add_argument("--no-prune", action="store_true", help="with --all, keep Items PgSTAC has that the state does not")
    publish.add_argument("--sink", metavar="NAME", help="only this sink (pgstac, object_store); default: every configured one")
    publish.set_defaults(func=_cmd_publish)

    validate = _command(
        sub, "validate", "validate a catalog (or one STAC JSON file) against the STAC schemas",
        "Checks every file against its core STAC schema (bundled, always available) and every\n"
        "declared extension schema that can be obtained: from --schemas or $STAC_SCHEMA_ROOT, from\n"
        "the schema cache, or with --network from the web (saved in the cache for next time).\n"
        "Links are checked too: every link resolves, every Item is reachable exactly once, no\n"
        "orphans, no temporary files. Schemas that could not be obtained are named in one line.",
        "exit status: 0 no problem found (unavailable schemas are named, not fatal, unless\n"
        "--strict); 1 problems found; 2 no catalog there, or a usage error",
    )  # fmt: skip
    validate.add_argument("root", type=Path, nargs="?", help="catalog root folder, catalog.json or any STAC JSON file")
    _config_option(validate)
    validate.add_argument("--schemas", type=Path, help="folder of STAC schemas laid out by URL (default: $STAC_SCHEMA_ROOT)")
    validate.add_argument(
        "--schema-cache", type=Path, help="where fetched schemas are cached (default: ~/.cache/stacwatchd/schemas)"
    )
    validate.add_argument(
        "--network", action="store_true", help="fetch schemas that are neither bundled, in --schemas nor cached"
    )
    validate.add_argument("--strict", action="store_true", help="fail (exit 1) when a schema could not be checked")
    validate.add_argument("--check-assets", action="store_true", help="also check that local asset files exist")
    validate.set_defaults(func=_cmd_validate)

    config = _command(
        sub, "config", "configuration tools",
        "stacwatchd config check --config FILE validates a configuration as `run` would.",
    )  # fmt: skip
    config_sub = config.add_subparsers(metavar="ACTION")
    check = _command(
        config_sub, "check", "validate the configuration and print it, secrets masked",
        "Reads the TOML file and STACWATCHD_* environment variables, refuses what `run` would\n"
        "refuse (naming the key and whether the file or a variable set it), warns about watched\n"
        "folders that do not exist, and prints the effective settings as JSON (datetime rules\n"
        "included; only the password part of a DSN is masked).",
        "exit status: 0 valid (warnings on stderr); 2 invalid",
    )  # fmt: skip
    _config_option(check)
    check.set_defaults(func=_cmd_config_check)

    notify = _command(
        sub, "notify", "change notifications (webhooks, SNS)",
        "stacwatchd notify test --config FILE sends a test event to the configured targets.",
    )  # fmt: skip
    notify_sub = notify.add_subparsers(metavar="ACTION")
    notify_test = _command(
        notify_sub, "test", "send a signed test event to every notification target, or to one",
        "Sends one 'notify.test' event, signed like every message, to each [[notify.webhook]]\n"
        "and [[notify.sns]] target (or to the one --target names) and prints each answer.",
        "exit status: 0 every target accepted it; 1 one or more did not; 2 no such target, or\n"
        "an invalid configuration (a secret that cannot be read)",
    )  # fmt: skip
    _config_option(notify_test)
    notify_test.add_argument("--target", metavar="NAME", help="the target's name, as 'status' shows it (default: all)")
    notify_test.set_defaults(func=_cmd_notify_test)

    demo = _command(
        sub, "demo", "run the daemon on sample rasters and show what it does",
        "Starts the daemon on ./stacwatchd-demo/incoming and drops sample rasters in the ways\n"
        "pipelines write them (copy, slow write, write-then-rename, burst with broken files,\n"
        "overwrite, delete), then validates the catalog and says what was checked.",
    )  # fmt: skip
    demo.add_argument(
        "--dir", type=Path, default=Path("stacwatchd-demo"), help="where the demo writes (default ./stacwatchd-demo)"
    )
    demo.set_defaults(func=_cmd_demo)
    return parser


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML configuration file")


def _catalog_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", type=Path, metavar="ROOT", help="catalog root folder (default: from the configuration)")


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(getattr(args, "config", None))
    root = getattr(args, "catalog", None)
    if root is not None and getattr(args, "func", None) is not _cmd_item:
        settings = settings.model_copy(update={"catalog": settings.catalog.model_copy(update={"root": root})})
    return settings


# --------------------------------------------------------------------------- commands


def _cmd_run(args: argparse.Namespace) -> int:
    from stacwatchd.engine.daemon import run

    # Options given on the command line beat [log] in the file, as environment variables do.
    for option, variable in (("log_format", "STACWATCHD_LOG__FORMAT"), ("log_level", "STACWATCHD_LOG__LEVEL")):
        if getattr(args, option, None):
            os.environ[variable] = getattr(args, option)
    return run(args.config)


def _cmd_scan(args: argparse.Namespace) -> int:
    from stacwatchd.engine.heap import freeze_startup_objects
    from stacwatchd.engine.scan import scan, watches_for
    from stacwatchd.sinks import configured_sinks

    settings = _settings(args)
    for folder in args.dirs:
        if not folder.is_dir():
            raise StacwatchdError(folder, "not a folder")
    watches = watches_for(args.dirs, settings.watch, args.collection)
    if not watches:
        raise StacwatchdError(None, "nothing to scan: give folders or configure [[watch]] entries")
    freeze_startup_objects()
    summary = scan(
        settings.catalog,
        watches,
        workers=args.workers or settings.workers,
        batch_size=args.batch_size,
        item_timeout=settings.item_timeout_seconds,
        sinks=configured_sinks(settings),
    )
    counts = (
        f"added {summary.added}, updated {summary.updated}, removed {summary.removed}, "
        f"unchanged {summary.unchanged}, rejected {summary.rejected}"
    )
    wrote = "nothing changed, no file written" if summary.wrote_nothing else f"{summary.files_written} files written"
    print(f"scan: {counts}; {wrote} ({summary.seconds:.1f} s)")
    get_logger().info(
        "scan_finished",
        added=summary.added,
        updated=summary.updated,
        removed=summary.removed,
        unchanged=summary.unchanged,
        rejected=summary.rejected,
        files_written=summary.files_written,
        unreadable=len(summary.unreadable),
        duration_ms=round(summary.seconds * 1000),
    )
    if summary.rejected:
        _print_refused(settings, [w.path for w in watches], {str(r.path) for r in summary.rejections})
    if summary.unreadable:
        print(
            "folders not read (their files are not cataloged, and no Item of the watched folder "
            f"holding them is removed; exit status 1): {len(summary.unreadable)}"
        )
        for error in summary.unreadable:
            print(f"  {error}")
    return EXIT_REJECTED if summary.rejected or summary.unreadable else EXIT_OK


#: How many refused files ``scan`` lists before pointing at ``status``.
REFUSED_SHOWN = 50


def _print_refused(settings: Settings, folders: Sequence[Path], this_run: set[str]) -> None:
    """Every file under the scanned folders that is refused now: this run's and earlier ones."""
    from stacwatchd.status import refused_under

    refused = refused_under(settings.catalog.state_path, folders)
    print(f"refused (not cataloged until they change; exit status 1): {len(refused)}")
    for record in refused[:REFUSED_SHOWN]:
        earlier = "" if record.path in this_run else " [refused earlier, unchanged since]"
        print(f"  {record.path}: {record.error} ({record.error_kind}){earlier}")
    if len(refused) > REFUSED_SHOWN:
        print(f"  … and {len(refused) - REFUSED_SHOWN} more")


def _cmd_publish(args: argparse.Namespace) -> int:
    from stacwatchd.publish import publish_all, publish_outbox, publish_sink

    settings = _settings(args)
    configured = [name for name, on in (("pgstac", settings.pgstac), ("object_store", settings.object_store)) if on is not None]
    chosen = [name for name in configured if args.sink in (None, name)]
    if not chosen:
        wanted = f"no [{args.sink}] section configured" if args.sink else "no sink configured ([pgstac], [object_store])"
        raise StacwatchdError(args.config, wanted)
    for name in chosen:
        if name == "pgstac":
            counts = publish_all(settings, prune=not args.no_prune) if args.all else publish_outbox(settings)
            print("publish: " + ", ".join(f"{k} {v}" for k, v in counts.as_dict().items()))
        else:
            done = publish_sink(settings, name, everything=args.all)
            print(f"publish {name}: " + ", ".join(f"{k} {v}" for k, v in done.items()))
    return EXIT_OK


def _cmd_rebuild(args: argparse.Namespace) -> int:
    from stacwatchd.engine.writer import open_writer
    from stacwatchd.sinks import configured_sinks
    from stacwatchd.sinks.base import deliver_once

    settings = _settings(args)
    state = settings.catalog.state_path
    if not state.exists():
        raise StacwatchdError(state, "no state file: nothing to rebuild from")
    collections = {w.collection_id: w.collection for w in settings.watch}
    sinks = configured_sinks(settings)
    with open_writer(settings.catalog, collections, sinks) as writer:
        writer.sync_collections(collections)  # a changed title reaches the sinks too
        result = writer.rebuild()
        for sink in sinks:
            deliver_once(sink, writer.state.path)
    print(f"rebuild: {len(result.written)} files written, {len(result.deleted)} stale files removed")
    return EXIT_OK


def _cmd_scrub(args: argparse.Namespace) -> int:
    from stacwatchd.engine.scrub import scrub_command

    settings = _settings(args)
    watched = [w.path for w in settings.watch]
    return scrub_command(settings.catalog, watched, fix=args.repair, full=not args.quick, out=sys.stdout)


def _cmd_status(args: argparse.Namespace) -> int:
    from stacwatchd.sinks.object_store import public_root_url
    from stacwatchd.status import read_status, render_status

    settings = _settings(args)
    state = settings.catalog.state_path
    if not state.exists():
        raise StacwatchdError(state, "no state file (nothing cataloged yet, or another --catalog/--config)")
    report = read_status(state, catalog_root=settings.catalog.root)
    url = public_root_url(settings)
    if url:
        report["public_root_url"] = url
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render_status(report, catalog=settings.catalog.root, state=state))
        if url:
            print(f"public:   {url}")
    return EXIT_OK


def _cmd_item(args: argparse.Namespace) -> int:
    from stacwatchd.model.items import Rejection, Rules, build, item_to_dict
    from stacwatchd.stac.documents import item_document
    from stacwatchd.stac.json import pretty
    from stacwatchd.stac.layout import Layout, partition_of

    settings = _settings(args)
    path: Path = args.path.absolute()
    if not path.is_file():
        return _reject(Rejection(path, "no such file" if not path.exists() else "not a regular file", "not_a_file"), args)
    watch = settings.watch_for(path)
    rules = Rules.from_watch(watch) if watch else Rules.for_folder(path.parent)
    if args.collection:
        rules = dataclasses.replace(rules, collection_id=args.collection)
    result = build(path, rules)
    if isinstance(result, Rejection):
        return _reject(result, args)
    catalog = settings.catalog
    collection_title = rules.collection.title or rules.collection_id
    _, doc = item_document(
        item_to_dict(result.item),
        layout=Layout((args.catalog or catalog.root).absolute()),
        collection_id=rules.collection_id,
        parts=partition_of(result.timing.first, rules.collection.partition),
        root_title=catalog.title or catalog.id,
        collection_title=collection_title,
    )
    sys.stdout.buffer.write(pretty(doc))
    sys.stdout.buffer.flush()
    return EXIT_OK


def _reject(rejection: object, args: argparse.Namespace) -> int:
    """One line on stderr: a structured event in JSON mode, plain words otherwise."""
    from stacwatchd.model.items import Rejection

    assert isinstance(rejection, Rejection)
    if _log_format(args) == "json":
        get_logger().error("item_rejected", path=str(rejection.path), error=rejection.kind, reason=rejection.reason)
    else:
        print(f"stacwatchd: cannot catalog {rejection.path}: {rejection.reason}", file=sys.stderr)
    return EXIT_REJECTED


def _cmd_validate(args: argparse.Namespace) -> int:
    from stacwatchd.engine.scrub import repair_hint
    from stacwatchd.stac.json import loads
    from stacwatchd.validate import coverage, default_store, validate_catalog, validate_object
    from stacwatchd.validate.schemas import ValidateError

    root: Path = args.root or _settings(args).catalog.root
    if args.schemas is not None and not args.schemas.is_dir():
        raise StacwatchdError(args.schemas, "--schemas: not a folder")
    store = default_store(args.schemas, args.schema_cache, network=args.network)
    if root.is_file() and root.name not in ("catalog.json", "collection.json"):
        try:
            obj = loads(root.read_bytes())
        except ValueError as exc:
            print(f"{root}: not valid JSON: {exc}", file=sys.stderr)
            return EXIT_REJECTED
        report = validate_object(obj, store, strict=False, path=root)
        problems, unchecked = report.problems, report.unchecked
        summary = f"{root}: 1 object"
    else:
        try:
            catalog_report = validate_catalog(root, store, strict=False, check_assets=args.check_assets)
        except ValidateError as exc:
            hint = repair_hint(root, _settings(args).catalog)
            if hint is not None:  # the catalog lost its root catalog, and the state can write it again
                print(f"{root}: {exc}\n{hint}", file=sys.stderr)
                return EXIT_REJECTED
            raise StacwatchdError(root, f"{exc} (give the folder holding catalog.json, or a STAC JSON file)") from None
        problems, unchecked = catalog_report.problems, catalog_report.unchecked
        summary = (
            f"{root}: {catalog_report.catalogs} catalogs, {catalog_report.collections} collections, {catalog_report.items} items"
        )
    for problem in problems:
        print(problem, file=sys.stderr)
    status = "valid" if not problems else f"{len(problems)} problems"
    print(f"{summary}: {status}")
    if problems and (hint := repair_hint(root, _settings(args).catalog)):
        print(hint, file=sys.stderr)
    for line in coverage(store, unchecked).lines(network=args.network):
        print(line)
    failed = bool(problems) or (args.strict and bool(unchecked))
    return EXIT_REJECTED if failed else EXIT_OK


def _cmd_config_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    require_watches(settings, args.config)
    for folder in missing_watch_folders(settings):
        print(f"stacwatchd: warning: watched folder {folder} does not exist (yet); `run` waits for it", file=sys.stderr)
    print(json.dumps(display_settings(settings), indent=2))
    return EXIT_OK


def _cmd_notify_test(args: argparse.Namespace) -> int:
    from stacwatchd.sinks.base import SinkError
    from stacwatchd.sinks.notify import notify_sinks

    settings = _settings(args)
    sinks = notify_sinks(settings)
    if not sinks:
        raise StacwatchdError(args.config, "no [[notify.webhook]] or [[notify.sns]] targets configured")
    if args.target is not None:
        sinks = [sink for sink in sinks if sink.name == args.target]
        if not sinks:
            known = ", ".join(settings.notify.target_names())
            raise StacwatchdError(args.config, f"no notification target named {args.target!r} (configured: {known})")
    failed = 0
    for sink in sinks:
        try:
            print(f"{sink.name}: delivered ({sink.send_test()})")
        except SinkError as error:
            failed += 1
            print(f"{sink.name}: failed: {error.reason.removeprefix(sink.name + ': ')}")
    return EXIT_OK if not failed else EXIT_REJECTED


def _cmd_demo(args: argparse.Namespace) -> int:
    from stacwatchd.demo import run_demo

    return run_demo(args.dir)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
