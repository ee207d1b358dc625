/*-------------------------------------------------------------------------
 *
 * deploy-progress-watch.c
 *	  Live progress bars for the in-flight rows of deploy_progress's
 *	  tracked tables: a small libpq client.
 *
 * The program reads deploy_progress.in_flight(table) (one row per
 * non-terminal row of the tracked tables, all or one, that the role can
 * read) and shows each row's phase, counters, percent, speed and ETA,
 * marking stuck rows with their reason.
 * The text of a row is the database's own describe() line, so the terminal
 * shows the same numbers as every other client.
 *
 * It refreshes when a NOTIFY arrives on the tables' channel (phase
 * transitions) and otherwise every -i seconds (counter updates do not
 * notify): the loop waits in select() on the connection's socket with the
 * polling interval as timeout.  A row that leaves the view is looked up once
 * more with progress() to learn how it ended.  With -k the program watches
 * one row and exits when it reaches a terminal phase:
 *
 *	0  the row succeeded (or, without -k, --once or a signal ended the watch)
 *	1  the row failed
 *	2  the row was cancelled
 *	3  error: bad usage, connection, table not tracked, row not found
 *	4  interrupted before the watched row finished
 *
 * Output: on a terminal, a frame of progress bars redrawn in place (rows
 * that finish scroll above it as permanent lines); otherwise (or with
 * --plain) one line per row whenever its phase, counters or stuck reason
 * change; with --json one JSON object per such change.
 *
 * IDENTIFICATION
 *	  src/watch/deploy-progress-watch.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "libpq-fe.h"

/* the extension's default_version, passed by the Makefile */
#ifndef DEPLOY_PROGRESS_VERSION
#define DEPLOY_PROGRESS_VERSION "unknown"
#endif

#define EXIT_SUCCEEDED		0
#define EXIT_FAILED			1
#define EXIT_CANCELLED		2
#define EXIT_ERROR			3
#define EXIT_INTERRUPTED	4

/* no exit status decided yet: keep watching */
#define KEEP_WATCHING		(-1)

typedef enum OutputMode
{
	OUTPUT_TTY,
	OUTPUT_PLAIN,
	OUTPUT_JSON
} OutputMode;

/* One row as shown: what identifies it, what is printed, what changes. */
typedef struct WatchRow
{
	char	   *relid;			/* table OID, as text */
	char	   *table;			/* table name (regclass text) */
	char	   *key;
	char	   *kind;
	char	   *state;			/* phase, counters and stuck reason */
	char	   *line;			/* describe() of the row's figures */
	char	   *json;			/* the row's figures as a JSON object */
	char	   *stuck_reason;	/* NULL when healthy */
	double		percent;		/* < 0 when unknown */
} WatchRow;

typedef struct RowSet
{
	WatchRow   *rows;
	int			n;
} RowSet;

typedef struct Watch
{
	PGconn	   *conn;
	const char *table_arg;		/* -t as given */
	char	   *relid;			/* its OID as text, NULL for all tables */
	char	   *table;			/* its canonical name */
	const char *key;			/* -k, NULL for every row */
	const char *channel;		/* -c, NULL for the tables' channels */
	double		interval;		/* polling fallback, seconds */
	bool		once;
	OutputMode	mode;
	RowSet		shown;			/* rows of the previous refresh */
	char	   *key_state;		/* last printed state of the -k row when not in flight */
	int			frame_lines;	/* lines of the frame drawn last (terminal) */
	char	  **channels;		/* channels listened on */
	int			nchannels;
} Watch;

/*
 * The figures of a row as a JSON object (keys in a fixed order), from a
 * relation "f" with the in_flight view's columns and a jsonb "j" of
 * progress()'s keys for describe().
 */
#define ROW_JSON \
"pg_catalog.json_build_object('event', f.event, 'at', pg_catalog.now(), 'table', f.relid::text, 'key', f.key," \
"  'phase', f.phase, 'kind', f.kind, 'completed', f.completed, 'total', f.total, 'percent', f.percent," \
"  'speed', f.speed, 'average_speed', f.average_speed, 'smoothed_speed', f.smoothed_speed," \
"  'eta_seconds', j->'eta_seconds', 'phase_elapsed_seconds', j->'phase_elapsed_seconds'," \
"  'elapsed_seconds', j->'elapsed_seconds', 'overall_progress', f.overall_progress," \
"  'stuck_reason', f.stuck_reason, 'reason', f.reason, 'description', deploy_progress.describe(j))::text"

/*
 * The in-flight rows of one table ($1, an OID, or all) and one key ($2, or
 * all): OID, table, key, kind, percent, stuck reason, state (what a plain
 * line reports when it changes), description and JSON.  A row whose
 * counters have not moved for the table's speed time constant is
 * described as stalled, as progress() does.
 */
static const char *const in_flight_sql =
"SELECT f.relid::oid::text, f.relid::text, f.key, f.kind, f.percent, f.stuck_reason,"
"       pg_catalog.concat_ws('|', f.phase, f.completed, f.total, f.stuck_reason),"
"       deploy_progress.describe(j), " ROW_JSON
"  FROM (SELECT i.*, 'in_flight' AS event, NULL::text AS reason"
"          FROM deploy_progress.in_flight($1::pg_catalog.oid::pg_catalog.regclass) i"
"         WHERE $2::pg_catalog.text IS NULL OR i.key OPERATOR(pg_catalog.=) $2::pg_catalog.text) f"
" CROSS JOIN LATERAL (SELECT pg_catalog.jsonb_build_object("
"         'phase', f.phase, 'kind', f.kind, 'completed', f.completed, 'total', f.total, 'speed', f.speed,"
"         'eta_seconds', pg_catalog.date_part('epoch', f.eta),"
"         'phase_elapsed_seconds', pg_catalog.date_part('epoch', f.in_phase),"
"         'elapsed_seconds', pg_catalog.date_part('epoch', f.elapsed),"
"         'since_progress_seconds', s.since_progress,"
"         'stalled', f.kind OPERATOR(pg_catalog.=) 'active' AND f.completed IS NOT NULL"
"                    AND (f.total IS NULL OR f.completed OPERATOR(pg_catalog.<) f.total)"
"                    AND s.since_progress OPERATOR(pg_catalog.>=) pg_catalog.date_part('epoch', t.speed_time_constant)) AS j"
"          FROM (SELECT CASE WHEN f.kind OPERATOR(pg_catalog.=) 'active'"
"                            THEN pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-) f.progress_updated_at)"
"                       END AS since_progress) s"
"          LEFT JOIN deploy_progress.tracked t ON t.relid OPERATOR(pg_catalog.=) f.relid) x"
" ORDER BY 2, pg_catalog.length(f.key), f.key";

/*
 * One row ($1 table OID, $2 key) looked up with progress() after it left
 * the view: kind, state, description and JSON.
 */
static const char *const final_sql =
"SELECT f.kind, pg_catalog.concat_ws('|', f.phase, f.completed, f.total), deploy_progress.describe(j), " ROW_JSON
"  FROM deploy_progress.progress($1::pg_catalog.oid::pg_catalog.regclass, $2::pg_catalog.text) AS j"
" CROSS JOIN LATERAL (SELECT"
"         CASE WHEN j->>'kind' IN ('succeeded', 'failed', 'cancelled') THEN 'finished' ELSE 'in_flight' END AS event,"
"         $1::pg_catalog.oid::pg_catalog.regclass AS relid, j->>'key' AS key, j->>'phase' AS phase, j->>'kind' AS kind,"
"         (j->>'completed')::bigint AS completed, (j->>'total')::bigint AS total,"
"         (j->>'percent')::float8 AS percent, (j->>'speed')::float8 AS speed,"
"         (j->>'average_speed')::float8 AS average_speed, (j->>'smoothed_speed')::float8 AS smoothed_speed,"
"         (j->>'overall_progress')::float8 AS overall_progress, NULL::text AS stuck_reason,"
"         j->>'reason' AS reason) f";

#ifdef __GNUC__
static void fatal(const char *fmt,...) __attribute__((format(printf, 1, 2), noreturn));
#else
static void fatal(const char *fmt,...);
#endif

static volatile sig_atomic_t interrupted = 0;
static bool cursor_hidden = false;

static void
handle_signal(int signo)
{
	interrupted = signo;
}

static void
usage(void)
{
	printf("deploy-progress-watch shows live progress of deploy_progress's tracked tables.\n\n"
		   "Usage:\n"
		   "  deploy-progress-watch [OPTION]... [DBNAME]\n\n"
		   "Options:\n"
		   "  -t, --table=TABLE        watch one tracked table (default: every tracked table)\n"
		   "  -k, --key=KEY            watch one row of TABLE; exit when it reaches a terminal phase\n"
		   "  -i, --interval=SECONDS   polling fallback between NOTIFYs (default: 1)\n"
		   "  -c, --channel=CHANNEL    LISTEN on CHANNEL (default: the tables' notify channels)\n"
		   "      --json               print one JSON object per row update\n"
		   "      --plain              print plain lines even on a terminal\n"
		   "      --once               print the rows once and exit\n"
		   "  -V, --version            output version information, then exit\n"
		   "  -?, --help               show this help, then exit\n\n"
		   "Connection options:\n"
		   "  -h, --host=HOSTNAME      database server host or socket directory\n"
		   "  -p, --port=PORT          database server port\n"
		   "  -U, --username=USERNAME  database user name\n"
		   "  -d, --dbname=DBNAME      database name or connection string\n\n"
		   "Exit status with -k: 0 succeeded, 1 failed, 2 cancelled, 3 error, 4 interrupted.\n"
		   "The usual PG* environment variables and ~/.pgpass apply.\n");
}

static void
restore_terminal(void)
{
	if (cursor_hidden)
	{
		fputs("\033[?25h", stdout);
		fflush(stdout);
		cursor_hidden = false;
	}
}

static void
fatal(const char *fmt,...)
{
	va_list		ap;

	restore_terminal();
	fputs("deploy-progress-watch: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EXIT_ERROR);
}

static void *
xmalloc(size_t size)
{
	void	   *p = malloc(size);

	if (p == NULL)
		fatal("out of memory");
	return p;
}

static char *
xstrdup(const char *s)
{
	char	   *p;

	if (s == NULL)
		return NULL;
	p = strdup(s);
	if (p == NULL)
		fatal("out of memory");
	return p;
}

/* The first line of a libpq error message, without its newline. */
static char *
first_line(const char *msg)
{
	char	   *s = xstrdup(msg ? msg : "unknown error");
	char	   *nl = strchr(s, '\n');

	if (nl)
		*nl = '\0';
	return s;
}

/* A JSON string literal for s. */
static void
print_json_string(FILE *out, const char *s)
{
	const unsigned char *p;

	fputc('"', out);
	for (p = (const unsigned char *) s; *p; p++)
	{
		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(out, "\\u%04x", *p);
		else
			fputc(*p, out);
	}
	fputc('"', out);
}

static void
free_rows(RowSet *set)
{
	int			i;

	for (i = 0; i < set->n; i++)
	{
		WatchRow   *r = &set->rows[i];

		free(r->relid);
		free(r->table);
		free(r->key);
		free(r->kind);
		free(r->state);
		free(r->line);
		free(r->json);
		free(r->stuck_reason);
	}
	free(set->rows);
	set->rows = NULL;
	set->n = 0;
}

static WatchRow *
find_row(RowSet *set, const char *relid, const char *key)
{
	int			i;

	for (i = 0; i < set->n; i++)
		if (strcmp(set->rows[i].relid, relid) == 0 && strcmp(set->rows[i].key, key) == 0)
			return &set->rows[i];
	return NULL;
}

static bool
is_terminal(const char *kind)
{
	return kind && (strcmp(kind, "succeeded") == 0 || strcmp(kind, "failed") == 0 ||
					strcmp(kind, "cancelled") == 0);
}

static int
exit_status_of(const char *kind)
{
	if (strcmp(kind, "succeeded") == 0)
		return EXIT_SUCCEEDED;
	if (strcmp(kind, "cancelled") == 0)
		return EXIT_CANCELLED;
	return EXIT_FAILED;
}

/* Columns of the terminal: COLUMNS, else the tty's width, else 80. */
static int
terminal_width(void)
{
	struct winsize ws;
	const char *env = getenv("COLUMNS");

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	if (env && atoi(env) > 0)
		return atoi(env);
	return 80;
}

/* The number of bytes of s that fit in cols columns (UTF-8 aware). */
static size_t
fit_columns(const char *s, int cols)
{
	size_t		i;
	int			used = 0;

	for (i = 0; s[i]; i++)
	{
		if (((unsigned char) s[i] & 0xC0) == 0x80)
			continue;			/* continuation byte */
		if (used == cols)
			break;
		used++;
	}
	return i;
}

static void
clock_text(char *buf, size_t len)
{
	time_t		now = time(NULL);
	struct tm	tm;

	localtime_r(&now, &tm);
	strftime(buf, len, "%H:%M:%S", &tm);
}

/*
 * Plain output: one line for a row, prefixed by the local time.
 */
static void
print_plain(const char *table, const char *key, const char *line, const char *stuck_reason)
{
	char		now[16];

	clock_text(now, sizeof(now));
	printf("%s %s %s %s", now, table, key, line);
	if (stuck_reason)
		printf("  STUCK (%s)", stuck_reason);
	putchar('\n');
}

/*
 * A row that has left the view was finished (or can no longer be read):
 * print how it ended, above the frame on a terminal.  Returns the exit
 * status when it is the row watched with -k and it is terminal (or gone),
 * else KEEP_WATCHING.
 */
static int
finish_row(Watch *w, const char *relid, const char *table, const char *key)
{
	const char *params[2] = {relid, key};
	PGresult   *res;
	int			status = KEEP_WATCHING;

	res = PQexecParams(w->conn, final_sql, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		char	   *msg = first_line(PQresultErrorMessage(res));

		if (PQstatus(w->conn) == CONNECTION_BAD)
		{
			PQclear(res);
			free(msg);
			return KEEP_WATCHING;	/* the next refresh reconnects */
		}
		if (w->key)
			fatal("cannot read row %s of table %s: %s", key, table, msg);
		if (w->mode == OUTPUT_JSON)
		{
			printf("{\"event\" : \"gone\", \"table\" : ");
			print_json_string(stdout, table);
			printf(", \"key\" : ");
			print_json_string(stdout, key);
			printf(", \"error\" : ");
			print_json_string(stdout, msg);
			printf("}\n");
		}
		else if (w->mode == OUTPUT_PLAIN)
		{
			char	   *line = xmalloc(strlen(msg) + 8);

			sprintf(line, "gone: %s", msg);
			print_plain(table, key, line, NULL);
			free(line);
		}
		else
			printf("%s %s gone: %s\n", table, key, msg);
		free(msg);
		PQclear(res);
		return KEEP_WATCHING;
	}
	else
	{
		const char *kind = PQgetvalue(res, 0, 0);
		const char *state = PQgetvalue(res, 0, 1);
		const char *line = PQgetvalue(res, 0, 2);
		const char *json = PQgetvalue(res, 0, 3);
		bool		terminal = is_terminal(kind);

		/* the -k row outside the view is printed when its state changes */
		if (w->key && w->key_state && strcmp(w->key_state, state) == 0)
		{
			PQclear(res);
			return KEEP_WATCHING;
		}
		if (w->key)
		{
			free(w->key_state);
			w->key_state = xstrdup(state);
		}

		if (w->mode == OUTPUT_JSON)
			printf("%s\n", json);
		else if (w->mode == OUTPUT_PLAIN)
			print_plain(table, key, line, NULL);
		else
			printf("%s %s %s %s\n", terminal ? (strcmp(kind, "succeeded") == 0 ? "[done]" : "[FAIL]") : "[    ]",
				   table, key, line);
		if (w->key && terminal)
			status = exit_status_of(kind);
	}
	PQclear(res);
	return status;
}

/* The progress bar of a row: [#######.............] or blank when unknown. */
static void
append_bar(char *buf, size_t len, double percent, int width)
{
	int			filled = 0;
	int			i;
	size_t		pos = strlen(buf);

	if (percent >= 0)
		filled = (int) (percent / 100.0 * width + 0.5);
	if (filled > width)
		filled = width;
	if (pos + width + 3 >= len)
		return;
	buf[pos++] = '[';
	for (i = 0; i < width; i++)
		buf[pos++] = percent < 0 ? ' ' : (i < filled ? '#' : '.');
	buf[pos++] = ']';
	buf[pos] = '\0';
}

/*
 * Terminal output: erase the frame drawn last, then draw a header and one
 * progress bar per in-flight row, each cut to the terminal's width.
 */
static void
erase_frame(Watch *w)
{
	if (w->frame_lines > 0)
		printf("\033[%dA\r\033[J", w->frame_lines);
	w->frame_lines = 0;
}

static void
draw_frame(Watch *w, RowSet *rows, const char *trigger)
{
	int			cols = terminal_width();
	int			label_width = 0;
	int			bar_width;
	int			i;
	char		now[16];
	char		header[256];

	if (!cursor_hidden)
	{
		fputs("\033[?25l", stdout);
		cursor_hidden = true;
	}
	clock_text(now, sizeof(now));
	snprintf(header, sizeof(header), "deploy-progress-watch: %d in flight%s%s at %s (%s)",
			 rows->n, w->table ? " in " : "", w->table ? w->table : "", now, trigger);
	printf("\033[1m%.*s\033[0m\n", (int) fit_columns(header, cols - 1), header);
	w->frame_lines = 1;

	if (rows->n == 0)
	{
		printf("  (nothing in flight)\n");
		w->frame_lines++;
	}
	for (i = 0; i < rows->n; i++)
	{
		int			l = (int) (strlen(rows->rows[i].table) + 1 + strlen(rows->rows[i].key));

		if (l > label_width)
			label_width = l;
	}
	if (label_width > 40)
		label_width = 40;
	bar_width = cols / 5;
	if (bar_width < 10)
		bar_width = 10;
	if (bar_width > 30)
		bar_width = 30;

	for (i = 0; i < rows->n; i++)
	{
		WatchRow   *r = &rows->rows[i];
		char		line[2048];
		char		label[512];
		size_t		fit;
		char	   *stuck;

		snprintf(label, sizeof(label), "%s %s", r->table, r->key);
		snprintf(line, sizeof(line), "%-*s ", label_width, label);
		append_bar(line, sizeof(line), r->percent, bar_width);
		snprintf(line + strlen(line), sizeof(line) - strlen(line), " %s", r->line);
		if (r->stuck_reason)
			snprintf(line + strlen(line), sizeof(line) - strlen(line), "  STUCK (%s)", r->stuck_reason);
		fit = fit_columns(line, cols - 1);
		line[fit] = '\0';
		/* the stuck marker in bold red, when it fits */
		stuck = r->stuck_reason ? strstr(line, "  STUCK (") : NULL;
		if (stuck)
		{
			*stuck = '\0';
			printf("%s  \033[1;31m%s\033[0m\n", line, stuck + 2);
		}
		else
			printf("%s\n", line);
		w->frame_lines++;
	}
}

/*
 * Read the in-flight rows and print what changed.  Returns an exit status
 * when the watch is over, KEEP_WATCHING otherwise; -2 when the connection
 * was lost.
 */
static int
refresh(Watch *w, const char *trigger)
{
	const char *params[2] = {w->relid, w->key};
	PGresult   *res;
	RowSet		cur = {NULL, 0};
	int			status = KEEP_WATCHING;
	int			i;
	bool		key_in_flight = false;

	res = PQexecParams(w->conn, in_flight_sql, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		char	   *msg = first_line(PQresultErrorMessage(res));

		PQclear(res);
		if (PQstatus(w->conn) == CONNECTION_BAD)
		{
			free(msg);
			return -2;
		}
		fatal("cannot read deploy_progress.in_flight: %s", msg);
	}

	cur.n = PQntuples(res);
	cur.rows = xmalloc(sizeof(WatchRow) * (cur.n > 0 ? cur.n : 1));
	for (i = 0; i < cur.n; i++)
	{
		WatchRow   *r = &cur.rows[i];

		r->relid = xstrdup(PQgetvalue(res, i, 0));
		r->table = xstrdup(PQgetvalue(res, i, 1));
		r->key = xstrdup(PQgetvalue(res, i, 2));
		r->kind = xstrdup(PQgetvalue(res, i, 3));
		r->percent = PQgetisnull(res, i, 4) ? -1 : strtod(PQgetvalue(res, i, 4), NULL);
		r->stuck_reason = PQgetisnull(res, i, 5) ? NULL : xstrdup(PQgetvalue(res, i, 5));
		r->state = xstrdup(PQgetvalue(res, i, 6));
		r->line = xstrdup(PQgetvalue(res, i, 7));
		r->json = xstrdup(PQgetvalue(res, i, 8));
	}
	PQclear(res);

	if (w->mode == OUTPUT_TTY)
		erase_frame(w);

	/* rows that left the view since the last refresh: how did they end? */
	for (i = 0; i < w->shown.n; i++)
	{
		WatchRow   *old = &w->shown.rows[i];

		if (find_row(&cur, old->relid, old->key) == NULL && !w->key)
			(void) finish_row(w, old->relid, old->table, old->key);
	}

	/* the row watched with -k: in flight, or finished (or never was) */
	if (w->key)
	{
		key_in_flight = cur.n > 0;
		if (!key_in_flight)
			status = finish_row(w, w->relid, w->table, w->key);
		else
		{
			free(w->key_state);
			w->key_state = NULL;
		}
	}

	if (w->mode == OUTPUT_TTY)
	{
		if (status == KEEP_WATCHING)
			draw_frame(w, &cur, trigger);
	}
	else
	{
		for (i = 0; i < cur.n; i++)
		{
			WatchRow   *r = &cur.rows[i];
			WatchRow   *old = find_row(&w->shown, r->relid, r->key);

			if (old && strcmp(old->state, r->state) == 0 && !w->once)
				continue;
			if (w->mode == OUTPUT_JSON)
				printf("%s\n", r->json);
			else
				print_plain(r->table, r->key, r->line, r->stuck_reason);
		}
	}
	fflush(stdout);

	free_rows(&w->shown);
	w->shown = cur;
	return status;
}

/* LISTEN on the channel given, or on the watched tables' channels. */
static void
listen_channels(Watch *w)
{
	int			i;

	if (w->channels == NULL)
	{
		if (w->channel)
		{
			w->channels = xmalloc(sizeof(char *));
			w->channels[0] = xstrdup(w->channel);
			w->nchannels = 1;
		}
		else
		{
			const char *params[1] = {w->relid};
			PGresult   *res = PQexecParams(w->conn,
										   "SELECT DISTINCT t.notify_channel FROM deploy_progress.tracked t"
										   " WHERE t.notify_channel IS NOT NULL"
										   "   AND ($1::pg_catalog.oid IS NULL OR t.relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass)"
										   " ORDER BY 1",
										   1, NULL, params, NULL, NULL, 0);

			if (PQresultStatus(res) != PGRES_TUPLES_OK)
				fatal("cannot read deploy_progress.tracked: %s", PQresultErrorMessage(res));
			w->nchannels = PQntuples(res);
			w->channels = xmalloc(sizeof(char *) * (w->nchannels + 1));
			for (i = 0; i < w->nchannels; i++)
				w->channels[i] = xstrdup(PQgetvalue(res, i, 0));
			PQclear(res);
		}
	}
	for (i = 0; i < w->nchannels; i++)
	{
		char	   *ident = PQescapeIdentifier(w->conn, w->channels[i], strlen(w->channels[i]));
		char	   *sql;
		PGresult   *res;

		if (ident == NULL)
			fatal("%s", PQerrorMessage(w->conn));
		sql = xmalloc(strlen(ident) + 8);
		sprintf(sql, "LISTEN %s", ident);
		res = PQexec(w->conn, sql);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			fatal("cannot listen on channel %s: %s", ident, PQresultErrorMessage(res));
		PQclear(res);
		PQfreemem(ident);
		free(sql);
	}
}

/*
 * Check that the extension and its view are there and resolve -t to a
 * tracked table.
 */
static void
check_setup(Watch *w)
{
	PGresult   *res;

	res = PQexec(w->conn, "SELECT pg_catalog.to_regprocedure('deploy_progress.in_flight(pg_catalog.regclass, pg_catalog.timestamptz)') IS NOT NULL");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fatal("%s", PQresultErrorMessage(res));
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		fatal("database \"%s\" has no function deploy_progress.in_flight(regclass, timestamptz)\n"
			  "HINT:  Run CREATE EXTENSION deploy_progress (or ALTER EXTENSION deploy_progress UPDATE) there.",
			  PQdb(w->conn));
	PQclear(res);

	if (w->table_arg)
	{
		const char *params[1] = {w->table_arg};

		res = PQexecParams(w->conn,
						   "SELECT c.oid::pg_catalog.text, c.oid::pg_catalog.regclass::pg_catalog.text,"
						   "       EXISTS (SELECT 1 FROM deploy_progress.tracked t"
						   "                WHERE t.relid OPERATOR(pg_catalog.=) c.oid::pg_catalog.regclass)"
						   "  FROM pg_catalog.pg_class c"
						   " WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.text::pg_catalog.regclass",
						   1, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			fatal("%s", first_line(PQresultErrorMessage(res)));
		if (strcmp(PQgetvalue(res, 0, 2), "t") != 0)
			fatal("table %s is not tracked\n"
				  "HINT:  Track it with SELECT deploy_progress.track('%s').",
				  PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 1));
		w->relid = xstrdup(PQgetvalue(res, 0, 0));
		w->table = xstrdup(PQgetvalue(res, 0, 1));
		PQclear(res);
	}
}

/*
 * Wait for a notification or the polling interval; returns the trigger of
 * the next refresh ("notify" or "poll"), or NULL when interrupted.
 */
static const char *
wait_for_update(Watch *w)
{
	struct timeval deadline;
	struct timeval now;

	gettimeofday(&now, NULL);
	deadline.tv_sec = now.tv_sec + (time_t) w->interval;
	deadline.tv_usec = now.tv_usec + (suseconds_t) ((w->interval - (time_t) w->interval) * 1e6);
	if (deadline.tv_usec >= 1000000)
	{
		deadline.tv_sec++;
		deadline.tv_usec -= 1000000;
	}

	for (;;)
	{
		int			sock = PQsocket(w->conn);
		fd_set		fds;
		struct timeval timeout;
		PGnotify   *n;
		bool		notified = false;
		int			rc;

		if (interrupted)
			return NULL;
		gettimeofday(&now, NULL);
		timeout.tv_sec = deadline.tv_sec - now.tv_sec;
		timeout.tv_usec = deadline.tv_usec - now.tv_usec;
		if (timeout.tv_usec < 0)
		{
			timeout.tv_sec--;
			timeout.tv_usec += 1000000;
		}
		if (timeout.tv_sec < 0)
			return "poll";
		if (sock < 0)
		{
			/* no connection: just wait out the interval */
			rc = select(0, NULL, NULL, NULL, &timeout);
			if (rc < 0 && errno == EINTR)
				continue;
			return "poll";
		}
		FD_ZERO(&fds);
		FD_SET(sock, &fds);
		rc = select(sock + 1, &fds, NULL, NULL, &timeout);
		if (rc < 0)
		{
			if (errno == EINTR)
				continue;
			fatal("select() failed: %s", strerror(errno));
		}
		if (rc == 0)
			return "poll";
		if (!PQconsumeInput(w->conn))
			return "poll";		/* the refresh notices the lost connection */
		while ((n = PQnotifies(w->conn)) != NULL)
		{
			notified = true;
			PQfreemem(n);
		}
		if (notified)
			return "notify";
	}
}

/* Server notices and asynchronous errors, under the program's name. */
static void
print_notice(void *arg, const char *message)
{
	fprintf(stderr, "deploy-progress-watch: %s", message);
}

static PGconn *
connect_db(const char *host, const char *port, const char *user, const char *dbname)
{
	const char *keywords[6];
	const char *values[6];
	int			n = 0;
	PGconn	   *conn;

	keywords[n] = "host";
	values[n++] = host;
	keywords[n] = "port";
	values[n++] = port;
	keywords[n] = "user";
	values[n++] = user;
	keywords[n] = "dbname";
	values[n++] = dbname;
	keywords[n] = "fallback_application_name";
	values[n++] = "deploy-progress-watch";
	keywords[n] = NULL;
	values[n] = NULL;

	conn = PQconnectdbParams(keywords, values, 1);
	if (conn == NULL)
		fatal("out of memory");
	if (PQstatus(conn) != CONNECTION_OK)
		fatal("%s", first_line(PQerrorMessage(conn)));
	PQsetNoticeProcessor(conn, print_notice, NULL);
	return conn;
}

int
main(int argc, char **argv)
{
	static struct option long_options[] = {
		{"host", required_argument, NULL, 'h'},
		{"port", required_argument, NULL, 'p'},
		{"username", required_argument, NULL, 'U'},
		{"dbname", required_argument, NULL, 'd'},
		{"table", required_argument, NULL, 't'},
		{"key", required_argument, NULL, 'k'},
		{"interval", required_argument, NULL, 'i'},
		{"channel", required_argument, NULL, 'c'},
		{"json", no_argument, NULL, 1},
		{"plain", no_argument, NULL, 2},
		{"once", no_argument, NULL, 3},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, '?'},
		{NULL, 0, NULL, 0}
	};
	const char *host = NULL;
	const char *port = NULL;
	const char *user = NULL;
	const char *dbname = NULL;
	bool		json = false;
	bool		plain = false;
	Watch		w;
	struct sigaction sa;
	int			c;
	int			status;
	bool		reconnecting = false;
	char	   *end;

	memset(&w, 0, sizeof(w));
	w.interval = 1.0;

	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-?") == 0))
	{
		usage();
		return 0;
	}
	while ((c = getopt_long(argc, argv, "h:p:U:d:t:k:i:c:V?", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 'h':
				host = optarg;
				break;
			case 'p':
				port = optarg;
				break;
			case 'U':
				user = optarg;
				break;
			case 'd':
				dbname = optarg;
				break;
			case 't':
				w.table_arg = optarg;
				break;
			case 'k':
				w.key = optarg;
				break;
			case 'i':
				errno = 0;
				w.interval = strtod(optarg, &end);
				if (errno != 0 || end == optarg || *end != '\0' ||
					!(w.interval >= 0.01 && w.interval <= 86400))
					fatal("invalid interval \"%s\": give seconds between 0.01 and 86400", optarg);
				break;
			case 'c':
				w.channel = optarg;
				break;
			case 1:
				json = true;
				break;
			case 2:
				plain = true;
				break;
			case 3:
				w.once = true;
				break;
			case 'V':
				printf("deploy-progress-watch (deploy_progress) %s\n", DEPLOY_PROGRESS_VERSION);
				return 0;
			default:
				fprintf(stderr, "Try \"deploy-progress-watch --help\" for more information.\n");
				return EXIT_ERROR;
		}
	}
	if (optind < argc && dbname == NULL)
		dbname = argv[optind++];
	if (optind < argc)
		fatal("too many command-line arguments (first is \"%s\")", argv[optind]);
	if (w.key && !w.table_arg)
		fatal("-k/--key needs -t/--table: keys are unique within one table");
	if (json && plain)
		fatal("--json and --plain cannot be used together");
	w.mode = json ? OUTPUT_JSON : (plain || !isatty(STDOUT_FILENO)) ? OUTPUT_PLAIN : OUTPUT_TTY;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;			/* no SA_RESTART: select() returns EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	w.conn = connect_db(host, port, user, dbname);
	check_setup(&w);
	if (!w.once)
		listen_channels(&w);

	status = refresh(&w, "start");
	while (status == KEEP_WATCHING || status == -2)
	{
		const char *trigger;

		if (w.once && status == KEEP_WATCHING)
			break;
		trigger = wait_for_update(&w);
		if (trigger == NULL)
			break;
		if (status == -2 || PQstatus(w.conn) == CONNECTION_BAD)
		{
			if (!reconnecting)
				fprintf(stderr, "deploy-progress-watch: connection lost, reconnecting\n");
			reconnecting = true;
			PQreset(w.conn);
			if (PQstatus(w.conn) != CONNECTION_OK)
			{
				status = -2;
				continue;
			}
			fprintf(stderr, "deploy-progress-watch: reconnected\n");
			reconnecting = false;
			listen_channels(&w);
		}
		status = refresh(&w, trigger);
	}

	restore_terminal();
	PQfinish(w.conn);
	if (status >= 0)
		return status;
	if (interrupted && w.key)
		return EXIT_INTERRUPTED;
	return 0;
}
