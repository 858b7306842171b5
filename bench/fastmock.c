/*
 * fastmock.c -- a loopback OpenAI-compatible server for benchmarks only.
 *
 *     fastmock DELAY_MS [REPLY [IDLE_EXIT_S]]
 *
 * Binds 127.0.0.1 on an ephemeral port, prints the port and a newline, and
 * answers every POST with a complete chat.completion whose content is
 * REPLY ("ok"), DELAY_MS after the request's body has arrived.  Exits on
 * SIGTERM, or after IDLE_EXIT_S (600) seconds without a request.
 *
 * Why not tests/support/mockserver.c: that server rebuilds a pollfd array
 * over every connection on each loop turn and visits every connection
 * after each poll(), so with 1000 connections waiting on timers it spends
 * ~140 us of CPU per request and adds ~60 ms to a round of 1000 requests
 * at 50 ms -- on a 2-core machine, CPU taken from the client under test.
 * Here readiness comes from epoll and, since every reply has the same
 * delay, pending replies form a FIFO queue: each loop turn costs only the
 * connections that are ready or due.
 *
 * Keep-alive, TCP_NODELAY, Content-Length request bodies, "Expect:
 * 100-continue", "Connection: close"; no chunked request bodies, no
 * streaming.  Requests are capped at 1 MB and 8192 connections.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 8192
#define MAX_REQUEST (1 << 20)

typedef struct conn {
    int fd;
    char *in;             /* request bytes, owned */
    size_t n_in, cap_in;
    int pending;          /* a reply is queued */
    int close_after;
    long long due_ms;
    struct conn *next;    /* in the reply queue */
} conn;

static conn *queue_head, *queue_tail;
static char reply[1024];
static int reply_len;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void conn_free(int ep, conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in);
    free(c);
}

/* Finds the value of header NAME in [buf, end); NULL if absent. */
static const char *header(const char *buf, const char *end, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = buf; p + len < end; p++)
        if ((p == buf || p[-1] == '\n') && strncasecmp(p, name, len) == 0 && p[len] == ':')
            return p + len + 1;
    return NULL;
}

/*
 * Consumes one complete request from c->in if there is one: 1 when a reply
 * was queued, 0 when more bytes are needed, -1 on a malformed request.
 */
static int take_request(conn *c, int delay_ms)
{
    char *end = memmem(c->in, c->n_in, "\r\n\r\n", 4);
    if (!end)
        return c->n_in > 65536 ? -1 : 0;
    size_t head = (size_t)(end - c->in) + 4;
    const char *cl = header(c->in, end, "content-length");
    size_t body = cl ? strtoul(cl, NULL, 10) : 0;
    if (body > MAX_REQUEST)
        return -1;
    const char *ex = header(c->in, end, "expect");
    if (ex && c->n_in == head && strstr(ex, "100") && strstr(ex, "100") < end) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (write(c->fd, cont, sizeof cont - 1) < 0)
            return -1;
    }
    if (c->n_in < head + body)
        return 0;
    const char *conn_hdr = header(c->in, end, "connection");
    c->close_after = conn_hdr && strncasecmp(conn_hdr + strspn(conn_hdr, " "), "close", 5) == 0;
    memmove(c->in, c->in + head + body, c->n_in - head - body);
    c->n_in -= head + body;
    c->pending = 1;
    c->due_ms = now_ms() + delay_ms;
    c->next = NULL;
    if (queue_tail)
        queue_tail->next = c;
    else
        queue_head = c;
    queue_tail = c;
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: fastmock DELAY_MS [REPLY [IDLE_EXIT_S]]\n");
        return 2;
    }
    int delay_ms = atoi(argv[1]);
    const char *text = argc > 2 ? argv[2] : "ok";
    long long idle_ms = (argc > 3 ? atoll(argv[3]) : 600) * 1000;
    char body[768];
    int body_len = snprintf(body, sizeof body,
        "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion\",\"created\":0,"
        "\"model\":\"bench\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
        "\"content\":\"%s\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
        "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}", text);
    if (body_len < 0 || (size_t)body_len >= sizeof body || strpbrk(text, "\"\\")) {
        fprintf(stderr, "fastmock: REPLY must be short and need no JSON escapes\n");
        return 2;
    }
    reply_len = snprintf(reply, sizeof reply,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
        body_len, body);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < MAX_CONNS + 64) {
        rl.rlim_cur = rl.rlim_max < MAX_CONNS + 64 ? rl.rlim_max : MAX_CONNS + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int one = 1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4096) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0) {
        perror("fastmock: listen");
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    printf("%d\n", ntohs(sa.sin_port));
    fflush(stdout);

    int n_conns = 0;
    long long last_request = now_ms();
    for (;;) {
        long long now = now_ms();
        int timeout;
        if (queue_head)
            timeout = queue_head->due_ms > now ? (int)(queue_head->due_ms - now) : 0;
        else if (now - last_request >= idle_ms)
            return 0;
        else
            timeout = (int)(idle_ms - (now - last_request));
        struct epoll_event evs[256];
        int k = epoll_wait(ep, evs, 256, timeout);
        if (k < 0 && errno != EINTR) {
            perror("fastmock: epoll_wait");
            return 1;
        }
        for (int e = 0; e < k; e++) {
            conn *c = evs[e].data.ptr;
            if (!c) {
                int fd;
                while (n_conns < MAX_CONNS &&
                       (fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn *nc = calloc(1, sizeof *nc);
                    if (!nc) {
                        close(fd);
                        break;
                    }
                    nc->fd = fd;
                    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = nc };
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                    n_conns++;
                }
                continue;
            }
            for (;;) {
                if (c->cap_in - c->n_in < 4096) {
                    size_t cap = c->cap_in ? c->cap_in * 2 : 8192;
                    char *p = cap > 2 * MAX_REQUEST ? NULL : realloc(c->in, cap);
                    if (!p)
                        break;
                    c->in = p;
                    c->cap_in = cap;
                }
                ssize_t r = read(c->fd, c->in + c->n_in, c->cap_in - c->n_in);
                if (r > 0) {
                    c->n_in += (size_t)r;
                    continue;
                }
                if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                    /* a queued reply is dropped by marking the fd dead */
                    if (c->pending) {
                        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                        c->close_after = 2;
                    } else {
                        conn_free(ep, c);
                        n_conns--;
                    }
                    c = NULL;
                }
                break;
            }
            if (c && !c->pending && c->close_after != 2) {
                int t = take_request(c, delay_ms);
                if (t < 0) {
                    conn_free(ep, c);
                    n_conns--;
                } else if (t > 0) {
                    last_request = now_ms();
                }
            }
        }
        now = now_ms();
        while (queue_head && queue_head->due_ms <= now) {
            conn *c = queue_head;
            queue_head = c->next;
            if (!queue_head)
                queue_tail = NULL;
            c->pending = 0;
            /* replies are small: one write fits the socket buffer */
            if (c->close_after == 2 || write(c->fd, reply, (size_t)reply_len) != reply_len ||
                c->close_after) {
                conn_free(ep, c);
                n_conns--;
                continue;
            }
            /* a pipelined request may already be buffered */
            if (take_request(c, delay_ms) < 0) {
                conn_free(ep, c);
                n_conns--;
            }
        }
    }
}
