#!/usr/bin/env bash
# Build (or reuse) a free-threaded CPython (PEP 703, ./configure --disable-gil)
# from Debian's source package, and print the interpreter's path as the last
# line of standard output (everything else goes to standard error).
#
#   PY_FT=$(bash scripts/build_freethreaded_python.sh)   # ~6 min the first time
#   "$PY_FT" -m venv /tmp/ft-venv
#
# Settings (environment):
#   MEMPOOL_FT_VERSION   CPython minor version, default 3.13 (Debian package python3.13)
#   MEMPOOL_FT_SUITE     Debian suite whose source package to use, default trixie
#   MEMPOOL_FT_MIRROR    Debian mirror, default http://deb.debian.org/debian
#   MEMPOOL_FT_PREFIX    install prefix, default ~/.cache/mempool/cpython-<version>t
#   MEMPOOL_FT_JOBS      make -j, default nproc
#
# Idempotent: an install whose stamp names the same configure line and whose
# interpreter runs with the GIL off is reused.  Runs as root on a
# fresh Debian machine (installs the build dependencies it lacks with apt-get)
# or as any user once they are there.  Needs no standard input.  The deb-src
# line lives in an apt configuration of the script's own (its own sources
# list, lists and cache under the prefix's build folder): the system's apt
# configuration and state are neither read for sources nor changed.
# Any failure ends the script with a non-zero status and says which step.
set -euo pipefail

VERSION=${MEMPOOL_FT_VERSION:-3.13}
SUITE=${MEMPOOL_FT_SUITE:-trixie}
MIRROR=${MEMPOOL_FT_MIRROR:-http://deb.debian.org/debian}
PREFIX=${MEMPOOL_FT_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/mempool/cpython-${VERSION}t}
JOBS=${MEMPOOL_FT_JOBS:-$(nproc 2>/dev/null || echo 2)}
PKG=python$VERSION
EXE=$PREFIX/bin/python${VERSION}t
WORK=$PREFIX.build
# No test modules: make install byte-compiles them three times over, minutes
# on a busy 2-core machine, and nothing here imports them.
CONFIGURE=(--disable-gil --prefix="$PREFIX" --with-ensurepip=install --disable-test-modules)

say() { printf '[ft-python] %s\n' "$*" >&2; }
die() { printf '[ft-python] FAILED: %s\n' "$*" >&2; exit 1; }

# The interpreter works, is free-threaded and keeps the GIL off by itself.
healthy() {
  [ -x "$EXE" ] && "$EXE" - <<'PY' >/dev/null 2>&1
import sys, sysconfig, ssl, zlib, ctypes, sqlite3, bz2, lzma
assert sysconfig.get_config_var("Py_GIL_DISABLED") == 1
assert not sys._is_gil_enabled()
PY
}

# --- reuse ---------------------------------------------------------------
# The stamp's second line is the configure line; a build made with another
# one is rebuilt.  A reused build is not compared with Debian's newest source
# (reuse needs no network).
if [ -f "$PREFIX/.mempool-ft-stamp" ] \
   && [ "$(sed -n 2p "$PREFIX/.mempool-ft-stamp")" = "${CONFIGURE[*]}" ] && healthy; then
  say "reusing $EXE ($(head -n1 "$PREFIX/.mempool-ft-stamp"))"
  printf '%s\n' "$EXE"
  exit 0
fi

# --- build dependencies --------------------------------------------------
# build-essential and dpkg-dev (apt-get source), the headers of the stdlib
# modules pip and the tests need (ssl, zlib, ctypes, sqlite3, bz2, lzma, uuid).
deps=(build-essential dpkg-dev xz-utils ca-certificates pkg-config libssl-dev
      zlib1g-dev libffi-dev libbz2-dev liblzma-dev libsqlite3-dev uuid-dev
      libreadline-dev libncurses-dev)
missing=()
for d in "${deps[@]}"; do
  dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q 'install ok installed' \
    || missing+=("$d")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "missing build dependencies (${missing[*]}); run as root or install them"
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null >&2 || die "apt-get update (system lists) for the build dependencies"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >&2 \
    || die "apt-get install ${missing[*]}"
fi

# --- the source package, through an apt configuration of our own ---------
mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial" "$WORK/src"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$KEYRING" ] || die "$KEYRING missing (package debian-archive-keyring)"
printf 'deb-src [signed-by=%s] %s %s main\n' "$KEYRING" "$MIRROR" "$SUITE" \
  >"$WORK/apt/sources.list"
APT=(apt-get -q
     -o "Dir::Etc::SourceList=$WORK/apt/sources.list"
     -o "Dir::Etc::SourceParts=$WORK/apt/no-parts"
     -o "Dir::State::Lists=$WORK/apt/lists"
     -o "Dir::Cache=$WORK/apt/cache"
     -o "APT::Sandbox::User=$(id -un)"
     -o "Acquire::Retries=3")
mkdir -p "$WORK/apt/no-parts"
say "apt-get update ($SUITE deb-src, own lists in $WORK/apt)"
"${APT[@]}" update </dev/null >&2 \
  || die "apt-get update of '$SUITE' deb-src from $MIRROR (network, mirror or suite name)"
(
  cd "$WORK/src"
  # Only the files of this source version; old ones are left by earlier runs.
  "${APT[@]}" source --download-only "$PKG" </dev/null >&2
) || die "apt-get source --download-only $PKG from $SUITE (no such package there, or the download failed)"

dsc=$(ls -t "$WORK"/src/"${PKG}"_*.dsc 2>/dev/null | head -n1)
[ -n "$dsc" ] || die "no ${PKG}_*.dsc downloaded into $WORK/src"
upstream=$(sed -n 's/^Version: \([^-]*\)-.*/\1/p' "$dsc" | head -n1)
[ -n "$upstream" ] || die "no version in $dsc"
orig=$(ls "$WORK"/src/"${PKG}_${upstream}".orig.tar.* 2>/dev/null | head -n1)
[ -n "$orig" ] || die "no orig tarball for $PKG $upstream in $WORK/src"
STAMP="$(basename "$orig") ($(basename "$dsc"), $SUITE)"

# --- configure, build, install ------------------------------------------
# The upstream tarball as it is (Debian's patches are for Debian's layout).
tree=$WORK/Python-$upstream
rm -rf "$tree" "$WORK/unpack"
mkdir -p "$WORK/unpack"
tar -xf "$orig" -C "$WORK/unpack" || die "unpacking $orig"
top=$(ls "$WORK/unpack")
[ "$(printf '%s\n' "$top" | wc -l)" -eq 1 ] || die "unexpected layout of $orig: $top"
mv "$WORK/unpack/$top" "$tree"
rmdir "$WORK/unpack"
say "building CPython $upstream with --disable-gil into $PREFIX (make -j$JOBS, log: $WORK/build.log)"
start=$(date +%s)
(
  cd "$tree"
  ./configure "${CONFIGURE[@]}"
  make -j"$JOBS"
  rm -rf "$PREFIX"
  make install
) </dev/null >"$WORK/build.log" 2>&1 || {
  tail -n 40 "$WORK/build.log" >&2
  die "configure/make/make install of CPython $upstream (log: $WORK/build.log)"
}
healthy || die "$EXE does not run free-threaded with ssl/zlib/ctypes/sqlite3/bz2/lzma (log: $WORK/build.log)"
printf '%s\n%s\n' "$STAMP" "${CONFIGURE[*]}" >"$PREFIX/.mempool-ft-stamp"
rm -rf "$tree"
say "built in $(( $(date +%s) - start )) s: $EXE"
printf '%s\n' "$EXE"
