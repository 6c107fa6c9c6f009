"""The ``stacwatchd`` command line: thin wrappers that turn errors into one clear line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from stacwatchd import __version__
from stacwatchd.config import Settings, load_settings
from stacwatchd.errors import StacwatchdError
from stacwatchd.log import configure, get_logger

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    configure(args.log_format, args.log_level)
    try:
        return int(args.func(args))
    except StacwatchdError as error:
        print(f"stacwatchd: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stacwatchd", description="Keep a STAC catalog in sync with folders of rasters.")
    parser.add_argument("--version", action="version", version=f"stacwatchd {__version__}")
    parser.add_argument("--log-format", choices=["auto", "json", "console"], default="auto")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="warning")
    sub = parser.add_subparsers(metavar="COMMAND")

    item = sub.add_parser("item", help="print the STAC Item for one file, or why it cannot be cataloged")
    item.add_argument("path", type=Path)
    _config_option(item)
    item.add_argument("--collection", help="collection id (default: from the watch or the folder name)")
    item.add_argument("--catalog", type=Path, help="catalog root the Item is placed in (default: from the configuration)")
    item.set_defaults(func=_cmd_item)

    run = sub.add_parser("run", help="the long-running service: watch folders and keep the catalog in sync")
    _config_option(run)
    run.set_defaults(func=_cmd_run)

    scan = sub.add_parser("scan", help="catalog (or catch up on) folders once, in parallel")
    scan.add_argument("dirs", type=Path, nargs="*", metavar="DIR", help="folders to scan (default: the configured watches)")
    _config_option(scan)
    _catalog_option(scan)
    scan.add_argument("--collection", help="collection id for the folders given (default: the folder name)")
    scan.add_argument("--workers", type=int, help="parallel Item builders (default: the CPU count)")
    scan.add_argument("--batch-size", type=int, default=256, help="Items per writer batch (default 256)")
    scan.set_defaults(func=_cmd_scan)

    rebuild = sub.add_parser("rebuild", help="regenerate every catalog file from the state index")
    _config_option(rebuild)
    _catalog_option(rebuild)
    rebuild.set_defaults(func=_cmd_rebuild)

    scrub = sub.add_parser("scrub", help="check every catalog file against the state index; --repair puts them right")
    _config_option(scrub)
    _catalog_option(scrub)
    scrub.add_argument("--repair", action="store_true", help="rewrite missing or damaged files from the state, remove stray files of ours")
    scrub.add_argument("--quick", action="store_true", help="stat every file, hash only those whose mtime moved since last found right")
    scrub.set_defaults(func=_cmd_scrub)

    status = sub.add_parser("status", help="counts, queue, outbox and recent failures from the state file")
    _config_option(status)
    _catalog_option(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_cmd_status)

    publish = sub.add_parser("publish", help="push the catalog to PgSTAC: drain the outbox once, or everything with --all")
    _config_option(publish)
    _catalog_option(publish)
    publish.add_argument("--all", action="store_true", help="push every collection and Item (first load, after a restore); idempotent")
    publish.add_argument("--no-prune", action="store_true", help="with --all, keep Items PgSTAC has that the state does not")
    publish.set_defaults(func=_cmd_publish)

    validate = sub.add_parser("validate", help="validate a catalog (or one STAC JSON file) offline")
    validate.add_argument("root", type=Path, nargs="?", help="catalog root folder, catalog.json or any STAC JSON file")
    _config_option(validate)
    validate.add_argument("--schemas", type=Path, help="folder of STAC schemas laid out by URL")
    validate.add_argument("--schema-cache", type=Path, help="where fetched schemas are cached")
    validate.add_argument("--network", action="store_true", help="fetch schemas that are not in --schemas")
    validate.add_argument("--lenient", action="store_true", help="warn instead of fail for schemas that cannot be checked")
    validate.add_argument("--check-assets", action="store_true", help="also check that local asset files exist")
    validate.set_defaults(func=_cmd_validate)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(metavar="ACTION")
    check = config_sub.add_parser("check", help="validate the configuration and print it, secrets masked")
    _config_option(check)
    check.set_defaults(func=_cmd_config_check)

    demo = sub.add_parser("demo", help="catalog a folder of sample rasters and show the result")
    demo.add_argument("--dir", type=Path, default=Path("stacwatchd-demo"), help="where the demo writes (default ./stacwatchd-demo)")
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


def _cmd_run(args: argparse.Namespace) -> int:
    from stacwatchd.engine.daemon import run

    return run(args.config)


def _cmd_scan(args: argparse.Namespace) -> int:
    from stacwatchd.engine.scan import scan, watches_for
    from stacwatchd.sinks import configured_sinks

    settings = _settings(args)
    for folder in args.dirs:
        if not folder.is_dir():
            raise StacwatchdError(folder, "not a folder")
    watches = watches_for(args.dirs, settings.watch, args.collection)
    if not watches:
        raise StacwatchdError(None, "nothing to scan: give folders or configure [[watch]] entries")
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
        duration_ms=round(summary.seconds * 1000),
    )
    return EXIT_OK if summary.rejected == 0 else EXIT_REJECTED


def _cmd_publish(args: argparse.Namespace) -> int:
    from stacwatchd.publish import publish_all, publish_outbox

    settings = _settings(args)
    if settings.pgstac is None:
        raise StacwatchdError(args.config, "no [pgstac] section configured")
    counts = publish_all(settings, prune=not args.no_prune) if args.all else publish_outbox(settings)
    print("publish: " + ", ".join(f"{k} {v}" for k, v in counts.as_dict().items()))
    return EXIT_OK


def _cmd_rebuild(args: argparse.Namespace) -> int:
    from stacwatchd.engine.writer import CatalogWriter

    settings = _settings(args)
    state = settings.catalog.state_path
    if not state.exists():
        raise StacwatchdError(state, "no state file: nothing to rebuild from")
    with CatalogWriter(settings.catalog) as writer:
        writer.sync_collections({w.collection_id: w.collection for w in settings.watch})
        result = writer.rebuild()
    print(f"rebuild: {len(result.written)} files written, {len(result.deleted)} stale files removed")
    return EXIT_OK


def _cmd_scrub(args: argparse.Namespace) -> int:
    from stacwatchd.engine.scrub import scrub_command

    settings = _settings(args)
    watched = [w.path for w in settings.watch]
    return scrub_command(settings.catalog, watched, fix=args.repair, full=not args.quick, out=sys.stdout)


def _cmd_status(args: argparse.Namespace) -> int:
    from stacwatchd.status import read_status

    settings = _settings(args)
    report = read_status(settings.catalog.state_path)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            if isinstance(value, list):
                print(f"{key}:")
                for entry in value:
                    print(f"  {entry}")
            else:
                print(f"{key}: {value}")
    return EXIT_OK


def _cmd_item(args: argparse.Namespace) -> int:
    from stacwatchd.stac.documents import item_document
    from stacwatchd.model.items import Rejection, Rules, build, item_to_dict
    from stacwatchd.stac.layout import Layout, partition_of
    from stacwatchd.stac.json import pretty

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
    return EXIT_OK


def _reject(rejection: object, args: argparse.Namespace) -> int:
    """One line on stderr: a structured event in JSON mode, plain words otherwise."""
    from stacwatchd.model.items import Rejection

    assert isinstance(rejection, Rejection)
    if args.log_format == "json":
        get_logger().error("item_rejected", path=str(rejection.path), error=rejection.kind, reason=rejection.reason)
    else:
        print(f"stacwatchd: cannot catalog {rejection.path}: {rejection.reason}", file=sys.stderr)
    return EXIT_REJECTED


def _cmd_validate(args: argparse.Namespace) -> int:
    from stacwatchd.engine.scrub import repair_hint
    from stacwatchd.validate.schemas import CatalogNotFoundError, SchemaStore, validate_catalog, validate_object
    from stacwatchd.stac.json import loads

    settings = _settings(args)
    root: Path = args.root or settings.catalog.root
    store = SchemaStore(directory=args.schemas, cache_dir=args.schema_cache, allow_network=args.network)
    strict = not args.lenient
    if root.is_file() and root.name not in ("catalog.json", "collection.json"):
        try:
            obj = loads(root.read_bytes())
        except (OSError, ValueError) as exc:
            print(f"{root}: cannot parse: {exc}", file=sys.stderr)
            return EXIT_REJECTED
        report = validate_object(obj, store, strict=strict, path=root)
        problems, unchecked = report.problems, report.unchecked
        summary = f"{root}: 1 object"
    else:
        try:
            catalog_report = validate_catalog(root, store, strict=strict, check_assets=args.check_assets)
        except CatalogNotFoundError as error:
            hint = repair_hint(root, settings.catalog)
            if hint is None:
                raise
            print(f"{error}\n{hint}", file=sys.stderr)
            return EXIT_REJECTED
        problems, unchecked = catalog_report.problems, catalog_report.unchecked
        summary = (
            f"{root}: {catalog_report.catalogs} catalogs, {catalog_report.collections} collections, "
            f"{catalog_report.items} items"
        )
    for problem in problems:
        print(problem, file=sys.stderr)
    for url in unchecked:
        print(f"warning: not checked, schema unavailable: {url}", file=sys.stderr)
    status = "valid" if not problems else f"{len(problems)} problems"
    print(f"{summary}: {status}")
    if problems and (hint := repair_hint(root, settings.catalog)):
        print(hint, file=sys.stderr)
    return EXIT_OK if not problems else EXIT_REJECTED


def _cmd_config_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(json.dumps(settings.model_dump(mode="json"), indent=2))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from stacwatchd.demo import run_demo

    return run_demo(args.dir)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
