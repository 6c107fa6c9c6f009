#!/usr/bin/env bash
# Installs stacwatchd as a systemd service, as root:
#   - a virtual environment in PREFIX (default /opt/stacwatchd) with stacwatchd from SOURCE
#     (default: the repository this script is in);
#   - the system user (sysusers.d), the state folder /var/lib/stacwatchd and the catalog
#     root, both owned by that user (tmpfiles.d);
#   - /etc/stacwatchd/config.toml (never overwritten once there; 0640 root:USER) and the
#     full reference /etc/stacwatchd/config.example.toml;
#   - /etc/systemd/system/stacwatchd.service with ExecStart=, ReadWritePaths= (catalog)
#     and ReadOnlyPaths= (watched folders) matching the above.
# It does not start the service: edit the configuration, check it, then enable it.
# Running it again upgrades stacwatchd in the virtual environment and keeps the configuration.
#
# DESTDIR=/a/tree stages everything into that tree instead of / (tests, packaging): the
# user is created in DESTDIR/etc/passwd, folders under DESTDIR, and systemctl is not called.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: systemd/install.sh [options]
  --catalog DIR            catalog root, written by the service (default /srv/stac)
  --watch DIR              a watched folder, read-only for the service; repeatable (default /data/outputs)
  --prefix DIR             virtual environment (default /opt/stacwatchd)
  --user NAME              system user and group the service runs as (default stacwatchd)
  --source DIR|SPEC        what pip installs (default: this repository)
  --python EXE             interpreter for the virtual environment (default python3)
  --system-site-packages   let the virtual environment see the interpreter's packages
  --pip-args "ARGS"        extra arguments for pip install (e.g. "--no-index --find-links DIR")
environment: DESTDIR=DIR   stage into DIR instead of / (no systemctl)
EOF
}

log() { printf 'install: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
catalog=/srv/stac
watches=()
prefix=/opt/stacwatchd
user=stacwatchd
source_spec="$repo"
python=python3
venv_args=()
pip_args=()
destdir="${DESTDIR:-}"
destdir="${destdir%/}"

while [ $# -gt 0 ]; do
    case "$1" in
        --catalog) catalog="$2"; shift 2 ;;
        --watch) watches+=("$2"); shift 2 ;;
        --prefix) prefix="$2"; shift 2 ;;
        --user) user="$2"; shift 2 ;;
        --source) source_spec="$2"; shift 2 ;;
        --python) python="$2"; shift 2 ;;
        --system-site-packages) venv_args+=(--system-site-packages); shift ;;
        --pip-args) read -r -a extra <<<"$2"; pip_args+=("${extra[@]}"); shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
[ ${#watches[@]} -gt 0 ] || watches=(/data/outputs)

state_dir=/var/lib/stacwatchd
etc=/etc/stacwatchd
unit=/etc/systemd/system/stacwatchd.service
for path in "$catalog" "$prefix" "${watches[@]}"; do
    case "$path" in /*) ;; *) die "not an absolute path: $path" ;; esac
    case "$path" in *[[:space:]\"\\#]*) die "paths with spaces, quotes, backslashes or # are not supported: $path" ;; esac
done
[[ "$user" =~ ^[a-z_][a-z0-9_-]*$ ]] || die "not a valid user name: $user"
[ "$(id -u)" -eq 0 ] || die "run as root (it creates a user, folders owned by it, and a unit)"
for tool in systemd-sysusers systemd-tmpfiles; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian package systemd)"
done

# 1. The virtual environment.
log "virtual environment in ${destdir}${prefix}"
if ! "$python" -m venv "${venv_args[@]}" "${destdir}${prefix}"; then
    die "cannot create a virtual environment with $python (on Debian: apt-get install python3-venv)"
fi
"${destdir}${prefix}/bin/python" -m pip install --quiet --disable-pip-version-check \
    --root-user-action=ignore "${pip_args[@]}" "$source_spec"
[ -x "${destdir}${prefix}/bin/stacwatchd" ] || die "pip did not install ${prefix}/bin/stacwatchd"

# 2. The user, the state folder and the catalog root.
root_args=()
[ -z "$destdir" ] || root_args=(--root="$destdir")
install -d -m 0755 "${destdir}/etc/sysusers.d" "${destdir}/etc/tmpfiles.d"
printf 'u %s - "stacwatchd daemon" %s /usr/sbin/nologin\n' "$user" "$state_dir" \
    >"${destdir}/etc/sysusers.d/stacwatchd.conf"
systemd-sysusers "${root_args[@]}" stacwatchd.conf
{
    printf 'd %s 0750 %s %s -\n' "$state_dir" "$user" "$user"
    printf 'd %s 0755 %s %s -\n' "$catalog" "$user" "$user"
} >"${destdir}/etc/tmpfiles.d/stacwatchd.conf"
systemd-tmpfiles --create "${root_args[@]}" stacwatchd.conf
gid="$(awk -F: -v name="$user" '$1 == name { print $3 }' "${destdir}/etc/group")"
[ -n "$gid" ] || die "group $user was not created"

# 3. The configuration.
install -d -m 0750 -o 0 -g "$gid" "${destdir}${etc}"
install -m 0644 -o 0 -g 0 "$repo/config.example.toml" "${destdir}${etc}/config.example.toml"
if [ -e "${destdir}${etc}/config.toml" ]; then
    log "keeping ${etc}/config.toml"
else
    config_tmp="$(mktemp)"
    {
        printf '# stacwatchd service configuration. Every key, explained: %s/config.example.toml\n' "$etc"
        printf '# Check after editing:  %s/bin/stacwatchd config check --config %s/config.toml\n' "$prefix" "$etc"
        printf '# Apply:                systemctl reload stacwatchd\n\n'
        printf '[catalog]\nroot = "%s"\ntitle = "Rasters"\nstate_file = "%s/state.db"\n' "$catalog" "$state_dir"
        for watch in "${watches[@]}"; do
            printf '\n[[watch]]\npath = "%s"\n' "$watch"
            printf '# [watch.collection]\n# id = "ndvi"\n# title = "NDVI composites"\n# license = "CC-BY-4.0"\n'
        done
        printf '\n# [metrics]\n# listen = "127.0.0.1:9108"\n'
    } >"$config_tmp"
    install -m 0640 -o 0 -g "$gid" "$config_tmp" "${destdir}${etc}/config.toml"
    rm -f "$config_tmp"
    log "wrote ${etc}/config.toml"
fi

# 4. The unit, its paths set to this installation.
read_only="$(printf -- '-%s ' "${watches[@]}")"
install -d -m 0755 "${destdir}$(dirname "$unit")"
sed -e "s#^ExecStart=/opt/stacwatchd/#ExecStart=${prefix}/#" \
    -e "s#^ReadWritePaths=/srv/stac\$#ReadWritePaths=${catalog}#" \
    -e "s#^ReadOnlyPaths=-/data/outputs\$#ReadOnlyPaths=${read_only% }#" \
    -e "s#^User=stacwatchd\$#User=${user}#" \
    -e "s#^Group=stacwatchd\$#Group=${user}#" \
    "$here/stacwatchd.service" >"${destdir}${unit}.tmp"
chmod 0644 "${destdir}${unit}.tmp"
mv "${destdir}${unit}.tmp" "${destdir}${unit}"

# 5. A last look: the installed command reads the configuration.
"${destdir}${prefix}/bin/stacwatchd" config check --config "${destdir}${etc}/config.toml" >/dev/null

if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
cat >&2 <<EOF
install: done. Next:
  edit ${etc}/config.toml (collections, datetime rules, [pgstac], [metrics])
  ${prefix}/bin/stacwatchd config check --config ${etc}/config.toml
  systemctl enable --now stacwatchd && journalctl -u stacwatchd -f -o cat
EOF
