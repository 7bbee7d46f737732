/* epoll_echo: the floor for the echo benchmarks. A plain C, single-threaded, edge-triggered
 * epoll echo server making the same system calls as the reactor's echo path, with no
 * abstraction: accept4 until EAGAIN; on a readable edge read until EAGAIN or a short read
 * (a short read proves the socket drained, and any later byte raises a new edge, so the
 * read that would only say EAGAIN is skipped, as the reactor does); write each chunk back at
 * once. A partial write keeps the rest in a per-connection buffer, asks for EPOLLOUT and stops
 * reading until it has drained (backpressure, like the reactor's bounded output).
 *
 *   cc -O2 -o epoll_echo epoll_echo.c && ./epoll_echo [PORT]   (default 0: OS's choice)
 * prints "listening echo tcp 127.0.0.1:PORT" and serves until killed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536
struct conn { int fd; size_t off, len; char pending[BUF]; }; /* unsent output */

static char scratch[BUF];

static void closeconn(int ep, struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Writes pending output; returns 1 when empty, 0 when the kernel would block, -1 on error. */
static int flush(struct conn *c) {
    while (c->off < c->len) {
        ssize_t n = write(c->fd, c->pending + c->off, c->len - c->off);
        if (n > 0) c->off += (size_t)n;
        else if (n < 0 && errno == EINTR) continue;
        else return (n < 0 && errno == EAGAIN) ? 0 : -1;
    }
    c->off = c->len = 0;
    return 1;
}

/* Serves one connection's events; returns -1 when it must be closed. */
static int serve(int ep, struct conn *c, uint32_t ev) {
    struct epoll_event e = { .data.ptr = c };
    if (c->len) { /* blocked on output: only EPOLLOUT moves us on */
        int r = flush(c);
        if (r <= 0) return r;
        e.events = EPOLLIN | EPOLLRDHUP | EPOLLET; /* drained: drop EPOLLOUT, read again */
        if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) < 0) return -1;
    } else if (!(ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        return 0;
    }
    for (;;) {
        ssize_t n = read(c->fd, scratch, sizeof scratch);
        if (n == 0) return -1; /* EOF: nothing pending, close */
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN ? 0 : -1;
        }
        ssize_t w = write(c->fd, scratch, (size_t)n);
        if (w < 0 && errno != EAGAIN && errno != EINTR) return -1;
        if (w < 0) w = 0;
        if (w < n) { /* partial write: keep the rest, wait for EPOLLOUT, stop reading */
            memcpy(c->pending, scratch + w, (size_t)(n - w));
            c->off = 0;
            c->len = (size_t)(n - w);
            e.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
            return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) < 0 ? -1 : 0;
        }
        if ((size_t)n < sizeof scratch && !(ev & (EPOLLRDHUP | EPOLLHUP))) return 0; /* short read */
    }
}

int main(int argc, char **argv) {
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    a.sin_port = htons((uint16_t)(argc > 1 ? atoi(argv[1]) : 0));
    socklen_t alen = sizeof a;
    int one = 1, lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), ep = epoll_create1(0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || ep < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1024) < 0
        || getsockname(lfd, (struct sockaddr *)&a, &alen) < 0) {
        perror("epoll_echo");
        return 1;
    }
    struct epoll_event e = { .events = EPOLLIN | EPOLLET, .data.ptr = NULL }, evs[1024];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e);
    printf("listening echo tcp 127.0.0.1:%u\n", ntohs(a.sin_port));
    fflush(stdout);
    for (;;) {
        int n = epoll_wait(ep, evs, 1024, -1);
        if (n < 0 && errno != EINTR) { perror("epoll_wait"); return 1; }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c) {
                if (serve(ep, c, evs[i].events) < 0) closeconn(ep, c);
                continue;
            }
            for (;;) { /* the listener: accept until EAGAIN (EMFILE etc.: retry next edge) */
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                if (fd < 0) break;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                c = calloc(1, sizeof *c);
                if (!c) { close(fd); continue; }
                c->fd = fd;
                e.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
                e.data.ptr = c;
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) { close(fd); free(c); }
            }
        }
    }
}
