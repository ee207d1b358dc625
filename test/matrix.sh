#!/usr/bin/env bash
# Builds and tests deploy_progress on the PostgreSQL versions of Debian's
# other releases, each in a minimal Debian root filesystem of its own.
#
#   test/matrix.sh [MAJOR...]        default: 13 17 18
#
#   13  bullseye    17  trixie    18  sid
#
# For each version it creates (or reuses) a root filesystem made by
# debootstrap --variant=minbase with Debian's packages of that release
# (postgresql-N, postgresql-server-dev-N, postgresql-N-cron,
# build-essential, libipc-run-perl, libpq-dev), copies the working tree
# in (tracked and untracked files, without what .gitignore leaves out),
# and inside it builds with -Werror (test/lib.sh's build_install) and
# runs the regression and isolation suites, the README examples and the
# TAP tests on a throwaway cluster (start_cluster), as test/run_all.sh
# does.  It prints one table, version x suite: passed, failed, or not
# available and why; it exits non-zero when a suite failed or a version
# could not be set up.
#
# Runs as root (debootstrap, chroot, mount).  Environment:
#   DP_MATRIX_CACHE    where the root filesystems are kept, one directory per
#                      release (default /var/cache/deploy_progress-matrix);
#                      outside the clone
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
SUITES=(build regression isolation readme tap)

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
    major="$2" results="$3"
    export PG_CONFIG="/usr/lib/postgresql/$major/bin/pg_config"
    source "$REPO/test/lib.sh"
    : > "$results"
    result() { echo "$*" >> "$results"; }
    if ! build_install; then
        result build failed
        for s in regression isolation readme tap; do result "$s" "n/a" "the build failed"; done
        exit 0
    fi
    result build passed
    start_cluster "shared_preload_libraries = 'pg_cron'" "cron.database_name = 'postgres'"
    if run_regression; then result regression passed; else result regression failed; fi
    if ! isolation_available; then
        result isolation "n/a" "Debian's postgresql-$major ships no pg_isolation_regress"
    elif run_isolation; then result isolation passed; else result isolation failed; fi
    log "README examples (test/readme_examples.sh)"
    if DP_REUSE_CLUSTER=1 "$REPO/test/readme_examples.sh"; then result readme passed; else result readme failed; fi
    stop_cluster
    if run_tap; then result tap passed; else result tap failed; fi
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
[ ${#majors[@]} -gt 0 ] || majors=(13 17 18)
mkdir -p "$CACHE" "$LOGS"
# one run at a time per cache
exec 9>"$CACHE/.lock"
flock -n 9 || { log "waiting for another test/matrix.sh using $CACHE"; flock 9; }

packages_of() {
    echo "postgresql-$1 postgresql-server-dev-$1 postgresql-$1-cron build-essential libipc-run-perl libpq-dev"
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
    local major="$1" suite="$2" root="$CACHE/$2" want tmp
    want="$suite $(packages_of "$major")"
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
    if ! chroot "$tmp" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive nice apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold $(packages_of "$major") && apt-get clean" >>"$LOGS/$major-rootfs.log" 2>&1; then
        unmount_all
        WHY="installing $(packages_of "$major") in $suite failed (see $LOGS/$major-rootfs.log)"
        return 1
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
    # the working tree without build output (what git would commit)
    mkdir -p "$root/build/deploy_progress"
    (cd "$REPO" && git ls-files -z -co --exclude-standard | \
        while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done | \
        tar --null -T - -cf -) | tar -C "$root/build/deploy_progress" -xf -
    # (readme_examples.sh and the server run as postgres: it reads the tree)
    chmod -R a+rX "$root/build"
    chroot "$root" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        nice bash /build/deploy_progress/test/matrix.sh --inside "$major" /build/results \
        >"$LOGS/$major.log" 2>&1 || true
    cp "$root/build/results" "$LOGS/$major.results" 2>/dev/null || true
    unmount_all
}

declare -A status reason
failed=0
for major in "${majors[@]}"; do
    start=$SECONDS
    if ! suite="$(suite_of "$major")"; then
        for s in "${SUITES[@]}"; do status[$major,$s]="n/a"; reason[$major,$s]="no Debian release on this machine's archive carries PostgreSQL $major"; done
        continue
    fi
    WHY=
    if ! make_rootfs "$major" "$suite"; then
        failed=1
        for s in "${SUITES[@]}"; do status[$major,$s]=failed; reason[$major,$s]="no root filesystem: ${WHY:-see $LOGS/$major-rootfs.log}"; done
        continue
    fi
    log "$major ($suite): building and running the suites (log: $LOGS/$major.log)"
    run_version "$major" "$suite"
    for s in "${SUITES[@]}"; do status[$major,$s]=failed; reason[$major,$s]="did not run (see $LOGS/$major.log)"; done
    while read -r s st why; do
        status[$major,$s]="$st"; reason[$major,$s]="$why"
    done < <(cat "$LOGS/$major.results" 2>/dev/null)
    for s in "${SUITES[@]}"; do
        if [ "${status[$major,$s]}" = failed ]; then failed=1; fi
    done
    log "$major ($suite): done in $(( SECONDS - start )) s"
done

printf '\n%-8s' "PG"
for s in "${SUITES[@]}"; do printf '%-12s' "$s"; done
printf '\n'
for major in "${majors[@]}"; do
    printf '%-8s' "$major"
    for s in "${SUITES[@]}"; do printf '%-12s' "${status[$major,$s]}"; done
    printf '\n'
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
