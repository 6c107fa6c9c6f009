#!/usr/bin/env bash
# Measure how scan scales with cores on the many-core device, in one command.
#
# usage (from the project root, with the wheels folder carried along):
#   bash bench/device.sh .wheels312 [bench/scaling.py options...]
#
# Makes a venv at $VENV (default /tmp/v) from the cp312 wheels of the runtime dependencies
# (prepared beforehand with: bash ../shared/device/wheels.sh .wheels312) plus this
# project, taking numpy from the device's own Python ($BASE_PYTHON, default
# /opt/torch/.venv/bin/python3.12), then runs bench/scaling.py. Results and the log go
# to $OUT (default bench/out).
set -euo pipefail
wheels=${1:?usage: bash bench/device.sh WHEELS [scaling options...]}
shift
venv=${VENV:-/tmp/v}
base=${BASE_PYTHON:-/opt/torch/.venv/bin/python3.12}
out=${OUT:-bench/out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
started=$(date +%s)

site_of() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
if command -v uv > /dev/null; then
  uv venv -q --clear --python "$base" "$venv"
  site_of "$base" > "$(site_of "$venv/bin/python")/zz_system.pth"
  VIRTUAL_ENV=$venv uv pip install -q --offline --no-deps "$wheels"/*.whl
  VIRTUAL_ENV=$venv uv pip install -q --offline --no-deps --no-build-isolation .
else
  "$base" -m venv --clear "$venv"
  site_of "$base" > "$(site_of "$venv/bin/python")/zz_system.pth"
  "$venv/bin/python" -m pip install -q --no-index --no-deps "$wheels"/*.whl
  "$venv/bin/python" -m pip install -q --no-index --no-deps --no-build-isolation .
fi
"$venv/bin/python" -c "import stacwatchd, rasterio, numpy; print('ready:', stacwatchd.__version__, 'GDAL', rasterio.__gdal_version__, 'numpy', numpy.__version__)"
echo "venv ready in $(( $(date +%s) - started )) s; $(nproc) CPUs" | tee "$out/device.txt"
# Cores against hardware threads: 16 CPUs may be 8 cores with 2 threads each.
lscpu 2> /dev/null | grep -E '^(Model name|Thread|Core|Socket|CPU\(s\)|CPU max MHz|L3)' | tee -a "$out/device.txt" || true
# The scratch folder's file system: on ext4 without a journal, files deleted in the last
# minutes (a previous run's scratch folder) slow every new file (bench/_common.discard).
df -T /tmp 2> /dev/null | tee -a "$out/device.txt" || true
"$venv/bin/python" bench/scaling.py --out "$out/scaling.json" "$@" 2>&1 | tee "$out/scaling.log"
echo "total $(( $(date +%s) - started )) s" | tee -a "$out/device.txt"
