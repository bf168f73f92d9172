/*
 * textbuf: a growing text for the corrections' reports (daemon/correction.c,
 * daemon/history.c), and the signed amounts they print.
 */
#ifndef DAEMON_TEXTBUF_H
#define DAEMON_TEXTBUF_H

#include <stddef.h>
#include <stdint.h>

struct textbuf {
    char *p; /* NUL-terminated once anything is appended; the caller frees it */
    size_t len, cap;
};

void textbuf_printf(struct textbuf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A change at scale 4 or 6 with its sign: "+1.2500", "-0.0100", "0.0000". */
const char *textbuf_signed(int64_t v, int scale, char *buf, size_t size);

#endif
