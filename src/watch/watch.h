/*-------------------------------------------------------------------------
 *
 * watch.h
 *	  What the parts of deploy-progress-watch share: the helpers of
 *	  deploy-progress-watch.c (errors, memory, JSON strings, the wait for
 *	  a NOTIFY and the reconnection) and the entry points of the relay
 *	  (relay.c) and of the web page (serve.c).
 *
 * IDENTIFICATION
 *	  src/watch/watch.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DEPLOY_PROGRESS_WATCH_H
#define DEPLOY_PROGRESS_WATCH_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

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

/* The watcher's state (deploy-progress-watch.c). */
typedef struct Watch Watch;

/* the signal (SIGINT, SIGTERM) that ended the program, 0 while none did */
extern volatile sig_atomic_t interrupted;

#ifdef __GNUC__
extern void fatal(const char *fmt,...) __attribute__((format(printf, 1, 2), noreturn));
extern void print_message(Watch *w, const char *fmt,...) __attribute__((format(printf, 2, 3)));
#else
extern void fatal(const char *fmt,...);
extern void print_message(Watch *w, const char *fmt,...);
#endif
extern void *xmalloc(size_t size);
extern char *xstrdup(const char *s);
extern char *first_line(const char *msg);
extern void print_json_string(FILE *out, const char *s);
extern PGconn *watch_connection(Watch *w);
extern void listen_channels(Watch *w);
extern const char *wait_for_update(Watch *w);
extern bool reconnect(Watch *w);

/* --webhook / --exec (relay.c) */
typedef struct RelayOptions
{
	const char *webhook;		/* URL, or NULL */
	const char *exec;			/* shell command, or NULL */
	const char *state;			/* state file */
	bool		from_start;		/* no state file: from the oldest event */
	bool		once;			/* --once: deliver what there is, then exit */
	double		retry_delay;	/* first delay after a failed delivery, seconds */
	double		retry_max_delay;	/* the delays double up to this */
	double		timeout;		/* of one webhook request, seconds */
	const char **headers;		/* extra HTTP headers, "Name: value" */
	int			nheaders;
} RelayOptions;

extern bool relay_requested(const RelayOptions *o);
extern void relay_check_options(RelayOptions *o);
extern int	relay_run(Watch *w, RelayOptions *o, const char *relid);

/* --serve: the live web page (serve.c) */
typedef struct ServeOptions
{
	const char *listen;			/* --serve's [ADDR:]PORT */
	const char *token;			/* --token, or NULL */
	const char *basic_auth;		/* --basic-auth's USER:PASSWORD, or NULL */
} ServeOptions;

extern void serve_check_options(ServeOptions *o);
extern int	serve_run(Watch *w, ServeOptions *o, const char *relid, const char *in_flight_sql);

#endif							/* DEPLOY_PROGRESS_WATCH_H */
