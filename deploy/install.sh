#!/bin/sh
# idetcd installer: fetches the release binary for this machine, checks it
# against the release's SHA256SUMS, writes /etc/idetcd/Corefile and a
# hardened systemd unit, and starts the service. Made for a cloud-init
# runcmd one-liner, so every node of a cluster runs the same line:
#
#   curl -fsSL https://github.com/OWNER/idetcd/releases/latest/download/install.sh |
#     sh -s -- --endpoints http://10.0.0.5:2379 --limit 5 --pattern 'worker{{.ID}}.tf.local.'
#
# (OWNER: the GitHub account whose repository published the release.)
#
# Re-running it with the same arguments changes nothing and does not restart
# the service (a restart would give up the claimed name). Run with --help for
# the options; deploy/README.md has more.
set -eu

# The whole script is one { ... } group: sh reads all of it before running
# any of it, so a download cut short by `curl | sh` runs nothing, and no
# command below can swallow the rest of the script from standard input.
{
exec </dev/null

# release.yml replaces these two with the release's repository and tag, so an
# install.sh taken from a release installs that release's binary.
IDETCD_DEFAULT_REPO="OWNER/idetcd"
IDETCD_DEFAULT_VERSION="latest"

PROG=idetcd-install

usage() {
  cat <<'EOF'
Usage: install.sh [options]   (curl -fsSL .../install.sh | sh -s -- [options])

Corefile (each also from the environment variable shown):
  --endpoints URL[,URL...]  etcd endpoints, http:// or https:// (IDETCD_ENDPOINTS); required
  --limit N                 highest node number, a positive integer (IDETCD_LIMIT)
  --pattern PATTERN         node name pattern, e.g. 'worker{{.ID}}.tf.local.' (IDETCD_PATTERN); required
  --port N                  DNS port to serve on, default 53 (IDETCD_PORT)
  --prefix PATH             etcd key prefix, default /skydns (IDETCD_PREFIX)
  --address ADDR|IFACE,...  addresses to publish instead of detected ones (IDETCD_ADDRESS)
  --ttl DUR                 DNS TTL of answers, e.g. 30s; a bare number is seconds (IDETCD_TTL)
  --lease DUR               etcd lease, e.g. 20s; a bare number is seconds (IDETCD_LEASE)
  --wait [DUR]              wait for a free slot instead of failing, forever or up to DUR (IDETCD_WAIT=yes|DUR)
  --file PATH               write the claim as JSON to PATH; a bare name goes in /run/idetcd (IDETCD_FILE)
  --option 'LINE'           an extra line inside the idetcd block, e.g. 'tls cert.pem key.pem ca.pem'; repeatable
  --bind ADDR,...           serve only on these addresses (IDETCD_BIND)
  --log                     log every query (IDETCD_LOG=1)
  --resolver                make this node resolve the node names through idetcd (IDETCD_RESOLVER=1): under
                            systemd-resolved a drop-in routes only the zone to it (Domains=~ZONE); otherwise
                            resolv.conf points at 127.0.0.1 and idetcd forwards other names upstream
  --upstream IP,...         upstream resolvers for --resolver instead of the detected ones (IDETCD_UPSTREAM)
  --ready ADDR|off          the ready endpoint, 503 while the node holds no name (IDETCD_READY; default 127.0.0.1:8181)

Install:
  --version vX.Y.Z|latest   release to install (IDETCD_VERSION)
  --base-url URL            where idetcd-<target> and SHA256SUMS are; https:// or file:// (IDETCD_BASE_URL)
  --allow-http              accept an http:// --base-url, whose checksum proves nothing (IDETCD_ALLOW_HTTP=1)
  --repo OWNER/NAME         GitHub repository of the releases (IDETCD_REPO)
  --target TRIPLE           binary to fetch instead of this machine's (IDETCD_TARGET)
  --root DIR                install under DIR instead of / (IDETCD_ROOT); implies --no-start
  --no-start                install but do not enable or start the service (IDETCD_NO_START=1)
  --dry-run                 print what would be done, change nothing
  -h, --help                this text
EOF
}

say() { printf '%s: %s\n' "$PROG" "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}

truthy() {
  case ${1:-} in 1 | true | yes | on) return 0 ;; *) return 1 ;; esac
}

# --- options: environment first, the command line overrides -------------------
ENDPOINTS=${IDETCD_ENDPOINTS:-}
LIMIT=${IDETCD_LIMIT:-}
PATTERN=${IDETCD_PATTERN:-}
PORT=${IDETCD_PORT:-53}
KEY_PREFIX=${IDETCD_PREFIX:-}
ADDRESSES=${IDETCD_ADDRESS:-}
TTL=${IDETCD_TTL:-}
LEASE=${IDETCD_LEASE:-}
WAIT=${IDETCD_WAIT:-}
CLAIM_FILE=${IDETCD_FILE:-}
BIND=${IDETCD_BIND:-}
LOG_QUERIES=${IDETCD_LOG:-}
READY=${IDETCD_READY:-127.0.0.1:8181}
RESOLVER=${IDETCD_RESOLVER:-}
UPSTREAM=${IDETCD_UPSTREAM:-}
VERSION=${IDETCD_VERSION:-$IDETCD_DEFAULT_VERSION}
BASE_URL=${IDETCD_BASE_URL:-}
REPO=${IDETCD_REPO:-$IDETCD_DEFAULT_REPO}
TARGET=${IDETCD_TARGET:-}
ROOT=${IDETCD_ROOT:-/}
NO_START=${IDETCD_NO_START:-}
ALLOW_HTTP=${IDETCD_ALLOW_HTTP:-}
DRY_RUN=
EXTRA_OPTIONS= # newline-separated lines for the idetcd block

need_value() {
  [ "$#" -ge 2 ] || die "$1 needs a value"
  case $2 in --*) die "$1 needs a value, got option $2" ;; esac
}

while [ "$#" -gt 0 ]; do
  case $1 in
  --endpoints | --endpoint) need_value "$@"; ENDPOINTS=$2; shift 2 ;;
  --limit) need_value "$@"; LIMIT=$2; shift 2 ;;
  --pattern) need_value "$@"; PATTERN=$2; shift 2 ;;
  --port) need_value "$@"; PORT=$2; shift 2 ;;
  --prefix) need_value "$@"; KEY_PREFIX=$2; shift 2 ;;
  --address) need_value "$@"; ADDRESSES=$2; shift 2 ;;
  --ttl) need_value "$@"; TTL=$2; shift 2 ;;
  --lease) need_value "$@"; LEASE=$2; shift 2 ;;
  --wait)
    # An optional duration: take the next word only when it is not an option.
    WAIT=1
    if [ "$#" -ge 2 ]; then
      case $2 in -*) ;; *) WAIT=$2 && shift ;; esac
    fi
    shift
    ;;
  --file) need_value "$@"; CLAIM_FILE=$2; shift 2 ;;
  --option) need_value "$@"; EXTRA_OPTIONS="${EXTRA_OPTIONS}$2
"; shift 2 ;;
  --bind) need_value "$@"; BIND=$2; shift 2 ;;
  --log) LOG_QUERIES=1; shift ;;
  --ready) need_value "$@"; READY=$2; shift 2 ;;
  --resolver) RESOLVER=1; shift ;;
  --upstream) need_value "$@"; UPSTREAM=$2; shift 2 ;;
  --version) need_value "$@"; VERSION=$2; shift 2 ;;
  --base-url) need_value "$@"; BASE_URL=$2; shift 2 ;;
  --allow-http) ALLOW_HTTP=1; shift ;;
  --repo) need_value "$@"; REPO=$2; shift 2 ;;
  --target) need_value "$@"; TARGET=$2; shift 2 ;;
  --root) need_value "$@"; ROOT=$2; shift 2 ;;
  --no-start) NO_START=1; shift ;;
  --dry-run) DRY_RUN=1; shift ;;
  -h | --help) usage; exit 0 ;;
  *) die "unknown option '$1' (see --help)" ;;
  esac
done

# --- validation: everything is checked before anything is fetched or written ---
# Lists may be given with commas, spaces or newlines; words() makes them one line.
words() {
  printf '%s' "$1" | tr ',\t\n' '   ' | sed 's/^ *//; s/ *$//; s/  */ /g'
}
ENDPOINTS=$(words "$ENDPOINTS")
ADDRESSES=$(words "$ADDRESSES")
BIND=$(words "$BIND")
UPSTREAM=$(words "$UPSTREAM")

[ -n "$ENDPOINTS" ] || die "no etcd endpoint given: pass --endpoints http://HOST:2379[,...] or set IDETCD_ENDPOINTS"
for endpoint in $ENDPOINTS; do
  case $endpoint in
  http://?* | https://?*) ;;
  *) die "etcd endpoint '$endpoint' must start with http:// or https://" ;;
  esac
  case $endpoint in *[\"\#{}]*) die "etcd endpoint '$endpoint' holds a character a Corefile cannot take" ;; esac
done

[ -n "$PATTERN" ] || die "no name pattern given: pass --pattern 'worker{{.ID}}.tf.local.' or set IDETCD_PATTERN"
case $PATTERN in *'{{'*'}}'*) ;; *) die "pattern '$PATTERN' has no {{.ID}} action, e.g. 'worker{{.ID}}.tf.local.'" ;; esac
case $PATTERN in *'
'*) die "pattern must be one line" ;; esac

is_positive_int() {
  case $1 in '' | *[!0-9]* | 0*) return 1 ;; *) return 0 ;; esac
}
if [ -n "$LIMIT" ]; then
  is_positive_int "$LIMIT" || die "limit must be a positive integer, got '$LIMIT'"
fi
if ! is_positive_int "$PORT" || [ "$PORT" -gt 65535 ]; then
  die "port must be an integer from 1 to 65535, got '$PORT'"
fi
# ttl and lease are Go durations in the Corefile; a bare number means seconds.
case $TTL in '') ;; *[!0-9]*) ;; *) TTL=${TTL}s ;; esac
case $LEASE in '') ;; *[!0-9]*) ;; *) LEASE=${LEASE}s ;; esac
for duration in $TTL $LEASE; do
  case $duration in *[!0-9a-z.]*) die "'$duration' is not a duration like 30s or 5m" ;; esac
done
case $READY in
off) ;;
*[!0-9A-Za-z.:\[\]_-]* | '') die "--ready takes an address like 127.0.0.1:8181 or off, got '$READY'" ;;
esac
for word in $KEY_PREFIX $LEASE $ADDRESSES $BIND $UPSTREAM; do
  case $word in *[\"\#{}]*) die "'$word' holds a character a Corefile cannot take" ;; esac
done
if [ -n "$WAIT" ] && ! truthy "$WAIT"; then
  case $WAIT in
  0 | false | no | off) WAIT= ;;
  *[!0-9a-z.]*) die "wait takes a duration like 30s or 5m, got '$WAIT'" ;;
  *[!0-9]*) ;;
  *) WAIT=${WAIT}s ;;
  esac
fi
truthy "$RESOLVER" || RESOLVER=
truthy "$LOG_QUERIES" || LOG_QUERIES=
truthy "$ALLOW_HTTP" || ALLOW_HTTP=

case $VERSION in
latest | v*) ;;
[0-9]*) VERSION=v$VERSION ;;
*) die "version must be 'latest' or a release tag like v0.1.0, got '$VERSION'" ;;
esac

# ROOT is where files go; paths written into files stay the target system's.
case $ROOT in /*) ;; *) die "--root needs an absolute path, got '$ROOT'" ;; esac
ROOT=${ROOT%/}
LIVE= # set when installing onto the running system
[ -n "$ROOT" ] || LIVE=1

BIN_PATH=/usr/local/bin/idetcd
CONF_DIR=/etc/idetcd
COREFILE=$CONF_DIR/Corefile
UNIT_PATH=/etc/systemd/system/idetcd.service
RESOLVED_DROPIN=/etc/systemd/resolved.conf.d/idetcd.conf
UPSTREAM_SAVE=$CONF_DIR/upstream.conf
RESOLV_BACKUP=$CONF_DIR/resolv.conf.orig

# A bare --file name lands in the service's runtime directory, which it may write.
READ_WRITE_DIR=
case $CLAIM_FILE in
'') ;;
/run/idetcd/* | /var/lib/idetcd/*) ;;
/*) READ_WRITE_DIR=${CLAIM_FILE%/*} ;;
*/*) die "--file takes a bare name or an absolute path, got '$CLAIM_FILE'" ;;
*) CLAIM_FILE=/run/idetcd/$CLAIM_FILE ;;
esac

if [ -n "$LIVE" ] && [ -z "$DRY_RUN" ] && [ "$(id -u)" != 0 ]; then
  die "run as root (e.g. curl ... | sudo sh -s -- ...), or pass --root DIR to install into a folder"
fi

# --- target -----------------------------------------------------------------
if [ -z "$TARGET" ]; then
  os=$(uname -s)
  arch=$(uname -m)
  case $arch in
  x86_64 | amd64) arch=x86_64 ;;
  aarch64 | arm64) arch=aarch64 ;;
  *) die "no idetcd binary for CPU '$arch' (there are x86_64 and aarch64)" ;;
  esac
  case $os in
  Linux)
    # The binaries link glibc; Deno has no musl build.
    for loader in /lib/ld-musl-*; do
      if [ -e "$loader" ]; then die "musl libc (e.g. Alpine) is not supported: idetcd's binaries need glibc"; fi
    done
    TARGET=$arch-unknown-linux-gnu
    ;;
  Darwin) TARGET=$arch-apple-darwin ;;
  *) die "no idetcd binary for OS '$os' (there are Linux and macOS)" ;;
  esac
fi
ASSET=idetcd-$TARGET
case $TARGET in *linux*) USE_SYSTEMD=1 ;; *) USE_SYSTEMD= ;; esac

if [ -z "$BASE_URL" ]; then
  case $REPO in
  OWNER/*) die "this install.sh is not from a release: set IDETCD_BASE_URL (or --base-url) or IDETCD_REPO=OWNER/NAME" ;;
  esac
  if [ "$VERSION" = latest ]; then
    BASE_URL=https://github.com/$REPO/releases/latest/download
  else
    BASE_URL=https://github.com/$REPO/releases/download/$VERSION
  fi
fi
BASE_URL=${BASE_URL%/}
# SHA256SUMS comes from the same place as the binary, so it proves the download
# only when that place is authenticated (https) or local (file).
case $BASE_URL in
https://?* | file:///*) ;;
http://?*)
  [ -n "$ALLOW_HTTP" ] || die "--base-url $BASE_URL is plain http: anyone on the way can swap the binary and its SHA256SUMS together; use https:// or file://, or pass --allow-http to accept that"
  warn "downloading over plain http ($BASE_URL): the checksum cannot detect a swapped binary"
  ;;
*) die "--base-url must start with https:// or file:///, got '$BASE_URL'" ;;
esac

# Tools the download and the check need, before anything is fetched.
if [ -z "$DRY_RUN" ]; then
  command -v curl >/dev/null 2>&1 || die "curl is not installed"
  if ! command -v sha256sum >/dev/null 2>&1 && ! command -v shasum >/dev/null 2>&1; then
    die "neither sha256sum nor shasum is installed; cannot verify the download"
  fi
fi

# --- helpers ----------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/idetcd-install.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

CHANGED= # set when anything the service reads was (re)written

# install_file SRC DEST MODE: puts SRC at $ROOT/DEST unless it is already the
# same, atomically (a rename, so a running binary is never half-written).
install_file() {
  src=$1 dest=$ROOT$2 mode=$3
  if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
    say "unchanged $2"
    return 0
  fi
  if [ -n "$DRY_RUN" ]; then
    say "would write $2 (mode $mode)"
    case $2 in "$BIN_PATH") ;; *) sed 's/^/    | /' "$src" ;; esac
    return 0
  fi
  mkdir -p "${dest%/*}"
  cp "$src" "$dest.idetcd-new"
  chmod "$mode" "$dest.idetcd-new"
  mv -f "$dest.idetcd-new" "$dest"
  say "wrote $2"
  CHANGED=1
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d' ' -f1
  else
    die "neither sha256sum nor shasum is installed; cannot verify the download"
  fi
}

fetch() {
  # Redirects (GitHub sends release assets elsewhere) must stay on https.
  curl -fsSL --proto-redir =https --retry 3 --retry-delay 2 -o "$2" "$1" || die "could not download $1"
}

# A Corefile token: as is, or quoted when it holds spaces, quotes or '#'.
token() {
  case $1 in
  '' | *[[:space:]\"\#]*) printf '"%s"' "$(printf '%s' "$1" | sed 's/"/\\"/g')" ;;
  *) printf '%s' "$1" ;;
  esac
}

is_loopback() {
  case $1 in 127.* | ::1 | 0.0.0.0 | ::) return 0 ;; *) return 1 ;; esac
}

# nameserver addresses of a resolv.conf, loopback ones (ours, or a local stub) left out.
nameservers_of() {
  [ -f "$1" ] || return 0
  awk '$1 == "nameserver" { print $2 }' "$1" | while read -r ns; do
    is_loopback "$ns" || printf '%s\n' "$ns"
  done
}

# --- resolver mode: which upstreams, and how the system is pointed at us -------
# Decided before the download: a setting that cannot work (a port resolv.conf
# cannot name, no upstream) must stop the script before it fetches anything.
RESOLVER_MODE= # resolved | resolv.conf
if [ -n "$RESOLVER" ]; then
  link=
  [ -L "$ROOT/etc/resolv.conf" ] && link=$(readlink "$ROOT/etc/resolv.conf")
  case $link in
  # A stub symlink left in an image where systemd does not run is not a resolver.
  *systemd/resolve/*)
    if [ -z "$LIVE" ] || [ -d /run/systemd/system ]; then
      RESOLVER_MODE=resolved
    else
      RESOLVER_MODE=resolv.conf
    fi
    ;;
  *)
    if [ -n "$LIVE" ] && command -v systemctl >/dev/null 2>&1 &&
      systemctl is-active --quiet systemd-resolved 2>/dev/null; then
      RESOLVER_MODE=resolved
    else
      RESOLVER_MODE=resolv.conf
    fi
    ;;
  esac
  if [ "$RESOLVER_MODE" = resolv.conf ] && [ "$PORT" != 53 ]; then
    die "--resolver without systemd-resolved needs port 53 (resolv.conf cannot name a port)"
  fi
  # Under systemd-resolved only the pattern's zone is routed to idetcd (its
  # other queries keep going where they went), so idetcd forwards nothing.
  if [ "$RESOLVER_MODE" = resolv.conf ] && [ -z "$UPSTREAM" ]; then
    # The first run saves the upstreams; later runs reuse them, since by then
    # the system's resolver config points at idetcd itself.
    UPSTREAM=$(words "$(nameservers_of "$ROOT$UPSTREAM_SAVE")")
    [ -n "$UPSTREAM" ] || UPSTREAM=$(words "$(nameservers_of "$ROOT/run/systemd/resolve/resolv.conf")")
    [ -n "$UPSTREAM" ] || UPSTREAM=$(words "$(nameservers_of "$ROOT$RESOLV_BACKUP")")
    [ -n "$UPSTREAM" ] || UPSTREAM=$(words "$(nameservers_of "$ROOT/etc/resolv.conf")")
    [ -n "$UPSTREAM" ] || die "--resolver found no upstream resolver to forward to; pass --upstream IP[,IP...]"
  fi
  for ns in $UPSTREAM; do
    is_loopback "$ns" && die "upstream $ns is a loopback address: idetcd would forward to itself"
  done
  : >"$WORK/upstream.conf"
  for ns in $UPSTREAM; do printf 'nameserver %s\n' "$ns" >>"$WORK/upstream.conf"; done
fi

# --- download and verify (before anything is installed) ---------------------
if [ -n "$DRY_RUN" ]; then
  say "would download $BASE_URL/$ASSET and $BASE_URL/SHA256SUMS and check its sha256"
  : >"$WORK/$ASSET"
else
  say "downloading $ASSET from $BASE_URL"
  fetch "$BASE_URL/SHA256SUMS" "$WORK/SHA256SUMS"
  fetch "$BASE_URL/$ASSET" "$WORK/$ASSET"
  expected=$(awk -v name="$ASSET" '$2 == name || $2 == "*" name { print $1; exit }' "$WORK/SHA256SUMS")
  [ -n "$expected" ] || die "SHA256SUMS at $BASE_URL lists no $ASSET"
  actual=$(sha256_of "$WORK/$ASSET")
  if [ "$actual" != "$expected" ]; then
    die "checksum mismatch for $ASSET: SHA256SUMS says $expected, the download is $actual; refusing to install"
  fi
  say "verified sha256 $actual"
fi

# --- Corefile -----------------------------------------------------------------
{
  echo "# Written by idetcd's install.sh; re-run it to change this file."
  echo ".:$PORT {"
  [ -z "$BIND" ] || echo "    bind $BIND"
  echo "    idetcd {"
  echo "        endpoint $ENDPOINTS"
  [ -z "$LIMIT" ] || echo "        limit $LIMIT"
  echo "        pattern $(token "$PATTERN")"
  [ -z "$KEY_PREFIX" ] || echo "        prefix $KEY_PREFIX"
  [ -z "$ADDRESSES" ] || echo "        address $ADDRESSES"
  [ -z "$TTL" ] || echo "        ttl $TTL"
  [ -z "$LEASE" ] || echo "        lease $LEASE"
  if [ -n "$WAIT" ]; then
    if truthy "$WAIT"; then echo "        wait"; else echo "        wait $WAIT"; fi
  fi
  [ -z "$CLAIM_FILE" ] || echo "        file $(token "$CLAIM_FILE")"
  printf '%s' "$EXTRA_OPTIONS" | while IFS= read -r line; do
    [ -z "$line" ] || echo "        $line"
  done
  echo "    }"
  if [ "$RESOLVER_MODE" = resolv.conf ]; then
    # This node resolves through idetcd: everything that is not a node name
    # goes on to the resolvers the system had, with a cache in front.
    echo "    forward . $UPSTREAM"
    echo "    cache"
  fi
  if [ "$READY" != off ]; then
    # "continuously": /ready turns 503 whenever the node stops vouching for its name.
    echo "    ready $READY {"
    echo "        monitor continuously"
    echo "    }"
  fi
  echo "    errors"
  [ -z "$LOG_QUERIES" ] || echo "    log"
  echo "}"
} >"$WORK/Corefile"

# --- systemd unit ---------------------------------------------------------------
{
  cat <<EOF
# Written by idetcd's install.sh; re-run it to change this file.
[Unit]
Description=idetcd: a unique node name in etcd, served over DNS
Wants=network-online.target
After=network-online.target
EOF
  cat <<EOF

[Service]
Type=simple
ExecStart=$BIN_PATH -conf $COREFILE -quiet
Restart=on-failure
RestartSec=2
# systemctl reload re-reads the Corefile (SIGHUP; SIGUSR1 would also open Deno's inspector).
ExecReload=/bin/kill -HUP \$MAINPID
# SIGTERM makes idetcd revoke its lease, so the name is free at once; give it time.
KillSignal=SIGTERM
TimeoutStopSec=15
# An unprivileged user made up for the service, allowed port 53 and nothing more.
DynamicUser=yes
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictNamespaces=yes
RestrictRealtime=yes
LockPersonality=yes
# AF_NETLINK: listing network interfaces. No MemoryDenyWriteExecute: V8's JIT needs it.
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
# Writable under ProtectSystem=strict: /var/lib/idetcd and /run/idetcd (--file).
StateDirectory=idetcd
RuntimeDirectory=idetcd
EOF
  [ -z "$READ_WRITE_DIR" ] || echo "ReadWritePaths=$READ_WRITE_DIR"
  cat <<EOF

[Install]
WantedBy=multi-user.target
EOF
} >"$WORK/idetcd.service"

# --- install --------------------------------------------------------------------
if [ -n "$DRY_RUN" ]; then
  say "would install $ASSET as $BIN_PATH (mode 0755)"
else
  install_file "$WORK/$ASSET" "$BIN_PATH" 0755
fi
install_file "$WORK/Corefile" "$COREFILE" 0644
if [ -n "$USE_SYSTEMD" ]; then
  install_file "$WORK/idetcd.service" "$UNIT_PATH" 0644
fi
if [ -n "$READ_WRITE_DIR" ]; then
  warn "--file $CLAIM_FILE: $READ_WRITE_DIR must be writable by the service's dynamic user (or use a bare name, kept in /run/idetcd)"
fi

if [ -n "$LIVE" ] && [ -z "$DRY_RUN" ]; then
  "$BIN_PATH" -version >/dev/null 2>&1 || die "the installed $BIN_PATH does not run on this machine (target $TARGET)"
fi

# --- start ------------------------------------------------------------------------
# systemd runs only when it is PID 1, and then /run/systemd/system exists (what
# sd_booted() checks). In a container, WSL without systemd, or under another
# init, systemctl may be installed and still fail ("System has not been booted
# with systemd"), so that case installs everything, says how to start idetcd by
# hand, and exits 0.
SYSTEMD_RUNNING=
if [ -n "$USE_SYSTEMD" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  SYSTEMD_RUNNING=1
fi
STARTED= # set when the service was (re)started here

# start_by_hand WHY: how to run idetcd without systemd, exactly.
start_by_hand() {
  say "$1, so idetcd is installed but not started. Start it by hand, as root:"
  say "    $BIN_PATH -conf $COREFILE"
  say "or in the background (SIGTERM stops it and frees its name at once):"
  say "    nohup $BIN_PATH -conf $COREFILE >>/var/log/idetcd.log 2>&1 &"
  say "(in a container, make '$BIN_PATH -conf $COREFILE' its command)"
}

if [ -z "$LIVE" ]; then
  say "installed under $ROOT; not starting anything (--root)"
elif [ -n "$NO_START" ]; then
  if [ -n "$SYSTEMD_RUNNING" ]; then
    say "not starting (--no-start); start it with: systemctl enable --now idetcd"
  else
    start_by_hand "--no-start given"
  fi
elif [ -z "$USE_SYSTEMD" ]; then
  start_by_hand "this is not Linux (no systemd unit is written)"
elif ! command -v systemctl >/dev/null 2>&1; then
  start_by_hand "systemctl is not installed"
elif [ -z "$SYSTEMD_RUNNING" ]; then
  start_by_hand "systemd is not running here (no /run/systemd/system: a container, WSL without systemd, or another init)"
elif [ -n "$DRY_RUN" ]; then
  say "would run: systemctl daemon-reload && systemctl enable --now idetcd"
else
  systemctl daemon-reload
  if [ -n "$CHANGED" ] && systemctl is-active --quiet idetcd; then
    # New binary or config: restart, which releases the name and claims again.
    systemctl restart idetcd || die "idetcd did not restart; see: journalctl -u idetcd"
    say "restarted idetcd"
  fi
  systemctl enable --now idetcd || die "idetcd did not start; see: journalctl -u idetcd"
  STARTED=1
  say "idetcd is enabled and running; see: systemctl status idetcd"
fi

# --- resolver switch (last: only once idetcd is in place) ---------------------
if [ -n "$RESOLVER" ]; then
  [ "$RESOLVER_MODE" != resolv.conf ] || install_file "$WORK/upstream.conf" "$UPSTREAM_SAVE" 0644
  if [ "$RESOLVER_MODE" = resolved ]; then
    # Global DNS=127.0.0.1 with only the routing domain "~ZONE": systemd-resolved
    # asks idetcd for the node names and nothing else (other names keep their
    # per-link servers); "~ZONE" also lets a ".local" zone go to unicast DNS.
    # The zone: the labels after the one holding the {{...}} action.
    zone=${PATTERN##*\}\}}
    case $zone in *.*) zone=${zone#*.}; zone=${zone%.} ;; *) zone= ;; esac
    dns=127.0.0.1
    [ "$PORT" = 53 ] || dns=127.0.0.1:$PORT
    {
      echo "# Written by idetcd's install.sh: the names of $zone resolve through idetcd."
      echo "[Resolve]"
      echo "DNS=$dns"
      echo "Domains=~$zone"
    } >"$WORK/resolved.conf"
    before=$CHANGED
    CHANGED=
    install_file "$WORK/resolved.conf" "$RESOLVED_DROPIN" 0644
    if [ -n "$CHANGED" ] && [ -n "$LIVE" ] && [ -z "$DRY_RUN" ] && [ -n "$SYSTEMD_RUNNING" ]; then
      systemctl restart systemd-resolved || die "systemd-resolved did not restart with $RESOLVED_DROPIN"
      say "restarted systemd-resolved"
    fi
    CHANGED=$before
  else
    if [ ! -e "$ROOT$RESOLV_BACKUP" ] && [ -e "$ROOT/etc/resolv.conf" ]; then
      if [ -n "$DRY_RUN" ]; then
        say "would save /etc/resolv.conf as $RESOLV_BACKUP"
      else
        mkdir -p "$ROOT$CONF_DIR"
        cp "$ROOT/etc/resolv.conf" "$ROOT$RESOLV_BACKUP"
        say "saved /etc/resolv.conf as $RESOLV_BACKUP"
      fi
    fi
    {
      echo "# Written by idetcd's install.sh: resolve through idetcd (forwarding to $UPSTREAM)."
      echo "# The original is $RESOLV_BACKUP."
      echo "nameserver 127.0.0.1"
      src=$ROOT$RESOLV_BACKUP
      [ -e "$src" ] || src=$ROOT/etc/resolv.conf
      [ ! -e "$src" ] || awk '$1 == "search" || $1 == "domain" || $1 == "options"' "$src"
    } >"$WORK/resolv.conf"
    # A symlink (e.g. to NetworkManager's file) is replaced by a plain file.
    if [ -L "$ROOT/etc/resolv.conf" ] && [ -z "$DRY_RUN" ]; then rm -f "$ROOT/etc/resolv.conf"; fi
    before=$CHANGED
    CHANGED=
    install_file "$WORK/resolv.conf" /etc/resolv.conf 0644
    [ -z "$CHANGED" ] || warn "a DHCP client may rewrite /etc/resolv.conf; configure it to keep nameserver 127.0.0.1"
    CHANGED=$before
  fi
  if [ -n "$LIVE" ] && [ -z "$DRY_RUN" ] && [ -z "$STARTED" ]; then
    warn "this node now resolves through idetcd, which is not started: no name resolves until it is"
  fi
fi

say "done${DRY_RUN:+ (dry run: nothing was changed)}"
}
