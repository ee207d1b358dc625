# deploy_progress: PGXS build.
#
#   make && make install          build and install into the pg_config found on PATH
#   make installcheck             regression + isolation suites against a running server
#   test/run_all.sh               everything, on a throwaway cluster (what CI runs)

EXTENSION  = deploy_progress
EXTVERSION = $(shell sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" $(EXTENSION).control)

MODULE_big = deploy_progress
OBJS = \
	src/deploy_progress.o \
	src/lifecycle.o \
	src/stamp.o \
	src/figures.o \
	src/history.o

# The install script of the version under development is assembled from one
# file per concern in sql/src/ (core, figures, stuck, history).  Once a version
# is released its script is committed as is and never edited again; later
# versions ship as upgrade scripts sql/deploy_progress--A--B.sql.
SQL_PARTS  = $(sort $(wildcard sql/src/*.sql))
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA       = $(filter-out $(DATA_built),$(wildcard sql/$(EXTENSION)--*.sql))

REGRESS      = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test --load-extension=$(EXTENSION)
ISOLATION      = $(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --outputdir=. --load-extension=$(EXTENSION)
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))
ifneq ($(PROVE_TESTS),)
TAP_TESTS = 1
endif

EXTRA_CLEAN = $(DATA_built) output_iso results regression.diffs regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(DATA_built): $(SQL_PARTS) $(EXTENSION).control
	cat $(SQL_PARTS) > $@

$(OBJS): src/deploy_progress.h
