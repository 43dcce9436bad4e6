/* tests/udp_echo.c — a UDP echo server for the end-to-end test image (busybox-static has
 * none): every datagram that arrives on PORT (argv[1], default 7), over IPv4 or IPv6, goes
 * back to its sender unchanged. tests/lab.sh builds it with `cc -static` into the image as
 * /bin/udp_echo. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 7;
    int off = 0;
    struct sockaddr_in6 addr = {0};
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    if (fd < 0) {
        perror("socket");
        return 1;
    }
    /* One socket for both families: IPv4 peers arrive as ::ffff:a.b.c.d. */
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) != 0) {
        perror("IPV6_V6ONLY");
        return 1;
    }
    addr.sin6_family = AF_INET6;
    addr.sin6_port = htons((unsigned short)port);
    addr.sin6_addr = in6addr_any;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("bind");
        return 1;
    }
    for (;;) {
        char buf[2048];
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
        if (n >= 0) {
            sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, len);
        }
    }
}
