# deploy_progress: PGXS build.
#
#   make && make install          build and install into the pg_config found on PATH
#                                 (PG_CONFIG=/path/to/pg_config for another installation)
#   make installcheck             regression + isolation suites against a running server
#   test/run_all.sh               everything, on a throwaway cluster (what CI runs)

EXTENSION  = deploy_progress
EXTVERSION = $(shell sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" $(EXTENSION).control)

MODULE_big = deploy_progress
OBJS = \
	src/deploy_progress.o \
	src/track_cache.o \
	src/stamp.o \
	src/side.o \
	src/figures.o \
	src/history.o \
	src/sweep.o \
	src/claims.o \
	src/readers.o \
	src/util.o

# The current version's install script is built from the living source,
# sql/src/NN_<concern>.sql concatenated in order (and gitignored); edit
# those files, never the built script.  Released install scripts
# (sql/deploy_progress--1.0.sql) are frozen, and each release ships one
# hand-written update script sql/deploy_progress--A--B.sql;
# test/t/012_upgrade.pl proves that the updates give what a fresh install
# of the current version gives.
SQL_SOURCES = $(sort $(wildcard sql/src/*.sql))
SQL_BUILT   = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA_built  = $(SQL_BUILT)
DATA = $(filter-out $(SQL_BUILT),$(wildcard sql/$(EXTENSION)--*.sql))

REGRESS      = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test --load-extension=$(EXTENSION)
ISOLATION      = $(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --outputdir=. --load-extension=$(EXTENSION)
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))
ifneq ($(PROVE_TESTS),)
TAP_TESTS = 1
endif

# deploy-progress-watch, a libpq client built and installed (into bindir,
# and linked onto PATH on Debian: see install-watch) with the extension.
# PGXS cannot build a PROGRAM beside a MODULE_big, so it has rules of its
# own below.  Its --webhook posts with libcurl, found with pkg-config or
# curl-config (Debian: libcurl4-openssl-dev); without it, or with
# WITH_LIBCURL=no, the watcher is built without --webhook.  Its --serve
# (the live web page) uses libmicrohttpd, found with pkg-config (Debian:
# libmicrohttpd-dev); without it, or with WITH_MICROHTTPD=no, the watcher
# is built without --serve.  The page, src/watch/serve.html, is embedded
# as a C string (serve_html.h, built).
WATCH = src/watch/deploy-progress-watch
WATCH_SRCS = $(WATCH).c src/watch/relay.c src/watch/serve.c
WATCH_HTML = src/watch/serve_html.h
WITH_LIBCURL ?= yes
ifeq ($(WITH_LIBCURL),yes)
CURL_LIBS := $(shell pkg-config --libs libcurl 2>/dev/null || curl-config --libs 2>/dev/null)
ifneq ($(strip $(CURL_LIBS)),)
CURL_CFLAGS := -DHAVE_LIBCURL $(shell pkg-config --cflags libcurl 2>/dev/null || curl-config --cflags 2>/dev/null)
else
$(warning libcurl not found (Debian: libcurl4-openssl-dev): deploy-progress-watch is built without --webhook)
endif
endif
WITH_MICROHTTPD ?= yes
ifeq ($(WITH_MICROHTTPD),yes)
MHD_LIBS := $(shell pkg-config --libs libmicrohttpd 2>/dev/null)
ifneq ($(strip $(MHD_LIBS)),)
MHD_CFLAGS := -DHAVE_MICROHTTPD $(shell pkg-config --cflags libmicrohttpd 2>/dev/null)
MHD_LIBS += -lpthread
else
$(warning libmicrohttpd not found (Debian: libmicrohttpd-dev): deploy-progress-watch is built without --serve)
endif
endif

EXTRA_CLEAN = output_iso results regression.diffs regression.out $(WATCH) $(WATCH_HTML)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(OBJS): src/deploy_progress.h

$(SQL_BUILT): $(SQL_SOURCES) $(EXTENSION).control
	cat $(SQL_SOURCES) > $@

all: $(WATCH)

$(WATCH): $(WATCH_SRCS) src/watch/watch.h $(WATCH_HTML) $(EXTENSION).control
	$(CC) $(CFLAGS) -I$(includedir) -Isrc/watch $(CURL_CFLAGS) $(MHD_CFLAGS) -DDEPLOY_PROGRESS_VERSION='"$(EXTVERSION)"' $(WATCH_SRCS) \
		$(LDFLAGS) $(LDFLAGS_EX) -L$(libdir) -lpq $(CURL_LIBS) $(MHD_LIBS) -lm -o $@

# the page as one C string literal
$(WATCH_HTML): src/watch/serve.html
	perl -ne 'BEGIN { print "/* built from serve.html by the Makefile: do not edit */\nstatic const char serve_html[] =\n" } chomp; s/\\/\\\\/g; s/"/\\"/g; s/\t/\\t/g; s/\?/\\?/g; print "\"$$_\\n\"\n"; END { print ";\n" }' $< > $@

install: install-watch
uninstall: uninstall-watch

# Debian's postgresql-common keeps each version's programs in
# /usr/lib/postgresql/N/bin, which is not on PATH (/usr/bin has wrappers
# for its own programs only): there, make install also links the watcher
# into /usr/local/bin.  WATCH_LINK_DIR=<directory> links it elsewhere (any
# installation), WATCH_LINK_DIR= not at all.
ifneq ($(filter /usr/lib/postgresql/%/bin,$(bindir)),)
WATCH_LINK_DIR ?= /usr/local/bin
endif

install-watch: $(WATCH)
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) $(WATCH) '$(DESTDIR)$(bindir)/deploy-progress-watch'
ifneq ($(WATCH_LINK_DIR),)
	$(MKDIR_P) '$(DESTDIR)$(WATCH_LINK_DIR)'
	ln -sf '$(bindir)/deploy-progress-watch' '$(DESTDIR)$(WATCH_LINK_DIR)/deploy-progress-watch'
endif

# (the link is removed only when it is this installation's)
uninstall-watch:
	rm -f '$(DESTDIR)$(bindir)/deploy-progress-watch'
ifneq ($(WATCH_LINK_DIR),)
	if [ "$$(readlink '$(DESTDIR)$(WATCH_LINK_DIR)/deploy-progress-watch')" = '$(bindir)/deploy-progress-watch' ]; then \
		rm -f '$(DESTDIR)$(WATCH_LINK_DIR)/deploy-progress-watch'; fi
endif

# PGXN: META.json carries the control file's default_version as a semantic
# version (1.0 -> 1.0.0); "make dist" checks that and archives HEAD into
# $(DIST_DIR)/deploy_progress-<version>.tar.gz and .zip.
META_VERSION = $(shell echo '$(EXTVERSION)' | sed -e 's/^[0-9]*$$/&.0.0/' -e 's/^[0-9]*\.[0-9]*$$/&.0/')
DIST = $(EXTENSION)-$(META_VERSION)
DIST_DIR ?= .

check-meta:
	@perl -MJSON::PP -e 'open my $$f, "<", "META.json" or die "META.json: $$!\n"; local $$/; my $$m = decode_json(<$$f>); for my $$v ($$m->{version}, $$m->{provides}{"$(EXTENSION)"}{version}) { die "META.json: version and provides.$(EXTENSION).version must be $(META_VERSION) (default_version $(EXTVERSION) in $(EXTENSION).control), not " . ($$v // "missing") . "\n" unless defined $$v && $$v eq "$(META_VERSION)" }'

dist: check-meta
	@git rev-parse --git-dir >/dev/null 2>&1 || { echo "make dist archives the git HEAD: run it in a git clone" >&2; exit 1; }
	@git diff --quiet HEAD || echo "warning: make dist archives HEAD; uncommitted changes are left out" >&2
	git archive --format=tar.gz --prefix=$(DIST)/ -o $(DIST_DIR)/$(DIST).tar.gz HEAD
	git archive --format=zip --prefix=$(DIST)/ -o $(DIST_DIR)/$(DIST).zip HEAD

.PHONY: install-watch uninstall-watch check-meta dist
