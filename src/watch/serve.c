/*-------------------------------------------------------------------------
 *
 * serve.c
 *	  deploy-progress-watch --serve: a live web page of the in-flight rows,
 *	  their steps and the recent transitions, served with libmicrohttpd.
 *
 * The page (serve.html, embedded at build time as serve_html.h) is static
 * and self-contained; it reads everything from JSON endpoints:
 *
 *	/events			Server-Sent Events: one snapshot (the rows in flight and
 *					the recent transitions) at once, then one after each
 *					NOTIFY and at every --interval
 *	/api/rows		the latest snapshot
 *	/api/steps		steps(table, key) of one row, with each step's duration
 *
 * Threads and connections.  The main thread owns the watcher's connection
 * (Watch): it LISTENs there, waits with wait_for_update() (which also
 * takes SIGINT and SIGTERM, blocked in every other thread), and after each
 * wake-up builds a snapshot in one REPEATABLE READ READ ONLY transaction:
 * the watcher's own in_flight query (the same figures as the terminal)
 * and the events that events_since() gives after the cursor it keeps (a
 * backlog of recent transitions is read once at start).  The snapshot is
 * published under a mutex with a generation number, and a condition
 * variable wakes the streams.  libmicrohttpd runs a thread per HTTP
 * connection: an /events stream blocks in its content reader until the
 * generation moves (or sends a comment every 15 s to keep proxies from
 * closing it); /api/rows copies the latest snapshot; /api/steps, the only
 * request that queries the database, uses a second connection (a clone of
 * the first, in default_transaction_read_only) guarded by a mutex of its
 * own, so that no request thread touches the LISTEN connection and no
 * notification is taken from under the main thread's wait.
 *
 * Nothing here writes: every statement is a SELECT in a read-only
 * transaction, as the connecting role, so its privileges and row-level
 * security decide what the page shows.  Text reaches the page only inside
 * JSON, and the page puts it into the DOM with textContent.
 *
 * IDENTIFICATION
 *	  src/watch/serve.c
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "libpq-fe.h"
#include "watch.h"

#ifdef HAVE_MICROHTTPD

#include <microhttpd.h>

#include "serve_html.h"

#define STR_(x)				#x
#define STR(x)				STR_(x)

/* how many recent transitions the page shows */
#define RECENT_EVENTS		50
/* events read per events_since() call */
#define EVENTS_BATCH		500
/* seconds between the comments that keep an idle stream open */
#define KEEPALIVE_SECONDS	15
/* at most this many HTTP connections (one thread each) */
#define MAX_CONNECTIONS		64
/* seconds after which an idle connection (a browser's keep-alive) is closed */
#define IDLE_TIMEOUT		60

typedef struct RecentEvent
{
	long long	id;				/* history id, to drop the backlog's duplicates */
	char	   *json;
} RecentEvent;

typedef struct Server
{
	Watch	   *w;
	ServeOptions *o;
	const char *relid;			/* -t's OID as text, NULL for every table */
	const char *in_flight_sql;	/* the watcher's in_flight query */
	bool		have_events;	/* the installed version has events_since() */

	/* the snapshot, published by the main thread */
	pthread_mutex_t lock;
	pthread_cond_t changed;
	char	   *snapshot;
	unsigned long generation;
	bool		stopping;

	/* recent transitions, newest first, and the stream's cursor (main thread) */
	RecentEvent events[RECENT_EVENTS];
	int			nevents;
	char	   *cursor;

	/* the connection of the request threads */
	pthread_mutex_t db_lock;
	PGconn	   *db;
} Server;

/* One /events stream: the message being sent and how far. */
typedef struct Stream
{
	Server	   *s;
	unsigned long generation;	/* of the snapshot sent last, 0 before the first */
	char	   *msg;
	size_t		len;
	size_t		off;
} Stream;

/* --serve's address, resolved by serve_check_options() */
static struct sockaddr_storage bind_addr;
static char bind_host[INET6_ADDRSTRLEN + 2];
static char *basic_user;
static char *basic_password;

/*
 * The steps of one row ($1 table name, $2 key), each with its duration in
 * seconds (up to now for the step in progress), NULL when there is no
 * such row.
 */
static const char *const steps_sql =
"SELECT (SELECT COALESCE(pg_catalog.jsonb_agg(s.step OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object("
"          'duration_seconds', pg_catalog.date_part('epoch',"
"              COALESCE((s.step->>'ended_at')::pg_catalog.timestamptz, pg_catalog.now())"
"              OPERATOR(pg_catalog.-) (s.step->>'started_at')::pg_catalog.timestamptz)) ORDER BY s.n), '[]')"
"           FROM pg_catalog.jsonb_array_elements(x.j) WITH ORDINALITY AS s(step, n))::pg_catalog.text"
"  FROM (SELECT deploy_progress.steps($1::pg_catalog.text::pg_catalog.regclass, $2::pg_catalog.text) AS j) x"
" WHERE x.j IS NOT NULL";

/*
 * An event of the stream or of the transitions view "e" as a JSON object
 * (both have label and message in every version that has events_since()).
 */
#define EVENT_JSON \
"pg_catalog.json_build_object('id', e.id, 'table', e.relid::pg_catalog.text, 'key', e.key," \
"  'label', e.label, 'from', e.from_phase, 'to', e.to_phase, 'kind', e.to_kind, 'at', e.at," \
"  'percent', deploy_progress.percent(e.completed, e.total), 'reason', e.reason," \
"  'message', e.message)::pg_catalog.text"

/* The events after a cursor ($1) of one table or all ($2): cursor, id, JSON. */
static const char *const events_sql =
"SELECT e.cursor, e.id, " EVENT_JSON
"  FROM deploy_progress.events_since($1::pg_catalog.text, " STR(EVENTS_BATCH) ","
"       $2::pg_catalog.oid::pg_catalog.regclass) e";

/*
 * At start: the stream's cursor from now on, and the recent transitions
 * already there (of the last day, newest first), read once.
 */
static const char *const backlog_sql =
"SELECT e.id, " EVENT_JSON
"  FROM deploy_progress.transitions e"
" WHERE e.at OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) '1 day'::pg_catalog.interval)"
"   AND ($1::pg_catalog.oid IS NULL OR e.relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass)"
" ORDER BY e.at DESC, e.id DESC LIMIT " STR(RECENT_EVENTS);

/*
 * Check --serve, --token and --basic-auth before connecting: parse and
 * resolve [ADDR:]PORT, and refuse an address that is not loopback without
 * a credential, since the page shows whatever the database role may read.
 */
void
serve_check_options(ServeOptions *o)
{
	char	   *spec = xstrdup(o->listen);
	char	   *host;
	char	   *port;
	char	   *colon;
	char	   *end;
	long		portnum;
	struct addrinfo hints;
	struct addrinfo *ai;
	int			rc;
	bool		loopback;

	colon = strrchr(spec, ':');
	if (colon == NULL)
	{
		host = "127.0.0.1";
		port = spec;
	}
	else
	{
		*colon = '\0';
		host = spec;
		port = colon + 1;
		if (host[0] == '[' && host[strlen(host) - 1] == ']')
		{
			host[strlen(host) - 1] = '\0';
			host++;
		}
		else if (strchr(host, ':') != NULL)
			fatal("invalid --serve address \"%s\": write an IPv6 address in brackets, as in [::1]:8080", o->listen);
		if (*host == '\0')
			fatal("invalid --serve address \"%s\": give [ADDR:]PORT, as in 127.0.0.1:8080 or 8080", o->listen);
	}
	errno = 0;
	portnum = strtol(port, &end, 10);
	if (errno != 0 || end == port || *end != '\0' || portnum < 0 || portnum > 65535)
		fatal("invalid --serve port \"%s\": give a number from 0 to 65535 (0: any free port)", port);

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0)
		fatal("cannot resolve --serve address \"%s\": %s", host, gai_strerror(rc));
	if (ai->ai_addrlen > sizeof(bind_addr))
		fatal("cannot use --serve address \"%s\": unsupported address family", host);
	memcpy(&bind_addr, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);

	if (bind_addr.ss_family == AF_INET)
	{
		struct sockaddr_in *sin = (struct sockaddr_in *) &bind_addr;

		loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
		inet_ntop(AF_INET, &sin->sin_addr, bind_host, sizeof(bind_host));
	}
	else if (bind_addr.ss_family == AF_INET6)
	{
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &bind_addr;
		char		text[INET6_ADDRSTRLEN];

		loopback = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr) ||
			(IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && sin6->sin6_addr.s6_addr[12] == 127);
		inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
		snprintf(bind_host, sizeof(bind_host), "[%s]", text);
	}
	else
		fatal("cannot use --serve address \"%s\": not an IPv4 or IPv6 address", host);

	/* from the environment, out of sight of ps */
	if (o->token == NULL)
		o->token = getenv("DEPLOY_PROGRESS_WATCH_TOKEN");
	if (o->basic_auth == NULL)
		o->basic_auth = getenv("DEPLOY_PROGRESS_WATCH_BASIC_AUTH");
	if (o->token && o->token[0] == '\0')
		fatal("--token cannot be empty");
	if (o->basic_auth)
	{
		char	   *sep = strchr(o->basic_auth, ':');

		if (sep == NULL || sep == o->basic_auth || sep[1] == '\0')
			fatal("invalid --basic-auth: give USER:PASSWORD, both not empty");
		basic_user = xstrdup(o->basic_auth);
		basic_user[sep - o->basic_auth] = '\0';
		basic_password = basic_user + (sep - o->basic_auth) + 1;
	}
	if (!loopback && !o->token && !o->basic_auth)
		fatal("serving on %s, which is not a loopback address, needs --token or --basic-auth\n"
			  "HINT:  Anyone who reaches the address would see what the database role may read: "
			  "give --token=TOKEN or --basic-auth=USER:PASSWORD, or serve on 127.0.0.1 behind a proxy.",
			  bind_host);
	free(spec);
}

/* Compare a secret without leaking where it differs through timing. */
static bool
secret_equal(const char *given, const char *secret)
{
	size_t		n = strlen(secret);
	size_t		m = given ? strlen(given) : 0;
	unsigned char diff = (n != m);
	size_t		i;

	for (i = 0; i < n; i++)
		diff |= (unsigned char) secret[i] ^ (unsigned char) (i < m ? given[i] : 0);
	return diff == 0 && given != NULL;
}

/* Whether the request carries one of the credentials asked for (or none is). */
static bool
authorized(Server *s, struct MHD_Connection *c)
{
	bool		ok = false;

	if (!s->o->token && !s->o->basic_auth)
		return true;
	if (s->o->token)
	{
		const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
		const char *param = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token");

		if (auth && strncasecmp(auth, "Bearer ", 7) == 0 && secret_equal(auth + 7, s->o->token))
			ok = true;
		if (param && secret_equal(param, s->o->token))
			ok = true;
	}
	if (s->o->basic_auth && !ok)
	{
		char	   *password = NULL;
		char	   *user = MHD_basic_auth_get_username_password(c, &password);

		if (user && password && secret_equal(user, basic_user) && secret_equal(password, basic_password))
			ok = true;
		if (user)
			MHD_free(user);
		if (password)
			MHD_free(password);
	}
	return ok;
}

/* Headers of every response: no caching, no referrer (the token may be in the URL). */
static void
common_headers(struct MHD_Response *r, const char *content_type)
{
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
}

/*
 * Queue a response (NULL: none could be made) with the common headers
 * when it has a content type, and one more header when named.
 */
static enum MHD_Result
queue(struct MHD_Connection *c, unsigned int status, struct MHD_Response *r,
	  const char *content_type, const char *header, const char *value)
{
	enum MHD_Result ret;

	if (r == NULL)
		return MHD_NO;
	if (content_type)
		common_headers(r, content_type);
	if (header)
		MHD_add_response_header(r, header, value);
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result
respond(struct MHD_Connection *c, unsigned int status, const char *content_type, const char *body)
{
	return queue(c, status,
				 MHD_create_response_from_buffer(strlen(body), (void *) body, MHD_RESPMEM_MUST_COPY),
				 content_type, NULL, NULL);
}

/* A JSON error response {"error": message}. */
static enum MHD_Result
respond_error(struct MHD_Connection *c, unsigned int status, const char *message)
{
	char	   *body;
	size_t		len;
	FILE	   *f = open_memstream(&body, &len);
	enum MHD_Result ret;

	if (f == NULL)
		fatal("out of memory");
	fputs("{\"error\": ", f);
	print_json_string(f, message);
	fputs("}\n", f);
	fclose(f);
	ret = respond(c, status, "application/json", body);
	free(body);
	return ret;
}

static enum MHD_Result
respond_unauthorized(Server *s, struct MHD_Connection *c)
{
	const char *body = "{\"error\": \"authentication required\"}\n";
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *) body,
															 MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!s->o->basic_auth)
		return queue(c, MHD_HTTP_UNAUTHORIZED, r, "application/json",
					 MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"deploy-progress-watch\"");
	if (r == NULL)
		return MHD_NO;
	common_headers(r, "application/json");
	ret = MHD_queue_basic_auth_fail_response(c, "deploy-progress-watch", r);
	MHD_destroy_response(r);
	return ret;
}

/* The latest snapshot, copied. */
static char *
current_snapshot(Server *s)
{
	char	   *copy;

	pthread_mutex_lock(&s->lock);
	copy = xstrdup(s->snapshot);
	pthread_mutex_unlock(&s->lock);
	return copy;
}

/*
 * /events: the content reader of a stream.  It sends what is left of the
 * current message, or waits for a snapshot newer than the one sent last.
 */
static ssize_t
stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	Stream	   *st = cls;
	Server	   *s = st->s;
	size_t		n;

	if (st->off == st->len)
	{
		struct timespec until;
		int			rc = 0;

		free(st->msg);
		st->msg = NULL;
		st->len = st->off = 0;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += KEEPALIVE_SECONDS;
		pthread_mutex_lock(&s->lock);
		while (!s->stopping && s->generation == st->generation && rc != ETIMEDOUT)
			rc = pthread_cond_timedwait(&s->changed, &s->lock, &until);
		if (s->stopping)
		{
			pthread_mutex_unlock(&s->lock);
			return MHD_CONTENT_READER_END_OF_STREAM;
		}
		if (s->generation != st->generation)
		{
			size_t		len = strlen(s->snapshot);

			/* the first message also tells the browser when to reconnect */
			st->msg = xmalloc(len + 32);
			st->len = (size_t) sprintf(st->msg, "%sdata: %s\n\n", st->generation == 0 ? "retry: 2000\n" : "", s->snapshot);
			st->generation = s->generation;
		}
		pthread_mutex_unlock(&s->lock);
		if (st->msg == NULL)
		{
			st->msg = xstrdup(": keepalive\n\n");
			st->len = strlen(st->msg);
		}
	}
	n = st->len - st->off;
	if (n > max)
		n = max;
	memcpy(buf, st->msg + st->off, n);
	st->off += n;
	return (ssize_t) n;
}

static void
stream_free(void *cls)
{
	Stream	   *st = cls;

	free(st->msg);
	free(st);
}

static enum MHD_Result
respond_stream(Server *s, struct MHD_Connection *c)
{
	Stream	   *st = xmalloc(sizeof(Stream));
	struct MHD_Response *r;

	memset(st, 0, sizeof(Stream));
	st->s = s;
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, st, stream_free);
	if (r == NULL)
	{
		stream_free(st);
		return MHD_NO;
	}
	return queue(c, MHD_HTTP_OK, r, "text/event-stream; charset=utf-8", "X-Accel-Buffering", "no");
}

/* /api/steps?table=T&key=K: steps() of one row, on the request threads' connection. */
static enum MHD_Result
respond_steps(Server *s, struct MHD_Connection *c)
{
	const char *params[2];
	PGresult   *res;
	enum MHD_Result ret;

	params[0] = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "table");
	params[1] = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "key");
	if (params[0] == NULL || params[1] == NULL || params[0][0] == '\0')
		return respond_error(c, MHD_HTTP_BAD_REQUEST, "give the row as ?table=TABLE&key=KEY");

	pthread_mutex_lock(&s->db_lock);
	res = PQexecParams(s->db, steps_sql, 2, NULL, params, NULL, NULL, 0);
	/* a connection lost since the last request: once more on a new one */
	if (PQstatus(s->db) == CONNECTION_BAD)
	{
		PQclear(res);
		PQreset(s->db);
		res = PQexecParams(s->db, steps_sql, 2, NULL, params, NULL, NULL, 0);
	}
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		ret = respond(c, MHD_HTTP_OK, "application/json", PQgetvalue(res, 0, 0));
	else if (PQresultStatus(res) == PGRES_TUPLES_OK)
		ret = respond_error(c, MHD_HTTP_NOT_FOUND, "no such row");
	else
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		char	   *msg = first_line(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ?
									 PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) :
									 PQerrorMessage(s->db));
		unsigned int status = MHD_HTTP_SERVICE_UNAVAILABLE;

		if (state && strcmp(state, "42501") == 0)
			status = MHD_HTTP_FORBIDDEN;
		else if (state && (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0))
			status = MHD_HTTP_NOT_FOUND;
		else if (state && (strncmp(state, "22", 2) == 0 || strncmp(state, "42", 2) == 0 ||
						   strcmp(state, "55000") == 0))
			status = MHD_HTTP_BAD_REQUEST;
		ret = respond_error(c, status, msg);
		free(msg);
	}
	PQclear(res);
	pthread_mutex_unlock(&s->db_lock);
	return ret;
}

/* The request handler: GET (or HEAD) of the page, the stream or the API. */
static enum MHD_Result
handle_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			   const char *version, const char *upload_data, size_t *upload_data_size,
			   void **con_cls)
{
	Server	   *s = cls;

	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return queue(c, MHD_HTTP_METHOD_NOT_ALLOWED,
					 MHD_create_response_from_buffer(0, (void *) "", MHD_RESPMEM_PERSISTENT),
					 NULL, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	if (!authorized(s, c))
		return respond_unauthorized(s, c);

	if (strcmp(url, "/") == 0)
		/* everything is inline; the page talks to this server only */
		return queue(c, MHD_HTTP_OK,
					 MHD_create_response_from_buffer(sizeof(serve_html) - 1, (void *) serve_html,
													 MHD_RESPMEM_PERSISTENT),
					 "text/html; charset=utf-8", "Content-Security-Policy",
					 "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
					 "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
					 "frame-ancestors 'none'");
	if (strcmp(url, "/events") == 0)
		return respond_stream(s, c);
	if (strcmp(url, "/api/rows") == 0)
	{
		char	   *snap = current_snapshot(s);
		enum MHD_Result ret = respond(c, MHD_HTTP_OK, "application/json", snap);

		free(snap);
		return ret;
	}
	if (strcmp(url, "/api/steps") == 0)
		return respond_steps(s, c);
	return respond_error(c, MHD_HTTP_NOT_FOUND, "not found");
}

/* Replace the snapshot and wake the streams. */
static void
publish(Server *s, char *snapshot)
{
	pthread_mutex_lock(&s->lock);
	free(s->snapshot);
	s->snapshot = snapshot;
	s->generation++;
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
}

/* Add an event at the front of the recent ones, unless it is there already. */
static void
add_event(Server *s, long long id, const char *json)
{
	int			i;

	for (i = 0; i < s->nevents; i++)
		if (s->events[i].id == id)
			return;
	if (s->nevents == RECENT_EVENTS)
		free(s->events[--s->nevents].json);
	memmove(&s->events[1], &s->events[0], sizeof(RecentEvent) * s->nevents);
	s->events[0].id = id;
	s->events[0].json = xstrdup(json);
	s->nevents++;
}

/* A number of a result as JSON: null when NULL or not finite. */
static void
print_json_number(FILE *f, PGresult *res, int row, int col)
{
	double		v = PQgetisnull(res, row, col) ? NAN : strtod(PQgetvalue(res, row, col), NULL);

	if (isfinite(v))
		fprintf(f, "%.3f", v);
	else
		fputs("null", f);
}

/*
 * The rows of the in_flight query as a JSON array, stuck rows first: each
 * the watcher's JSON object of the row's figures (with its label and
 * message) with the seconds since a stuck row's clock started and those
 * of a stalled row without progress added.
 */
static void
print_rows(FILE *f, PGresult *res)
{
	int			pass;
	int			i;
	bool		first = true;

	fputc('[', f);
	for (pass = 0; pass < 2; pass++)
		for (i = 0; i < PQntuples(res); i++)
		{
			bool		stuck = !PQgetisnull(res, i, 5);
			const char *json = PQgetvalue(res, i, 8);

			if (stuck != (pass == 0) || json[0] != '{')
				continue;
			fputs(first ? "\n" : ",\n", f);
			first = false;
			fputs("{\"stalled_for\" : ", f);
			print_json_number(f, res, i, 10);
			fputs(", \"stuck_for\" : ", f);
			print_json_number(f, res, i, 11);
			fprintf(f, ", %s", json + 1);
		}
	fputs("]", f);
}

/* Run one statement; on failure, say so and give NULL. */
static PGresult *
run(PGconn *conn, const char *sql, int nparams, const char *const *params, char **error)
{
	PGresult   *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);

	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		return res;
	if (*error == NULL)
		*error = first_line(PQresultErrorMessage(res));
	PQclear(res);
	return NULL;
}

/*
 * Build a snapshot on the main connection, in one read-only transaction:
 * {"at", "rows", "events", "error"}.  After an error the rows are empty
 * and "error" says why (the page keeps showing the rows it had).
 */
static char *
build_snapshot(Server *s)
{
	PGconn	   *conn = watch_connection(s->w);
	const char *params[2] = {s->relid, NULL};
	PGresult   *rows = NULL;
	PGresult   *now = NULL;
	PGresult   *res;
	char	   *error = NULL;
	char	   *out;
	size_t		len;
	FILE	   *f;
	int			i;

	if (PQstatus(conn) != CONNECTION_OK)
		error = xstrdup("the connection to the database is lost; reconnecting");
	else if ((res = run(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, &error)) != NULL)
	{
		PQclear(res);
		now = run(conn, "SELECT pg_catalog.to_json(pg_catalog.now())::pg_catalog.text", 0, NULL, &error);
		if (now)
			rows = run(conn, s->in_flight_sql, 2, params, &error);
		/* the events that came after the cursor, in the stream's order */
		while (rows && s->have_events && error == NULL)
		{
			const char *eparams[2] = {s->cursor, s->relid};

			res = run(conn, events_sql, 2, eparams, &error);
			if (res == NULL)
				break;
			for (i = 0; i < PQntuples(res); i++)
				add_event(s, atoll(PQgetvalue(res, i, 1)), PQgetvalue(res, i, 2));
			if (PQntuples(res) > 0)
			{
				free(s->cursor);
				s->cursor = xstrdup(PQgetvalue(res, PQntuples(res) - 1, 0));
			}
			i = PQntuples(res);
			PQclear(res);
			if (i < EVENTS_BATCH)
				break;
		}
		res = PQexec(conn, error ? "ROLLBACK" : "COMMIT");
		PQclear(res);
	}

	f = open_memstream(&out, &len);
	if (f == NULL)
		fatal("out of memory");
	fprintf(f, "{\"at\" : %s, \"rows\" : ", now ? PQgetvalue(now, 0, 0) : "null");
	if (rows && error == NULL)
		print_rows(f, rows);
	else
		fputs("[]", f);
	fputs(", \"events\" : [", f);
	for (i = 0; i < s->nevents; i++)
		fprintf(f, "%s\n%s", i ? "," : "", s->events[i].json);
	fputs("], \"error\" : ", f);
	if (error)
		print_json_string(f, error);
	else
		fputs("null", f);
	fputs("}", f);
	fclose(f);
	if (rows)
		PQclear(rows);
	if (now)
		PQclear(now);
	free(error);
	/* a snapshot is one line: it is one "data:" line of the stream */
	for (i = 0; out[i]; i++)
		if (out[i] == '\n')
			out[i] = ' ';
	return out;
}

/*
 * Read what the installed version has (events_since()) and the backlog
 * of recent transitions, with the cursor the stream goes on from.
 */
static void
start_events(Server *s)
{
	PGconn	   *conn = watch_connection(s->w);
	const char *params[1] = {s->relid};
	PGresult   *res;
	char	   *error = NULL;
	int			i;

	res = run(conn, "SELECT pg_catalog.to_regprocedure('deploy_progress.events_since(pg_catalog.text, pg_catalog.int4, pg_catalog.regclass)') IS NOT NULL",
			  0, NULL, &error);
	if (res == NULL)
		fatal("%s", error);
	s->have_events = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!s->have_events)
		return;

	PQclear(run(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, &error));
	res = run(conn, "SELECT deploy_progress.events_cursor()", 0, NULL, &error);
	if (res)
	{
		s->cursor = xstrdup(PQgetvalue(res, 0, 0));
		PQclear(res);
		res = run(conn, backlog_sql, 1, params, &error);
	}
	if (res)
	{
		/* newest first: add them oldest first */
		for (i = PQntuples(res) - 1; i >= 0; i--)
			add_event(s, atoll(PQgetvalue(res, i, 0)), PQgetvalue(res, i, 1));
		PQclear(res);
	}
	PQclear(PQexec(conn, error ? "ROLLBACK" : "COMMIT"));
	if (error)
		fatal("cannot read the recent transitions: %s", error);
}

/*
 * The request threads' connection: a clone of the watcher's, with
 * default_transaction_read_only on from its start (in "options", so that
 * PQreset() keeps it).
 */
static PGconn *
clone_connection(PGconn *conn)
{
	static const char read_only[] = "-c default_transaction_read_only=on";
	PQconninfoOption *opts = PQconninfo(conn);
	PQconninfoOption *o;
	const char **keywords;
	const char **values;
	char	   *options = NULL;
	int			n = 0;
	PGconn	   *clone;

	if (opts == NULL)
		fatal("out of memory");
	for (o = opts; o->keyword; o++)
		n++;
	keywords = xmalloc(sizeof(char *) * (n + 2));
	values = xmalloc(sizeof(char *) * (n + 2));
	n = 0;
	for (o = opts; o->keyword; o++)
	{
		if (strcmp(o->keyword, "options") == 0)
		{
			options = xmalloc((o->val ? strlen(o->val) : 0) + sizeof(read_only) + 1);
			sprintf(options, "%s%s%s", o->val ? o->val : "", o->val && o->val[0] ? " " : "", read_only);
			continue;
		}
		if (o->val && o->val[0] != '\0')
		{
			keywords[n] = o->keyword;
			values[n++] = o->val;
		}
	}
	keywords[n] = "options";
	values[n++] = options ? options : read_only;
	keywords[n] = NULL;
	values[n] = NULL;
	clone = PQconnectdbParams(keywords, values, 0);
	if (clone == NULL)
		fatal("out of memory");
	if (PQstatus(clone) != CONNECTION_OK)
		fatal("%s", first_line(PQerrorMessage(clone)));
	PQconninfoFree(opts);
	free(options);
	free(keywords);
	free(values);
	return clone;
}

/*
 * Serve until SIGINT or SIGTERM: returns the exit status (0, or 3 when the
 * server cannot start).  The watcher has connected, checked the setup and
 * LISTENed; SIGINT and SIGTERM are blocked but while wait_for_update()
 * waits, and the HTTP threads inherit that mask.
 */
int
serve_run(Watch *w, ServeOptions *o, const char *relid, const char *in_flight_sql)
{
	Server		s;
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *info;
	unsigned int flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
		MHD_USE_ITC;
	int			i;

	memset(&s, 0, sizeof(s));
	s.w = w;
	s.o = o;
	s.relid = relid;
	s.in_flight_sql = in_flight_sql;
	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.changed, NULL);
	pthread_mutex_init(&s.db_lock, NULL);
	signal(SIGPIPE, SIG_IGN);

	PQclear(PQexec(watch_connection(w), "SET default_transaction_read_only = on"));
	s.db = clone_connection(watch_connection(w));
	start_events(&s);
	s.snapshot = build_snapshot(&s);
	s.generation = 1;

	if (bind_addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	d = MHD_start_daemon(flags, 0, NULL, NULL, handle_request, &s,
						 MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &bind_addr,
						 MHD_OPTION_CONNECTION_LIMIT, (unsigned int) MAX_CONNECTIONS,
						 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) IDLE_TIMEOUT,
						 MHD_OPTION_END);
	if (d == NULL)
		fatal("cannot serve on %s:%u: %s", bind_host,
			  ntohs(bind_addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &bind_addr)->sin6_port :
					((struct sockaddr_in *) &bind_addr)->sin_port),
			  errno ? strerror(errno) : "libmicrohttpd could not start");
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	printf("deploy-progress-watch: serving http://%s:%u/\n", bind_host, info ? info->port : 0);
	fflush(stdout);

	for (;;)
	{
		const char *trigger = wait_for_update(w);

		if (trigger == NULL)
			break;
		if (PQstatus(watch_connection(w)) == CONNECTION_BAD && reconnect(w))
			PQclear(PQexec(watch_connection(w), "SET default_transaction_read_only = on"));
		publish(&s, build_snapshot(&s));
	}

	/* end the streams, then the daemon, which waits for its threads */
	pthread_mutex_lock(&s.lock);
	s.stopping = true;
	pthread_cond_broadcast(&s.changed);
	pthread_mutex_unlock(&s.lock);
	MHD_stop_daemon(d);

	PQfinish(s.db);
	PQfinish(watch_connection(w));
	free(s.snapshot);
	free(s.cursor);
	for (i = 0; i < s.nevents; i++)
		free(s.events[i].json);
	return 0;
}

#else							/* !HAVE_MICROHTTPD */

/* Built without libmicrohttpd: --serve says so. */
void
serve_check_options(ServeOptions *o)
{
	fatal("this deploy-progress-watch was built without --serve\n"
		  "HINT:  Install libmicrohttpd (Debian: libmicrohttpd-dev) and build it again.");
}

int
serve_run(Watch *w, ServeOptions *o, const char *relid, const char *in_flight_sql)
{
	return EXIT_ERROR;
}

#endif							/* HAVE_MICROHTTPD */
