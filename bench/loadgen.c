/*
 * loadgen.c -- checks that the loopback mock server is not the bottleneck
 * of the benchmarks.
 *
 *     loadgen PORT CONNECTIONS REQUESTS_PER_CONNECTION
 *
 * Opens CONNECTIONS keep-alive connections first (so connect cost is not
 * counted), then sends one chat-completion request on every connection at
 * once and waits for each reply before sending the next one on that
 * connection.  Prints one line:
 *
 *     conns=N requests=M wall_ms=W req_per_s=R
 *
 * Single-threaded, epoll-based so that the client's own cost stays O(1) per
 * reply at 1000 connections and the time measured is the server's; the reply is read until its Content-Length
 * is complete.  Only for benchmarks: no TLS, no chunked replies.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 4096
#define REPLY_CAP 65536

typedef struct {
    int fd;
    int left;          /* requests still to send on this connection */
    size_t got;        /* bytes of the current reply */
    char buf[REPLY_CAP];
} client;

static const char body[] =
    "{\"model\":\"bench\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}";
static char request[512];
static int request_len;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Whether buf holds a whole response: headers plus Content-Length bytes. */
static int reply_complete(const char *buf, size_t n)
{
    const char *end = memmem(buf, n, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end - buf) + 4;
    const char *cl = NULL;
    for (const char *p = buf; p < end; p++) {
        if ((p == buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
            cl = p + 15;
            break;
        }
    }
    if (!cl)
        return 0;
    return n >= head + strtoul(cl, NULL, 10);
}

static void send_request(client *c)
{
    ssize_t w = write(c->fd, request, (size_t)request_len);
    if (w != request_len) {
        perror("loadgen: write");
        exit(1);
    }
    c->left--;
    c->got = 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: loadgen PORT CONNECTIONS REQUESTS_PER_CONNECTION\n");
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[2]), per = atoi(argv[3]);
    if (n < 1 || n > MAX_CONNS || per < 1) {
        fprintf(stderr, "loadgen: 1..%d connections, at least 1 request each\n", MAX_CONNS);
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 16) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    request_len = snprintf(request, sizeof request,
                           "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                           sizeof body - 1, body);
    client *cs = calloc((size_t)n, sizeof *cs);
    int ep = epoll_create1(0);
    if (!cs || ep < 0) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 1;
    }
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < n; i++) {
        cs[i].fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(cs[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (cs[i].fd < 0 || connect(cs[i].fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            perror("loadgen: connect");
            return 1;
        }
        cs[i].left = per;
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    }
    double t0 = now_ms();
    for (int i = 0; i < n; i++)
        send_request(&cs[i]);
    long done = 0, total = (long)n * per;
    while (done < total) {
        struct epoll_event evs[256];
        int k = epoll_wait(ep, evs, 256, 10000);
        if (k <= 0) {
            fprintf(stderr, "loadgen: timed out with %ld of %ld replies\n", done, total);
            return 1;
        }
        for (int e = 0; e < k; e++) {
            int i = (int)evs[e].data.u32;
            client *c = &cs[i];
            ssize_t r = read(c->fd, c->buf + c->got, REPLY_CAP - c->got);
            if (r <= 0) {
                fprintf(stderr, "loadgen: connection %d closed early\n", i);
                return 1;
            }
            c->got += (size_t)r;
            if (reply_complete(c->buf, c->got)) {
                done++;
                if (c->left > 0)
                    send_request(c);
                else
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            }
        }
    }
    double wall = now_ms() - t0;
    printf("conns=%d requests=%ld wall_ms=%.1f req_per_s=%.0f\n", n, total, wall,
           total / (wall / 1e3));
    for (int i = 0; i < n; i++)
        close(cs[i].fd);
    close(ep);
    free(cs);
    return 0;
}
