/*
 * token: `tariffd token` (docs/design.md section 7), a new bearer token for
 * a tenant and the token_sha256 line its [tenant] section takes.
 *
 * A token is 32 bytes from the kernel's random source (getrandom(2), which
 * waits until the pool is seeded) written as base64url without padding: 43
 * characters that need no escaping in an Authorization header, a Basic
 * password or a v1 `p=` parameter. tariffd keeps only the SHA-256 of the
 * token's text, the digest daemon/http.c compares; the token itself is
 * printed once and stored nowhere.
 */
#ifndef DAEMON_TOKEN_H
#define DAEMON_TOKEN_H

#include "tariff/errors.h"

#include <stdbool.h>
#include <stddef.h>

#define TOKEN_RANDOM_BYTES 32
#define TOKEN_TEXT_LEN     43 /* base64url of 32 bytes, unpadded */

/* A fresh token in text (NUL-terminated); false, err set, when the kernel's
 * random source cannot be read. */
bool token_new(char text[TOKEN_TEXT_LEN + 1], struct error *err);

/* The SHA-256 of text[0..len) as 64 lower-case hex digits and a NUL. */
bool token_sha256_hex(const char *text, size_t len, char hex[65], struct error *err);

/* `tariffd token`: prints the token and then "token_sha256 = HEX" on
 * stdout, and what to do with each on stderr. Returns the exit status. */
int token_command(void);

#endif
