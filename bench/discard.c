/*
 * discard: an HTTP/1.1 server that reads each request, headers and body,
 * and answers 204 with keep-alive; the upper bound for bench/run_peers
 * (what the sender and the loopback can do when the server does nothing).
 *
 *   discard PORT
 *
 * One thread per connection on 127.0.0.1:PORT. Bodies must carry a
 * Content-Length (a request without one is taken as bodiless); chunked
 * bodies are not supported. GET /ping answers 204 too.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <strings.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF (1 << 20)

static const char answer[] = "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n";

/* The value of Content-Length in the headers [h, h + n), or 0. */
static size_t content_length(const char *h, size_t n)
{
    const char *end = h + n;
    for (const char *p = h; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        if ((size_t)(eol - p) > 15 && strncasecmp(p, "Content-Length:", 15) == 0)
            return (size_t)strtoull(p + 15, NULL, 10);
        p = eol + 1;
    }
    return 0;
}

static void *serve(void *arg)
{
    int fd = (int)(long)arg;
    char *buf = malloc(BUF);
    size_t have = 0;
    for (;;) {
        char *hdr_end;
        while (!(hdr_end = memmem(buf, have, "\r\n\r\n", 4))) {
            if (have == BUF)
                goto out; /* headers larger than the buffer */
            ssize_t n = read(fd, buf + have, BUF - have);
            if (n <= 0)
                goto out;
            have += (size_t)n;
        }
        size_t head = (size_t)(hdr_end - buf) + 4;
        size_t body = content_length(buf, head);
        /* Drop what of the body is buffered, then read and drop the rest. */
        size_t in_buf = have - head < body ? have - head : body;
        size_t left = body - in_buf;
        memmove(buf, buf + head + in_buf, have - head - in_buf);
        have -= head + in_buf;
        while (left > 0) {
            ssize_t n = read(fd, buf, left < BUF ? left : BUF);
            if (n <= 0)
                goto out;
            left -= (size_t)n;
        }
        if (write(fd, answer, sizeof answer - 1) != (ssize_t)(sizeof answer - 1))
            goto out;
    }
out:
    close(fd);
    free(buf);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: discard PORT\n");
        return 2;
    }
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 64) != 0) {
        perror("discard: bind/listen");
        return 1;
    }
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0)
            continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t t;
        if (pthread_create(&t, NULL, serve, (void *)(long)fd) != 0) {
            close(fd);
            continue;
        }
        pthread_detach(t);
    }
}
