/*
 * utf8: where a byte string stops being valid UTF-8.
 *
 * Valid means RFC 3629: no overlong forms, no encoded surrogates (U+D800
 * to U+DFFF), nothing past U+10FFFF, no sequence cut short. Text that
 * reaches PostgreSQL (cluster, meter, tenant and tariff names, reasons)
 * must be valid UTF-8 or the server refuses the row, so every input
 * surface checks with this one function: the line protocol parser
 * (daemon/lineproto.c) and the config reader (tariff/config.c).
 *
 * ASCII, almost all of what tariffd reads, costs next to nothing: it is
 * checked 32 bytes at a time.
 */
#ifndef TARIFF_UTF8_H
#define TARIFF_UTF8_H

#include <stddef.h>

/* The first byte of buf[0..len) that does not begin a valid UTF-8
 * sequence (for a sequence cut short, its lead byte), or buf + len when
 * all of it is valid. */
const char *utf8_invalid(const char *buf, size_t len);

#endif
