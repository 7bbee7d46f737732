/* epoll_udp_echo: the floor for the UDP echo benchmark. A plain C, single-threaded,
 * edge-triggered epoll echo server on one nonblocking UDP socket, making the system calls the
 * reactor's UDP path makes per datagram, with no abstraction: on a readable edge, recvfrom until
 * EAGAIN (edge-triggered: no new edge comes for datagrams already queued), and one sendto back
 * to the sender per datagram. A sendto that would block drops that reply (UDP promises no
 * more; the reactor queues it instead, which on loopback never happens). No access lists, no
 * rate limits, no reflection guard: the cost of the bare syscalls.
 *
 *   cc -O2 -o epoll_udp_echo epoll_udp_echo.c && ./epoll_udp_echo [PORT]   (default 0: OS's choice)
 * prints "listening echo udp 127.0.0.1:PORT" and serves until killed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static char scratch[65536]; /* the largest datagram fits (65,507 bytes over IPv4) */

/* Echoes every queued datagram; returns when the socket is drained (EAGAIN). */
static void drain(int fd) {
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        ssize_t n = recvfrom(fd, scratch, sizeof scratch, 0, (struct sockaddr *)&peer, &plen);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            continue; /* e.g. a pending ICMP error, consumed by reporting it: go on */
        }
        while (sendto(fd, scratch, (size_t)n, 0, (struct sockaddr *)&peer, plen) < 0 && errno == EINTR) {
        }
    }
}

int main(int argc, char **argv) {
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    a.sin_port = htons((uint16_t)(argc > 1 ? atoi(argv[1]) : 0));
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0), ep = epoll_create1(0);
    if (fd < 0 || ep < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0
        || getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        perror("epoll_udp_echo");
        return 1;
    }
    struct epoll_event e = { .events = EPOLLIN | EPOLLET, .data.fd = fd }, evs[16];
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) {
        perror("epoll_ctl");
        return 1;
    }
    printf("listening echo udp 127.0.0.1:%u\n", ntohs(a.sin_port));
    fflush(stdout);
    for (;;) {
        int n = epoll_wait(ep, evs, 16, -1);
        if (n < 0 && errno != EINTR) { perror("epoll_wait"); return 1; }
        for (int i = 0; i < n; i++) drain(evs[i].data.fd);
    }
}
