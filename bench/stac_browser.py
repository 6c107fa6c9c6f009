"""STAC Browser, in headless Chromium, reading the catalog straight from an S3 bucket.

    python bench/stac_browser.py                       # screenshot to bench/out/stac_browser.png
    python bench/stac_browser.py --no-cors             # the same without the bucket's CORS rule

Not part of the test suite: it needs Node.js/npm (and the npm registry once) and Chromium
(Debian: ``apt-get install chromium``). Steps, each printed:

1. STAC Browser 4.0.1 is built once into ``--cache`` (default ~/.cache/stacwatchd): the
   npm package ships sources only, so ``npm install`` (with ``ol-stac`` pinned to 1.1.0:
   later releases need a newer ``ol`` than STAC Browser pins) and ``vue-cli-service build``
   with ``--historyMode=hash``. The built ``index.html`` does not load ``config.js``; the
   catalog URL is injected as ``window.STAC_BROWSER_CONFIG`` into the copy that is served.
2. A moto S3 server on 127.0.0.1 with its permissive default CORS switched off
   (``MOTO_DISABLE_GLOBAL_CORS``), a bucket readable anonymously, and the CORS rule from
   the README (unless ``--no-cors``).
3. A few sample rasters (with thumbnails) cataloged by ``stacwatchd scan`` with an
   ``[object_store]`` section: the bucket holds the catalog.
4. The browser is served from another origin (``http.server`` on another port) and
   opened in headless Chromium, which waits for the network (virtual time budget), then
   saves a screenshot and the DOM. The run passes when the DOM shows the collection.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))

from object_store import BUCKET, PREFIX, Server, env, log  # noqa: E402

VERSION = "4.0.1"
CORS = {
    "CORSRules": [{
        "AllowedOrigins": ["*"], "AllowedMethods": ["GET", "HEAD"], "AllowedHeaders": ["*"],
        "ExposeHeaders": ["ETag", "Content-Length", "Content-Range"], "MaxAgeSeconds": 3600,
    }]
}  # fmt: skip


def build(cache: Path) -> Path:
    """STAC Browser's ``dist`` folder, built once."""
    source = cache / f"stac-browser-{VERSION}"
    dist = source / "dist"
    if (dist / "index.html").exists():
        log(f"STAC Browser {VERSION} already built in {dist}")
        return dist
    if not (source / "node_modules").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        log(f"fetching @radiantearth/stac-browser@{VERSION}")
        subprocess.run(["npm", "pack", f"@radiantearth/stac-browser@{VERSION}", "--silent"], cwd=cache, check=True)
        with tarfile.open(cache / f"radiantearth-stac-browser-{VERSION}.tgz") as tar:
            tar.extractall(cache, filter="data")
        shutil.rmtree(source, ignore_errors=True)
        (cache / "package").rename(source)
        package = json.loads((source / "package.json").read_text())
        package["dependencies"]["ol-stac"] = "1.1.0"
        (source / "package.json").write_text(json.dumps(package, indent=2))
        log("npm install (a few minutes)")
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=source, check=True)
    log("vue-cli-service build")
    subprocess.run(["npx", "vue-cli-service", "build", "--historyMode=hash"], cwd=source, check=True,
                   env=dict(os.environ, NODE_OPTIONS="--max-old-space-size=4096"))  # fmt: skip
    return dist


def serve(dist: Path, catalog_url: str, scratch: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A copy of ``dist`` whose index.html carries the catalog URL, served on loopback."""
    site = scratch / "site"
    shutil.copytree(dist, site)
    config = {"catalogUrl": catalog_url, "historyMode": "hash", "allowExternalAccess": False}
    index = (site / "index.html").read_text()
    inject = f"<script>window.STAC_BROWSER_CONFIG = {json.dumps(config)};</script>"
    (site / "index.html").write_text(index.replace("</head>", inject + "</head>", 1))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def catalog(scratch: Path, server: Server) -> str:
    """Sample rasters cataloged into the bucket; returns the root catalog's URL."""
    from stacwatchd import testing

    watched = scratch / "rasters"
    watched.mkdir()
    for name in ("valley_20240517T103000.tif", "valley_20240612T103000.tif", "coast_20240703T101500.tif"):
        testing.cog(watched / name)
    config = scratch / "config.toml"
    config.write_text(
        f'[catalog]\nroot = "{scratch / "catalog"}"\ntitle = "stacwatchd in a bucket"\n'
        f'[[watch]]\npath = "{watched}"\n[watch.collection]\nid = "scenes"\ntitle = "Sample scenes"\n'
        'description = "Rasters cataloged by stacwatchd, read by STAC Browser from S3"\nlicense = "CC-BY-4.0"\n'
        "[watch.items]\nthumbnail = true\n"
        f'[object_store]\nurl = "s3://{BUCKET}/{PREFIX}"\nendpoint = "{server.endpoint}"\nregion = "us-east-1"\n'
    )
    subprocess.run([sys.executable, "-m", "stacwatchd", "scan", "--config", str(config)], check=True, env=env())
    return f"{server.endpoint}/{BUCKET}/{PREFIX}catalog.json"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    raise SystemExit("Chromium not found: apt-get install chromium")


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "stacwatchd")
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "stac_browser.png")
    parser.add_argument("--no-cors", action="store_true", help="leave the bucket without its CORS rule")
    parser.add_argument("--wait-ms", type=int, default=30_000, help="Chromium's virtual time budget")
    args = parser.parse_args(argv)
    browser = chromium()
    dist = build(args.cache)
    scratch = Path(tempfile.mkdtemp(prefix="stacwatchd-stac-browser-"))
    os.environ["MOTO_DISABLE_GLOBAL_CORS"] = "true"
    s3 = Server()
    site = None
    try:
        client = s3.client()
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/*"}]}  # fmt: skip
        client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
        if not args.no_cors:
            client.put_bucket_cors(Bucket=BUCKET, CORSConfiguration=CORS)
        root = catalog(scratch, s3)
        site, url = serve(dist, root, scratch)
        log(f"STAC Browser at {url} reading {root}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,1000",
                 f"--virtual-time-budget={args.wait_ms}"]  # fmt: skip
        subprocess.run([browser, *flags, f"--screenshot={args.out}", url], check=True, capture_output=True, timeout=300)
        dom = subprocess.run([browser, *flags, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=300).stdout
        (args.out.with_suffix(".html")).write_text(dom)
        item_page = url + "#/scenes/2024/05/valley_20240517T103000/valley_20240517T103000.json"
        item_shot = args.out.with_name(args.out.stem + "-item.png")
        subprocess.run([browser, *flags, f"--screenshot={item_shot}", item_page], check=True, capture_output=True, timeout=300)
        gets = [r for r in s3.since(0) if r[1] == "GET" and r[2]]
        shown = "Sample scenes" in dom
        result = {"screenshot": str(args.out), "item_screenshot": str(item_shot), "dom": str(args.out.with_suffix(".html")),
                  "collection_shown": shown, "bucket_gets": len(gets), "cors": not args.no_cors}  # fmt: skip
        print(json.dumps(result, indent=2))
        return result
    finally:
        if site is not None:
            site.shutdown()
        s3.close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
