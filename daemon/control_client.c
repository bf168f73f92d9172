#include "daemon/control_client.h"

#include "tariff/alloc.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_ANSWER_BYTES (64u << 20)

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Waits until fd is ready for events or the deadline passes. */
static bool wait_fd(int fd, short events, int64_t deadline_ms)
{
    for (;;) {
        int64_t left = deadline_ms - now_ms();
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (n > 0)
            return true;
        if (n < 0 && errno != EINTR)
            return false;
    }
}

/* Parses an HTTP/1.x answer: the status, and the body after the headers
 * (Content-Length bytes of it when given). */
static bool parse_answer(const char *buf, size_t len, int *status, char **body)
{
    int code;
    if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || sscanf(buf + 9, "%3d", &code) != 1)
        return false;
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return false;
    const char *start = end + 4;
    size_t n = len - (size_t)(start - buf);
    for (const char *h = strstr(buf, "\r\n") + 2; h < end; h = strstr(h, "\r\n") + 2)
        if (strncasecmp(h, "Content-Length:", 15) == 0) {
            unsigned long long cl = strtoull(h + 15, NULL, 10);
            if (cl > n)
                return false; /* cut short */
            n = (size_t)cl;
        }
    *status = code;
    *body = xmalloc(n + 1);
    memcpy(*body, start, n);
    (*body)[n] = '\0';
    return true;
}

enum control_call_result control_call(const char *path, const char *method, const char *target,
                                      int timeout_s, int *status, char **body, struct error *err)
{
    return control_send(path, method, target, NULL, 0, timeout_s, status, body, err);
}

enum control_call_result control_send(const char *path, const char *method, const char *target,
                                      const char *content, size_t content_len, int timeout_s,
                                      int *status, char **body, struct error *err)
{
    int64_t deadline = now_ms() + (int64_t)timeout_s * 1000;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) {
        error_set(err, "cannot connect to %.150s: the path is too long for a socket address", path);
        return CONTROL_CANNOT_CONNECT;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        error_set(err, "cannot connect to %.150s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return CONTROL_CANNOT_CONNECT;
    }
    char *head = NULL;
    int n = asprintf(&head,
                     "%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     method, target, content_len);
    if (n < 0)
        abort();
    const char *parts[2] = {head, content};
    size_t lens[2] = {(size_t)n, content_len};
    for (int k = 0; k < 2; k++) {
        size_t sent = 0;
        while (sent < lens[k]) {
            if (!wait_fd(fd, POLLOUT, deadline)) {
                error_set(err, "sending to %.150s timed out after %d s", path, timeout_s);
                free(head);
                close(fd);
                return CONTROL_FAILED;
            }
            ssize_t w = send(fd, parts[k] + sent, lens[k] - sent, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                error_set(err, "sending to %.150s failed: %s", path, strerror(errno));
                free(head);
                close(fd);
                return CONTROL_FAILED;
            }
            sent += (size_t)w;
        }
    }
    free(head);
    size_t len = 0, cap = 4096;
    char *buf = xmalloc(cap);
    enum control_call_result result = CONTROL_FAILED;
    for (;;) {
        if (!wait_fd(fd, POLLIN, deadline)) {
            error_set(err, "no answer from %.150s within %d s", path, timeout_s);
            break;
        }
        if (len + 1 >= cap) {
            if (cap >= MAX_ANSWER_BYTES) {
                error_set(err, "the answer from %.150s is larger than %u MiB", path,
                          MAX_ANSWER_BYTES >> 20);
                break;
            }
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            error_set(err, "reading from %.150s failed: %s", path, strerror(errno));
            break;
        }
        if (r == 0) {
            buf[len] = '\0';
            if (parse_answer(buf, len, status, body))
                result = CONTROL_ANSWERED;
            else if (len == 0)
                error_set(err, "the daemon closed the connection without an answer");
            else
                error_set(err, "the answer from %.150s is not HTTP or is cut short", path);
            break;
        }
        len += (size_t)r;
    }
    free(buf);
    close(fd);
    return result;
}

char *control_query_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = xmalloc(3 * strlen(s) + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}
