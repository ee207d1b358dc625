#!/usr/bin/env bash
# Builds and tests deploy_progress on the PostgreSQL versions of Debian's
# other releases, each in a minimal Debian root filesystem of its own, and
# on an assert-enabled PostgreSQL 15.
#
#   test/matrix.sh [VERSION...]      default: 13 17 18 15-cassert
#
#   13  bullseye    17  trixie    18  sid
#   15-cassert      bookworm's PostgreSQL 15 built from Debian's source with
#                   --enable-cassert and -DUSE_VALGRIND (test/cassert_pg.sh),
#                   on this machine
#
# (bookworm's own PostgreSQL 15 is what test/run_all.sh tests.)  For 13, 17
# and 18 it creates (or reuses) a root filesystem made by debootstrap
# --variant=minbase with Debian's packages of that release (test/lib.sh's
# server_packages, and the client packages the release has; for 13, whose
# package ships no pg_isolation_regress, that tool built from bullseye's
# source package of the server), copies the working tree in (tracked and untracked files, without what .gitignore
# leaves out), and inside it builds with -Werror (test/lib.sh's
# build_install) and runs the regression and isolation suites, the README
# examples, the TAP tests and the client suites the release can run on a
# throwaway cluster (start_cluster), as test/run_all.sh does; for
# 15-cassert, the regression and isolation suites, in a copy of the tree.
# It prints one table, version x suite: passed, failed, or n/a (not
# available) and why, with each version's time; it exits non-zero when a
# suite failed or a version could not be set up.  The results/ and
# output_iso/ directories of each version are kept in DP_MATRIX_LOGS
# (MAJOR-results/), for alternative expected files.
#
# Runs as root (debootstrap, chroot, mount).  Environment:
#   DP_MATRIX_CACHE    where the root filesystems and the assert-enabled
#                      build are kept, one directory per release
#                      (default /var/cache/deploy_progress-matrix); outside
#                      the clone
#   DP_MATRIX_MIRROR   Debian archive (default http://deb.debian.org/debian)
#   DP_MATRIX_REFRESH  1: build every root filesystem anew (the old one is
#                      kept and used until the new one is complete)
#   DP_MATRIX_LOGS     directory for each version's full output (default a
#                      new directory under /tmp, printed at the end)
#
# A root filesystem is built in a temporary directory next to the cache
# and renamed into place only once every package is installed, so an
# interrupted run never leaves a half-built cache behind.  The runs do not
# change the cache: each mounts an overlay over it and discards it.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${DP_MATRIX_CACHE:-/var/cache/deploy_progress-matrix}"
MIRROR="${DP_MATRIX_MIRROR:-http://deb.debian.org/debian}"
LOGS="${DP_MATRIX_LOGS:-$(mktemp -d /tmp/deploy_progress_matrix.XXXXXX)}"
SUITES=(build regression isolation readme tap clients)

suite_of() {
    case "$1" in
        13) echo bullseye ;;
        17) echo trixie ;;
        18) echo sid ;;
        *) return 1 ;;
    esac
}

log() { printf '\n== %s\n' "$*" >&2; }

# ---------------------------------------------------------------------
# Inside the root filesystem (run as "test/matrix.sh --inside MAJOR RESULTS"
# from the copy of the tree): every suite, one line "suite status reason"
# per suite into RESULTS.
if [ "${1:-}" = --inside ]; then
    pg_config="$2" results="$3" what="$4"
    export PG_CONFIG="$pg_config"
    source "$REPO/test/lib.sh"
    : > "$results"
    result() { echo "$*" >> "$results"; }
    if ! build_install; then
        result build failed
        for s in regression isolation readme tap clients; do result "$s" "n/a" "the build failed"; done
        exit 0
    fi
    result build passed
    if [ "$what" = cassert ]; then
        # (Debian's pg_cron is built for Debian's server; no suite of the
        # two needs it)
        start_cluster
    else
        start_cluster "shared_preload_libraries = 'pg_cron'" "cron.database_name = 'postgres'"
    fi
    # (each suite runs whatever the one before it did)
    if run_regression; then result regression passed; else result regression failed; fi
    if ! isolation_available; then
        result isolation "n/a" "no pg_isolation_regress for PostgreSQL $PG_MAJOR"
    elif run_isolation; then result isolation passed; else result isolation failed; fi
    if [ "$what" = cassert ]; then
        for s in readme tap clients; do
            result "$s" "n/a" "the assert-enabled build runs the regression and isolation suites (the others run on Debian's 15)"
        done
        exit 0
    fi
    log "README examples (test/readme_examples.sh)"
    if DP_REUSE_CLUSTER=1 "$REPO/test/readme_examples.sh"; then result readme passed; else result readme failed; fi
    # the client suites this release has what for: the README recipe's shell
    # loop (psql) everywhere, psycopg 3 where Debian ships it
    clients=(cli) skipped="node, ruby, watch, prometheus and dist run on bookworm only"
    if /usr/bin/python3 -c 'import psycopg' 2>/dev/null; then clients+=(python); else skipped="python (no psycopg 3), $skipped"; fi
    if "$REPO/test/clients/run.sh" "${clients[@]}"; then
        result clients passed "${clients[*]}; $skipped"
    else
        result clients failed "${clients[*]}; $skipped"
    fi
    stop_cluster
    if run_tap 'test/t/*.pl'; then result tap passed; else result tap failed; fi
    exit 0
fi

# ---------------------------------------------------------------------
# On the host.
if [ "$(id -u)" != 0 ]; then
    echo "test/matrix.sh runs as root (debootstrap, chroot and mount need it)" >&2
    exit 2
fi
command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

majors=("$@")
[ ${#majors[@]} -gt 0 ] || majors=(13 17 18 15-cassert)
mkdir -p "$CACHE" "$LOGS"
# one run at a time per cache
exec 9>"$CACHE/.lock"
flock -n 9 || { log "waiting for another test/matrix.sh using $CACHE"; flock 9; }

# what a release's root filesystem holds: the server's packages (the ones
# test/lib.sh installs for the main suites) and the client suites' where
# the release has them (bullseye has no psycopg 3)
packages_of() {   # packages_of MAJOR SUITE
    (PG_MAJOR="$1"; PG_CONFIG=/nonexistent; source "$REPO/test/lib.sh"; echo "$(server_packages "$PG_MAJOR")")
    case "$2" in bullseye) ;; *) echo python3-psycopg ;; esac
}

# isolation_build MAJOR SUITE: the shell commands, run in the root
# filesystem, that build pg_isolation_regress and isolationtester from
# the source package of postgresql-MAJOR (a deb-src entry for the time of
# the build) and put them where PGXS looks for them
isolation_build() {
    cat <<EOF
set -e
echo "deb-src $MIRROR $2 main" > /etc/apt/sources.list.d/deploy-progress-src.list
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dpkg-dev bzip2 xz-utils
mkdir -p /usr/src/deploy-progress-pg && cd /usr/src/deploy-progress-pg
apt-get source -qq postgresql-$1
cd postgresql-$1-*
./configure -q --without-readline --without-zlib --without-icu --without-llvm
nice make -s -j\$(nproc) -C src/test/isolation
mkdir -p /usr/lib/postgresql/$1/lib/pgxs/src/test/isolation
cp src/test/isolation/pg_isolation_regress src/test/isolation/isolationtester /usr/lib/postgresql/$1/lib/pgxs/src/test/isolation/
cd / && rm -rf /usr/src/deploy-progress-pg /etc/apt/sources.list.d/deploy-progress-src.list
apt-get update -qq && apt-get clean
EOF
}

# Mount points of the current chroot, unmounted (in reverse) by unmount_all,
# also when the script is interrupted.
MOUNTS=()
unmount_all() {
    local i
    for (( i=${#MOUNTS[@]}-1; i>=0; i-- )); do
        umount -l "${MOUNTS[i]}" 2>/dev/null || true
    done
    MOUNTS=()
}
mount_into() {   # mount_into ROOT: proc, /dev and a /dev/shm for the server
    local root="$1"
    mount -t proc proc "$root/proc" && MOUNTS+=("$root/proc")
    mount --bind /dev "$root/dev" && MOUNTS+=("$root/dev")
    mount -t tmpfs -o mode=1777 shm "$root/dev/shm" && MOUNTS+=("$root/dev/shm")
}
WORK_DIRS=()
cleanup() {
    unmount_all
    local d
    for d in "${WORK_DIRS[@]}"; do rm -rf --one-file-system "$d"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# make_rootfs MAJOR SUITE: the cached root filesystem, built if missing,
# stale (other packages) or DP_MATRIX_REFRESH=1.  Fails with the reason
# in WHY when it cannot be built.
make_rootfs() {
    local major="$1" suite="$2" root="$CACHE/$2" want tmp pkgs
    pkgs="$(echo $(packages_of "$major" "$suite"))"
    want="$suite $pkgs"
    [ "$major" != 13 ] || want="$want +pg_isolation_regress from source"
    if [ -z "${DP_MATRIX_REFRESH:-}" ] && [ "$(cat "$root/.deploy_progress-matrix" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    # what an interrupted run left (never used: only a complete one is renamed)
    rm -rf --one-file-system "$CACHE/.$suite".new.*
    log "$major: building the $suite root filesystem (log: $LOGS/$major-rootfs.log)"
    tmp="$(mktemp -d "$CACHE/.$suite.new.XXXXXX")"
    WORK_DIRS+=("$tmp")
    if ! nice debootstrap --variant=minbase "$suite" "$tmp" "$MIRROR" >"$LOGS/$major-rootfs.log" 2>&1; then
        WHY="debootstrap $suite from $MIRROR failed (see $LOGS/$major-rootfs.log)"
        return 1
    fi
    # no services started by the packages, no cluster created by postgresql-common
    printf '#!/bin/sh\nexit 101\n' > "$tmp/usr/sbin/policy-rc.d"
    chmod 755 "$tmp/usr/sbin/policy-rc.d"
    # (this machine's archive may be a snapshot whose Release files expired)
    echo 'Acquire::Check-Valid-Until "false";' > "$tmp/etc/apt/apt.conf.d/99deploy-progress-matrix"
    mkdir -p "$tmp/etc/postgresql-common"
    echo "create_main_cluster = false" > "$tmp/etc/postgresql-common/createcluster.conf"
    mount_into "$tmp"
    if ! chroot "$tmp" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive nice apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold $pkgs && apt-get clean" >>"$LOGS/$major-rootfs.log" 2>&1; then
        unmount_all
        WHY="installing $pkgs in $suite failed (see $LOGS/$major-rootfs.log)"
        return 1
    fi
    # Debian's postgresql-13 ships no pg_isolation_regress: it is built,
    # with isolationtester, from the release's own source package
    if [ ! -x "$tmp/usr/lib/postgresql/$major/lib/pgxs/src/test/isolation/pg_isolation_regress" ]; then
        if ! chroot "$tmp" sh -c "$(isolation_build "$major" "$suite")" >>"$LOGS/$major-rootfs.log" 2>&1; then
            unmount_all
            WHY="building pg_isolation_regress from the postgresql-$major source of $suite failed (see $LOGS/$major-rootfs.log)"
            return 1
        fi
    fi
    unmount_all
    echo "$want" > "$tmp/.deploy_progress-matrix"
    # complete: swap it in (the old one, if any, is removed afterwards)
    if [ -e "$root" ]; then
        mv "$root" "$tmp.old"
        WORK_DIRS+=("$tmp.old")
    fi
    mv "$tmp" "$root"
}

# copy_tree DIR: the working tree without build output (what git would
# commit), readable by the server's OS user
copy_tree() {
    mkdir -p "$1"
    (cd "$REPO" && git ls-files -z -co --exclude-standard | \
        while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done | \
        tar --null -T - -cf -) | tar -C "$1" -xf -
    chmod -R a+rX "$1"
}

# keep_results MAJOR TREE: what the suites wrote, for alternative expected files
keep_results() {
    mkdir -p "$LOGS/$1-results"
    local d
    for d in results output_iso regression.diffs; do
        [ -e "$2/$d" ] && cp -r "$2/$d" "$LOGS/$1-results/"
    done
    return 0
}

# run_version MAJOR SUITE: the suites in an overlay over the cached root
# filesystem; results in $LOGS/MAJOR.results.
run_version() {
    local major="$1" suite="$2" run root
    run="$(mktemp -d /tmp/deploy_progress_matrix_run.XXXXXX)"
    WORK_DIRS+=("$run")
    mkdir "$run/upper" "$run/work" "$run/root"
    root="$run/root"
    mount -t overlay overlay -o "lowerdir=$CACHE/$suite,upperdir=$run/upper,workdir=$run/work" "$root"
    MOUNTS+=("$root")
    mount_into "$root"
    # (readme_examples.sh and the server run as postgres: they read the tree)
    copy_tree "$root/build/deploy_progress"
    chmod a+rx "$root/build"
    chroot "$root" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        nice bash /build/deploy_progress/test/matrix.sh --inside "/usr/lib/postgresql/$major/bin/pg_config" /build/results debian \
        >"$LOGS/$major.log" 2>&1 || true
    cp "$root/build/results" "$LOGS/$major.results" 2>/dev/null || true
    keep_results "$major" "$root/build/deploy_progress"
    unmount_all
}

# run_cassert: the regression and isolation suites on the assert-enabled
# PostgreSQL 15 (built by test/cassert_pg.sh, or reused), in a copy of the
# tree on this machine; results in $LOGS/15-cassert.results.
run_cassert() {
    local run pg_config
    if ! pg_config="$(DP_MATRIX_CACHE="$CACHE" DP_MATRIX_MIRROR="$MIRROR" "$REPO/test/cassert_pg.sh" 2>"$LOGS/15-cassert-build.log")"; then
        WHY="test/cassert_pg.sh failed (see $LOGS/15-cassert-build.log)"
        return 1
    fi
    run="$(mktemp -d /tmp/deploy_progress_matrix_run.XXXXXX)"
    WORK_DIRS+=("$run")
    chmod a+rx "$run"
    copy_tree "$run/deploy_progress"
    nice bash "$run/deploy_progress/test/matrix.sh" --inside "$pg_config" "$run/results" cassert \
        >"$LOGS/15-cassert.log" 2>&1 || true
    cp "$run/results" "$LOGS/15-cassert.results" 2>/dev/null || true
    keep_results 15-cassert "$run/deploy_progress"
}

declare -A status reason took
failed=0
for major in "${majors[@]}"; do
    start=$SECONDS
    WHY=
    if [ "$major" = 15-cassert ]; then
        log "15-cassert: the assert-enabled PostgreSQL 15 (log: $LOGS/15-cassert.log)"
        if ! run_cassert; then
            failed=1
            for s in "${SUITES[@]}"; do status[$major,$s]=failed; reason[$major,$s]="no assert-enabled build: $WHY"; done
            took[$major]=$(( SECONDS - start ))
            continue
        fi
    elif ! suite="$(suite_of "$major")"; then
        for s in "${SUITES[@]}"; do status[$major,$s]="n/a"; reason[$major,$s]="no Debian release this script knows carries PostgreSQL $major (13: bullseye, 17: trixie, 18: sid)"; done
        took[$major]=0
        continue
    elif ! make_rootfs "$major" "$suite"; then
        failed=1
        for s in "${SUITES[@]}"; do status[$major,$s]=failed; reason[$major,$s]="no root filesystem: ${WHY:-see $LOGS/$major-rootfs.log}"; done
        took[$major]=$(( SECONDS - start ))
        continue
    else
        log "$major ($suite): building and running the suites (log: $LOGS/$major.log)"
        run_version "$major" "$suite"
    fi
    for s in "${SUITES[@]}"; do status[$major,$s]=failed; reason[$major,$s]="did not run (see $LOGS/$major.log)"; done
    while read -r s st why; do
        status[$major,$s]="$st"; reason[$major,$s]="$why"
    done < <(cat "$LOGS/$major.results" 2>/dev/null)
    for s in "${SUITES[@]}"; do
        if [ "${status[$major,$s]}" = failed ]; then failed=1; fi
    done
    took[$major]=$(( SECONDS - start ))
    log "$major: done in ${took[$major]} s"
done

printf '\n%-12s' "PG"
for s in "${SUITES[@]}"; do printf '%-12s' "$s"; done
printf '%s\n' "time"
for major in "${majors[@]}"; do
    printf '%-12s' "$major"
    for s in "${SUITES[@]}"; do printf '%-12s' "${status[$major,$s]}"; done
    printf '%s s\n' "${took[$major]}"
done
notes=0
for major in "${majors[@]}"; do
    for s in "${SUITES[@]}"; do
        if [ -n "${reason[$major,$s]:-}" ]; then
            [ $notes = 1 ] || { printf '\n'; notes=1; }
            printf '%s %s: %s: %s\n' "$major" "$s" "${status[$major,$s]}" "${reason[$major,$s]}"
        fi
    done
done
printf '\nfull output of each version: %s\n' "$LOGS"
exit $failed
