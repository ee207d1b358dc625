#!/usr/bin/env bash
# Packaging check: META.json agrees with the control file, the release
# archives of "make dist" (git archive of HEAD) hold the same files and
# build and install from scratch, and make install puts
# deploy-progress-watch on PATH in Debian's layout.
#
#   test/clients/dist.sh
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$REPO"

make -s check-meta
version="$(perl -MJSON::PP -e 'local $/; print decode_json(<STDIN>)->{version}' < META.json)"
dist="deploy_progress-$version"
tmp="$(mktemp -d /tmp/deploy_progress_dist.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

make -s dist DIST_DIR="$tmp"
ls -l "$tmp/$dist.tar.gz" "$tmp/$dist.zip"

tar -tzf "$tmp/$dist.tar.gz" | grep -v '/$' | sort > "$tmp/tar.list"
"${PYTHON:-/usr/bin/python3}" -c 'import sys, zipfile; print("\n".join(sorted(n for n in zipfile.ZipFile(sys.argv[1]).namelist() if not n.endswith("/"))))' \
    "$tmp/$dist.zip" > "$tmp/zip.list"
diff -u "$tmp/tar.list" "$tmp/zip.list"
git ls-files | grep -v -e '^\.ci/' -e '^\.git' | sed "s|^|$dist/|" | sort > "$tmp/git.list"
diff -u "$tmp/git.list" "$tmp/tar.list"
for f in META.json deploy_progress.control Makefile src/watch/deploy-progress-watch.c src/watch/relay.c src/watch/watch.h \
         src/watch/serve.c src/watch/serve.html; do
    grep -qx "$dist/$f" "$tmp/tar.list" || { echo "$f is missing from $dist.tar.gz" >&2; exit 1; }
done

# unpack each archive into a directory of its own and build there
mkdir "$tmp/from-tar" "$tmp/from-zip"
tar -xzf "$tmp/$dist.tar.gz" -C "$tmp/from-tar"
"${PYTHON:-/usr/bin/python3}" -m zipfile -e "$tmp/$dist.zip" "$tmp/from-zip"
for d in "$tmp/from-tar/$dist" "$tmp/from-zip/$dist"; do
    make -C "$d" -s PG_CONFIG="$PG_CONFIG" >/dev/null
    make -C "$d" -s install PG_CONFIG="$PG_CONFIG" DESTDIR="$tmp/root" >/dev/null
done
# what make install put in place, under the staging root: the control
# file, the released 1.0 script, the current version's script built from
# sql/src, and the update scripts
extversion="$(sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" deploy_progress.control)"
for f in "$($PG_CONFIG --sharedir)/extension/deploy_progress.control" \
         "$($PG_CONFIG --sharedir)/extension/deploy_progress--1.0.sql" \
         "$($PG_CONFIG --sharedir)/extension/deploy_progress--$extversion.sql" \
         $(cd sql && for u in deploy_progress--*--*.sql; do echo "$($PG_CONFIG --sharedir)/extension/$u"; done) \
         "$($PG_CONFIG --pkglibdir)/deploy_progress.so" \
         "$($PG_CONFIG --bindir)/deploy-progress-watch"; do
    [ -f "$tmp/root$f" ] || { echo "make install did not install $f" >&2; exit 1; }
done
"$tmp/root$($PG_CONFIG --bindir)/deploy-progress-watch" --version
# built with its web page (libmicrohttpd, found by the Makefile with pkg-config)
if "$tmp/root$($PG_CONFIG --bindir)/deploy-progress-watch" --serve 0.0.0.0:0 2>"$tmp/serve.err"; then
    echo "deploy-progress-watch --serve 0.0.0.0:0 without a token did not fail" >&2; exit 1
fi
grep -q "needs --token or --basic-auth" "$tmp/serve.err" || { cat "$tmp/serve.err" >&2; exit 1; }

# deploy-progress-watch on PATH: in Debian's layout (/usr/lib/postgresql/N/bin,
# not on PATH) make install links it into /usr/local/bin; elsewhere not,
# unless WATCH_LINK_DIR says where; make uninstall removes the link it made
bindir="$($PG_CONFIG --bindir)"
link="$tmp/root/usr/local/bin/deploy-progress-watch"
case "$bindir" in
/usr/lib/postgresql/*/bin)
    [ "$(readlink "$link")" = "$bindir/deploy-progress-watch" ] ||
        { echo "make install did not link $link to $bindir/deploy-progress-watch" >&2; exit 1; } ;;
*)
    [ ! -e "$link" ] && [ ! -L "$link" ] ||
        { echo "make install linked $link for an installation outside Debian's layout" >&2; exit 1; } ;;
esac
make -C "$tmp/from-tar/$dist" -s install-watch PG_CONFIG="$PG_CONFIG" DESTDIR="$tmp/linked" WATCH_LINK_DIR=/opt/bin
[ "$(readlink "$tmp/linked/opt/bin/deploy-progress-watch")" = "$bindir/deploy-progress-watch" ] ||
    { echo "make install WATCH_LINK_DIR=/opt/bin did not link the watcher there" >&2; exit 1; }
make -C "$tmp/from-tar/$dist" -s uninstall-watch PG_CONFIG="$PG_CONFIG" DESTDIR="$tmp/linked" WATCH_LINK_DIR=/opt/bin
[ -z "$(find "$tmp/linked" -name deploy-progress-watch)" ] ||
    { echo "make uninstall left $(find "$tmp/linked" -name deploy-progress-watch)" >&2; exit 1; }
echo "$dist.tar.gz and $dist.zip build and install from scratch"
