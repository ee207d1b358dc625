#!/usr/bin/env bash
# Prints the pg_config of an assert-enabled, Valgrind-aware PostgreSQL 15,
# built (once, then reused) from Debian bookworm's own source package.
#
#   test/cassert_pg.sh            # path of its pg_config on stdout
#
# The server is Debian's postgresql-15 source (apt-get source, the Debian
# patches applied) configured with --enable-cassert --enable-debug and
# built with -DUSE_VALGRIND -O1: its Assert()s are checked, and under
# Valgrind its allocator (palloc, memory contexts) tells memcheck which
# chunks are allocated, freed or undefined, so that reads of freed or
# uninitialised palloc'd memory and writes past a chunk are reported, which
# the Debian build (plain malloc'd blocks carved up by PostgreSQL) hides.
# test/matrix.sh runs the regression and isolation suites on it
# ("15-cassert"), and test/valgrind/run.sh runs its server under Valgrind.
#
# The deb-src entry for bookworm lives in a private apt configuration:
# the machine's sources are not changed.  Environment:
#   DP_MATRIX_CACHE    where the build is kept, in pgsql-15-cassert/ (default
#                      /var/cache/deploy_progress-matrix, outside the clone)
#   DP_MATRIX_MIRROR   Debian archive (default http://deb.debian.org/debian)
#   DP_MATRIX_REFRESH  1: build it anew
# A build is made in a temporary directory and renamed into place only when
# complete; it is rebuilt when its recipe (the version of the source, the
# options) changes.  Needs root (or sudo) only to install what is missing
# (build-essential, dpkg-dev, curl, valgrind, libreadline-dev, zlib1g-dev,
# libipc-run-perl).  Takes about 10 minutes on 2 cores the first time.
set -euo pipefail
CACHE="${DP_MATRIX_CACHE:-/var/cache/deploy_progress-matrix}"
MIRROR="${DP_MATRIX_MIRROR:-http://deb.debian.org/debian}"
# (the name holds "pgsql": Debian's 50-per-version-dirs patch would put the
# modules and PGXS into /usr/lib/postgresql/15/lib for any other prefix)
DEST="$CACHE/pgsql-15-cassert"
CONFIGURE=(--enable-cassert --enable-debug --enable-tap-tests --without-icu --without-llvm)
CONTRIB=(dblink)
CFLAGS_CASSERT="-O1 -g -fno-omit-frame-pointer"
CPPFLAGS_CASSERT="-DUSE_VALGRIND"
log() { printf '\n== %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in build-essential dpkg-dev curl valgrind libreadline-dev zlib1g-dev libipc-run-perl; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

mkdir -p "$CACHE"
exec 8>"$CACHE/.pgsql-15-cassert.lock"
flock 8

# a private apt configuration with bookworm's deb-src entries
apt_dir="$(mktemp -d /tmp/deploy_progress_cassert_apt.XXXXXX)"
trap 'rm -rf "$apt_dir"' EXIT
mkdir -p "$apt_dir/sources" "$apt_dir/lists/partial"
cat > "$apt_dir/sources/bookworm-src.sources" <<EOF
Types: deb-src
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
APT=(apt-get -q -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$apt_dir/sources"
     -o Dir::State::Lists="$apt_dir/lists" -o Acquire::Check-Valid-Until=false -o APT::Sandbox::User=root)
"${APT[@]}" update >&2
# the versions of the source on offer, newest first (a mirror may list a
# security update whose files it does not carry: the next one is tried)
APT_CACHE=(apt-cache -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$apt_dir/sources"
           -o Dir::State::Lists="$apt_dir/lists")
mapfile -t versions < <("${APT_CACHE[@]}" showsrc postgresql-15 2>/dev/null | sed -n 's/^Version: //p' | sort -u -r -V)
[ ${#versions[@]} -gt 0 ] || { echo "no postgresql-15 source package in bookworm at $MIRROR" >&2; exit 1; }
version=
for v in "${versions[@]}"; do
    if "${APT[@]}" source --print-uris "postgresql-15=$v" 2>/dev/null | grep -o "^'[^']*'" | tr -d "'" | \
            while read -r uri; do curl -sfIo /dev/null "$uri" || exit 1; done; then
        version="$v"
        break
    fi
done
[ -n "$version" ] || { echo "the mirror $MIRROR carries none of the postgresql-15 sources it lists (${versions[*]})" >&2; exit 1; }
want="postgresql-15 $version ${CONFIGURE[*]} CFLAGS=$CFLAGS_CASSERT CPPFLAGS=$CPPFLAGS_CASSERT contrib: ${CONTRIB[*]}"
if [ -z "${DP_MATRIX_REFRESH:-}" ] && [ "$(cat "$DEST/.recipe" 2>/dev/null)" = "$want" ] && [ -x "$DEST/bin/pg_config" ] && [ -f "$DEST/valgrind.supp" ]; then
    echo "$DEST/bin/pg_config"
    exit 0
fi

rm -rf --one-file-system "$CACHE"/.pgsql-15-cassert.new.*
work="$(mktemp -d "$CACHE/.pgsql-15-cassert.new.XXXXXX")"
trap 'rm -rf "$apt_dir" "$work"' EXIT
log "building an assert-enabled PostgreSQL 15 ($version) from Debian's source in $DEST"
(cd "$work" && "${APT[@]}" source "postgresql-15=$version" >&2)
src="$(find "$work" -maxdepth 1 -type d -name 'postgresql-15-*' | head -n1)"
[ -n "$src" ] || { echo "apt-get source postgresql-15 unpacked nothing" >&2; exit 1; }
# built in place, installed where it will stay (pg_config's paths are
# absolute), then the temporary install directory is renamed over it
prefix="$DEST"
(cd "$src" && ./configure --prefix="$prefix" "${CONFIGURE[@]}" \
     CFLAGS="$CFLAGS_CASSERT" CPPFLAGS="$CPPFLAGS_CASSERT" >"$work/configure.log" 2>&1) \
    || { tail -n 30 "$work/configure.log" >&2; exit 1; }
nice make -C "$src" -s -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -n 30 "$work/make.log" >&2; exit 1; }
nice make -C "$src/src/test/isolation" -s -j"$(nproc)" >>"$work/make.log" 2>&1 || { tail -n 30 "$work/make.log" >&2; exit 1; }
make -C "$src" -s install DESTDIR="$work/root" >>"$work/make.log" 2>&1 || { tail -n 30 "$work/make.log" >&2; exit 1; }
# the contrib modules the suites use (dblink: test/include/notify_listener.sql)
for m in "${CONTRIB[@]}"; do
    nice make -C "$src/contrib/$m" -s -j"$(nproc)" install DESTDIR="$work/root" >>"$work/make.log" 2>&1 || { tail -n 30 "$work/make.log" >&2; exit 1; }
done
# everything under the prefix (the server's modules too), nothing elsewhere
outside="$(find "$work/root" -type f -not -path "$work/root$prefix/*" | head -n 3)"
# (pg_config answers relative to where it is: here, under $work/root)
if [ -n "$outside" ] || [ "$("$work/root$prefix/bin/pg_config" --pkglibdir)" != "$work/root$prefix/lib" ]; then
    echo "the build did not install under $prefix alone: ${outside:-pkglibdir $("$work/root$prefix/bin/pg_config" --pkglibdir)}" >&2
    exit 1
fi
# PGXS looks for the isolation tester beside pg_regress (as in Debian's packages)
iso="$work/root$prefix/lib/pgxs/src/test/isolation"
mkdir -p "$iso"
cp "$src/src/test/isolation/pg_isolation_regress" "$src/src/test/isolation/isolationtester" "$iso/"
# PostgreSQL's suppressions for a server built with USE_VALGRIND (test/valgrind/run.sh)
cp "$src/src/tools/valgrind.supp" "$work/root$prefix/valgrind.supp"
echo "$want" > "$work/root$prefix/.recipe"
chmod -R a+rX "$work/root$prefix"
if [ -e "$DEST" ]; then mv "$DEST" "$work/old"; fi
mv "$work/root$prefix" "$DEST"
log "assert-enabled PostgreSQL 15 in $DEST"
echo "$DEST/bin/pg_config"
