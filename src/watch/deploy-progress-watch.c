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
 * notify): the loop takes the notifications libpq has read already, then
 * waits in pselect() on the connection's socket with the polling interval
 * as timeout.  A row that leaves the view is looked up once
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
 * The frame is drawn for the terminal's size: widths are display columns
 * of the locale's characters (wcwidth(), so wide CJK characters and emoji
 * take two columns and combining characters none), each line is cut to the
 * width with an ellipsis and ends with "clear to end of line", so a line
 * never wraps and nothing of an older, longer line is left; the frame is
 * cut to the terminal's height with a "... N more" line, stuck rows first.
 * It is redrawn from its first line, which is found by counting the rows
 * the lines drawn last take at the terminal's current width: after the
 * terminal narrowed, a terminal that rewraps its lines (tmux, VTE, kitty,
 * iTerm2, Windows Terminal...) has split them.  SIGWINCH redraws at once.
 * A terminal that cuts lines instead (xterm) keeps them in one row each,
 * so there the redraw after narrowing starts above the frame and may
 * overwrite a few of the lines above it: it never leaves fragments.
 *
 * With --webhook or --exec the program relays the durable event stream
 * instead (relay.c), and with --serve it serves a live web page of the
 * rows (serve.c), with this file's connection, in_flight query, LISTEN
 * and wait; what the files share is declared in watch.h.
 *
 * IDENTIFICATION
 *	  src/watch/deploy-progress-watch.c
 *
 *-------------------------------------------------------------------------
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE				/* wcwidth() */
#endif

#include <errno.h>
#include <getopt.h>
#include <langinfo.h>
#include <limits.h>
#include <locale.h>
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
#include <wchar.h>

#include "libpq-fe.h"
#include "watch.h"

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
	char	   *label;			/* the row's label (role label), NULL when none */
	char	   *kind;
	char	   *state;			/* phase, counters and stuck reason */
	char	   *line;			/* describe() of the row's figures */
	char	   *json;			/* the row's figures as a JSON object */
	char	   *stuck_reason;	/* NULL when healthy */
	double		percent;		/* < 0 when unknown */
	double		stuck_for;		/* seconds since the stuck reason's clock started, < 0 unknown */
	double		stalled_for;	/* seconds without progress of a stalled row, < 0 when not stalled */
} WatchRow;

typedef struct RowSet
{
	WatchRow   *rows;
	int			n;
} RowSet;

/* A growing string. */
typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Buf;

struct Watch
{
	PGconn	   *conn;
	const char *client_encoding;	/* asked of the server, NULL for the default */
	bool		reconnecting;	/* the connection is lost, not yet back */
	const char *table_arg;		/* -t as given */
	char	   *relid;			/* its OID as text, NULL for all tables */
	char	   *table;			/* its canonical name */
	const char *key;			/* -k, NULL for every row */
	const char *channel;		/* -c, NULL for the tables' channels */
	double		interval;		/* polling fallback, seconds */
	bool		once;
	OutputMode	mode;
	char	   *in_flight_sql;	/* the refresh query (in_flight_sql_format completed) */
	RowSet		shown;			/* rows of the previous refresh */
	char	   *key_state;		/* last printed state of the -k row when not in flight */
	char	  **channels;		/* channels listened on */
	int			nchannels;
	sigset_t	wait_mask;		/* the signal mask while waiting (signals blocked otherwise) */
	/* the terminal's frame */
	char		drawn_at[16];	/* the clock of the refresh drawn last, "" before the first */
	const char *trigger;		/* and what started it */
	char	  **frame_text;		/* the lines of the frame drawn last, as shown */
	int			frame_n;
	int			frame_cap;
};

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
"  'stuck_reason', f.stuck_reason, 'reason', f.reason, 'description', deploy_progress.describe(j)," \
"  'label', f.label, 'message', f.message)::text"

/*
 * The in-flight rows of one table ($1, an OID, or all) and one key ($2, or
 * all): OID, table, key, kind, percent, stuck reason, state (what a plain
 * line reports when it changes), description, JSON, label, the seconds
 * without progress of a stalled row and the seconds since the clock of a
 * stuck row's reason started (stuck()'s clock_started_at, read only when a
 * row is stuck).  A row whose counters have not moved for the table's
 * speed time constant is described as stalled, as progress() does.  The
 * two %s are the label and the message: the in_flight columns "label" and
 * "message" where the installed version has them (the label and message
 * roles), else NULL.  The description shows the message; the label is the
 * row's name on the terminal.
 */
static const char *const in_flight_sql_format =
"WITH f AS MATERIALIZED ("
"  SELECT i.relid, i.key, i.phase, i.kind, i.completed, i.total, i.percent, i.speed, i.average_speed,"
"         i.smoothed_speed, i.eta, i.in_phase, i.elapsed, i.progress_updated_at, i.overall_progress,"
"         i.stuck_reason, %s AS label, %s AS message, 'in_flight' AS event, NULL::pg_catalog.text AS reason"
"    FROM deploy_progress.in_flight($1::pg_catalog.oid::pg_catalog.regclass, pg_catalog.now()) i"
"   WHERE $2::pg_catalog.text IS NULL OR i.key OPERATOR(pg_catalog.=) $2::pg_catalog.text),"
" clocks AS MATERIALIZED ("
"  SELECT c.relid, c.key, c.clock_started_at"
"    FROM deploy_progress.stuck($1::pg_catalog.oid::pg_catalog.regclass, pg_catalog.now()) c"
"   WHERE EXISTS (SELECT 1 FROM f WHERE f.stuck_reason IS NOT NULL))"
"SELECT f.relid::pg_catalog.oid::pg_catalog.text, f.relid::text, f.key, f.kind, f.percent, f.stuck_reason,"
"       pg_catalog.concat_ws('|', f.phase, f.completed, f.total, f.stuck_reason),"
"       deploy_progress.describe(j), " ROW_JSON ", f.label,"
"       CASE WHEN (j->>'stalled')::pg_catalog.bool THEN j->>'since_progress_seconds' END,"
"       pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-) c.clock_started_at)"
"  FROM f"
" CROSS JOIN LATERAL (SELECT pg_catalog.jsonb_build_object("
"         'phase', f.phase, 'kind', f.kind, 'completed', f.completed, 'total', f.total, 'speed', f.speed,"
"         'eta_seconds', pg_catalog.date_part('epoch', f.eta),"
"         'phase_elapsed_seconds', pg_catalog.date_part('epoch', f.in_phase),"
"         'elapsed_seconds', pg_catalog.date_part('epoch', f.elapsed),"
"         'since_progress_seconds', s.since_progress, 'message', f.message,"
"         'stalled', f.kind OPERATOR(pg_catalog.=) 'active' AND f.completed IS NOT NULL"
"                    AND (f.total IS NULL OR f.completed OPERATOR(pg_catalog.<) f.total)"
"                    AND s.since_progress OPERATOR(pg_catalog.>=) pg_catalog.date_part('epoch', t.speed_time_constant)) AS j"
"          FROM (SELECT CASE WHEN f.kind OPERATOR(pg_catalog.=) 'active'"
"                            THEN pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-) f.progress_updated_at)"
"                       END AS since_progress) s"
"          LEFT JOIN deploy_progress.tracked t ON t.relid OPERATOR(pg_catalog.=) f.relid) x"
"  LEFT JOIN clocks c ON c.relid OPERATOR(pg_catalog.=) f.relid AND c.key OPERATOR(pg_catalog.=) f.key"
" ORDER BY 2, pg_catalog.length(f.key), f.key";

/*
 * One row ($1 table OID, $2 key) looked up with progress() after it left
 * the view: kind, state, description, JSON and label (where progress()
 * gives one).  The description leaves the label out: it is the row's name.
 */
static const char *const final_sql =
"SELECT f.kind, pg_catalog.concat_ws('|', f.phase, f.completed, f.total), deploy_progress.describe(j), " ROW_JSON ","
"       f.label"
"  FROM deploy_progress.progress($1::pg_catalog.oid::pg_catalog.regclass, $2::pg_catalog.text) AS p"
" CROSS JOIN LATERAL (SELECT p OPERATOR(pg_catalog.-) 'label' AS j) d"
" CROSS JOIN LATERAL (SELECT"
"         CASE WHEN j->>'kind' IN ('succeeded', 'failed', 'cancelled') THEN 'finished' ELSE 'in_flight' END AS event,"
"         $1::pg_catalog.oid::pg_catalog.regclass AS relid, j->>'key' AS key, j->>'phase' AS phase, j->>'kind' AS kind,"
"         (j->>'completed')::bigint AS completed, (j->>'total')::bigint AS total,"
"         (j->>'percent')::float8 AS percent, (j->>'speed')::float8 AS speed,"
"         (j->>'average_speed')::float8 AS average_speed, (j->>'smoothed_speed')::float8 AS smoothed_speed,"
"         (j->>'overall_progress')::float8 AS overall_progress, NULL::text AS stuck_reason,"
"         j->>'reason' AS reason, p->>'label' AS label, j->>'message' AS message) f";

/* Frame layout: the first column's width, the bar's width. */
#define LABEL_MIN_WIDTH		8
#define LABEL_MAX_WIDTH		40
#define BAR_MIN_WIDTH		10
#define BAR_MAX_WIDTH		30

/* Terminal controls. */
#define CLEAR_EOL			"\033[K"
#define CLEAR_EOS			"\033[J"
#define BOLD				"\033[1m"
#define STUCK_COLOR			"\033[1;31m"
#define STALLED_COLOR		"\033[33m"
#define RESET				"\033[0m"

volatile sig_atomic_t interrupted = 0;
static volatile sig_atomic_t resized = 0;
static bool cursor_hidden = false;

/* What marks text cut to a width: an ellipsis, or three dots outside UTF-8. */
static const char *ellipsis = "...";
static int	ellipsis_width = 3;

static void
handle_signal(int signo)
{
	interrupted = signo;
}

static void
handle_resize(int signo)
{
	resized = 1;
}

static void
usage(void)
{
	printf("deploy-progress-watch shows live progress of deploy_progress's tracked tables,\n"
		   "on a terminal or as a live web page, or relays their events to a webhook\n"
		   "or a command.\n\n"
		   "Usage:\n"
		   "  deploy-progress-watch [OPTION]... [DBNAME]\n"
		   "  deploy-progress-watch --webhook=URL --state=FILE [OPTION]... [DBNAME]\n"
		   "  deploy-progress-watch --exec=COMMAND --state=FILE [OPTION]... [DBNAME]\n"
		   "  deploy-progress-watch --serve=[ADDR:]PORT [OPTION]... [DBNAME]\n\n"
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
		   "Relay options (each event of events_since() as one JSON object, in order):\n"
		   "      --webhook=URL        POST each event to URL; a 2xx response delivers it\n"
		   "      --exec=COMMAND       run COMMAND (/bin/sh -c) with each event on its stdin;\n"
		   "                           exit status 0 delivers it\n"
		   "      --state=FILE         keep the cursor of the last event delivered in FILE (required)\n"
		   "      --from-start         without FILE, start from the oldest event (default: from now)\n"
		   "      --retry-delay=SECONDS\n"
		   "                           wait before a failed delivery is tried again (default: 1)\n"
		   "      --retry-max-delay=SECONDS\n"
		   "                           the wait doubles after each failure up to this (default: 60)\n"
		   "      --webhook-timeout=SECONDS\n"
		   "                           time limit of one request (default: 30)\n"
		   "  -H, --header=HEADER      add \"Name: value\" to each request (repeatable)\n"
		   "  With -t the relay delivers one table's events; -i, -c and --once (deliver\n"
		   "  the events there are, then exit) apply as well.\n\n"
		   "Web page options (read-only; -t, -i and -c apply):\n"
		   "      --serve=[ADDR:]PORT  serve the live page on ADDR (default 127.0.0.1) and PORT\n"
		   "                           (0: any free port); the URL is printed on stdout\n"
		   "      --token=TOKEN        require \"Authorization: Bearer TOKEN\" or ?token=TOKEN\n"
		   "      --basic-auth=USER:PASSWORD  require HTTP basic authentication\n"
		   "                           (an address that is not loopback needs one of them;\n"
		   "                           DEPLOY_PROGRESS_WATCH_TOKEN and DEPLOY_PROGRESS_WATCH_BASIC_AUTH\n"
		   "                           give them out of sight of ps)\n\n"
		   "Connection options:\n"
		   "  -h, --host=HOSTNAME      database server host or socket directory\n"
		   "  -p, --port=PORT          database server port\n"
		   "  -U, --username=USERNAME  database user name\n"
		   "  -d, --dbname=DBNAME      database name or connection string\n\n"
		   "Exit status with -k: 0 succeeded, 1 failed, 2 cancelled, 3 error, 4 interrupted.\n"
		   "Exit status of the relay: 0 ended by a signal or --once, 3 error;\n"
		   "of --serve: 0 ended by SIGINT or SIGTERM, 3 error.\n"
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

void
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

void *
xmalloc(size_t size)
{
	void	   *p = malloc(size);

	if (p == NULL)
		fatal("out of memory");
	return p;
}

char *
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
char *
first_line(const char *msg)
{
	char	   *s = xstrdup(msg ? msg : "unknown error");
	char	   *nl = strchr(s, '\n');

	if (nl)
		*nl = '\0';
	return s;
}

/* A JSON string literal for s. */
void
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
		free(r->label);
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

static void
buf_add(Buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap)
	{
		size_t		cap = b->cap ? b->cap : 256;
		char	   *data;

		while (b->len + n + 1 > cap)
			cap *= 2;
		data = realloc(b->data, cap);
		if (data == NULL)
			fatal("out of memory");
		b->data = data;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void
buf_str(Buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

/* The terminal's size: the tty's, else COLUMNS and LINES, else 80x24. */
static void
terminal_size(int *cols, int *lines)
{
	struct winsize ws;
	const char *env_cols = getenv("COLUMNS");
	const char *env_lines = getenv("LINES");

	*cols = 80;
	*lines = 24;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0)
	{
		*cols = ws.ws_col;
		*lines = ws.ws_row;
		return;
	}
	if (env_cols && atoi(env_cols) > 0)
		*cols = atoi(env_cols);
	if (env_lines && atoi(env_lines) > 0)
		*lines = atoi(env_lines);
}

/*
 * The character at the start of s (n bytes left) as the terminal shows it:
 * *shown and *shown_len are its bytes, or a replacement for what a
 * terminal cannot show as one character of known width (a space for tabs
 * and line breaks, "?" for other control characters, for bytes that are no
 * character of the locale's encoding and for characters wcwidth() does not
 * know), and *width its columns: wcwidth()'s, 2 for wide East Asian
 * characters and emoji, 0 for combining characters.  Returns the number of
 * bytes of s the character takes (at least 1).
 */
static size_t
next_char(const char *s, size_t n, const char **shown, size_t *shown_len, int *width)
{
	mbstate_t	state;
	wchar_t		wc;
	size_t		len;
	int			w;

	memset(&state, 0, sizeof(state));
	len = mbrtowc(&wc, s, n, &state);
	if (len == (size_t) -1 || len == (size_t) -2 || len == 0)
	{
		*shown = "?";
		*shown_len = 1;
		*width = 1;
		return 1;
	}
	w = wcwidth(wc);
	if (w < 0)
	{
		*shown = (wc == L'\t' || wc == L'\n' || wc == L'\r') ? " " : "?";
		*shown_len = 1;
		*width = 1;
		return len;
	}
	*shown = s;
	*shown_len = len;
	*width = w;
	return len;
}

/* The columns s takes on the terminal. */
static int
text_width(const char *s)
{
	size_t		n = strlen(s);
	int			total = 0;

	while (n > 0)
	{
		const char *shown;
		size_t		shown_len;
		int			w;
		size_t		len = next_char(s, n, &shown, &shown_len, &w);

		total += w;
		s += len;
		n -= len;
	}
	return total;
}

/*
 * The rows a line drawn as s takes on a terminal cols columns wide that
 * wraps long lines (a wide character that does not fit at the end of a row
 * goes to the next).
 */
static int
text_rows(const char *s, int cols)
{
	size_t		n = strlen(s);
	int			rows = 1;
	int			col = 0;

	while (n > 0)
	{
		const char *shown;
		size_t		shown_len;
		int			w;
		size_t		len = next_char(s, n, &shown, &shown_len, &w);

		if (col + w > cols)
		{
			rows++;
			col = 0;
		}
		col += w;
		s += len;
		n -= len;
	}
	return rows;
}

/*
 * A line for the terminal, at most limit columns wide: what is written
 * (text and escape sequences) and the text alone, as shown.
 */
typedef struct Line
{
	Buf			out;
	Buf			text;
	int			width;
	int			limit;
} Line;

static void
line_init(Line *l, int limit)
{
	memset(l, 0, sizeof(*l));
	l->limit = limit;
	buf_add(&l->out, "", 0);
	buf_add(&l->text, "", 0);
}

static void
line_free(Line *l)
{
	free(l->out.data);
	free(l->text.data);
}

/* An escape sequence: written, takes no columns. */
static void
line_escape(Line *l, const char *esc)
{
	buf_str(&l->out, esc);
}

static void
line_put(Line *l, const char *s, size_t n, int width)
{
	buf_add(&l->out, s, n);
	buf_add(&l->text, s, n);
	l->width += width;
}

/*
 * Append s, shown as next_char() shows it, in at most maxw columns (and
 * what is left of the line's): cut with an ellipsis when it is wider.
 * Returns the columns taken.
 */
static int
line_text(Line *l, const char *s, int maxw)
{
	int			room = l->limit - l->width;
	int			keep;
	int			used = 0;
	size_t		n = strlen(s);

	if (maxw < room)
		room = maxw;
	if (room <= 0)
		return 0;
	keep = text_width(s) <= room ? room : room - ellipsis_width;
	while (n > 0)
	{
		const char *shown;
		size_t		shown_len;
		int			w;
		size_t		len = next_char(s, n, &shown, &shown_len, &w);

		if (used + w > (keep < 0 ? room : keep))
			break;
		line_put(l, shown, shown_len, w);
		used += w;
		s += len;
		n -= len;
	}
	if (n > 0 && keep >= 0)
	{
		line_put(l, ellipsis, strlen(ellipsis), ellipsis_width);
		used += ellipsis_width;
	}
	return used;
}

/* Spaces: count columns, or what is left of the line's. */
static void
line_pad(Line *l, int count)
{
	while (count-- > 0 && l->width < l->limit)
		line_put(l, " ", 1, 1);
}

/* A duration as describe() writes one (src/figures.c): 45s, 3m42s, 1h05m, 2d03h. */
static void
format_duration(char *buf, size_t len, double seconds)
{
	long long	s;

	if (!(seconds + 0.5 < 1e15))	/* some 30 million years, or NaN */
	{
		snprintf(buf, len, "a very long time");
		return;
	}
	s = seconds > 0 ? (long long) (seconds + 0.5) : 0;
	if (s < 60)
		snprintf(buf, len, "%llds", s);
	else if (s < 3600)
		snprintf(buf, len, "%lldm%02llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%lldh%02lldm", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, len, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
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
 * The name of a row on the terminal: its label (the label role), else its
 * key; after its table's name unless only one table is watched.
 */
static char *
row_name(const char *table, const char *key, const char *label)
{
	const char *name = label && label[0] ? label : key;
	char	   *s = xmalloc((table ? strlen(table) + 1 : 0) + strlen(name) + 1);

	if (table)
		sprintf(s, "%s %s", table, name);
	else
		strcpy(s, name);
	return s;
}

/*
 * A permanent line above the frame on the terminal (a row that finished or
 * is gone): its characters shown as in the frame, not cut; it clears what
 * is left of the frame's line it is written over.
 */
static void
print_permanent(const char *prefix, const char *name, const char *text)
{
	Line		l;

	line_init(&l, INT_MAX);
	if (prefix)
	{
		line_text(&l, prefix, INT_MAX);
		line_pad(&l, 1);
	}
	line_text(&l, name, INT_MAX);
	line_pad(&l, 1);
	line_text(&l, text, INT_MAX);
	fputs(l.out.data, stdout);
	fputs(CLEAR_EOL "\n", stdout);
	line_free(&l);
}

/*
 * A row that has left the view was finished (or can no longer be read):
 * print how it ended, above the frame on a terminal.  label is the row's
 * label when it was last in flight (or NULL).  Returns the exit status
 * when it is the row watched with -k and it is terminal (or gone), else
 * KEEP_WATCHING.
 */
static int
finish_row(Watch *w, const char *relid, const char *table, const char *key, const char *label)
{
	const char *params[2] = {relid, key};
	PGresult   *res;
	int			status = KEEP_WATCHING;
	char	   *name;

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
		else
		{
			char	   *line = xmalloc(strlen(msg) + 8);

			sprintf(line, "gone: %s", msg);
			if (w->mode == OUTPUT_PLAIN)
				print_plain(table, key, line, NULL);
			else
			{
				name = row_name(table, key, label);
				print_permanent(NULL, name, line);
				free(name);
			}
			free(line);
		}
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
		{
			name = row_name(table, key, label ? label : (PQgetisnull(res, 0, 4) ? NULL : PQgetvalue(res, 0, 4)));
			print_permanent(terminal ? (strcmp(kind, "succeeded") == 0 ? "[done]" : "[FAIL]") : "[    ]",
							name, line);
			free(name);
		}
		if (w->key && terminal)
			status = exit_status_of(kind);
	}
	PQclear(res);
	return status;
}

/* The progress bar of a row: [#######.............], blank when unknown. */
static void
line_bar(Line *l, double percent, int width)
{
	char		bar[BAR_MAX_WIDTH + 3];
	int			filled = 0;
	int			i;

	if (percent >= 0)
		filled = (int) (percent / 100.0 * width + 0.5);
	if (filled > width)
		filled = width;
	bar[0] = '[';
	for (i = 0; i < width; i++)
		bar[i + 1] = percent < 0 ? ' ' : (i < filled ? '#' : '.');
	bar[width + 1] = ']';
	bar[width + 2] = '\0';
	line_text(l, bar, width + 2);
}

/*
 * The status of a row, shown before its text: "STUCK <reason> <time since
 * the reason's clock started>", or "stalled <time without progress>", or
 * nothing.
 */
static const char *
row_status(const WatchRow *r, char *buf, size_t len)
{
	char		d[32];

	buf[0] = '\0';
	if (r->stuck_reason)
	{
		if (r->stuck_for >= 0)
		{
			format_duration(d, sizeof(d), r->stuck_for);
			snprintf(buf, len, "STUCK %s %s", r->stuck_reason, d);
		}
		else
			snprintf(buf, len, "STUCK %s", r->stuck_reason);
		return STUCK_COLOR;
	}
	if (r->stalled_for >= 0)
	{
		format_duration(d, sizeof(d), r->stalled_for);
		snprintf(buf, len, "stalled %s", d);
		return STALLED_COLOR;
	}
	return NULL;
}

/* Write one line of the frame and keep its text for the next redraw. */
static void
frame_line(Watch *w, Line *l)
{
	if (w->frame_n == w->frame_cap)
	{
		w->frame_cap = w->frame_cap ? 2 * w->frame_cap : 64;
		w->frame_text = realloc(w->frame_text, sizeof(char *) * w->frame_cap);
		if (w->frame_text == NULL)
			fatal("out of memory");
	}
	w->frame_text[w->frame_n++] = xstrdup(l->text.data);
	fputs(l->out.data, stdout);
	fputs(CLEAR_EOL "\n", stdout);
	line_free(l);
}

/*
 * Move the cursor to the first line of the frame drawn last, which is
 * written over next.  The cursor is on the line below the frame; after the
 * terminal narrowed, the frame's lines may take more rows than they did
 * (terminals that rewrap long lines), so the rows are counted at the
 * current width.
 */
static void
rewind_frame(Watch *w)
{
	int			cols;
	int			lines;
	int			rows = 0;
	int			i;

	terminal_size(&cols, &lines);
	for (i = 0; i < w->frame_n; i++)
	{
		rows += text_rows(w->frame_text[i], cols);
		free(w->frame_text[i]);
	}
	w->frame_n = 0;
	if (rows > 0)
		printf("\r\033[%dA", rows);
}

/*
 * Draw the frame for the rows shown (w->shown): a header, then one line per
 * row, stuck rows first, as many as the terminal's height leaves room for
 * (the rest counted on a last line), each cut to the terminal's width:
 *
 *	NAME  [BAR] STATUS  TEXT
 *
 * NAME is the row's label or key (after its table when every table is
 * watched; the table is named once in the header otherwise), STATUS the
 * stuck reason and the time since its clock started, or how long a
 * stalled row has made no progress, and TEXT the row's describe() line,
 * cut with an ellipsis.  The lines stay one column short of the width,
 * where terminals differ on wrapping.
 */
static void
draw_frame(Watch *w)
{
	RowSet	   *rows = &w->shown;
	int			cols;
	int			lines;
	int			width;
	int			room;
	int			show;
	int			nstuck = 0;
	int			hidden_stuck = 0;
	int			name_width = 0;
	int			name_cap;
	int			bar_width;
	int		   *order;
	char	  **names;
	int			i;
	int			k;
	char		header[512];
	char		stuck[32] = "";
	Line		l;

	if (!cursor_hidden)
	{
		fputs("\033[?25l", stdout);
		cursor_hidden = true;
	}
	terminal_size(&cols, &lines);
	width = cols > 1 ? cols - 1 : 1;

	/* stuck rows first, each group in the view's order */
	order = xmalloc(sizeof(int) * (rows->n + 1));
	names = xmalloc(sizeof(char *) * (rows->n + 1));
	k = 0;
	for (i = 0; i < rows->n; i++)
		if (rows->rows[i].stuck_reason)
			order[k++] = i;
	nstuck = k;
	for (i = 0; i < rows->n; i++)
		if (!rows->rows[i].stuck_reason)
			order[k++] = i;

	/*
	 * The lines below the header: the cursor's line below the frame stays
	 * on screen, so that the frame never scrolls.
	 */
	room = lines > 2 ? lines - 2 : 0;
	show = rows->n <= room ? rows->n : (room > 1 ? room - 1 : 0);
	for (i = show; i < rows->n; i++)
		if (rows->rows[order[i]].stuck_reason)
			hidden_stuck++;

	if (nstuck > 0)
		snprintf(stuck, sizeof(stuck), ", %d stuck,", nstuck);
	snprintf(header, sizeof(header), "deploy-progress-watch: %d in flight%s%s%s at %s (%s)",
			 rows->n, w->table ? " in " : "", w->table ? w->table : "", stuck, w->drawn_at, w->trigger);
	line_init(&l, width);
	line_escape(&l, BOLD);
	line_text(&l, header, width);
	line_escape(&l, RESET);
	frame_line(w, &l);

	if (rows->n == 0 && room > 0)
	{
		line_init(&l, width);
		line_text(&l, "  (nothing in flight)", width);
		frame_line(w, &l);
	}

	name_cap = width / 3;
	if (name_cap < LABEL_MIN_WIDTH)
		name_cap = LABEL_MIN_WIDTH;
	if (name_cap > LABEL_MAX_WIDTH)
		name_cap = LABEL_MAX_WIDTH;
	for (i = 0; i < show; i++)
	{
		WatchRow   *r = &rows->rows[order[i]];
		int			nw;

		names[i] = row_name(w->table ? NULL : r->table, r->key, r->label);
		nw = text_width(names[i]);
		if (nw > name_width)
			name_width = nw;
	}
	if (name_width > name_cap)
		name_width = name_cap;
	bar_width = cols / 5;
	if (bar_width < BAR_MIN_WIDTH)
		bar_width = BAR_MIN_WIDTH;
	if (bar_width > BAR_MAX_WIDTH)
		bar_width = BAR_MAX_WIDTH;

	for (i = 0; i < show; i++)
	{
		WatchRow   *r = &rows->rows[order[i]];
		char		status[256];
		const char *color = row_status(r, status, sizeof(status));

		line_init(&l, width);
		line_pad(&l, name_width - line_text(&l, names[i], name_width));
		line_pad(&l, 1);
		line_bar(&l, r->percent, bar_width);
		line_pad(&l, 1);
		if (color)
		{
			line_escape(&l, color);
			line_text(&l, status, width);
			line_escape(&l, RESET);
			line_pad(&l, 2);
		}
		line_text(&l, r->line, width);
		frame_line(w, &l);
		free(names[i]);
	}
	if (show < rows->n && room > 0)
	{
		char		more[128];

		if (hidden_stuck > 0)
			snprintf(more, sizeof(more), "%s %d more (%d stuck)", ellipsis, rows->n - show, hidden_stuck);
		else
			snprintf(more, sizeof(more), "%s %d more", ellipsis, rows->n - show);
		line_init(&l, width);
		line_text(&l, more, width);
		frame_line(w, &l);
	}
	free(order);
	free(names);
}

/* Redraw the frame drawn last (the terminal was resized). */
static void
redraw_frame(Watch *w)
{
	if (w->drawn_at[0] == '\0')
		return;
	rewind_frame(w);
	draw_frame(w);
	fputs(CLEAR_EOS, stdout);
	fflush(stdout);
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

	res = PQexecParams(w->conn, w->in_flight_sql, 2, NULL, params, NULL, NULL, 0);
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
		r->label = PQgetisnull(res, i, 9) ? NULL : xstrdup(PQgetvalue(res, i, 9));
		r->stalled_for = PQgetisnull(res, i, 10) ? -1 : strtod(PQgetvalue(res, i, 10), NULL);
		r->stuck_for = PQgetisnull(res, i, 11) ? -1 : strtod(PQgetvalue(res, i, 11), NULL);
	}
	PQclear(res);

	/* on a terminal, what follows is written over the frame drawn last */
	if (w->mode == OUTPUT_TTY)
		rewind_frame(w);

	/* rows that left the view since the last refresh: how did they end? */
	for (i = 0; i < w->shown.n; i++)
	{
		WatchRow   *old = &w->shown.rows[i];

		if (find_row(&cur, old->relid, old->key) == NULL && !w->key)
			(void) finish_row(w, old->relid, old->table, old->key, old->label);
	}

	/* the row watched with -k: in flight, or finished (or never was) */
	if (w->key)
	{
		key_in_flight = cur.n > 0;
		if (!key_in_flight)
		{
			WatchRow   *old = find_row(&w->shown, w->relid, w->key);

			status = finish_row(w, w->relid, w->table, w->key, old ? old->label : NULL);
		}
		else
		{
			free(w->key_state);
			w->key_state = NULL;
		}
	}

	if (w->mode != OUTPUT_TTY)
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

	free_rows(&w->shown);
	w->shown = cur;
	if (w->mode == OUTPUT_TTY)
	{
		if (status == KEEP_WATCHING)
		{
			clock_text(w->drawn_at, sizeof(w->drawn_at));
			w->trigger = trigger;
			draw_frame(w);
		}
		fputs(CLEAR_EOS, stdout);
	}
	fflush(stdout);
	return status;
}

/* LISTEN on the channel given, or on the watched tables' channels. */
void
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
 * Check that the extension and its view are there, see whether the view
 * has label and message columns (the roles, in versions that have them) and
 * resolve -t to a tracked table.
 */
static void
check_setup(Watch *w)
{
	PGresult   *res;
	const char *label;
	const char *message;

	res = PQexec(w->conn,
				 "SELECT p.oid IS NOT NULL,"
				 "       EXISTS (SELECT 1 FROM ROWS FROM (pg_catalog.unnest(p.proargnames), pg_catalog.unnest(p.proargmodes)) AS a(name, mode)"
				 "                WHERE a.name OPERATOR(pg_catalog.=) 'label' AND a.mode OPERATOR(pg_catalog.=) 't'),"
				 "       EXISTS (SELECT 1 FROM ROWS FROM (pg_catalog.unnest(p.proargnames), pg_catalog.unnest(p.proargmodes)) AS a(name, mode)"
				 "                WHERE a.name OPERATOR(pg_catalog.=) 'message' AND a.mode OPERATOR(pg_catalog.=) 't')"
				 "  FROM (SELECT pg_catalog.to_regprocedure('deploy_progress.in_flight(pg_catalog.regclass, pg_catalog.timestamptz)')::pg_catalog.oid AS oid) f"
				 "  LEFT JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) f.oid");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fatal("%s", PQresultErrorMessage(res));
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		fatal("database \"%s\" has no function deploy_progress.in_flight(regclass, timestamptz)\n"
			  "HINT:  Run CREATE EXTENSION deploy_progress (or ALTER EXTENSION deploy_progress UPDATE) there.",
			  PQdb(w->conn));
	label = strcmp(PQgetvalue(res, 0, 1), "t") == 0 ? "i.label" : "NULL::pg_catalog.text";
	message = strcmp(PQgetvalue(res, 0, 2), "t") == 0 ? "i.message" : "NULL::pg_catalog.text";
	w->in_flight_sql = xmalloc(strlen(in_flight_sql_format) + strlen(label) + strlen(message));
	sprintf(w->in_flight_sql, in_flight_sql_format, label, message);
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
 * the next refresh ("notify" or "poll"), or NULL when interrupted.  A
 * resized terminal is redrawn at once, and the wait goes on.
 *
 * Notifications that libpq has read already (with the results of the last
 * refresh, when they arrived while it ran) are not in the socket any more:
 * they are taken first, so a NOTIFY never waits for the next poll.  The
 * signals are blocked but while pselect() waits, so that none that comes
 * between the check of its flag and the wait is missed.
 */
const char *
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
		struct timespec timeout;
		PGnotify   *n;
		bool		notified = false;
		int			rc;

		if (interrupted)
			return NULL;
		if (resized)
		{
			resized = 0;
			if (w->mode == OUTPUT_TTY)
				redraw_frame(w);
		}
		if (sock >= 0)
		{
			if (!PQconsumeInput(w->conn))
				return "poll";	/* the refresh notices the lost connection */
			while ((n = PQnotifies(w->conn)) != NULL)
			{
				notified = true;
				PQfreemem(n);
			}
			if (notified)
				return "notify";
		}

		gettimeofday(&now, NULL);
		timeout.tv_sec = deadline.tv_sec - now.tv_sec;
		timeout.tv_nsec = (long) (deadline.tv_usec - now.tv_usec) * 1000;
		if (timeout.tv_nsec < 0)
		{
			timeout.tv_sec--;
			timeout.tv_nsec += 1000000000L;
		}
		if (timeout.tv_sec < 0)
			return "poll";
		FD_ZERO(&fds);
		if (sock >= 0)
			FD_SET(sock, &fds);
		/* without a connection, just wait out the interval */
		rc = pselect(sock >= 0 ? sock + 1 : 0, sock >= 0 ? &fds : NULL, NULL, NULL, &timeout, &w->wait_mask);
		if (rc < 0)
		{
			if (errno == EINTR)
				continue;
			fatal("select() failed: %s", strerror(errno));
		}
		if (rc == 0 || sock < 0)
			return "poll";
		/* the socket is readable: take what came in */
	}
}

/*
 * A message on stderr.  When it goes to the terminal of the frame, it is
 * written over the frame, each of its lines cleared to its end, and the
 * frame is drawn again below it.  (Nothing is cleared from the frame's
 * first line down: where that is the top of the screen, some terminals,
 * tmux among them, would move the whole screen into the scrollback.)
 */
void
print_message(Watch *w, const char *fmt,...)
{
	va_list		ap;
	bool		on_frame = w->mode == OUTPUT_TTY && w->frame_n > 0 && isatty(STDERR_FILENO);
	char	   *msg;
	char	   *line;
	char	   *nl;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		fatal("out of memory");
	va_end(ap);
	if (!on_frame)
	{
		fprintf(stderr, "deploy-progress-watch: %s", msg);
		free(msg);
		return;
	}
	rewind_frame(w);
	fflush(stdout);
	fputs("deploy-progress-watch: ", stderr);
	for (line = msg; *line; line = nl + 1)
	{
		nl = strchr(line, '\n');
		if (nl == NULL)
		{
			fprintf(stderr, "%s" CLEAR_EOL "\n", line);
			break;
		}
		fprintf(stderr, "%.*s" CLEAR_EOL "\n", (int) (nl - line), line);
	}
	free(msg);
	draw_frame(w);
	fputs(CLEAR_EOS, stdout);
	fflush(stdout);
}

/* Server notices and asynchronous errors, under the program's name. */
static void
print_notice(void *arg, const char *message)
{
	print_message((Watch *) arg, "%s", message);
}

static PGconn *
connect_db(Watch *w, const char *host, const char *port, const char *user, const char *dbname)
{
	const char *keywords[7];
	const char *values[7];
	int			n = 0;
	PGconn	   *conn;

	keywords[n] = "host";
	values[n++] = host;
	keywords[n] = "port";
	values[n++] = port;
	keywords[n] = "user";
	values[n++] = user;
	keywords[n] = "client_encoding";
	values[n++] = w->client_encoding;
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
	PQsetNoticeProcessor(conn, print_notice, w);
	return conn;
}

PGconn *
watch_connection(Watch *w)
{
	return w->conn;
}

/*
 * After a lost connection: reset it and LISTEN again; false while the
 * server cannot be reached (the caller tries again after an interval).
 */
bool
reconnect(Watch *w)
{
	if (!w->reconnecting)
		print_message(w, "connection lost, reconnecting\n");
	w->reconnecting = true;
	PQreset(w->conn);
	if (PQstatus(w->conn) != CONNECTION_OK)
		return false;
	print_message(w, "reconnected\n");
	w->reconnecting = false;
	listen_channels(w);
	return true;
}

/* A number of seconds given as an option's value, or an error. */
static double
seconds_arg(const char *what, const char *arg, double min, double max)
{
	char	   *end;
	double		v;

	errno = 0;
	v = strtod(arg, &end);
	if (errno != 0 || end == arg || *end != '\0' || !(v >= min && v <= max))
		fatal("invalid %s \"%s\": give seconds between %g and %g", what, arg, min, max);
	return v;
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
		{"webhook", required_argument, NULL, 4},
		{"exec", required_argument, NULL, 5},
		{"state", required_argument, NULL, 6},
		{"from-start", no_argument, NULL, 7},
		{"retry-delay", required_argument, NULL, 8},
		{"retry-max-delay", required_argument, NULL, 9},
		{"webhook-timeout", required_argument, NULL, 10},
		{"header", required_argument, NULL, 'H'},
		{"serve", required_argument, NULL, 20},
		{"token", required_argument, NULL, 21},
		{"basic-auth", required_argument, NULL, 22},
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
	RelayOptions relay;
	ServeOptions serve;
	struct sigaction sa;
	sigset_t	blocked;
	int			c;
	int			status;

	memset(&w, 0, sizeof(w));
	w.interval = 1.0;
	memset(&relay, 0, sizeof(relay));
	relay.retry_delay = 1.0;
	relay.retry_max_delay = 60.0;
	relay.timeout = 30.0;
	relay.headers = xmalloc(sizeof(char *) * argc);
	memset(&serve, 0, sizeof(serve));

	/* characters and their widths as the terminal's locale has them */
	setlocale(LC_CTYPE, "");
	if (strcmp(nl_langinfo(CODESET), "UTF-8") == 0)
	{
		ellipsis = "\xE2\x80\xA6";	/* U+2026 */
		ellipsis_width = 1;
	}

	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-?") == 0))
	{
		usage();
		return 0;
	}
	while ((c = getopt_long(argc, argv, "h:p:U:d:t:k:i:c:H:V?", long_options, NULL)) != -1)
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
				w.interval = seconds_arg("interval", optarg, 0.01, 86400);
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
			case 4:
				relay.webhook = optarg;
				break;
			case 5:
				relay.exec = optarg;
				break;
			case 6:
				relay.state = optarg;
				break;
			case 7:
				relay.from_start = true;
				break;
			case 8:
				relay.retry_delay = seconds_arg("retry delay", optarg, 0.01, 3600);
				break;
			case 9:
				relay.retry_max_delay = seconds_arg("retry maximum delay", optarg, 0.01, 86400);
				break;
			case 10:
				relay.timeout = seconds_arg("webhook timeout", optarg, 0.01, 86400);
				break;
			case 'H':
				relay.headers[relay.nheaders++] = optarg;
				break;
			case 20:
				serve.listen = optarg;
				break;
			case 21:
				serve.token = optarg;
				break;
			case 22:
				serve.basic_auth = optarg;
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
	if (relay_requested(&relay) && serve.listen)
		fatal("--serve cannot be used with --webhook or --exec: run one program for each");
	if (relay_requested(&relay))
	{
		if (w.key || json || plain)
			fatal("%s cannot be used with --webhook or --exec: the relay delivers every event of the table (or of all tables)",
				  w.key ? "-k/--key" : json ? "--json" : "--plain");
		relay_check_options(&relay);
		relay.once = w.once;
		plain = true;
	}
	else if (relay.state || relay.from_start || relay.nheaders > 0)
		fatal("%s needs --webhook or --exec",
			  relay.state ? "--state" : relay.from_start ? "--from-start" : "-H/--header");
	if (serve.listen)
	{
		if (w.key || json || plain || w.once)
			fatal("%s cannot be used with --serve: the page shows every in-flight row of the table (or of all tables)",
				  w.key ? "-k/--key" : json ? "--json" : plain ? "--plain" : "--once");
		serve_check_options(&serve);
		plain = true;
	}
	else if (serve.token || serve.basic_auth)
		fatal("%s needs --serve", serve.token ? "--token" : "--basic-auth");
	w.mode = json ? OUTPUT_JSON : (plain || !isatty(STDOUT_FILENO)) ? OUTPUT_PLAIN : OUTPUT_TTY;
	/* the relay's and the web page's JSON is UTF-8; on a terminal, text in its encoding, as psql does */
	if (relay_requested(&relay) || serve.listen)
		w.client_encoding = "UTF8";
	else if (w.mode == OUTPUT_TTY && getenv("PGCLIENTENCODING") == NULL)
		w.client_encoding = "auto";

	if (w.mode == OUTPUT_TTY)
		setvbuf(stdout, NULL, _IOFBF, 1 << 16);	/* a frame is written at once */

	/*
	 * The signals set flags, and are blocked but while pselect() waits
	 * (w.wait_mask).
	 */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;			/* no SA_RESTART: pselect() returns EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGINT);
	sigaddset(&blocked, SIGTERM);
	if (w.mode == OUTPUT_TTY)
	{
		sa.sa_handler = handle_resize;
		sigaction(SIGWINCH, &sa, NULL);
		sigaddset(&blocked, SIGWINCH);
	}
	sigprocmask(SIG_BLOCK, &blocked, &w.wait_mask);
	sigdelset(&w.wait_mask, SIGINT);
	sigdelset(&w.wait_mask, SIGTERM);
	sigdelset(&w.wait_mask, SIGWINCH);

	w.conn = connect_db(&w, host, port, user, dbname);
	check_setup(&w);
	if (relay_requested(&relay))
		return relay_run(&w, &relay, w.relid);
	if (!w.once)
		listen_channels(&w);
	if (serve.listen)
		return serve_run(&w, &serve, w.relid, w.in_flight_sql);

	status = refresh(&w, "start");
	while (status == KEEP_WATCHING || status == -2)
	{
		const char *trigger;

		if (w.once && status == KEEP_WATCHING)
			break;
		trigger = wait_for_update(&w);
		if (trigger == NULL)
			break;
		if ((status == -2 || PQstatus(w.conn) == CONNECTION_BAD) && !reconnect(&w))
		{
			status = -2;
			continue;
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
