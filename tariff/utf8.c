#include "utf8.h"

#include <stdint.h>
#include <string.h>

#define HIGH_BITS UINT64_C(0x8080808080808080)

/* The offset in a word, read from memory, of its first byte with the high
 * bit set; w is the word masked with HIGH_BITS, not 0. */
static inline unsigned first_high_byte(uint64_t w)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (unsigned)__builtin_ctzll(w) / 8;
#else
    return (unsigned)__builtin_clzll(w) / 8;
#endif
}

/* The length of the valid UTF-8 sequence at s[0..avail) that starts with
 * a byte >= 0x80, or 0 when it is invalid: RFC 3629, so no overlong forms,
 * no surrogates U+D800 to U+DFFF and nothing past U+10FFFF. Lead bytes C0,
 * C1 (overlong) and F5-FF, and continuation bytes, cannot lead; after E0,
 * F0 (overlong), ED (surrogates) and F4 (past U+10FFFF) the first
 * continuation byte has a narrower range. The common cases (two and three
 * bytes, as in Latin and Chinese text) come first and take few branches. */
static inline size_t utf8_sequence(const unsigned char *s, size_t avail)
{
    unsigned b0 = s[0];
    if (b0 - 0xC2u <= 0xDFu - 0xC2u)
        return avail >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if ((b0 & 0xF0) == 0xE0) {
        if (avail < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if ((b0 == 0xE0 && s[1] < 0xA0) || (b0 == 0xED && s[1] > 0x9F))
            return 0;
        return 3;
    }
    if (b0 - 0xF0u <= 0xF4u - 0xF0u) {
        if (avail < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if ((b0 == 0xF0 && s[1] < 0x90) || (b0 == 0xF4 && s[1] > 0x8F))
            return 0;
        return 4;
    }
    return 0;
}

/* The first byte of buf[0..len) that does not begin a valid UTF-8
 * sequence, or buf + len when there is none. For a sequence cut short, the
 * byte is its lead byte. */
const char *utf8_invalid(const char *buf, size_t len)
{
    const unsigned char *s = (const unsigned char *)buf, *end = s + len;
    for (;;) {
        /* Bodies are almost all ASCII, which 32 bytes at a time costs
         * next to nothing; then 8 at a time to find the first byte with
         * its high bit set. */
        while (end - s >= 32) {
            uint64_t a, b, c, d;
            memcpy(&a, s, 8);
            memcpy(&b, s + 8, 8);
            memcpy(&c, s + 16, 8);
            memcpy(&d, s + 24, 8);
            if ((a | b | c | d) & HIGH_BITS)
                break;
            s += 32;
        }
        for (;;) {
            if (end - s < 8) {
                while (s < end && *s < 0x80)
                    s++;
                break;
            }
            uint64_t a;
            memcpy(&a, s, 8);
            if (a & HIGH_BITS) {
                s += first_high_byte(a & HIGH_BITS);
                break;
            }
            s += 8;
        }
        if (s == end)
            return (const char *)s;
        /* Non-ASCII text comes in runs (a word in Chinese, an emoji). */
        do {
            size_t n = utf8_sequence(s, (size_t)(end - s));
            if (n == 0)
                return (const char *)s;
            s += n;
        } while (s < end && *s >= 0x80);
    }
}
