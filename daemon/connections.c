#include "daemon/connections.h"

#include "daemon/log.h"
#include "tariff/alloc.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include <openssl/ssl.h>

#include <stdbool.h>
#include <stdlib.h>

#define LISTENERS_MAX 64
#define DOORS_MAX     3

/* One evhttp the limits apply to: plain, TLS (its context is read at each
 * accept, so a reload's new one serves the next connection) or admin. */
struct door {
    struct conns *c;
    struct evhttp *http;
    SSL_CTX *const *tls; /* NULL: plain */
    bool counted;        /* false: the operator's listener, outside the limit */
};

struct conns {
    struct event_base *base;
    struct door doors[DOORS_MAX];
    size_t n_doors;
    int64_t idle_timeout_s;
    size_t max, open;
    bool paused;
    struct evconnlistener *listeners[LISTENERS_MAX];
    size_t n_listeners;
    /* Accepted, not yet given a close callback (see on_adopt). */
    struct bufferevent **fresh;
    size_t n_fresh, cap_fresh;
    struct event *adopt;
};

static void set_paused(struct conns *c, bool paused)
{
    if (c->paused == paused)
        return;
    c->paused = paused;
    for (size_t i = 0; i < c->n_listeners; i++)
        if (paused)
            evconnlistener_disable(c->listeners[i]);
        else
            evconnlistener_enable(c->listeners[i]);
    if (paused)
        log_msg(LOG_WARNING,
                "%zu connections open (max_connections); not accepting more until "
                "one closes",
                c->open);
    else
        log_msg(LOG_NOTICE, "accepting connections again (%zu open)", c->open);
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct conns *c = arg;
    c->open--;
    if (c->open < c->max)
        set_paused(c, false);
}

/* evhttp creates the evhttp_connection right after the bufferevent and
 * makes it the bufferevent's callback argument, before the loop runs
 * again: only then can the close callback be set. */
static void on_adopt(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conns *c = arg;
    for (size_t i = 0; i < c->n_fresh; i++) {
        void *evcon = NULL;
        bufferevent_getcb(c->fresh[i], NULL, NULL, NULL, &evcon);
        if (evcon)
            evhttp_connection_set_closecb(evcon, on_close, c);
        else
            c->open--; /* evhttp could not make the connection */
    }
    c->n_fresh = 0;
}

static struct bufferevent *on_accept(struct event_base *base, void *arg)
{
    struct door *d = arg;
    struct conns *c = d->c;
    struct bufferevent *bev;
    if (d->tls) {
        /* evhttp gives the bufferevent its socket later, as for a plain one.
         * Returning NULL would make evhttp serve the connection in plain
         * HTTP: out of memory here is fatal, as it is in xmalloc. */
        SSL *ssl = SSL_new(*d->tls);
        bev = ssl ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                   BEV_OPT_CLOSE_ON_FREE)
                  : NULL;
        if (!bev) {
            log_msg(LOG_ERR, "out of memory for a TLS connection");
            abort();
        }
    } else {
        bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!bev || !d->counted)
        return bev;
    if (c->n_fresh == c->cap_fresh) {
        c->cap_fresh = c->cap_fresh ? c->cap_fresh * 2 : 16;
        c->fresh = xrealloc(c->fresh, c->cap_fresh * sizeof *c->fresh);
    }
    c->fresh[c->n_fresh++] = bev;
    event_active(c->adopt, 0, 0);
    if (++c->open >= c->max)
        set_paused(c, true);
    return bev;
}

struct conns *conns_new(struct event_base *base, int64_t max_connections, int64_t idle_timeout_s)
{
    struct conns *c = xcalloc(1, sizeof *c);
    c->base = base;
    /* First in the loop's queue, before any I/O of the new connection. */
    c->adopt = event_new(base, -1, 0, on_adopt, c);
    conns_set_limits(c, max_connections, idle_timeout_s);
    return c;
}

void conns_attach(struct conns *c, struct evhttp *http, SSL_CTX *const *tls, bool counted)
{
    if (c->n_doors == DOORS_MAX)
        abort(); /* the daemon has three kinds of listener */
    struct door *d = &c->doors[c->n_doors++];
    *d = (struct door){c, http, tls, counted};
    evhttp_set_bevcb(http, on_accept, d);
    evhttp_set_max_headers_size(http, HEADERS_MAX_BYTES);
    evhttp_set_timeout(http, (int)c->idle_timeout_s);
}

void conns_add_listener(struct conns *c, struct evhttp_bound_socket *bound)
{
    if (c->n_listeners < LISTENERS_MAX)
        c->listeners[c->n_listeners++] = evhttp_bound_socket_get_listener(bound);
}

void conns_set_limits(struct conns *c, int64_t max_connections, int64_t idle_timeout_s)
{
    c->max = (size_t)max_connections;
    c->idle_timeout_s = idle_timeout_s;
    for (size_t i = 0; i < c->n_doors; i++)
        evhttp_set_timeout(c->doors[i].http, (int)idle_timeout_s);
    set_paused(c, c->open >= c->max);
}

size_t conns_open(const struct conns *c)
{
    return c->open;
}

void conns_free(struct conns *c)
{
    if (!c)
        return;
    event_free(c->adopt);
    free(c->fresh);
    free(c);
}
