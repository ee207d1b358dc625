/*-------------------------------------------------------------------------
 *
 * relay.c
 *	  deploy-progress-watch --webhook URL / --exec CMD: the durable event
 *	  stream (deploy_progress.events_since()) relayed, one event at a
 *	  time, to an HTTP endpoint or a command.
 *
 * The relay reads the events after its cursor in the stream's order and
 * delivers each as one JSON object: POSTed with libcurl (--webhook), or
 * written to the standard input of "/bin/sh -c CMD" (--exec).  A 2xx
 * response, or the command's exit status 0, is a delivery; anything else
 * (no connection, a timeout, another status) is tried again after a delay
 * that doubles from --retry-delay up to --retry-max-delay, and the events
 * after it wait: event N+1 is never delivered before event N.
 *
 * After each delivery the event's cursor is written to the state file
 * atomically (a temporary file in the same directory, fsync(), rename(),
 * fsync() of the directory), so a relay that restarts, even after kill -9
 * or a power cut, goes on after the last event it delivered.  The one
 * window is between a delivery and the write of its cursor: an event
 * delivered there is delivered again after the restart (at least once).
 * Each request carries the event's cursor as its Idempotency-Key (and the
 * command gets it as DEPLOY_PROGRESS_CURSOR), so that a receiver can drop
 * the repeat.  A lock on FILE.lock keeps a second relay off the same
 * state file.
 *
 * The relay wakes up on a NOTIFY on the tables' channels and otherwise
 * polls every --interval; a lost connection is retried as the watcher
 * does, and the relay resumes from its cursor.
 *
 * IDENTIFICATION
 *	  src/watch/relay.c
 *
 *-------------------------------------------------------------------------
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE				/* asprintf() */
#endif

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_LIBCURL
#include <curl/curl.h>
#endif

#include "libpq-fe.h"
#include "watch.h"

/* events read per query */
#define RELAY_BATCH			100

/* a cursor is "transaction:id", two numbers that fit a bigint */
#define CURSOR_MAX_LEN		40

typedef struct Relay
{
	Watch	   *w;
	RelayOptions *o;
	const char *relid;			/* the table's OID as text, NULL for all tables */
	char		cursor[CURSOR_MAX_LEN + 1];	/* of the last event delivered */
	char	   *tmp_path;		/* STATE.tmp, written then renamed */
	char	   *dir;			/* the state file's directory */
#ifdef HAVE_LIBCURL
	CURL	   *curl;
	char		curl_error[CURL_ERROR_SIZE];
#endif
} Relay;

/*
 * The events after $1 ($2 at most, of table $3 or all) with the table's
 * schema-qualified name and the time in ISO 8601, UTC.  Every column of
 * events_since() comes along (e.*), so that the columns that some
 * versions have (label, message) are read by name where they exist.
 */
static const char *const events_sql =
"SELECT e.*,"
"       coalesce((SELECT pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.'"
"                        OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname)"
"                   FROM pg_catalog.pg_class c"
"                   JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
"                  WHERE c.oid OPERATOR(pg_catalog.=) e.relid), e.relid::pg_catalog.oid::pg_catalog.text) AS relay_table,"
"       pg_catalog.to_char(pg_catalog.timezone('UTC', e.at), 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS relay_at"
"  FROM deploy_progress.events_since($1, $2, $3::pg_catalog.oid::pg_catalog.regclass) e";

/* The JSON object of an event: its keys in order, and the columns they come from. */
typedef struct EventField
{
	const char *name;
	const char *column;
	bool		number;
} EventField;

static const EventField event_fields[] = {
	{"cursor", "cursor", false},
	{"table", "relay_table", false},
	{"key", "key", false},
	{"label", "label", false},
	{"from", "from_phase", false},
	{"to", "to_phase", false},
	{"kind", "to_kind", false},
	{"at", "relay_at", false},
	{"completed", "completed", true},
	{"total", "total", true},
	{"percent", "percent", true},
	{"reason", "reason", false},
	{"message", "message", false},
};

#define NUM_EVENT_FIELDS	(sizeof(event_fields) / sizeof(event_fields[0]))

/* Whether the options ask for the relay (--webhook or --exec) rather than the watch. */
bool
relay_requested(const RelayOptions *o)
{
	return o->webhook != NULL || o->exec != NULL;
}

/* Whether s is a cursor "transaction:id" (the text events_since() gives). */
static bool
is_cursor(const char *s, size_t len)
{
	size_t		i = 0;
	int			part;

	for (part = 0; part < 2; part++)
	{
		size_t		start = i;

		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == start || i - start > 19)
			return false;
		if (part == 0)
		{
			if (i >= len || s[i] != ':')
				return false;
			i++;
		}
	}
	return i == len;
}

/* The directory of path ("." for a bare file name), malloc'd. */
static char *
dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char	   *dir;

	if (slash == NULL)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	dir = xmalloc(slash - path + 1);
	memcpy(dir, path, slash - path);
	dir[slash - path] = '\0';
	return dir;
}

/*
 * Read the state file into cursor (size CURSOR_MAX_LEN + 1): true when it
 * holds a cursor, false when there is no file; any other content, or a
 * file that cannot be read, is an error.
 */
static bool
read_state(const char *path, char *cursor)
{
	char		buf[CURSOR_MAX_LEN + 2];
	struct stat st;
	ssize_t		len;
	int			fd;

	if (stat(path, &st) != 0)
	{
		if (errno == ENOENT)
			return false;
		fatal("cannot read state file \"%s\": %s", path, strerror(errno));
	}
	if (!S_ISREG(st.st_mode))
		fatal("state file \"%s\" is not a regular file", path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fatal("cannot read state file \"%s\": %s", path, strerror(errno));
	/* room for more than a cursor and its newline: a longer file is no state file */
	len = read(fd, buf, sizeof(buf));
	if (len < 0)
		fatal("cannot read state file \"%s\": %s", path, strerror(errno));
	close(fd);
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (!is_cursor(buf, (size_t) len))
		fatal("state file \"%s\" is corrupt: it does not hold an event cursor\n"
			  "DETAIL:  A state file holds one line, the cursor \"transaction:id\" of the last event delivered.\n"
			  "HINT:  Give the file of this relay, or remove it to start from the end of the stream (--from-start: from the oldest event).",
			  path);
	memcpy(cursor, buf, len);
	cursor[len] = '\0';
	return true;
}

/* The state file must be readable if it is there, and its directory writable. */
static void
check_state_file(const char *path)
{
	char		cursor[CURSOR_MAX_LEN + 1];
	char	   *dir = dir_of(path);
	struct stat st;

	if (*path == '\0')
		fatal("--state needs a file name");
	(void) read_state(path, cursor);
	if (stat(dir, &st) != 0)
		fatal("cannot write state file \"%s\": directory \"%s\": %s", path, dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		fatal("cannot write state file \"%s\": \"%s\" is not a directory", path, dir);
	if (access(dir, W_OK | X_OK) != 0)
		fatal("cannot write state file \"%s\": directory \"%s\": %s", path, dir, strerror(errno));
	free(dir);
}

#ifdef HAVE_LIBCURL
/* An http:// or https:// URL that libcurl can parse, or an error. */
static void
check_url(const char *url)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	CURLUcode	rc;

	if (u == NULL)
		fatal("out of memory");
	rc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (rc == CURLUE_OK)
		rc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
	if (rc != CURLUE_OK || (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
		fatal("invalid webhook URL \"%s\": %s\n"
			  "HINT:  Give an http:// or https:// URL, such as https://example.com/hooks/deployments.",
			  url, rc != CURLUE_OK ? curl_url_strerror(rc) : "the scheme is not http or https");
	curl_free(scheme);
	curl_url_cleanup(u);
}
#endif

/*
 * The relay's options, checked before anything is connected or written:
 * a bad value is an error, and nothing changes.
 */
void
relay_check_options(RelayOptions *o)
{
	int			i;

	if (o->webhook && o->exec)
		fatal("--webhook and --exec cannot be used together");
	if (o->state == NULL)
		fatal("%s needs --state=FILE\n"
			  "HINT:  The relay keeps the cursor of the last event it delivered in FILE, to go on from there after a restart.",
			  o->webhook ? "--webhook" : "--exec");
	if (o->exec && *o->exec == '\0')
		fatal("--exec needs a command");
	if (o->nheaders > 0 && !o->webhook)
		fatal("-H/--header needs --webhook");
	for (i = 0; i < o->nheaders; i++)
		if (strchr(o->headers[i], ':') == NULL || strpbrk(o->headers[i], "\r\n") != NULL)
			fatal("invalid header \"%s\": give \"Name: value\"", o->headers[i]);
	if (o->retry_delay > o->retry_max_delay)
		fatal("--retry-delay (%gs) is longer than --retry-max-delay (%gs)", o->retry_delay, o->retry_max_delay);
	if (o->webhook)
	{
#ifdef HAVE_LIBCURL
		check_url(o->webhook);
#else
		fatal("--webhook is not available: this deploy-progress-watch was built without libcurl\n"
			  "HINT:  Install libcurl's development files (Debian: libcurl4-openssl-dev) and rebuild, or use --exec with a command such as curl.");
#endif
	}
	check_state_file(o->state);
}

/*
 * Write the cursor to the state file: a temporary file beside it, synced,
 * renamed over it, and the directory synced, so that the file holds the
 * old cursor or the new one whatever happens.
 */
static void
save_state(Relay *r, const char *cursor)
{
	char		line[CURSOR_MAX_LEN + 2];
	size_t		len = (size_t) snprintf(line, sizeof(line), "%s\n", cursor);
	int			fd;

	fd = open(r->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, line, len) != (ssize_t) len || fsync(fd) != 0 || close(fd) != 0)
		fatal("cannot write \"%s\": %s", r->tmp_path, strerror(errno));
	if (rename(r->tmp_path, r->o->state) != 0)
		fatal("cannot rename \"%s\" to \"%s\": %s", r->tmp_path, r->o->state, strerror(errno));
	fd = open(r->dir, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
		fatal("cannot sync directory \"%s\": %s", r->dir, strerror(errno));
	close(fd);
	snprintf(r->cursor, sizeof(r->cursor), "%s", cursor);
}

/*
 * Keep other relays off this state file while this one runs: an exclusive
 * lock on STATE.lock (not on the state file itself, which each write
 * replaces).  The lock ends with the process, however it ends.
 */
static void
lock_state(Relay *r)
{
	char	   *path = xmalloc(strlen(r->o->state) + 6);
	int			fd;

	sprintf(path, "%s.lock", r->o->state);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		fatal("cannot open \"%s\": %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) != 0)
		fatal("state file \"%s\" is in use by another relay (%s is locked)", r->o->state, path);
	free(path);
	/* fd stays open: the lock lasts as long as the process */
}

/*
 * Sleep for seconds, or less when SIGINT or SIGTERM comes (they are
 * blocked but while pselect() waits, as in the watcher's wait).
 */
static void
pause_for(double seconds)
{
	struct timespec deadline;
	sigset_t	mask;

	sigprocmask(SIG_SETMASK, NULL, &mask);
	sigdelset(&mask, SIGINT);
	sigdelset(&mask, SIGTERM);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += (time_t) seconds;
	deadline.tv_nsec += (long) ((seconds - (time_t) seconds) * 1e9);
	if (deadline.tv_nsec >= 1000000000L)
	{
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	while (!interrupted)
	{
		struct timespec now;
		struct timespec left;

		clock_gettime(CLOCK_MONOTONIC, &now);
		left.tv_sec = deadline.tv_sec - now.tv_sec;
		left.tv_nsec = deadline.tv_nsec - now.tv_nsec;
		if (left.tv_nsec < 0)
		{
			left.tv_sec--;
			left.tv_nsec += 1000000000L;
		}
		if (left.tv_sec < 0)
			return;
		if (pselect(0, NULL, NULL, NULL, &left, &mask) == 0)
			return;
	}
}

/* One event (row i of res) as a JSON object, malloc'd. */
static char *
event_json(PGresult *res, int row)
{
	char	   *json = NULL;
	size_t		len = 0;
	FILE	   *f = open_memstream(&json, &len);
	size_t		i;

	if (f == NULL)
		fatal("out of memory");
	fputc('{', f);
	for (i = 0; i < NUM_EVENT_FIELDS; i++)
	{
		const EventField *ef = &event_fields[i];
		int			col = PQfnumber(res, ef->column);
		const char *v = col >= 0 && !PQgetisnull(res, row, col) ? PQgetvalue(res, row, col) : NULL;

		if (i > 0)
			fputc(',', f);
		print_json_string(f, ef->name);
		fputc(':', f);
		if (v == NULL)
			fputs("null", f);
		else if (ef->number)
		{
			char	   *end;
			double		d = strtod(v, &end);

			/* bigint and float8 text is JSON, but for NaN and the infinities */
			fputs(*end == '\0' && end != v && isfinite(d) ? v : "null", f);
		}
		else
			print_json_string(f, v);
	}
	fputc('}', f);
	if (fclose(f) != 0)
		fatal("out of memory");
	return json;
}

#ifdef HAVE_LIBCURL
/* libcurl's sink for the response body, which the relay does not read. */
static size_t
discard_body(char *data, size_t size, size_t n, void *arg)
{
	return size * n;
}

/* libcurl's progress callback: a signal (SIGINT, SIGTERM) aborts the request. */
static int
abort_on_signal(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	return interrupted != 0;
}

/* One libcurl handle for every request, so that its connection is kept alive. */
static void
webhook_init(Relay *r)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (r->curl = curl_easy_init()) == NULL)
		fatal("cannot initialize libcurl");
	curl_easy_setopt(r->curl, CURLOPT_URL, r->o->webhook);
	curl_easy_setopt(r->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->curl, CURLOPT_TIMEOUT_MS, (long) (r->o->timeout * 1000));
	curl_easy_setopt(r->curl, CURLOPT_USERAGENT, "deploy-progress-watch/" DEPLOY_PROGRESS_VERSION);
	curl_easy_setopt(r->curl, CURLOPT_WRITEFUNCTION, discard_body);
	curl_easy_setopt(r->curl, CURLOPT_ERRORBUFFER, r->curl_error);
	curl_easy_setopt(r->curl, CURLOPT_XFERINFOFUNCTION, abort_on_signal);
	curl_easy_setopt(r->curl, CURLOPT_NOPROGRESS, 0L);
}

/*
 * POST one event: NULL when delivered, else what went wrong (malloc'd).
 * SIGINT and SIGTERM are let in while the request runs, so that a signal
 * ends a request that waits for an answer (abort_on_signal()).
 */
static char *
webhook_post(Relay *r, const char *cursor, const char *body)
{
	struct curl_slist *headers = NULL;
	sigset_t	signals;
	sigset_t	mask;
	char		key[CURSOR_MAX_LEN + 32];
	CURLcode	rc;
	long		status = 0;
	char	   *err = NULL;
	int			i;

	snprintf(key, sizeof(key), "Idempotency-Key: %s", cursor);
	headers = curl_slist_append(headers, "Content-Type: application/json");
	headers = curl_slist_append(headers, key);
	for (i = 0; i < r->o->nheaders; i++)
		headers = curl_slist_append(headers, r->o->headers[i]);
	if (headers == NULL)
		fatal("out of memory");
	r->curl_error[0] = '\0';
	curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(r->curl, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
	sigemptyset(&signals);
	sigaddset(&signals, SIGINT);
	sigaddset(&signals, SIGTERM);
	sigprocmask(SIG_UNBLOCK, &signals, &mask);
	rc = curl_easy_perform(r->curl);
	sigprocmask(SIG_SETMASK, &mask, NULL);
	if (rc == CURLE_OK)
		curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(headers);
	if (rc != CURLE_OK)
	{
		if (asprintf(&err, "%s", r->curl_error[0] ? r->curl_error : curl_easy_strerror(rc)) < 0)
			fatal("out of memory");
	}
	else if (status < 200 || status > 299)
	{
		if (asprintf(&err, "HTTP status %ld", status) < 0)
			fatal("out of memory");
	}
	return err;
}
#endif

/*
 * Run the command with the event on its standard input: NULL when it
 * exits with status 0, else what went wrong (malloc'd).  The command gets
 * the signals unblocked and their default dispositions, and the cursor in
 * DEPLOY_PROGRESS_CURSOR.
 */
static char *
exec_command(Relay *r, const char *cursor, const char *body)
{
	int			fds[2];
	pid_t		pid;
	int			status;
	size_t		len = strlen(body);
	size_t		done = 0;
	char	   *err = NULL;

	if (pipe(fds) != 0)
		fatal("pipe() failed: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		fatal("fork() failed: %s", strerror(errno));
	if (pid == 0)
	{
		sigset_t	none;

		dup2(fds[0], STDIN_FILENO);
		close(fds[0]);
		close(fds[1]);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setenv("DEPLOY_PROGRESS_CURSOR", cursor, 1);
		execl("/bin/sh", "sh", "-c", r->o->exec, (char *) NULL);
		_exit(127);
	}
	close(fds[0]);
	/* a command that does not read all of its input gets EPIPE, not a signal */
	while (done < len)
	{
		ssize_t		n = write(fds[1], body + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t) n;
	}
	close(fds[1]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			fatal("waitpid() failed: %s", strerror(errno));
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return NULL;
	if ((WIFEXITED(status) ? asprintf(&err, "the command exited with status %d", WEXITSTATUS(status))
		 : asprintf(&err, "the command was killed by signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0)) < 0)
		fatal("out of memory");
	return err;
}

/*
 * Deliver one event, trying again with a doubling delay until it is
 * delivered; false when a signal ended the wait first.
 */
static bool
deliver(Relay *r, const char *cursor, const char *body)
{
	double		delay = r->o->retry_delay;
	int			attempt;

	for (attempt = 1;; attempt++)
	{
		char	   *err;

#ifdef HAVE_LIBCURL
		if (r->o->webhook)
			err = webhook_post(r, cursor, body);
		else
#endif
			err = exec_command(r, cursor, body);
		if (err != NULL && interrupted)
		{
			/* not delivered, or not known to be: delivered again after a restart */
			free(err);
			return false;
		}
		if (err == NULL)
		{
			if (attempt > 1)
				print_message(r->w, "event %s delivered at attempt %d\n", cursor, attempt);
			return true;
		}
		print_message(r->w, "cannot deliver event %s (attempt %d): %s; trying again in %gs\n",
					  cursor, attempt, err, delay);
		free(err);
		pause_for(delay);
		if (interrupted)
			return false;
		delay = delay * 2 > r->o->retry_max_delay ? r->o->retry_max_delay : delay * 2;
	}
}

/* The cursor to start from when there is no state file yet. */
static void
start_cursor(Relay *r)
{
	PGresult   *res;

	if (r->o->from_start)
	{
		/* before every event: transaction ids start at 3 */
		save_state(r, "0:0");
		return;
	}
	res = PQexec(watch_connection(r->w), "SELECT deploy_progress.events_cursor()");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fatal("cannot read deploy_progress.events_cursor(): %s", first_line(PQresultErrorMessage(res)));
	if (!is_cursor(PQgetvalue(res, 0, 0), strlen(PQgetvalue(res, 0, 0))))
		fatal("deploy_progress.events_cursor() gave \"%s\", not a cursor", PQgetvalue(res, 0, 0));
	save_state(r, PQgetvalue(res, 0, 0));
	PQclear(res);
}

/*
 * The relay's loop: read the events after the cursor, deliver them in
 * order, and wait for a NOTIFY or the interval when there are no more.
 * Returns the program's exit status (0 when a signal or --once ended it).
 */
int
relay_run(Watch *w, RelayOptions *o, const char *relid)
{
	PGconn	   *conn = watch_connection(w);
	Relay		r;
	PGresult   *res;
	char		batch[16];

	memset(&r, 0, sizeof(r));
	r.w = w;
	r.o = o;
	r.relid = relid;
	r.dir = dir_of(o->state);
	r.tmp_path = xmalloc(strlen(o->state) + 5);
	sprintf(r.tmp_path, "%s.tmp", o->state);
	snprintf(batch, sizeof(batch), "%d", RELAY_BATCH);

	/* a command that exits early, or a peer that hangs up, is an error, not a signal */
	signal(SIGPIPE, SIG_IGN);

	res = PQexec(conn, "SELECT pg_catalog.to_regprocedure('deploy_progress.events_since(pg_catalog.text, pg_catalog.int4, pg_catalog.regclass)') IS NOT NULL");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fatal("%s", first_line(PQresultErrorMessage(res)));
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		fatal("database \"%s\" has no function deploy_progress.events_since(text, integer, regclass)\n"
			  "HINT:  The relay needs deploy_progress 1.1 or later: run ALTER EXTENSION deploy_progress UPDATE there.",
			  PQdb(conn));
	PQclear(res);

	lock_state(&r);
	if (!read_state(o->state, r.cursor))
		start_cursor(&r);
#ifdef HAVE_LIBCURL
	if (o->webhook)
		webhook_init(&r);
#endif
	if (!o->once)
		listen_channels(w);

	while (!interrupted)
	{
		const char *params[3] = {r.cursor, batch, relid};
		int			n;
		int			i;

		if (PQstatus(conn) == CONNECTION_BAD && !reconnect(w))
		{
			if (wait_for_update(w) == NULL)
				break;
			continue;
		}
		res = PQexecParams(conn, events_sql, 3, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			if (PQstatus(conn) == CONNECTION_BAD)
			{
				PQclear(res);
				continue;
			}
			fatal("cannot read deploy_progress.events_since(): %s", first_line(PQresultErrorMessage(res)));
		}
		n = PQntuples(res);
		for (i = 0; i < n && !interrupted; i++)
		{
			const char *cursor = PQgetvalue(res, i, PQfnumber(res, "cursor"));
			char	   *body = event_json(res, i);

			if (deliver(&r, cursor, body))
				save_state(&r, cursor);
			free(body);
		}
		PQclear(res);
		if (n == RELAY_BATCH || interrupted)
			continue;
		if (o->once || wait_for_update(w) == NULL)
			break;
	}
#ifdef HAVE_LIBCURL
	if (r.curl)
	{
		curl_easy_cleanup(r.curl);
		curl_global_cleanup();
	}
#endif
	PQfinish(conn);
	free(r.dir);
	free(r.tmp_path);
	return 0;
}
